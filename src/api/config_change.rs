//! What IncrementalAlterConfigs and AlterConfigs share: the checks Kafka makes on every
//! resource, the new config set of a topic or group, and the write to the metadata log.
//!
//! Both requests become a list of [`ResourceChange`]s. A change is either incremental
//! (SET/DELETE/APPEND/SUBTRACT per key) or a replacement (AlterConfigs: the listed keys are
//! the new overrides, every other override reverts to its default). For a topic or group the
//! complete new override set is computed, validated as a whole, and written as the records
//! that differ; `validate_only` stops before the write. Dynamic broker configs (of one broker
//! or of the default entity), the replication throttles among them, are stored the same way
//! and applied live by every broker; keys Kafka cannot change at run time are refused with
//! its message. BROKER_LOGGER changes go to
//! [`crate::logging`]. Errors and messages follow Kafka's `ConfigAdminManager` and
//! `ConfigurationControlManager`.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;

use super::{Api, errors};
use crate::config::{ConfigError, Kind, LIVE_REFUSED_BROKER_KEYS, TOPIC_KEYS, is_dynamic_broker_key, key_def};
use crate::logging;
use crate::metadata::controller::{self, ControllerError};
use crate::metadata::{MetadataImage, MetadataRecord};
use crate::replication::throttle;
use crate::telemetry::subscription;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;
pub const RESOURCE_CLIENT_METRICS: i8 = 16;
pub const RESOURCE_GROUP: i8 = 32;

pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
pub const OP_APPEND: i8 = 2;
pub const OP_SUBTRACT: i8 = 3;

/// How a resource's configs change.
pub enum Change {
    /// IncrementalAlterConfigs: (key, operation, value) in request order.
    Incremental(Vec<(String, i8, Option<String>)>),
    /// AlterConfigs: the complete new set of overrides.
    Replace(Vec<(String, Option<String>)>),
}

pub struct ResourceChange {
    pub resource_type: i8,
    pub name: String,
    pub change: Change,
}

/// A failed resource: Kafka's code and message.
pub type Failure = (ResponseError, String);

fn invalid_request(message: impl Into<String>) -> Failure {
    (ResponseError::InvalidRequest, message.into())
}

fn invalid_config(message: impl Into<String>) -> Failure {
    (ResponseError::InvalidConfig, message.into())
}

/// Applies each change (or only validates it); one result per resource, in order.
pub fn apply(api: &Api, changes: &[ResourceChange], validate_only: bool) -> Vec<Result<(), Failure>> {
    let mut seen: HashMap<(i8, &str), usize> = HashMap::new();
    for c in changes {
        *seen.entry((c.resource_type, c.name.as_str())).or_default() += 1;
    }
    // Topic changes are decided below in one metadata change (one commit in a cluster).
    let mut results: Vec<Option<Result<(), Failure>>> = changes
        .iter()
        .map(|c| {
            if seen.get(&(c.resource_type, c.name.as_str())).copied().unwrap_or(0) > 1 {
                return Some(Err(invalid_request("Each resource must appear at most once.")));
            }
            if let Err(e) = check_keys(c) {
                return Some(Err(e));
            }
            match c.resource_type {
                RESOURCE_TOPIC if c.name.is_empty() => Some(Err(invalid_request("Default topic resources are not allowed."))),
                RESOURCE_TOPIC => None,
                RESOURCE_GROUP => Some(apply_group(api, c, validate_only)),
                RESOURCE_CLIENT_METRICS => Some(apply_client_metrics(api, c, validate_only)),
                RESOURCE_BROKER => Some(apply_broker(api, c, validate_only)),
                RESOURCE_BROKER_LOGGER if matches!(c.change, Change::Incremental(_)) => Some(apply_loggers(api, c, validate_only)),
                other => Some(Err(invalid_request(format!("Unknown resource type {other}")))),
            }
        })
        .collect();
    let topics: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_none()).map(|(i, _)| i).collect();
    if !topics.is_empty() {
        let broker = &api.broker;
        let out = broker.apply_metadata(|image| {
            let mut records = Vec::new();
            let mut each = Vec::with_capacity(topics.len());
            for i in &topics {
                match topic_records(api, image, &changes[*i]) {
                    Ok(r) => {
                        if !validate_only {
                            records.extend(r);
                        }
                        each.push(Ok(()));
                    }
                    Err(e) => each.push(Err((errors::controller_error(&e), e.to_string()))),
                }
            }
            Ok((records, each))
        });
        match out {
            Ok(each) => {
                for (i, r) in topics.iter().zip(each) {
                    results[*i] = Some(r);
                }
            }
            Err(e) => {
                for i in &topics {
                    results[*i] = Some(Err((errors::broker_error(&e), e.to_string())));
                }
            }
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(invalid_request("not decided")))).collect()
}

