//! The immutable view of cluster metadata that every broker component reads: topics with
//! their partitions' registrations, brokers' registrations, configs, features.
//!
//! Topics are behind `Arc`s so that an image made from another by a delta shares every topic
//! the delta did not touch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::records::MetadataRecord;
use super::registration::{BrokerRegistration, PartitionChange, PartitionRegistration};
use crate::types::{BrokerEpoch, NodeId, PartitionId};

#[derive(Debug, Clone, PartialEq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    /// Partition index → registration; indexes are always `0..partition_count()`.
    pub partitions: BTreeMap<PartitionId, PartitionRegistration>,
    pub replication_factor: i16,
    /// Topic-level overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    pub fn partition(&self, index: i32) -> Option<&PartitionRegistration> {
        self.partitions.get(&PartitionId(index))
    }

    /// Unknown registrations for partitions `partition_count()..count` (legacy records).
    fn grow_unknown(&mut self, count: i32) {
        for i in self.partition_count()..count {
            self.partitions.insert(PartitionId(i), PartitionRegistration::unknown());
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub names_by_id: HashMap<Uuid, String>,
    /// Registered brokers, fenced or not.
    pub brokers: BTreeMap<NodeId, BrokerRegistration>,
    /// Broker resource name (an id, or "" for the cluster default) → its dynamic configs.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Group id → its config overrides; groups without overrides are absent.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Client-metrics subscription name → its configs (KIP-714); subscriptions without keys
    /// are absent.
    pub client_metrics_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The next producer id to hand out.
    pub next_producer_id: i64,
    /// Finalized feature levels (see [`super::features`]); a feature at level 0 is absent.
    pub features: BTreeMap<String, i16>,
    /// How many records produced this image (the metadata log end offset).
    pub offset: i64,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    /// The finalized level of a feature; 0 when it is not finalized.
    pub fn feature_level(&self, name: &str) -> i16 {
        self.features.get(name).copied().unwrap_or(0)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.names_by_id.get(id).and_then(|n| self.topics.get(n))
    }

    /// Records whose replay gives this image back (all but `offset`): the contents of a
    /// metadata snapshot.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        if !self.cluster_id.is_empty() {
            out.push(MetadataRecord::Cluster { cluster_id: self.cluster_id.clone() });
        }
        for (name, level) in &self.features {
            out.push(MetadataRecord::FeatureLevel { name: name.clone(), level: *level });
        }
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker {
                id: b.id,
                incarnation_id: b.incarnation_id,
                epoch: b.epoch,
                endpoints: b.endpoints.clone(),
                rack: b.rack.clone(),
                fenced: b.fenced,
                in_controlled_shutdown: b.in_controlled_shutdown,
            });
        }
        for t in self.topics.values() {
            out.push(MetadataRecord::Topic {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partition_count(),
                replication_factor: t.replication_factor,
                configs: t.configs.clone(),
            });
            for (p, r) in &t.partitions {
                if r.is_unknown() {
                    continue;
                }
                out.push(MetadataRecord::Partition {
                    topic_id: t.id,
                    partition: *p,
                    replicas: r.replicas.clone(),
                    isr: r.isr.clone(),
                    elr: r.elr.clone(),
                    last_known_elr: r.last_known_elr.clone(),
                    adding_replicas: r.adding_replicas.clone(),
                    removing_replicas: r.removing_replicas.clone(),
                    leader: r.leader,
                    leader_epoch: r.leader_epoch,
                    partition_epoch: r.partition_epoch,
                });
            }
        }
        for (broker, configs) in &self.broker_configs {
            for (key, value) in configs {
                out.push(MetadataRecord::BrokerConfig { broker: broker.clone(), key: key.clone(), value: Some(value.clone()) });
            }
        }
        for (group, configs) in &self.group_configs {
            for (key, value) in configs {
                out.push(MetadataRecord::GroupConfig { group: group.clone(), key: key.clone(), value: Some(value.clone()) });
            }
        }
        for (name, configs) in &self.client_metrics_configs {
            for (key, value) in configs {
                out.push(MetadataRecord::ClientMetricsConfig { name: name.clone(), key: key.clone(), value: Some(value.clone()) });
            }
        }
        if self.next_producer_id != 0 {
            out.push(MetadataRecord::ProducerIds { next: self.next_producer_id });
        }
        out
    }

    /// The image after `record`. Records that refer to unknown topics are ignored: the
    /// controller never writes them, and a replay must not fail on a log it wrote itself.
    pub fn replay(&mut self, record: &MetadataRecord) {
        self.offset += 1;
        match record {
            MetadataRecord::Cluster { cluster_id } => self.cluster_id = cluster_id.clone(),
            MetadataRecord::Topic { name, id, partitions, replication_factor, configs } => {
                let mut t = TopicImage {
                    name: name.clone(),
                    id: *id,
                    partitions: BTreeMap::new(),
                    replication_factor: *replication_factor,
                    configs: configs.clone(),
                };
                t.grow_unknown(*partitions);
                self.names_by_id.insert(*id, name.clone());
                self.topics.insert(name.clone(), Arc::new(t));
            }
            MetadataRecord::PartitionCount { id, partitions } => {
                self.update_topic(id, |t| t.grow_unknown(*partitions));
            }
            MetadataRecord::Partition { .. } | MetadataRecord::PartitionChange { .. } => self.replay_partition(record),
            MetadataRecord::RegisterBroker { .. }
            | MetadataRecord::UnregisterBroker { .. }
            | MetadataRecord::FenceBroker { .. }
            | MetadataRecord::UnfenceBroker { .. }
            | MetadataRecord::BrokerRegistrationChange { .. } => self.replay_broker(record),
            MetadataRecord::TopicConfig { id, key, value } => self.update_topic(id, |t| match value {
                Some(v) => {
                    t.configs.insert(key.clone(), v.clone());
                }
                None => {
                    t.configs.remove(key);
                }
            }),
            MetadataRecord::BrokerConfig { broker, key, value } => set_override(&mut self.broker_configs, broker, key, value.as_ref()),
            MetadataRecord::GroupConfig { group, key, value } => set_override(&mut self.group_configs, group, key, value.as_ref()),
            MetadataRecord::ClientMetricsConfig { name, key, value } => {
                set_override(&mut self.client_metrics_configs, name, key, value.as_ref())
            }
            MetadataRecord::RemoveTopic { id } => {
                if let Some(name) = self.names_by_id.remove(id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::ProducerIds { next } => self.next_producer_id = *next,
            MetadataRecord::FeatureLevel { name, level } => {
                if *level == 0 {
                    self.features.remove(name);
                } else {
                    self.features.insert(name.clone(), *level);
                }
            }
        }
    }

    fn replay_partition(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                elr,
                last_known_elr,
                adding_replicas,
                removing_replicas,
                leader,
                leader_epoch,
                partition_epoch,
            } => self.update_topic(topic_id, |t| {
                // Indexes stay contiguous even if a record skipped one (the controller never does).
                t.grow_unknown(partition.0);
                let r = PartitionRegistration {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    elr: elr.clone(),
                    last_known_elr: last_known_elr.clone(),
                    adding_replicas: adding_replicas.clone(),
                    removing_replicas: removing_replicas.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                };
                t.partitions.insert(*partition, r);
            }),
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                isr,
                leader,
                replicas,
                elr,
                last_known_elr,
                adding_replicas,
                removing_replicas,
            } => {
                let change = PartitionChange {
                    isr: isr.clone(),
                    leader: *leader,
                    replicas: replicas.clone(),
                    elr: elr.clone(),
                    last_known_elr: last_known_elr.clone(),
                    adding_replicas: adding_replicas.clone(),
                    removing_replicas: removing_replicas.clone(),
                };
                self.update_topic(topic_id, |t| {
                    if let Some(r) = t.partitions.get_mut(partition) {
                        *r = r.merge(&change);
                    }
                });
            }
            _ => {}
        }
    }

    /// Broker records naming an epoch other than the registration's are stale (an earlier
    /// incarnation's) and change nothing.
    fn replay_broker(&mut self, record: &MetadataRecord) {
        fn current<'a>(
            brokers: &'a mut BTreeMap<NodeId, BrokerRegistration>,
            id: &NodeId,
            epoch: BrokerEpoch,
        ) -> Option<&'a mut BrokerRegistration> {
            brokers.get_mut(id).filter(|b| b.epoch == epoch)
        }
        match record {
            MetadataRecord::RegisterBroker { id, incarnation_id, epoch, endpoints, rack, fenced, in_controlled_shutdown } => {
                let b = BrokerRegistration {
                    id: *id,
                    incarnation_id: *incarnation_id,
                    epoch: *epoch,
                    endpoints: endpoints.clone(),
                    rack: rack.clone(),
                    fenced: *fenced,
                    in_controlled_shutdown: *in_controlled_shutdown,
                };
                self.brokers.insert(*id, b);
            }
            MetadataRecord::UnregisterBroker { id, epoch } if current(&mut self.brokers, id, *epoch).is_some() => {
                self.brokers.remove(id);
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                if let Some(b) = current(&mut self.brokers, id, *epoch) {
                    b.fenced = true;
                }
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                if let Some(b) = current(&mut self.brokers, id, *epoch) {
                    b.fenced = false;
                }
            }
            MetadataRecord::BrokerRegistrationChange { id, epoch, fenced, in_controlled_shutdown } => {
                if let Some(b) = current(&mut self.brokers, id, *epoch) {
                    b.fenced = fenced.unwrap_or(b.fenced);
                    b.in_controlled_shutdown = in_controlled_shutdown.unwrap_or(b.in_controlled_shutdown);
                }
            }
            _ => {}
        }
    }

    fn update_topic(&mut self, id: &Uuid, f: impl FnOnce(&mut TopicImage)) {
        if let Some(name) = self.names_by_id.get(id)
            && let Some(t) = self.topics.get_mut(name)
        {
            f(Arc::make_mut(t));
        }
    }
}

/// Sets (`Some`) or resets (`None`) `owner`'s override `key`; an owner left without overrides
/// is absent.
fn set_override(overrides: &mut BTreeMap<String, BTreeMap<String, String>>, owner: &str, key: &str, value: Option<&String>) {
    let configs = overrides.entry(owner.to_string()).or_default();
    match value {
        Some(v) => {
            configs.insert(key.to_string(), v.clone());
        }
        None => {
            configs.remove(key);
        }
    }
    if configs.is_empty() {
        overrides.remove(owner);
    }
}

