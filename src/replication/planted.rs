//! Test-only switches that each break one replication rule, so that the seeded simulation
//! ([`super::sim`]) can prove it notices. A switch is set per thread (tests run in parallel)
//! and only by a test; none of this exists outside `cfg(test)`.

use std::cell::Cell;

/// The rules the planted-bug tests break, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The high watermark is computed over the committed ISR, ignoring the member an
    /// in-flight expansion adds (the controller may commit it and later elect it).
    HwIgnoresPendingExpand,
    /// The AlterPartition sender treats an unanswered change as rejected and reverts to the
    /// committed ISR, although the controller may have committed it (simulation model only).
    AlterTimeoutReverts,
    /// A follower ignores the diverging epoch of a Fetch answer and keeps its log.
    NoTruncateOnDiverge,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 3] = [PlantedBug::HwIgnoresPendingExpand, PlantedBug::AlterTimeoutReverts, PlantedBug::NoTruncateOnDiverge];

    /// The bug named `name` (its variant name), as `BLUMFELD_REPL_SIM_PLANTED` spells it.
    pub fn named(name: &str) -> Option<PlantedBug> {
        Self::ALL.into_iter().find(|b| format!("{b:?}").eq_ignore_ascii_case(name.trim()))
    }
}

thread_local! {
    static ACTIVE: Cell<Option<PlantedBug>> = const { Cell::new(None) };
}

/// Whether `bug` is planted on this thread.
pub fn is(bug: PlantedBug) -> bool {
    ACTIVE.with(|a| a.get() == Some(bug))
}

/// Plants `bug` on this thread until the guard drops.
pub fn plant(bug: Option<PlantedBug>) -> Planted {
    ACTIVE.with(|a| a.set(bug));
    Planted(())
}

/// Removes the planted bug when dropped.
pub struct Planted(());

impl Drop for Planted {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(None));
    }
}