/// Duplicate keys and null values, refused before anything else as Kafka does.
fn check_keys(c: &ResourceChange) -> Result<(), Failure> {
    let keys: Vec<(&str, bool)> = match &c.change {
        Change::Incremental(ops) => ops.iter().map(|(k, op, v)| (k.as_str(), *op != OP_DELETE && v.is_none())).collect(),
        Change::Replace(set) => set.iter().map(|(k, v)| (k.as_str(), v.is_none())).collect(),
    };
    let mut names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid_request("Error due to duplicate config keys"));
    }
    let nulls: Vec<&str> = keys.iter().filter(|(_, null)| *null).map(|(k, _)| *k).collect();
    if !nulls.is_empty() {
        return Err(invalid_request(format!("Null value not supported for : {}", nulls.join(", "))));
    }
    Ok(())
}

/// The new override set: `current` changed as `change` says. `effective` gives the value in
/// force (override or default) that APPEND and SUBTRACT start from; `is_list` says which
/// keys they may touch.
fn next_configs(
    current: &BTreeMap<String, String>,
    change: &Change,
    effective: impl Fn(&str) -> Option<String>,
    is_list: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, String>, Failure> {
    let ops = match change {
        Change::Replace(set) => {
            return Ok(set.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone()))).collect());
        }
        Change::Incremental(ops) => ops,
    };
    let mut next = current.clone();
    for (key, op, value) in ops {
        let value = value.as_deref().unwrap_or("");
        match *op {
            OP_SET => {
                next.insert(key.clone(), value.to_string());
            }
            OP_DELETE => {
                next.remove(key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if !is_list(key) {
                    let name = if *op == OP_APPEND { "APPEND" } else { "SUBTRACT" };
                    return Err(invalid_config(format!("Can't {name} to key {key} because its type is not LIST.")));
                }
                let start = next.get(key).cloned().or_else(|| effective(key)).unwrap_or_default();
                let list = if *op == OP_APPEND { list_append(&start, value) } else { list_subtract(&start, value) };
                next.insert(key.clone(), list);
            }
            other => return Err(invalid_request(format!("Unknown operation type {other}"))),
        }
    }
    Ok(next)
}

/// The records that change one topic's configs as `c` says.
fn topic_records(api: &Api, image: &MetadataImage, c: &ResourceChange) -> Result<Vec<MetadataRecord>, ControllerError> {
    let broker = &api.broker;
    let is_list = |key: &str| TOPIC_KEYS.iter().any(|k| k.name == key && matches!(k.kind, Kind::List | Kind::ListOf(_)));
    let current = image.topic(&c.name).ok_or(ControllerError::UnknownTopic)?;
    let next = next_configs(&current.configs, &c.change, |k| broker.effective_config().topic_default(k), is_list)
        .map_err(|(_, m)| ControllerError::InvalidConfig(m))?;
    controller::set_topic_configs(image, &c.name, &next)
}

fn apply_group(api: &Api, c: &ResourceChange, validate_only: bool) -> Result<(), Failure> {
    let broker = &api.broker;
    if c.name.is_empty() {
        return Err(invalid_request("Default group resources are not allowed."));
    }
    let empty = BTreeMap::new();
    broker
        .apply_metadata(|image| {
            let current = image.group_configs.get(&c.name).unwrap_or(&empty);
            // Group configs are all integers: no list operations.
            let next = next_configs(current, &c.change, |_| None, |_| false).map_err(|(_, m)| ControllerError::InvalidConfig(m))?;
            let records = controller::set_group_configs(image, &broker.config, &c.name, &next)?;
            Ok((if validate_only { Vec::new() } else { records }, ()))
        })
        .map_err(|e| (errors::broker_error(&e), e.to_string()))
}

