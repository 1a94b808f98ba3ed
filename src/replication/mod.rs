//! Partition replication with Kafka's ISR rules, as pure state machines.
//!
//! Kafka keeps every partition on `replication.factor` brokers: the leader appends, followers
//! pull with Fetch, the leader tracks what each follower has and commits what the in-sync
//! replicas (ISR) all hold. The rules that decide what is committed and who is in sync are
//! here, written without I/O, threads or clocks (time comes in as an argument), so that unit
//! tests and the seeded simulation drive exactly the code the broker runs:
//!
//! - [`leader`]: one partition as its leader sees it: each follower's progress, the ISR with
//!   its in-flight AlterPartition (Kafka's `PendingExpandIsr` / `PendingShrinkIsr`), and the
//!   high watermark ([`leader::high_watermark`], the rule as one pure function).
//! - [`follower`]: what a follower does with a leader's answer: where to truncate after a
//!   diverging epoch (KIP-320) and which high watermark to take.
//! - [`selector`]: which replica a consumer in a given rack should fetch from (KIP-392).
//! - [`throttle`]: the reassignment throttles (which replicas, how many bytes per second) and
//!   the token bucket a follower's fetchers share.
//!
//! The seeded simulation (`sim`, test-only) runs these rules inside the production
//! `Partition` on three simulated brokers and checks replication's invariants after every
//! event; `planted` holds the test-only switches that break one rule each.
//!
//! The reference is Apache Kafka 4.x (`Partition.scala`, `Replica.scala`,
//! `AbstractFetcherThread`, `ReplicationControlManager`); names follow it where they can.

pub mod follower;
pub mod leader;
pub mod selector;
pub mod throttle;
#[cfg(test)]
pub mod planted;
#[cfg(test)]
mod sim;

pub use follower::{follower_high_watermark, truncation_offset, EpochEndOffset, TruncationPoint};
pub use leader::{high_watermark, AlterIsrRequest, AlterIsrResult, Effect, FollowerProgress, IsrState, LeaderRegistration, LeaderReplicas, ReplicationConfig};
