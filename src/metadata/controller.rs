//! Validates metadata changes against the current image and computes the records that make
//! them. Nothing here mutates state or does I/O; the store appends what comes out.

use std::collections::BTreeMap;

use thiserror::Error;
use uuid::Uuid;

use super::image::{MetadataImage, TopicImage};
use super::placement::{PlacementError, place_replicas};
use super::records::MetadataRecord;
use super::registration::{BrokerRegistration, PartitionRegistration};
use super::store::StoreError;
use crate::config::{BrokerConfig, check_topic_config};
use crate::types::{NodeId, PartitionId};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Partitions per topic at most (bounds memory and file handles of one request).
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic,
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("Topic deletion is disabled.")]
    TopicDeletionDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The active controller refused a request this node forwarded: its code and message.
    #[error("{message}")]
    Forwarded { code: i16, message: String },
}

/// What a CreateTopics entry (or auto-creation) asks for; -1 means "the broker default".
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Replicas per partition, when the request gave them (then `partitions` and
    /// `replication_factor` are taken from it).
    pub assignment: Option<Vec<Vec<NodeId>>>,
}

impl From<PlacementError> for ControllerError {
    fn from(e: PlacementError) -> Self {
        ControllerError::InvalidReplicationFactor(e.to_string())
    }
}

/// Kafka's topic name rules: 1..=249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |why: String| Err(ControllerError::InvalidTopic(why));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LEN_MAX} characters, topic name: {name}"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Names that differ only in `.` vs `_` collide in metric names; Kafka refuses the second.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// A new random topic id that is neither zero nor already in use.
fn new_topic_id(image: &MetadataImage) -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if !id.is_nil() && !image.names_by_id.contains_key(&id) {
            return id;
        }
    }
}

/// The records that create a topic: the `Topic` record (the one the log has always had, so a
/// topic is still one record to read), then a `Partition` record per partition with its
/// replicas, placed by [`place_replicas`] unless the request assigned them.
pub fn create_topic(
    image: &MetadataImage,
    config: &BrokerConfig,
    spec: &TopicSpec,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate_topic_name(&spec.name)?;
    if image.topic(&spec.name).is_some() {
        return Err(ControllerError::TopicAlreadyExists(spec.name.clone()));
    }
    let key = collision_key(&spec.name);
    if let Some(other) = image.topics.keys().find(|t| collision_key(t) == key) {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic '{}' collides with existing topic: {other}",
            spec.name
        )));
    }
    let partitions = if spec.partitions == -1 { config.settings().topics.num_partitions } else { spec.partitions };
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions was set to an invalid non-positive value ({partitions})."
        )));
    }
    let rf = if spec.replication_factor == -1 {
        config.settings().topics.default_replication_factor
    } else {
        spec.replication_factor
    };
    if rf < 1 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        ));
    }
    let replicas = match &spec.assignment {
        Some(assignment) => {
            check_assignment(image, assignment)?;
            assignment.clone()
        }
        None => place_replicas(&brokers(image), partitions as usize, rf, image.topics.len())?,
    };
    let mut configs = BTreeMap::new();
    for (k, v) in &spec.configs {
        let v = check_topic_config(k, v)
            .map_err(|why| ControllerError::InvalidConfig(format!("Invalid value {v} for configuration {k}: {why}")))?;
        configs.insert(k.clone(), v);
    }
    let id = new_topic_id(image);
    let mut records = vec![MetadataRecord::Topic { name: spec.name.clone(), id, partitions, replication_factor: rf, configs }];
    records.extend(replicas.into_iter().enumerate().map(|(i, r)| partition_record(id, i as i32, r)));
    Ok(records)
}

/// The registered brokers, for placement.
fn brokers(image: &MetadataImage) -> Vec<BrokerRegistration> {
    image.brokers.values().cloned().collect()
}

