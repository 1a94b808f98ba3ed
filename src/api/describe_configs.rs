//! DescribeConfigs: topic configs (overrides over broker defaults) and broker configs.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{Api, str_bytes};
use crate::broker::Broker;
use crate::config::{BROKER_KEYS, Kind, TOPIC_KEYS};

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Config sources as Kafka numbers them.
pub const SOURCE_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;

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

fn entry(name: &str, value: Option<String>, source: i8, kind: Kind) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = str_bytes(name);
    c.value = value.map(|v| str_bytes(&v));
    c.config_source = source;
    c.config_type = config_type(kind);
    c
}

/// Every topic config with its effective value and where that value comes from.
pub fn topic_configs(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<DescribeConfigsResourceResult> {
    TOPIC_KEYS
        .iter()
        .map(|k| {
            let mut synonyms = Vec::new();
            let broker_value = broker.config.topic_default(k.name);
            let broker_set = k
                .broker_key
                .and_then(|b| BROKER_KEYS.iter().find(|d| d.name == b).map(|d| (b, d)))
                .filter(|(b, d)| broker.config.get(b) != d.default);
            if let Some((b, _)) = broker_set {
                let mut s = DescribeConfigsSynonym::default();
                s.name = str_bytes(b);
                s.value = broker.config.get(b).map(str_bytes);
                s.source = SOURCE_STATIC_BROKER_CONFIG;
                synonyms.push(s);
            }
            let mut c = match overrides.get(k.name) {
                Some(v) => entry(k.name, Some(v.clone()), SOURCE_TOPIC_CONFIG, k.kind),
                None if broker_set.is_some() => entry(k.name, broker_value, SOURCE_STATIC_BROKER_CONFIG, k.kind),
                None => entry(k.name, broker_value, SOURCE_DEFAULT_CONFIG, k.kind),
            };
            c.synonyms = synonyms;
            c
        })
        .collect()
}

fn broker_configs(broker: &Broker) -> Vec<DescribeConfigsResourceResult> {
    BROKER_KEYS
        .iter()
        .map(|k| {
            let value = broker.config.get(k.name).map(str::to_string);
            let source = if value.as_deref() == k.default { SOURCE_DEFAULT_CONFIG } else { SOURCE_STATIC_BROKER_CONFIG };
            let mut c = entry(k.name, value, source, k.kind);
            c.read_only = true;
            c
        })
        .collect()
}

pub fn handle(api: &Api, version: i16, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = &api.broker;
    let mut r = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut out = DescribeConfigsResult::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let configs = match res.resource_type {
            RESOURCE_TOPIC => match broker.image().topic(res.resource_name.as_str()) {
                Some(t) => Ok(topic_configs(broker, &t.configs)),
                None => Err(ResponseError::UnknownTopicOrPartition),
            },
            RESOURCE_BROKER => {
                let name = res.resource_name.as_str();
                if name.is_empty() || name == broker.node_id.to_string() {
                    Ok(broker_configs(broker))
                } else {
                    Err(ResponseError::InvalidRequest)
                }
            }
            _ => Err(ResponseError::InvalidRequest),
        };
        match configs {
            Ok(mut list) => {
                if let Some(keys) = &res.configuration_keys {
                    list.retain(|c| keys.iter().any(|k| k.as_str() == c.name.as_str()));
                }
                if !req.include_synonyms || version < 1 {
                    for c in &mut list {
                        c.synonyms.clear();
                    }
                }
                out.configs = list;
            }
            Err(e) => {
                out.error_code = e.code();
                out.error_message = Some(str_bytes(&format!("{e}")));
            }
        }
        r.results.push(out);
    }
    r
}
