//! The metadata quorum's consensus core: KRaft (KIP-595 pull-based Raft, KIP-996 pre-vote,
//! KIP-630 snapshots) as a deterministic state machine with no I/O. A driver (a later slice)
//! owns the sockets, the disk and the clock, feeds the core events and executes what it asks.
//!
//! # The pieces
//!
//! ```text
//! driver (later: tokio, quorum-state file, file log)      sim (tests: seeded network and disks)
//!   │ step(now_ms, Event) → [Action]                         │ the same calls
//!   └─ core       roles and transitions, votes, epochs, check-quorum, resignation
//!        ├─ fetch    Fetch on both sides: diverging epochs, the high watermark, FetchSnapshot
//!        ├─ state    per-role state, the leader's replica progress, DescribeQuorum data
//!        ├─ log      the RaftLog trait (what the core reads and writes) and MemoryLog
//!        ├─ message  entries, positions, the KRaft messages as plain structs
//!        └─ config   controller.quorum.* with Kafka's defaults
//! wire       message ↔ kafka-protocol (Vote, Begin/EndQuorumEpoch, Fetch of
//!            __cluster_metadata-0, FetchSnapshot, DescribeQuorum)
//! ```
//!
//! # Invariants the core keeps (and the simulator checks after every event)
//! - At most one leader per epoch: a node votes at most once per epoch, and the vote is in a
//!   `PersistQuorumState` emitted before the answer that grants it.
//! - A committed entry is never lost: the leader's high watermark is the largest offset
//!   *flushed* on a majority of voters (its own flushed end included, never its written end;
//!   voters fetch only from a flushed end), and it passes nothing until an entry of the
//!   leader's own epoch (the leader-change entry) is on that majority.
//! - A node votes only for a log at least as up to date as its own (last epoch, then end
//!   offset), so every leader holds every entry committed before its epoch.
//! - The high watermark never moves back within a run of the process; after a restart it
//!   starts again from the log start (the snapshot), and re-applying must agree.
//! - A higher epoch in any message makes the node step down into it; a Vote request's counts
//!   once the request is valid, and a pre-vote's too (it carries its sender's current epoch,
//!   as Kafka's does): a voter whose candidacy went unheard thus pulls the quorum into its
//!   epoch instead of staying out of it for good.
//!
//! # What the driver must do
//! 1. Call `step` with a non-decreasing clock (wall-clock milliseconds, so that DescribeQuorum's
//!    timestamps mean what `kafka-metadata-quorum` expects); call it with `Event::Tick` no later
//!    than `next_deadline_ms()`.
//! 2. Execute the returned actions **in order**. `PersistQuorumState` must be durable (written
//!    and fsynced) before the next action runs: the core emits it before any `Send` that
//!    depends on it, and that order is the only thing that keeps a vote from being forgotten.
//! 3. `Flush { up_to }`: make the log durable (in the background is fine) and report
//!    `Event::Flushed` with what is durable in the log as it is *now*; if the core truncated
//!    meanwhile (`LogTruncated`), never report an offset the truncation removed.
//!    `RaftLog::truncate_to` must itself be durable on return.
//! 4. Match responses to requests by correlation id and fill in what the wire does not carry:
//!    `VoteResponse::pre_vote` and `FetchResponse::request` (the `*_from_wire` functions take
//!    them). Drop responses with no pending request.
//! 5. `Commit { up_to }`: entries below `up_to` are committed; apply them (read them with
//!    `log().read`). `SnapshotLoaded`: reload the state machine from the log's snapshot.
//! 6. Snapshots: once the state machine has applied up to a committed offset, call
//!    `snapshot_taken(end, bytes)`; the log keeps the snapshot and deletes the prefix behind it.
//!    Followers whose fetch offset falls below the log start get the snapshot id and download
//!    it with FetchSnapshot, then continue with Fetch.
//! 7. `propose` (leader only) returns the first offset of the records; they are committed when
//!    a `Commit` passes it. `Event::Resign` on shutdown lets a successor stand at once.
//! 8. A request whose connection was refused or reset (the peer's process is gone) may be
//!    reported as `Event::Unreachable`; a timeout must not be (a slow or cut-off peer may be
//!    alive). A follower that cannot reach its leader so stands after a random backoff (up to
//!    `election_backoff_max_ms`) instead of the fetch timeout.
//!
//! # Differences from Kafka worth knowing
//! - Voters are the static `controller.quorum.voters`; KIP-853 (AddRaftVoter/RemoveRaftVoter,
//!   directory ids, endpoints in messages) is not implemented. The cluster id is not checked
//!   by the core (the driver answers INCONSISTENT_CLUSTER_ID).
//! - Prospectives and candidates send their vote requests again to voters that have not
//!   answered after the request timeout, as Kafka's do; Kafka also retries a failed request
//!   after the retry backoff, which the core does not model.
//! - An observer without a leader probes a random voter with Fetch; any answer names the leader.
//! - `Event::Unreachable` is ours: Kafka's follower waits out the fetch timeout even when the
//!   leader's connection is refused. It makes a kill -9 of the leader cost well under a second
//!   of election instead of about two (see `RaftCore::on_unreachable` for why it is safe).
//! - Fetch responses are bounded by an entry count (`fetch_max_entries`) and by record bytes
//!   (`fetch_max_bytes`, at least one entry).
//!
//! # The simulator
//! `sim` runs 3 or 5 voters and 1–2 observers under loss, delay, duplication, partitions,
//! crashes and slow disks; see its docs for the replay and million-seed commands. Planted bugs
//! (`RaftConfig::planted`, test-only) prove it catches broken rules.

pub mod config;
pub mod core;
mod fetch;
pub mod log;
pub mod driver;
pub mod file_log;
pub mod message;
pub mod quorum_state_file;
#[cfg(test)]
pub(crate) mod sim;
pub mod state;
#[cfg(test)]
mod tests;
pub mod wire;

pub use self::config::{PlantedBug, RaftConfig};
pub use self::core::{Action, Event, RaftCore, RaftError};
pub use self::file_log::FileRaftLog;
pub use self::log::{MemoryLog, RaftLog};
pub use self::quorum_state_file::QuorumStateFile;
pub use self::message::{Entry, EntryData, Message, OffsetAndEpoch, RaftErrorCode, SnapshotId};
pub use self::state::{QuorumDescription, QuorumState, ReplicaDescription, RoleKind};
