//! Validates metadata changes against the current image and computes the records that make
//! them. Nothing here mutates state or does I/O; the store appends what comes out.

use std::collections::BTreeMap;

use thiserror::Error;
use uuid::Uuid;

use super::image::MetadataImage;
use super::records::MetadataRecord;
use super::store::StoreError;
use crate::config::{BrokerConfig, check_topic_config};

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
    InvalidConfig(String),
    #[error("Topic deletion is disabled.")]
    TopicDeletionDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a CreateTopics entry (or auto-creation) asks for; -1 means "the broker default".
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
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

pub fn create_topic(
    image: &MetadataImage,
    config: &BrokerConfig,
    spec: &TopicSpec,
) -> Result<MetadataRecord, ControllerError> {
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
    let partitions = if spec.partitions == -1 { config.int("num.partitions") } else { spec.partitions };
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(ControllerError::InvalidPartitions(format!(
            "Number of partitions was set to an invalid non-positive value ({partitions})."
        )));
    }
    let rf = if spec.replication_factor == -1 {
        config.int("default.replication.factor") as i16
    } else {
        spec.replication_factor
    };
    if rf < 1 {
        return Err(ControllerError::InvalidReplicationFactor(
            "Replication factor must be larger than 0, or -1 to use the default value.".into(),
        ));
    }
    if rf > 1 {
        return Err(ControllerError::InvalidReplicationFactor(format!(
            "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."
        )));
    }
    let mut configs = BTreeMap::new();
    for (k, v) in &spec.configs {
        let v = check_topic_config(k, v)
            .map_err(|why| ControllerError::InvalidConfig(format!("Invalid value {v} for configuration {k}: {why}")))?;
        configs.insert(k.clone(), v);
    }
    Ok(MetadataRecord::Topic { name: spec.name.clone(), id: new_topic_id(image), partitions, replication_factor: rf, configs })
}

pub fn delete_topic(image: &MetadataImage, config: &BrokerConfig, name: &str) -> Result<MetadataRecord, ControllerError> {
    if !config.bool("delete.topic.enable") {
        return Err(ControllerError::TopicDeletionDisabled);
    }
    let t = image.topic(name).ok_or(ControllerError::UnknownTopic)?;
    Ok(MetadataRecord::RemoveTopic { id: t.id })
}

pub fn create_partitions(image: &MetadataImage, name: &str, count: i32) -> Result<MetadataRecord, ControllerError> {
    let t = image.topic(name).ok_or(ControllerError::UnknownTopic)?;
    if count < t.partitions {
        return Err(ControllerError::InvalidPartitions(format!(
            "The topic {name} currently has {} partition(s); {count} would not be an increase.",
            t.partitions
        )));
    }
    if count == t.partitions {
        return Err(ControllerError::InvalidPartitions(format!("Topic already has {count} partition(s).")));
    }
    if count > PARTITIONS_PER_TOPIC_MAX {
        return Err(ControllerError::InvalidPartitions(format!("{count} partitions are too many.")));
    }
    Ok(MetadataRecord::PartitionCount { id: t.id, partitions: count })
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
    Ok(diff(&t.configs, &checked, record))
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
fn diff(
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
        TopicSpec { name: name.into(), partitions, replication_factor: -1, configs: BTreeMap::new() }
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
        let mut image = MetadataImage::default();
        let r = create_topic(&image, &config, &spec("a.b", 3)).unwrap();
        image.replay(&r);
        assert_eq!(image.topic("a.b").unwrap().partitions, 3);
        assert!(matches!(create_topic(&image, &config, &spec("a.b", 1)), Err(ControllerError::TopicAlreadyExists(_))));
        assert!(matches!(create_topic(&image, &config, &spec("a_b", 1)), Err(ControllerError::InvalidTopic(_))));
        assert!(matches!(create_topic(&image, &config, &spec("c", 0)), Err(ControllerError::InvalidPartitions(_))));
        assert!(matches!(create_partitions(&image, "a.b", 2), Err(ControllerError::InvalidPartitions(_))));
        let mut bad = spec("d", 1);
        bad.configs.insert("retention.ms".into(), "soon".into());
        assert!(matches!(create_topic(&image, &config, &bad), Err(ControllerError::InvalidConfig(_))));
    }
}
