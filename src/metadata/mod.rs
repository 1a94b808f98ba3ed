//! Cluster metadata: topics, their ids, partition counts and configs, the cluster id, the
//! finalized feature levels.
//!
//! Brokers read an immutable [`MetadataImage`]; the only way it changes is [`MetadataImage::replay`]
//! of a [`MetadataRecord`]. The [`controller`] validates requests and computes records without
//! mutating anything; the [`store`] appends them durably to the metadata log, then publishes the
//! image that results. On a single node the metadata log is a local file; a Raft quorum will
//! replace it without changing this contract.

pub mod controller;
pub mod features;
pub mod image;
pub mod records;
pub mod store;

pub use controller::{ControllerError, TopicSpec};
pub use image::{MetadataImage, TopicImage};
pub use records::MetadataRecord;
pub use store::MetadataStore;