/// CLIENT_METRICS resources (KIP-714 subscriptions): the complete new key set is validated
/// as Kafka's `ClientMetricsConfigs.validate` does, then written as records; removing every
/// key removes the subscription.
fn apply_client_metrics(api: &Api, c: &ResourceChange, validate_only: bool) -> Result<(), Failure> {
    let empty = BTreeMap::new();
    api.broker
        .apply_metadata(|image| {
            let current = image.client_metrics_configs.get(&c.name).unwrap_or(&empty);
            let next = match next_configs(current, &c.change, subscription::default_value, subscription::is_list) {
                Ok(next) => next,
                Err(e) => return Ok((Vec::new(), Err(e))),
            };
            if let Err(e) = subscription::validate(&c.name, &next) {
                return Ok((Vec::new(), Err(e)));
            }
            let record = |key: &str, value: Option<String>| MetadataRecord::ClientMetricsConfig { name: c.name.clone(), key: key.to_string(), value };
            let records = controller::diff(current, &next, record);
            Ok((if validate_only { Vec::new() } else { records }, Ok(())))
        })
        .map_err(|e| (errors::broker_error(&e), e.to_string()))?
}

/// Checks a resource name against this node's id, with Kafka's messages.
pub fn check_node_id(api: &Api, name: &str) -> Result<(), Failure> {
    let id: i32 = name.parse().map_err(|_| invalid_request(format!("Node id must be an integer, but it is: {name}")))?;
    let node = api.broker.node_id;
    if id != node {
        return Err(invalid_request(format!("Unexpected broker id, expected {node}, but received {name}")));
    }
    Ok(())
}

fn change_keys(c: &ResourceChange) -> Vec<&str> {
    match &c.change {
        Change::Incremental(ops) => ops.iter().map(|(k, _, _)| k.as_str()).collect(),
        Change::Replace(set) => set.iter().map(|(k, _)| k.as_str()).collect(),
    }
}

