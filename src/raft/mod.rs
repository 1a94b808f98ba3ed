//! The metadata quorum's consensus core: KRaft (KIP-595 pull-based Raft, KIP-996 pre-vote,
//! KIP-630 snapshots) as a pure state machine.

pub mod config;
pub mod core;
mod fetch;
pub mod log;
pub mod message;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
pub mod state;
pub mod wire;

pub use self::config::{PlantedBug, RaftConfig};
pub use self::core::{Action, Event, RaftCore, RaftError};
pub use self::log::{MemoryLog, RaftLog};
pub use self::message::{Entry, EntryData, Message, OffsetAndEpoch, RaftErrorCode, SnapshotId};
pub use self::state::{QuorumDescription, QuorumState, ReplicaDescription, RoleKind};