/// A manual assignment names registered brokers, each at most once per partition.
fn check_assignment(image: &MetadataImage, assignment: &[Vec<NodeId>]) -> Result<(), ControllerError> {
    for (i, replicas) in assignment.iter().enumerate() {
        if replicas.is_empty() {
            return Err(ControllerError::InvalidReplicaAssignment(format!("Invalid replica assignment for partition {i}")));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            )));
        }
        let mut seen = replicas.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != replicas.len() {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker more than once for partition {i}"
            )));
        }
    }
    Ok(())
}

/// A new partition: all replicas in sync, the first one leading at epoch 0.
fn partition_record(topic_id: Uuid, partition: i32, replicas: Vec<NodeId>) -> MetadataRecord {
    let r = PartitionRegistration::new_online(replicas);
    MetadataRecord::Partition {
        topic_id,
        partition: PartitionId(partition),
        replicas: r.replicas,
        isr: r.isr,
        elr: r.elr,
        last_known_elr: r.last_known_elr,
        adding_replicas: r.adding_replicas,
        removing_replicas: r.removing_replicas,
        leader: r.leader,
        leader_epoch: r.leader_epoch,
        partition_epoch: r.partition_epoch,
    }
}

pub fn delete_topic(image: &MetadataImage, config: &BrokerConfig, name: &str) -> Result<MetadataRecord, ControllerError> {
    if !config.settings().topics.delete_enable {
        return Err(ControllerError::TopicDeletionDisabled);
    }
    let t = image.topic(name).ok_or(ControllerError::UnknownTopic)?;
    Ok(MetadataRecord::RemoveTopic { id: t.id })
}

/// A `Partition` record for each partition from the current count up to `count`, with as
/// many replicas as the topic's first partition has.
pub fn create_partitions(image: &MetadataImage, name: &str, count: i32) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image.topic(name).ok_or(ControllerError::UnknownTopic)?;
    let current = t.partition_count();
    if count < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "The topic {name} currently has {current} partition(s); {count} would not be an increase."
        )));
    }
    if count == current {
        return Err(ControllerError::InvalidPartitions(format!("Topic already has {count} partition(s).")));
    }
    if count > PARTITIONS_PER_TOPIC_MAX {
        return Err(ControllerError::InvalidPartitions(format!("{count} partitions are too many.")));
    }
    let rf = t.partition(0).map_or(t.replication_factor, |r| r.replicas.len() as i16).max(1);
    let start = image.topics.len() + current as usize;
    let replicas = place_replicas(&brokers(image), (count - current) as usize, rf, start)?;
    Ok(replicas.into_iter().zip(current..).map(|(r, i)| partition_record(t.id, i, r)).collect())
}

/// Replaces a topic's overrides with `configs` (keys absent revert to the broker default):
/// validates every key and value, then returns one record per key that changed.
pub fn set_topic_configs(
    image: &MetadataImage,
    name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image.topic(name).ok_or(ControllerError::UnknownTopic)?;
    let mut checked = BTreeMap::new();
    for (k, v) in configs {
        let v = check_topic_config(k, v).map_err(|why| {
            if why.starts_with("Unknown") {
                ControllerError::InvalidConfig(why)
            } else {
                ControllerError::InvalidConfig(format!("Invalid value {v} for configuration {k}: {why}"))
            }
        })?;
        checked.insert(k.clone(), v);
    }
    let lag = |key: &str, default: i64| checked.get(key).and_then(|v| v.parse::<i64>().ok()).unwrap_or(default);
    if lag("min.compaction.lag.ms", 0) > lag("max.compaction.lag.ms", i64::MAX) {
        return Err(ControllerError::InvalidConfig(format!(
            "conflict topic config setting min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
            lag("min.compaction.lag.ms", 0),
            lag("max.compaction.lag.ms", i64::MAX)
        )));
    }
    let record = |key: &str, value: Option<String>| MetadataRecord::TopicConfig { id: t.id, key: key.to_string(), value };
    let mut records = diff(&t.configs, &checked, record);
    let min_isr_changed = records.iter().any(|r| matches!(r, MetadataRecord::TopicConfig { key, .. } if key == "min.insync.replicas"));
    if min_isr_changed && super::features::elr_enabled(image) {
        records.extend(clear_elrs(t));
    }
    Ok(records)
}

