//! The records of the metadata log. Each one is a fact; replaying them in order gives the image.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's identity, written once when the data directory is first formatted.
    Cluster { cluster_id: String },
    /// A topic was created.
    Topic {
        name: String,
        id: Uuid,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    /// A topic grew to `partitions` partitions.
    PartitionCount { id: Uuid, partitions: i32 },
    /// A topic config was set (`Some`) or reset to its default (`None`).
    TopicConfig { id: Uuid, key: String, value: Option<String> },
    /// A group config was set (`Some`) or reset to the broker default (`None`). Group configs
    /// exist independently of the group: they may be set before it has members and outlive it.
    GroupConfig { group: String, key: String, value: Option<String> },
    /// A topic was deleted.
    RemoveTopic { id: Uuid },
    /// Producer ids below `next` are handed out.
    ProducerIds { next: i64 },
    /// A feature was finalized at `level` (Kafka's FeatureLevelRecord); 0 removes it.
    FeatureLevel { name: String, level: i16 },
}
