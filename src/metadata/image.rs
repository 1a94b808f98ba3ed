//! The immutable view of cluster metadata that every broker component reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::records::MetadataRecord;

#[derive(Debug, Clone, PartialEq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic-level overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub names_by_id: HashMap<Uuid, String>,
    /// Group id → its config overrides; groups without overrides are absent.
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
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

    /// The image after `record`. Records that refer to unknown topics are ignored: the
    /// controller never writes them, and a replay must not fail on a log it wrote itself.
    pub fn replay(&mut self, record: &MetadataRecord) {
        self.offset += 1;
        match record {
            MetadataRecord::Cluster { cluster_id } => self.cluster_id = cluster_id.clone(),
            MetadataRecord::Topic { name, id, partitions, replication_factor, configs } => {
                let t = TopicImage {
                    name: name.clone(),
                    id: *id,
                    partitions: *partitions,
                    replication_factor: *replication_factor,
                    configs: configs.clone(),
                };
                self.names_by_id.insert(*id, name.clone());
                self.topics.insert(name.clone(), Arc::new(t));
            }
            MetadataRecord::PartitionCount { id, partitions } => {
                self.update_topic(id, |t| t.partitions = *partitions);
            }
            MetadataRecord::TopicConfig { id, key, value } => self.update_topic(id, |t| match value {
                Some(v) => {
                    t.configs.insert(key.clone(), v.clone());
                }
                None => {
                    t.configs.remove(key);
                }
            }),
            MetadataRecord::GroupConfig { group, key, value } => {
                let configs = self.group_configs.entry(group.clone()).or_default();
                match value {
                    Some(v) => {
                        configs.insert(key.clone(), v.clone());
                    }
                    None => {
                        configs.remove(key);
                    }
                }
                if configs.is_empty() {
                    self.group_configs.remove(group);
                }
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

    fn update_topic(&mut self, id: &Uuid, f: impl FnOnce(&mut TopicImage)) {
        if let Some(name) = self.names_by_id.get(id)
            && let Some(t) = self.topics.get_mut(name)
        {
            f(Arc::make_mut(t));
        }
    }
}
