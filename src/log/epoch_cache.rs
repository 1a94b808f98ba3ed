//! Leader-epoch cache: at which offset each leader epoch began (Kafka's
//! `LeaderEpochFileCache`), persisted to `leader-epoch-checkpoint`.
//!
//! Followers use it through OffsetForLeaderEpoch to find where their log diverges from the
//! leader's. Every change is written at once (atomic replace), since epochs change rarely.
//!
//! Invariants: epochs and start offsets both strictly increase along the entries; no entry
//! starts beyond the log end offset (callers truncate the cache with the log).

use std::path::{Path, PathBuf};

use super::LogError;
use crate::types::{LeaderEpoch, Offset};
use super::checkpoint::{parse_ints, read_checkpoint, write_checkpoint};

/// Kafka's file name for the cache.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: u32 = 0;

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH: LeaderEpoch = LeaderEpoch(-1);
pub const UNDEFINED_EPOCH_OFFSET: Offset = Offset(-1);

/// An epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// See the module docs.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Loads `dir/leader-epoch-checkpoint`, or starts empty if there is none.
    pub fn load(dir: &Path) -> Result<LeaderEpochCache, LogError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let mut entries = Vec::new();
        for line in read_checkpoint(&path, CHECKPOINT_VERSION)?.unwrap_or_default() {
            let [epoch, start_offset] = parse_ints::<2>(&line, &path)?;
            let entry = EpochEntry {
                epoch: LeaderEpoch(epoch as i32),
                start_offset: Offset(start_offset),
            };
            if entries.last().is_some_and(|l: &EpochEntry| {
                l.epoch >= entry.epoch || l.start_offset >= entry.start_offset
            }) {
                return Err(LogError::CorruptCheckpoint {
                    path,
                    reason: "epochs out of order",
                });
            }
            entries.push(entry);
        }
        Ok(LeaderEpochCache { path, entries })
    }

    /// An empty cache that will persist to `dir/leader-epoch-checkpoint`.
    pub fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            path: dir.join(LEADER_EPOCH_CHECKPOINT),
            entries: Vec::new(),
        }
    }

    /// Records that `epoch` began at `start_offset`. As Kafka: ignored for a negative epoch or
    /// when nothing changes; entries that would break monotonicity (an equal or later epoch,
    /// or a start at or after this one) are dropped first.
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> Result<(), LogError> {
        if self.assign_in_memory(epoch, start_offset) {
            self.persist()?;
        }
        Ok(())
    }

    /// [`LeaderEpochCache::assign`] without persisting; returns whether anything changed.
    pub fn assign_in_memory(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        let update_needed = epoch.0 >= 0
            && self
                .entries
                .last()
                .is_none_or(|l| l.epoch != epoch || start_offset < l.start_offset);
        if !update_needed {
            return false;
        }
        while self
            .entries
            .last()
            .is_some_and(|l| l.epoch >= epoch || l.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.epoch)
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)` for `requested`, as Kafka's `endOffsetFor`.
    /// - the latest epoch ends at the log end offset;
    /// - an older epoch ends where the next higher known epoch starts, answered with the
    ///   largest known epoch `<= requested`, or with `requested` itself when it predates the
    ///   whole cache (its data is gone; the follower restarts from the first known epoch);
    /// - an epoch above every known one, or an empty cache: `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`.
    pub fn end_offset_for_epoch(&self, requested: LeaderEpoch, log_end_offset: Offset) -> (LeaderEpoch, Offset) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return undefined;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return undefined;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            Some(floor) => (floor.epoch, higher.start_offset),
            None => (requested, higher.start_offset),
        }
    }

    /// The epoch an offset was written in, if known.
    pub fn epoch_for_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
    }

    /// The log was truncated to `end_offset`: forget epochs that began at or after it.
    pub fn truncate_from_end(&mut self, end_offset: Offset) -> Result<(), LogError> {
        if self
            .entries
            .last()
            .is_none_or(|l| l.start_offset < end_offset)
        {
            return Ok(());
        }
        self.entries.retain(|e| e.start_offset < end_offset);
        self.persist()
    }

    /// The log start moved to `start_offset`: drop epochs wholly before it and move the start
    /// of the epoch that covers it up to `start_offset`.
    pub fn truncate_from_start(&mut self, start_offset: Offset) -> Result<(), LogError> {
        let covered = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        if covered == 0 {
            return Ok(());
        }
        let epoch = self.entries[covered - 1].epoch;
        self.entries.drain(..covered);
        self.entries.insert(
            0,
            EpochEntry {
                epoch,
                start_offset,
            },
        );
        self.persist()
    }

    /// Removes every entry (the log was emptied and restarted elsewhere).
    pub fn clear(&mut self) -> Result<(), LogError> {
        self.entries.clear();
        self.persist()
    }

    pub fn persist(&self) -> Result<(), LogError> {
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch.0, e.start_offset))
            .collect();
        write_checkpoint(&self.path, CHECKPOINT_VERSION, &lines)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cache_with(entries: &[(i32, i64)]) -> (tempfile::TempDir, LeaderEpochCache) {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        for &(epoch, offset) in entries {
            cache.assign(LeaderEpoch(epoch), Offset(offset)).unwrap();
        }
        (dir, cache)
    }

    #[test]
    fn answers_offset_for_leader_epoch_like_kafka() {
        let (_dir, cache) = cache_with(&[(2, 10), (4, 30), (7, 50)]);
        assert_eq!(cache.end_offset_for_epoch(LeaderEpoch(7), Offset(80)), (LeaderEpoch(7), Offset(80)));
        assert_eq!(cache.end_offset_for_epoch(LeaderEpoch(4), Offset(80)), (LeaderEpoch(4), Offset(50)));
        assert_eq!(cache.end_offset_for_epoch(LeaderEpoch(5), Offset(80)), (LeaderEpoch(4), Offset(50))); // hole: floor epoch
        assert_eq!(cache.end_offset_for_epoch(LeaderEpoch(1), Offset(80)), (LeaderEpoch(1), Offset(10))); // before the cache
        assert_eq!(
            cache.end_offset_for_epoch(LeaderEpoch(8), Offset(80)),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        assert_eq!(
            cache.end_offset_for_epoch(LeaderEpoch(-1), Offset(80)),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
        let (_dir, empty) = cache_with(&[]);
        assert_eq!(
            empty.end_offset_for_epoch(LeaderEpoch(0), Offset(80)),
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)
        );
    }

    #[test]
    fn assign_keeps_entries_monotonic() {
        let (_dir, mut cache) = cache_with(&[(1, 0), (3, 10)]);
        cache.assign(LeaderEpoch(3), Offset(15)).unwrap(); // same epoch, later start: no change
        assert_eq!(cache.entries().len(), 2);
        cache.assign(LeaderEpoch(2), Offset(5)).unwrap(); // older epoch: later entries go
        assert_eq!(
            cache.entries(),
            &[
                EpochEntry {
                    epoch: LeaderEpoch(1),
                    start_offset: Offset(0)
                },
                EpochEntry {
                    epoch: LeaderEpoch(2),
                    start_offset: Offset(5)
                }
            ]
        );
        cache.assign(LeaderEpoch(-1), Offset(20)).unwrap();
        assert_eq!(cache.latest_epoch(), Some(LeaderEpoch(2)));
    }

    #[test]
    fn truncations_and_persistence() {
        let (dir, mut cache) = cache_with(&[(1, 0), (2, 10), (3, 20)]);
        cache.truncate_from_end(Offset(20)).unwrap();
        assert_eq!(cache.latest_epoch(), Some(LeaderEpoch(2)));
        cache.truncate_from_start(Offset(12)).unwrap();
        assert_eq!(
            cache.entries(),
            &[EpochEntry {
                epoch: LeaderEpoch(2),
                start_offset: Offset(12)
            }]
        );
        let reloaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(reloaded.entries(), cache.entries());
        assert_eq!(reloaded.epoch_for_offset(Offset(100)), Some(LeaderEpoch(2)));
    }
}