/// Kafka's ClearElrRecord for one topic: a new `min.insync.replicas` voids what the ELRs
/// were kept against, so every partition's ELR and last known ELR are emptied.
fn clear_elrs(t: &TopicImage) -> Vec<MetadataRecord> {
    t.partitions
        .iter()
        .filter(|(_, r)| !r.elr.is_empty() || !r.last_known_elr.is_empty())
        .map(|(p, _)| MetadataRecord::PartitionChange {
            topic_id: t.id,
            partition: *p,
            isr: None,
            leader: None,
            replicas: None,
            elr: Some(vec![]),
            last_known_elr: Some(vec![]),
            adding_replicas: None,
            removing_replicas: None,
        })
        .collect()
}

/// Replaces a group's config overrides with `configs`, validated against the broker's
/// bounds; returns one record per key that changed. The group need not exist.
pub fn set_group_configs(
    image: &MetadataImage,
    config: &BrokerConfig,
    group: &str,
    configs: &BTreeMap<String, String>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    config.check_group_configs(configs).map_err(ControllerError::InvalidConfig)?;
    let normalised: BTreeMap<String, String> = configs.iter().map(|(k, v)| (k.clone(), v.trim().to_string())).collect();
    let empty = BTreeMap::new();
    let current = image.group_configs.get(group).unwrap_or(&empty);
    let record = |key: &str, value: Option<String>| MetadataRecord::GroupConfig { group: group.to_string(), key: key.to_string(), value };
    Ok(diff(current, &normalised, record))
}

