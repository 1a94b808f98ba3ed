//! A batch of records replayed against an image: the image it publishes, and what changed
//! for one broker (Kafka's `MetadataDelta` and `TopicsDelta.localChanges`).
//!
//! The published image shares every topic `Arc` the records did not touch with the base
//! image. The delta remembers which partitions the records created or changed and which
//! topics they deleted, so a broker acts on those instead of rescanning every partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use super::image::{MetadataImage, TopicImage};
use super::records::MetadataRecord;
use super::registration::PartitionRegistration;
use crate::types::{NodeId, PartitionId, TopicPartition};

pub struct MetadataDelta {
    base: Arc<MetadataImage>,
    next: MetadataImage,
    /// Topic id → partitions created or changed (in `next`).
    changed: BTreeMap<Uuid, BTreeSet<PartitionId>>,
    /// Topics whose configs changed (hosted partitions reload their log config).
    config_changed: BTreeSet<Uuid>,
    /// Topics of `base` that the records deleted.
    deleted: BTreeMap<Uuid, Arc<TopicImage>>,
}

/// A partition this broker hosts after the delta, with its registration.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPartition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub registration: PartitionRegistration,
}

/// What a delta asks of one broker.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LocalChanges {
    /// Partitions this broker now leads (new, or whose registration changed).
    pub leaders: Vec<LocalPartition>,
    /// Partitions this broker now follows.
    pub followers: Vec<LocalPartition>,
    /// Partitions this broker hosted and must delete: their topic was deleted, or this broker
    /// left their replicas.
    pub deletes: Vec<(TopicPartition, Uuid)>,
    /// Topics whose configs changed and that this broker hosts partitions of.
    pub config_changed: Vec<Arc<TopicImage>>,
}

impl LocalChanges {
    pub fn is_empty(&self) -> bool {
        self.leaders.is_empty() && self.followers.is_empty() && self.deletes.is_empty() && self.config_changed.is_empty()
    }
}

impl MetadataDelta {
    pub fn new(base: Arc<MetadataImage>) -> Self {
        let next = (*base).clone();
        Self { base, next, changed: BTreeMap::new(), config_changed: BTreeSet::new(), deleted: BTreeMap::new() }
    }

    /// The image with every record replayed so far.
    pub fn image(&self) -> &MetadataImage {
        &self.next
    }

    /// An entry of the metadata log that is not a record (the quorum's leader-change entry):
    /// it moves the offset only.
    pub fn skip(&mut self) {
        self.next.offset += 1;
    }

    /// One entry of the quorum's metadata log: a change's records, at one offset.
    pub fn replay_change(&mut self, records: &[MetadataRecord]) {
        let at = self.next.offset;
        for r in records {
            self.replay(r);
        }
        self.next.offset = at + 1;
    }

