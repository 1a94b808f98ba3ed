//! Cluster metadata: topics, their ids, partition registrations (replicas, ISR, leader and
//! epochs) and configs, broker registrations, the cluster id, the finalized feature levels.
//!
//! Brokers read an immutable [`MetadataImage`]; the only way it changes is [`MetadataImage::replay`]
//! of a [`MetadataRecord`], batched in a [`MetadataDelta`] that also says what changed for
//! this broker. The [`controller`] validates requests and computes records without
//! mutating anything; the [`store`] appends them durably to the metadata log, then publishes the
//! image that results. On a single node the metadata log is a local file; in a cluster it is the
//! Raft log of the metadata quorum, and [`cluster_control`] adds the active controller's rules
//! for broker membership (registration, heartbeats, fencing, controlled shutdown).
//!
//! The active controller's write rule and the applier's replay are pure functions in
//! [`write_rule`], which the store calls and `cluster_sim` (tests only) calls too: it runs the
//! controller layer and the brokers of a whole cluster under a seeded simulation over
//! `raft::sim`'s network, crashes and slow disks, every node applying what its quorum commits
//! through the same delta and replay code, and checks its invariants (one applied history, no
//! fenced leader in any image, broker epochs, unfencing only after catch-up, disjoint
//! producer-id blocks, local changes that match the image, a cluster that settles once
//! healed) after every event. Its module doc has the commands.

pub mod cluster_control;
#[cfg(test)]
mod cluster_sim;
pub mod controller;
pub mod delta;
pub mod election;
pub mod features;
pub mod image;
pub mod migrate;
pub mod partition_change;
pub mod placement;
pub mod reassignment;
pub mod records;
pub mod registration;
pub mod store;
pub mod write_rule;

pub use controller::{ControllerError, TopicSpec};
pub use delta::{LocalChanges, MetadataDelta};
pub use image::{MetadataImage, TopicImage};
pub use registration::{BrokerRegistration, PartitionRegistration};
pub use records::MetadataRecord;
pub use store::MetadataStore;
