//! The records of the metadata log. Each one is a fact; replaying them in order gives the image.
//!
//! Records are JSON lines tagged by `type`, with Kafka's record names (less the `Record`
//! suffix). Every record a data directory ever held must keep replaying as it did: fields are
//! only ever added, with `#[serde(default)]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, PartitionId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's identity, written once when the data directory is first formatted.
    Cluster { cluster_id: String },
    /// A topic was created with `partitions` partitions. Their registrations follow as
    /// [`MetadataRecord::Partition`] records in the same batch; a data directory written
    /// before registrations existed has none, and the store migrates it on open.
    Topic {
        name: String,
        id: Uuid,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    /// Legacy: a topic grew to `partitions` partitions. Written by data directories from
    /// before registrations; the controller now writes a `Partition` record per new partition.
    PartitionCount { id: Uuid, partitions: i32 },
    /// A partition's full registration (Kafka's PartitionRecord): creation, or migration.
    Partition {
        topic_id: Uuid,
        partition: PartitionId,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        #[serde(default)]
        elr: Vec<NodeId>,
        #[serde(default)]
        last_known_elr: Vec<NodeId>,
        /// Replicas an ongoing reassignment adds and removes (absent: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<NodeId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<NodeId>,
        leader: Option<NodeId>,
        leader_epoch: LeaderEpoch,
        partition_epoch: PartitionEpoch,
    },
    /// A change to a partition's registration (Kafka's PartitionChangeRecord); absent fields
    /// stay as they are. Replay bumps the partition epoch, and the leader epoch when the
    /// leader changes.
    PartitionChange {
        topic_id: Uuid,
        partition: PartitionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isr: Option<Vec<NodeId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<LeaderChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<NodeId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elr: Option<Vec<NodeId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_known_elr: Option<Vec<NodeId>>,
        /// A reassignment starting, completing or cancelled (Kafka's `addingReplicas` and
        /// `removingReplicas` of PartitionChangeRecord; an empty list ends it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adding_replicas: Option<Vec<NodeId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        removing_replicas: Option<Vec<NodeId>>,
    },
    /// A broker (re)registered (Kafka's RegisterBrokerRecord): a new incarnation replaces any
    /// earlier registration of the same id.
    RegisterBroker {
        id: NodeId,
        incarnation_id: Uuid,
        epoch: BrokerEpoch,
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
        fenced: bool,
        #[serde(default)]
        in_controlled_shutdown: bool,
    },
    /// A broker's registration was removed (Kafka's UnregisterBrokerRecord).
    UnregisterBroker { id: NodeId, epoch: BrokerEpoch },
    /// A broker may no longer lead or be in an ISR (Kafka's FenceBrokerRecord).
    FenceBroker { id: NodeId, epoch: BrokerEpoch },
    /// A broker caught up and may lead again (Kafka's UnfenceBrokerRecord).
    UnfenceBroker { id: NodeId, epoch: BrokerEpoch },
    /// A broker's fencing or controlled-shutdown state changed (Kafka's
    /// BrokerRegistrationChangeRecord); absent fields stay as they are.
    BrokerRegistrationChange {
        id: NodeId,
        epoch: BrokerEpoch,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fenced: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_controlled_shutdown: Option<bool>,
    },
    /// A topic config was set (`Some`) or reset to its default (`None`).
    TopicConfig { id: Uuid, key: String, value: Option<String> },
    /// A dynamic broker config was set (`Some`) or removed (`None`) for broker `broker` (its
    /// id as text), or for every broker when `broker` is empty (Kafka's ConfigRecord of a
    /// BROKER resource). Only the replication throttles are written so far.
    BrokerConfig { broker: String, key: String, value: Option<String> },
    /// A group config was set (`Some`) or reset to the broker default (`None`). Group configs
    /// exist independently of the group: they may be set before it has members and outlive it.
    GroupConfig { group: String, key: String, value: Option<String> },
    /// A client-metrics subscription's config was set (`Some`) or removed (`None`) (Kafka's
    /// ConfigRecord of a CLIENT_METRICS resource); a subscription with no keys left is gone.
    ClientMetricsConfig { name: String, key: String, value: Option<String> },
    /// A topic was deleted.
    RemoveTopic { id: Uuid },
    /// Producer ids below `next` are handed out.
    ProducerIds { next: i64 },
    /// A feature was finalized at `level` (Kafka's FeatureLevelRecord); 0 removes it.
    FeatureLevel { name: String, level: i16 },
}

/// The leader a [`MetadataRecord::PartitionChange`] installs (Kafka's -1 = no leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderChange {
    Elected(NodeId),
    NoLeader,
}

impl LeaderChange {
    pub fn leader(self) -> Option<NodeId> {
        match self {
            LeaderChange::Elected(id) => Some(id),
            LeaderChange::NoLeader => None,
        }
    }
}

/// A listener a broker can be reached on (an entry of Kafka's RegisterBrokerRecord endPoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener name, e.g. `PLAINTEXT`.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The security protocol's name, e.g. `PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
}