    pub fn replay(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Topic { id, partitions, .. } => {
                self.changed.entry(*id).or_default().extend((0..*partitions).map(PartitionId));
            }
            MetadataRecord::PartitionCount { id, partitions } => {
                let from = self.next.topic_by_id(id).map_or(0, |t| t.partition_count());
                self.changed.entry(*id).or_default().extend((from..*partitions).map(PartitionId));
            }
            MetadataRecord::Partition { topic_id, partition, .. }
            | MetadataRecord::PartitionChange { topic_id, partition, .. } => {
                self.changed.entry(*topic_id).or_default().insert(*partition);
            }
            MetadataRecord::TopicConfig { id, .. } => {
                self.config_changed.insert(*id);
            }
            MetadataRecord::RemoveTopic { id } => {
                self.changed.remove(id);
                self.config_changed.remove(id);
                if let Some(t) = self.base.topic_by_id(id) {
                    self.deleted.insert(*id, t.clone());
                }
            }
            _ => {}
        }
        self.next.replay(record);
    }

    /// The partitions this broker must lead, follow or delete after the delta.
    pub fn local_changes(&self, node: NodeId) -> LocalChanges {
        let mut out = LocalChanges::default();
        for (id, t) in &self.deleted {
            for (i, r) in &t.partitions {
                if r.has_replica(node) {
                    out.deletes.push((TopicPartition::new(t.name.clone(), i.0), *id));
                }
            }
        }
        for (id, partitions) in &self.changed {
            let Some(t) = self.next.topic_by_id(id) else { continue };
            let before = self.base.topic_by_id(id);
            for i in partitions {
                let Some(r) = t.partitions.get(i) else { continue };
                let tp = TopicPartition::new(t.name.clone(), i.0);
                if r.has_replica(node) {
                    let p = LocalPartition { tp, topic_id: *id, registration: r.clone() };
                    if r.leader == Some(node) { out.leaders.push(p) } else { out.followers.push(p) }
                } else if before.and_then(|b| b.partitions.get(i)).is_some_and(|b| b.has_replica(node)) {
                    out.deletes.push((tp, *id));
                }
            }
        }
        for id in &self.config_changed {
            if let Some(t) = self.next.topic_by_id(id)
                && t.partitions.values().any(|r| r.has_replica(node))
            {
                out.config_changed.push(t.clone());
            }
        }
        out
    }

    /// The new image. Topics the records did not touch are the base image's `Arc`s.
    pub fn apply(self) -> MetadataImage {
        self.next
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::metadata::records::LeaderChange;
    use crate::types::{LeaderEpoch, PartitionEpoch};

    fn topic(name: &str, id: Uuid, partitions: i32) -> MetadataRecord {
        MetadataRecord::Topic { name: name.into(), id, partitions, replication_factor: 2, configs: Default::default() }
    }

    fn partition(topic_id: Uuid, index: i32, replicas: &[i32]) -> MetadataRecord {
        let replicas: Vec<NodeId> = replicas.iter().map(|&n| NodeId(n)).collect();
        MetadataRecord::Partition {
            topic_id,
            partition: PartitionId(index),
            isr: replicas.clone(),
            leader: replicas.first().copied(),
            replicas,
            elr: vec![],
            last_known_elr: vec![],
            adding_replicas: vec![],
            removing_replicas: vec![],
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        }
    }

    #[test]
    fn local_changes_name_leaders_followers_and_deletes() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut base = MetadataImage::default();
        for r in [topic("a", a, 2), partition(a, 0, &[1, 2]), partition(a, 1, &[2, 1]), topic("b", b, 1), partition(b, 0, &[1])] {
            base.replay(&r);
        }
        let base = Arc::new(base);
        let mut delta = MetadataDelta::new(base.clone());
        let c = Uuid::new_v4();
        delta.replay(&topic("c", c, 1));
        delta.replay(&partition(c, 0, &[2, 1]));
        // Node 1 leaves a-1's replicas; b is deleted.
        delta.replay(&MetadataRecord::PartitionChange {
            topic_id: a,
            partition: PartitionId(1),
            isr: Some(vec![NodeId(2)]),
            leader: None,
            replicas: Some(vec![NodeId(2)]),
            elr: None,
            last_known_elr: None,
            adding_replicas: None,
            removing_replicas: None,
        });
        delta.replay(&MetadataRecord::RemoveTopic { id: b });
        let changes = delta.local_changes(NodeId(1));
        assert!(changes.leaders.is_empty());
        assert_eq!(changes.followers.iter().map(|p| p.tp.to_string()).collect::<Vec<_>>(), ["c-0"]);
        let mut deletes: Vec<String> = changes.deletes.iter().map(|(tp, _)| tp.to_string()).collect();
        deletes.sort();
        assert_eq!(deletes, ["a-1", "b-0"]);
        let for_2 = delta.local_changes(NodeId(2));
        let mut leaders: Vec<String> = for_2.leaders.iter().map(|p| p.tp.to_string()).collect();
        leaders.sort();
        assert_eq!(leaders, ["a-1", "c-0"]);
        assert!(for_2.deletes.is_empty());

        let next = delta.apply();
        assert!(next.topic("b").is_none());
        assert_eq!(next.topic("a").unwrap().partition(1).unwrap().partition_epoch, PartitionEpoch(1));
        assert!(!Arc::ptr_eq(next.topic("a").unwrap(), base.topic("a").unwrap()));
    }

    #[test]
    fn untouched_topics_are_shared() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut base = MetadataImage::default();
        for r in [topic("a", a, 1), partition(a, 0, &[1]), topic("b", b, 1), partition(b, 0, &[1])] {
            base.replay(&r);
        }
        let base = Arc::new(base);
        let mut delta = MetadataDelta::new(base.clone());
        delta.replay(&MetadataRecord::PartitionChange {
            topic_id: b,
            partition: PartitionId(0),
            isr: None,
            leader: Some(LeaderChange::NoLeader),
            replicas: None,
            elr: None,
            last_known_elr: None,
            adding_replicas: None,
            removing_replicas: None,
        });
        let changes = delta.local_changes(NodeId(1));
        assert_eq!(changes.followers.len(), 1, "hosted without leading: a follower");
        let next = delta.apply();
        assert!(Arc::ptr_eq(next.topic("a").unwrap(), base.topic("a").unwrap()));
        assert!(!Arc::ptr_eq(next.topic("b").unwrap(), base.topic("b").unwrap()));
        assert_eq!(next.topic("b").unwrap().partition(0).unwrap().leader, None);
    }

    #[test]
    fn config_changes_name_only_topics_hosted_here() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut base = MetadataImage::default();
        for r in [topic("a", a, 1), partition(a, 0, &[1]), topic("b", b, 1), partition(b, 0, &[2])] {
            base.replay(&r);
        }
        let mut delta = MetadataDelta::new(Arc::new(base));
        for id in [a, b] {
            delta.replay(&MetadataRecord::TopicConfig { id, key: "retention.ms".into(), value: Some("1".into()) });
        }
        let changes = delta.local_changes(NodeId(1));
        assert_eq!(changes.config_changed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(changes.leaders.is_empty() && changes.followers.is_empty() && changes.deletes.is_empty());
    }
}
