//! DescribeConfigs: the configs of a topic, a broker, a group, a client-metrics subscription
//! or the broker loggers, each with the value in force, where it comes from and (when asked)
//! its synonyms, as Kafka's `ConfigHelper` reports them.
//!
//! A value's source and synonyms come from an ordered list of [`Layer`]s, highest
//! precedence first. For a broker key Kafka's layers are: dynamic per-broker
//! (DYNAMIC_BROKER_CONFIG), dynamic cluster default (DYNAMIC_DEFAULT_BROKER_CONFIG), the
//! config file and `--override` (STATIC_BROKER_CONFIG), the built-in default
//! (DEFAULT_CONFIG). The only dynamic broker configs Blumfeld stores are the replication
//! throttles ([`throttle::BROKER_RATE_KEYS`]); Kafka defines them outside its static config, so,
//! as Kafka, a broker lists one only while it is set (for this broker or cluster-wide), typed
//! LONG, read-only (not among Kafka's reconfigurable configs) and without documentation, and
//! the cluster default (the empty broker name) lists the keys set cluster-wide, with only their
//! DYNAMIC_DEFAULT_BROKER_CONFIG synonyms. A key's synonyms are, layer by
//! layer, the values of every broker key that stands for the same setting
//! ([`broker_synonyms`]: `log.retention.ms`, `.minutes`, `.hours`), cut before the first one
//! named like the key itself, as Kafka cuts them. A topic key puts its own override
//! (DYNAMIC_TOPIC_CONFIG) in front of the synonyms of the broker key it inherits from; so
//! `retention.ms` shows `log.retention.ms` when that is set, and nothing when only the
//! `.hours` default applies (Kafka shows the same). The source reported is that of the first
//! synonym, DEFAULT_CONFIG when there is none.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::config_change::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP, RESOURCE_TOPIC};
use super::{Api, str_bytes};
use crate::broker::Broker;
use crate::config::{BROKER_KEYS, Bound, GROUP_KEYS, Kind, TOPIC_KEYS, broker_synonyms, is_dynamic_broker_key};
use crate::logging;
use crate::replication::throttle;

/// Config sources as Kafka numbers them.
pub const SOURCE_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER_CONFIG: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;
pub const SOURCE_DYNAMIC_BROKER_LOGGER_CONFIG: i8 = 6;
pub const SOURCE_CLIENT_METRICS_CONFIG: i8 = 7;
pub const SOURCE_GROUP_CONFIG: i8 = 8;

/// Kafka's config types (`DescribeConfigsResponse.ConfigType`).
fn config_type(kind: Kind) -> i8 {
    match kind {
        Kind::Bool => 1,
        Kind::Str | Kind::Enum(_) => 2,
        Kind::Int => 3,
        Kind::Short => 4,
        Kind::Long => 5,
        Kind::Double => 6,
        Kind::List | Kind::ListOf(_) => 7,
    }
}
const CONFIG_TYPE_INT: i8 = 3;
const CONFIG_TYPE_LONG: i8 = 5;
const CONFIG_TYPE_LIST: i8 = 7;

/// Looks a key up in one layer.
pub type LayerLookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// One source of broker values.
pub struct Layer<'a> {
    pub source: i8,
    pub value: LayerLookup<'a>,
}

/// The broker's value layers, highest precedence first.
pub fn broker_layers(broker: &Broker) -> Vec<Layer<'_>> {
    let (own, default) = dynamic_broker_configs(broker);
    vec![
        Layer { source: SOURCE_DYNAMIC_BROKER_CONFIG, value: Box::new(move |k| own.get(k).cloned()) },
        Layer { source: SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG, value: Box::new(move |k| default.get(k).cloned()) },
        Layer { source: SOURCE_STATIC_BROKER_CONFIG, value: Box::new(|k| broker.config.static_value(k).map(str::to_string)) },
        Layer { source: SOURCE_DEFAULT_CONFIG, value: Box::new(|k| broker.config.default_value(k).map(str::to_string)) },
    ]
}

/// The dynamic broker configs in the image: this broker's own, then the cluster default's.
fn dynamic_broker_configs(broker: &Broker) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let image = broker.image();
    let get = |name: &str| image.broker_configs.get(name).cloned().unwrap_or_default();
    (get(&broker.node_id.to_string()), get(""))
}

/// The broker keys that stand for the same setting as `name`: Kafka's synonyms of a static
/// key, or the dynamic-only throttle key itself.
fn key_synonyms(name: &str) -> &'static [&'static str] {
    match throttle::BROKER_RATE_KEYS.iter().position(|k| *k == name) {
        Some(i) => std::slice::from_ref(&throttle::BROKER_RATE_KEYS[i]),
        None => broker_synonyms(name),
    }
}