/// Sets or deletes dynamic broker configs of one broker (or, with an empty name, of every
/// broker: Kafka's default entity) in the metadata log; every broker applies them live
/// (`Broker::effective_config`). The replication throttles are stored the same way. In a
/// cluster the active controller decides for any broker id (the node a client sent the
/// request to forwarded it); a single node only for itself. Keys Kafka cannot change at run
/// time get Kafka's own message; the whole new set of the entity is validated before anything
/// is written.
fn apply_broker(api: &Api, c: &ResourceChange, validate_only: bool) -> Result<(), Failure> {
    if !c.name.is_empty() {
        if api.broker.cluster().is_some() {
            c.name.parse::<u32>().map_err(|_| invalid_request(format!("Node id must be an integer, but it is: {}", c.name)))?;
        } else {
            check_node_id(api, &c.name)?;
        }
    }
    let keys = change_keys(c);
    let is_throttle = |k: &str| throttle::BROKER_RATE_KEYS.contains(&k);
    let fixed: Vec<&str> = keys.iter().copied().filter(|k| !is_throttle(k) && !is_dynamic_broker_key(k)).collect();
    if !fixed.is_empty() {
        return Err(invalid_request(format!("Cannot update these configs dynamically: [{}]", fixed.join(", "))));
    }
    let refused: Vec<&str> = keys.iter().copied().filter(|k| LIVE_REFUSED_BROKER_KEYS.contains(k)).collect();
    if !refused.is_empty() {
        return Err(invalid_request(format!(
            "Blumfeld binds its listeners at start and cannot change them at run time: [{}]; change the configuration file",
            refused.join(", ")
        )));
    }
    let is_list = |key: &str| key_def(key).is_some_and(|k| matches!(k.kind, Kind::List | Kind::ListOf(_)));
    let empty = BTreeMap::new();
    let broker = &api.broker;
    broker
        .apply_metadata(|image| {
            let current = image.broker_configs.get(&c.name).unwrap_or(&empty);
            let in_force = broker.effective_config();
            let next = next_configs(current, &c.change, |k| in_force.get(k).map(str::to_string), is_list)
                .map_err(|(_, m)| ControllerError::InvalidConfig(m))?;
            let mut next_checked = BTreeMap::new();
            for (key, value) in &next {
                let value = if is_throttle(key) {
                    throttle::check_rate(key, value).map_err(ControllerError::InvalidConfig)?.to_string()
                } else {
                    value.clone()
                };
                next_checked.insert(key.clone(), value);
            }
            // The layers as they would be, applied to the static configuration as a broker
            // applies them: a value that does not parse, or a combination the settings refuse,
            // is refused here with the key.
            let layer = |name: &str| if name == c.name { next_checked.clone() } else { image.broker_configs.get(name).cloned().unwrap_or_default() };
            let own = if c.name.is_empty() { layer(&broker.node_id.to_string()) } else { layer(&c.name) };
            let (_, errors) = broker.config.with_dynamic(&layer(""), &own);
            if let Some(e) = errors.first() {
                return Err(ControllerError::InvalidConfig(kafka_invalid_value(e)));
            }
            let mut records = Vec::new();
            for (key, value) in &next_checked {
                if current.get(key) != Some(value) {
                    records.push(MetadataRecord::BrokerConfig { broker: c.name.clone(), key: key.clone(), value: Some(value.clone()) });
                }
            }
            for key in current.keys().filter(|k| !next_checked.contains_key(*k)) {
                records.push(MetadataRecord::BrokerConfig { broker: c.name.clone(), key: key.clone(), value: None });
            }
            Ok((if validate_only { Vec::new() } else { records }, ()))
        })
        .map_err(|e| (errors::broker_error(&e), e.to_string()))
}

/// Kafka's wording of a refused value (`ConfigException`): "Invalid value V for
/// configuration K: reason".
fn kafka_invalid_value(e: &ConfigError) -> String {
    match e {
        ConfigError::InvalidValue { key, value, reason, .. } => format!("Invalid value {value} for configuration {key}: {reason}"),
        other => other.to_string(),
    }
}

fn apply_loggers(api: &Api, c: &ResourceChange, validate_only: bool) -> Result<(), Failure> {
    check_node_id(api, &c.name)?;
    let Change::Incremental(ops) = &c.change else {
        return Err(invalid_request(format!("Unknown resource type {RESOURCE_BROKER_LOGGER}")));
    };
    let levels = logging::levels();
    let mut changes = Vec::new();
    for (logger, op, value) in ops {
        let level = match *op {
            OP_SET => Some(value.clone().unwrap_or_default()),
            OP_DELETE => None,
            OP_APPEND => return Err(invalid_request("APPEND operation is not allowed for the BROKER_LOGGER resource")),
            OP_SUBTRACT => return Err(invalid_request("SUBTRACT operation is not allowed for the BROKER_LOGGER resource")),
            other => {
                return Err(invalid_request(format!("Unknown operation type {other} is not allowed for the BROKER_LOGGER resource")));
            }
        };
        levels.check(logger, level.as_deref()).map_err(|(request, m)| if request { invalid_request(m) } else { invalid_config(m) })?;
        changes.push((logger.clone(), level));
    }
    if validate_only {
        return Ok(());
    }
    levels.apply(&changes).map_err(|e| (ResponseError::UnknownServerError, format!("cannot change log levels: {e}")))
}

fn list_append(current: &str, add: &str) -> String {
    let mut items: Vec<&str> = current.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for a in add.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !items.contains(&a) {
            items.push(a);
        }
    }
    items.join(",")
}

fn list_subtract(current: &str, remove: &str) -> String {
    let gone: Vec<&str> = remove.split(',').map(str::trim).collect();
    current.split(',').map(str::trim).filter(|s| !s.is_empty() && !gone.contains(s)).collect::<Vec<_>>().join(",")
}