/// Records that turn `current` into `next`: sets for new or changed keys, resets for gone ones.
pub fn diff(
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
    record: impl Fn(&str, Option<String>) -> MetadataRecord,
) -> Vec<MetadataRecord> {
    let removed = current.keys().filter(|k| !next.contains_key(*k)).map(|k| record(k, None));
    let changed = next.iter().filter(|(k, v)| current.get(*k) != Some(v)).map(|(k, v)| record(k, Some(v.clone())));
    removed.chain(changed).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(name: &str, partitions: i32) -> TopicSpec {
        TopicSpec { name: name.into(), partitions, replication_factor: -1, configs: BTreeMap::new(), assignment: None }
    }

    /// An image with brokers `ids` registered and unfenced.
    fn image_with_brokers(ids: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for &id in ids {
            let epoch = crate::types::BrokerEpoch(image.offset);
            image.replay(&MetadataRecord::RegisterBroker {
                id: NodeId(id),
                incarnation_id: Uuid::new_v4(),
                epoch,
                endpoints: vec![],
                rack: None,
                fenced: false,
                in_controlled_shutdown: false,
            });
        }
        image
    }

    fn replay_all(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.replay(r);
        }
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("a.b_c-9").is_ok());
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_then_duplicate_and_collision() {
        let config = BrokerConfig::default();
        let mut image = image_with_brokers(&[1]);
        let r = create_topic(&image, &config, &spec("a.b", 3)).unwrap();
        replay_all(&mut image, &r);
        assert_eq!(image.topic("a.b").unwrap().partition_count(), 3);
        assert!(matches!(create_topic(&image, &config, &spec("a.b", 1)), Err(ControllerError::TopicAlreadyExists(_))));
        assert!(matches!(create_topic(&image, &config, &spec("a_b", 1)), Err(ControllerError::InvalidTopic(_))));
        assert!(matches!(create_topic(&image, &config, &spec("c", 0)), Err(ControllerError::InvalidPartitions(_))));
        assert!(matches!(create_partitions(&image, "a.b", 2), Err(ControllerError::InvalidPartitions(_))));
        let mut bad = spec("d", 1);
        bad.configs.insert("retention.ms".into(), "soon".into());
        assert!(matches!(create_topic(&image, &config, &bad), Err(ControllerError::InvalidConfig(_))));
    }

    #[test]
    fn topics_and_new_partitions_get_registrations() {
        let config = BrokerConfig::default();
        let mut image = image_with_brokers(&[1, 2, 3]);
        let mut s = spec("t", 6);
        s.replication_factor = 3;
        let records = create_topic(&image, &config, &s).unwrap();
        replay_all(&mut image, &records);
        let t = image.topic("t").unwrap().clone();
        for r in t.partitions.values() {
            assert_eq!(r.replicas.len(), 3);
            assert_eq!(r.isr, r.replicas);
            assert_eq!(r.leader, r.replicas.first().copied());
        }
        let leaders: std::collections::BTreeSet<_> = t.partitions.values().map(|r| r.leader).collect();
        assert_eq!(leaders.len(), 3, "leadership spreads over the brokers");
        let records = create_partitions(&image, "t", 8).unwrap();
        replay_all(&mut image, &records);
        let t = image.topic("t").unwrap();
        assert_eq!(t.partition_count(), 8);
        assert_eq!(t.partition(7).unwrap().replicas.len(), 3);
    }

    #[test]
    fn replication_factor_beyond_the_brokers_is_refused_with_kafkas_message() {
        let image = image_with_brokers(&[1]);
        let mut s = spec("t", 1);
        s.replication_factor = 2;
        let err = create_topic(&image, &BrokerConfig::default(), &s).unwrap_err();
        assert!(matches!(err, ControllerError::InvalidReplicationFactor(_)));
        assert_eq!(
            err.to_string(),
            "Unable to replicate the partition 2 time(s): The target replication factor of 2 cannot be reached because only 1 broker(s) are registered."
        );
    }

    #[test]
    fn a_new_min_isr_clears_the_elrs_of_the_topic_when_elr_is_on() {
        let config = BrokerConfig::default();
        let mut image = image_with_brokers(&[1, 2, 3]);
        replay_all(&mut image, &crate::metadata::features::bootstrap_records());
        let mut s = spec("t", 2);
        s.replication_factor = 3;
        let records = create_topic(&image, &config, &s).unwrap();
        replay_all(&mut image, &records);
        let id = image.topic("t").unwrap().id;
        image.replay(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition: PartitionId(1),
            isr: Some(vec![NodeId(1)]),
            leader: None,
            replicas: None,
            elr: Some(vec![NodeId(2)]),
            last_known_elr: None,
            adding_replicas: None,
            removing_replicas: None,
        });
        let min_isr = |v: &str| BTreeMap::from([("min.insync.replicas".to_string(), v.to_string())]);
        let records = set_topic_configs(&image, "t", &min_isr("2")).unwrap();
        assert_eq!(records.len(), 2, "the config and one partition's ELR: {records:?}");
        replay_all(&mut image, &records);
        assert!(image.topic("t").unwrap().partitions.values().all(|r| r.elr.is_empty()));
        let mut other = min_isr("2");
        other.insert("retention.ms".into(), "1".into());
        replay_all(&mut image, &[MetadataRecord::PartitionChange { topic_id: id, partition: PartitionId(0), isr: None, leader: None, replicas: None, elr: Some(vec![NodeId(3)]), last_known_elr: None, adding_replicas: None, removing_replicas: None }]);
        assert_eq!(set_topic_configs(&image, "t", &other).unwrap().len(), 1, "another key: no clearing");
    }

    #[test]
    fn manual_assignments_name_registered_brokers() {
        let image = image_with_brokers(&[1, 2]);
        let mut s = spec("t", -1);
        s.assignment = Some(vec![vec![NodeId(2), NodeId(1)], vec![NodeId(1)]]);
        let records = create_topic(&image, &BrokerConfig::default(), &s).unwrap();
        let mut next = image.clone();
        replay_all(&mut next, &records);
        assert_eq!(next.topic("t").unwrap().partition(0).unwrap().leader, Some(NodeId(2)));
        s.assignment = Some(vec![vec![NodeId(3)]]);
        assert!(matches!(create_topic(&image, &BrokerConfig::default(), &s), Err(ControllerError::InvalidReplicaAssignment(_))));
        s.assignment = Some(vec![vec![NodeId(1), NodeId(1)]]);
        assert!(matches!(create_topic(&image, &BrokerConfig::default(), &s), Err(ControllerError::InvalidReplicaAssignment(_))));
    }
}