/// The synonyms of broker key `name` across `layers`, in Kafka's order.
pub fn synonyms(name: &str, layers: &[Layer<'_>]) -> Vec<DescribeConfigsSynonym> {
    let mut out = Vec::new();
    for layer in layers {
        for n in key_synonyms(name) {
            if let Some(v) = (layer.value)(n) {
                out.push(synonym(n, Some(v), layer.source));
            }
        }
    }
    let first = out.iter().position(|s| s.name.as_str() == name).unwrap_or(out.len());
    out.split_off(first)
}

fn synonym(name: &str, value: Option<String>, source: i8) -> DescribeConfigsSynonym {
    let mut s = DescribeConfigsSynonym::default();
    s.name = str_bytes(name);
    s.value = value.map(|v| str_bytes(&v));
    s.source = source;
    s
}

fn entry(name: &str, value: Option<String>, synonyms: Vec<DescribeConfigsSynonym>, config_type: i8, doc: &str) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(name);
    c.value = value.map(|v| str_bytes(&v));
    c.config_source = synonyms.first().map(|s| s.source).unwrap_or(SOURCE_DEFAULT_CONFIG);
    c.synonyms = synonyms;
    c.config_type = config_type;
    c.documentation = Some(str_bytes(doc));
    c
}

/// Every topic config with the value in force, its source and synonyms.
pub fn topic_configs(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<DescribeConfigsResourceResult> {
    let layers = broker_layers(broker);
    TOPIC_KEYS
        .iter()
        .map(|k| {
            let mut list = Vec::new();
            if let Some(v) = overrides.get(k.name) {
                list.push(synonym(k.name, Some(v.clone()), SOURCE_TOPIC_CONFIG));
            }
            if let Some(b) = k.broker_key {
                list.extend(synonyms(b, &layers));
            }
            let value = overrides.get(k.name).cloned().or_else(|| broker.effective_config().topic_default(k.name));
            entry(k.name, value, list, config_type(k.kind), k.doc)
        })
        .collect()
}

/// Every broker config of this node, read-only unless Kafka can change it at run time, then
/// the throttles set for it or cluster-wide.
fn broker_configs(api: &Api) -> Vec<DescribeConfigsResourceResult> {
    let broker = &api.broker;
    let layers = broker_layers(broker);
    let in_force = broker.effective_config();
    let mut out: Vec<DescribeConfigsResourceResult> = BROKER_KEYS
        .iter()
        .map(|k| {
            let value = match k.name {
                // Kept in the metadata log once generated, not in the configuration.
                "cluster.id" => Some(broker.image().cluster_id.clone()),
                _ => in_force.get(k.name).map(str::to_string),
            };
            let mut c = entry(k.name, value, synonyms(k.name, &layers), config_type(k.kind), k.doc);
            c.read_only = !is_dynamic_broker_key(k.name);
            c
        })
        .collect();
    let (own, default) = dynamic_broker_configs(broker);
    for key in throttle::BROKER_RATE_KEYS {
        if let Some(v) = own.get(*key).or_else(|| default.get(*key)) {
            out.push(throttle_entry(key, v, synonyms(key, &layers)));
        }
    }
    out
}

/// A throttle as Kafka describes it: typed LONG, read-only, no documentation.
fn throttle_entry(key: &str, value: &str, synonyms: Vec<DescribeConfigsSynonym>) -> DescribeConfigsResourceResult {
    let mut c = entry(key, Some(value.to_string()), synonyms, CONFIG_TYPE_LONG, "");
    c.read_only = true;
    c.documentation = None;
    c
}

/// The cluster-wide dynamic broker configs (the empty broker name: Kafka's default entity),
/// each with only its cluster-default synonym.
fn default_broker_configs(broker: &Broker) -> Vec<DescribeConfigsResourceResult> {
    let (_, default) = dynamic_broker_configs(broker);
    default
        .iter()
        .filter_map(|(k, v)| {
            let synonyms = vec![synonym(k, Some(v.clone()), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)];
            if throttle::BROKER_RATE_KEYS.contains(&k.as_str()) {
                return Some(throttle_entry(k, v, synonyms));
            }
            let def = BROKER_KEYS.iter().find(|d| d.name == k.as_str())?;
            let mut c = entry(k, Some(v.clone()), synonyms, config_type(def.kind), def.doc);
            c.read_only = false;
            Some(c)
        })
        .collect()
}

/// Every group config: the group's override (GROUP_CONFIG), then, as Kafka 4.3 lists them,
/// the broker key the default comes from (`group.consumer.session.timeout.ms`).
fn group_configs(broker: &Broker, group: &str) -> Vec<DescribeConfigsResourceResult> {
    let image = broker.image();
    let overrides = image.group_configs.get(group);
    let layers = broker_layers(broker);
    GROUP_KEYS
        .iter()
        .map(|k| {
            let set = overrides.and_then(|o| o.get(k.name)).cloned();
            let mut list: Vec<DescribeConfigsSynonym> = set.iter().map(|v| synonym(k.name, Some(v.clone()), SOURCE_GROUP_CONFIG)).collect();
            match k.default {
                Bound::Key(b) => list.extend(synonyms(b, &layers)),
                Bound::Fixed(b, v) => list.push(synonym(b, Some(v.to_string()), SOURCE_DEFAULT_CONFIG)),
            }
            let value = set.or_else(|| broker.config.group_default(k.name).map(|v| v.to_string()));
            entry(k.name, value, list, CONFIG_TYPE_INT, k.doc)
        })
        .collect()
}

/// A client-metrics subscription's three keys (KIP-714), each set (CLIENT_METRICS_CONFIG)
/// or at its default, typed and documented as Kafka's `ClientMetricsConfigs` defines them.
fn client_metrics_configs(broker: &Broker, name: &str) -> Vec<DescribeConfigsResourceResult> {
    use crate::telemetry::subscription;
    let image = broker.image();
    let set = image.client_metrics_configs.get(name);
    subscription::KEYS
        .iter()
        .map(|key| {
            let value = set.and_then(|s| s.get(*key)).cloned();
            let synonyms = value.iter().map(|v| synonym(key, Some(v.clone()), SOURCE_CLIENT_METRICS_CONFIG)).collect();
            let (config_type, doc) = match *key {
                subscription::METRICS => (CONFIG_TYPE_LIST, "Telemetry metric name prefix list"),
                subscription::INTERVAL_MS => (CONFIG_TYPE_INT, "Metrics push interval in milliseconds"),
                _ => (CONFIG_TYPE_LIST, "Client match criteria"),
            };
            entry(key, value.or_else(|| subscription::default_value(key)), synonyms, config_type, doc)
        })
        .collect()
}

/// The loggers and their levels in force (no type, no documentation: Kafka sends none).
fn logger_configs() -> Vec<DescribeConfigsResourceResult> {
    logging::levels()
        .describe()
        .into_iter()
        .map(|(name, level)| {
            let mut c = DescribeConfigsResourceResult::default();
            c.name = str_bytes(&name);
            c.value = Some(str_bytes(&level));
            c.config_source = SOURCE_DYNAMIC_BROKER_LOGGER_CONFIG;
            c.documentation = None;
            c
        })
        .collect()
}

type Outcome = Result<Vec<DescribeConfigsResourceResult>, (ResponseError, Option<String>)>;

fn invalid(message: String) -> Outcome {
    Err((ResponseError::InvalidRequest, Some(message)))
}

fn broker_id(name: &str) -> Result<i32, (ResponseError, Option<String>)> {
    name.parse().map_err(|_| (ResponseError::InvalidRequest, Some(format!("Broker id must be an integer, but it is: {name}"))))
}

fn describe(api: &Api, resource_type: i8, name: &str) -> Outcome {
    let broker = &api.broker;
    let node = broker.node_id;
    match resource_type {
        RESOURCE_TOPIC => match broker.image().topic(name) {
            Some(t) => Ok(topic_configs(broker, &t.configs)),
            None => Err((ResponseError::UnknownTopicOrPartition, None)),
        },
        // The empty name is the cluster-wide dynamic default.
        RESOURCE_BROKER if name.is_empty() => Ok(default_broker_configs(broker)),
        RESOURCE_BROKER if broker_id(name)? == node => Ok(broker_configs(api)),
        RESOURCE_BROKER => invalid(format!("Unexpected broker id, expected {node} or empty string, but received {name}")),
        RESOURCE_BROKER_LOGGER if name.is_empty() => invalid("Broker id must not be empty".into()),
        RESOURCE_BROKER_LOGGER if broker_id(name)? == node => Ok(logger_configs()),
        RESOURCE_BROKER_LOGGER => invalid(format!("Unexpected broker id, expected {node} but received {name}")),
        RESOURCE_GROUP if name.is_empty() => invalid("Group name must not be empty".into()),
        RESOURCE_GROUP => Ok(group_configs(broker, name)),
        RESOURCE_CLIENT_METRICS if name.is_empty() => invalid("Client metrics subscription name must not be empty".into()),
        RESOURCE_CLIENT_METRICS => Ok(client_metrics_configs(broker, name)),
        other => invalid(format!("Unsupported resource type: {other}")),
    }
}

pub fn handle(api: &Api, version: i16, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        out.error_message = None;
        match describe(api, res.resource_type, res.resource_name.as_str()) {
            Ok(mut list) => {
                if let Some(keys) = res.configuration_keys.as_ref().filter(|k| !k.is_empty()) {
                    list.retain(|c| keys.iter().any(|k| k.as_str() == c.name.as_str()));
                }
                for c in &mut list {
                    if !req.include_synonyms {
                        c.synonyms.clear();
                    }
                    if version < 3 {
                        c.config_type = 0;
                    }
                    if version < 3 || !req.include_documentation {
                        c.documentation = None;
                    }
                }
                out.configs = list;
            }
            Err((e, message)) => {
                out.error_code = e.code();
                out.error_message = message.map(|m| str_bytes(&m));
            }
        }
        r.results.push(out);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
