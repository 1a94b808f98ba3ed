//! ListConfigResources (KIP-1000 as ListClientMetricsResources, generalised by KIP-1142): the
//! names an admin can pass to DescribeConfigs. v0 lists the client-metrics subscriptions;
//! v1 takes resource types (none: every type it supports) and lists, in Kafka's order, the
//! groups with configs, the client-metrics subscriptions, the brokers as BROKER_LOGGER and
//! as BROKER resources, and the topics. A type v1 does not know fails the whole request with
//! UNSUPPORTED_VERSION, as Kafka's `KafkaApis.handleListConfigResources` answers.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};

use super::config_change::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP, RESOURCE_TOPIC};
use super::{Api, metadata, str_bytes};

/// The types each version lists (Kafka's `ListConfigResourcesRequest.supportedResourceTypes`).
fn supported(version: i16) -> &'static [i8] {
    if version == 0 {
        &[RESOURCE_CLIENT_METRICS]
    } else {
        &[RESOURCE_TOPIC, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP]
    }
}

pub fn handle(api: &Api, version: i16, req: ListConfigResourcesRequest) -> ListConfigResourcesResponse {
    let mut r = ListConfigResourcesResponse::default();
    let types: Vec<i8> = if req.resource_types.is_empty() { supported(version).to_vec() } else { req.resource_types };
    if types.iter().any(|t| !supported(version).contains(t)) {
        r.error_code = ResponseError::UnsupportedVersion.code();
        return r;
    }
    let wants = |t: i8| types.contains(&t);
    let image = api.broker.image();
    let mut push = |resource_type: i8, name: &str| {
        let mut c = ConfigResource::default();
        c.resource_name = str_bytes(name);
        c.resource_type = resource_type;
        r.config_resources.push(c);
    };
    if wants(RESOURCE_GROUP) {
        image.group_configs.keys().for_each(|g| push(RESOURCE_GROUP, g));
    }
    if wants(RESOURCE_CLIENT_METRICS) {
        image.client_metrics_configs.keys().for_each(|s| push(RESOURCE_CLIENT_METRICS, s));
    }
    let mut brokers: Vec<i32> = metadata::listed_brokers(api, true).into_iter().map(|b| b.id.0).collect();
    brokers.sort_unstable();
    for t in [RESOURCE_BROKER_LOGGER, RESOURCE_BROKER] {
        if wants(t) {
            brokers.iter().for_each(|id| push(t, &id.to_string()));
        }
    }
    if wants(RESOURCE_TOPIC) {
        image.topics.keys().for_each(|t| push(RESOURCE_TOPIC, t));
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::config_change::{ResourceChange, Change, OP_SET, apply};

    fn listed(api: &Api, version: i16, types: Vec<i8>) -> (i16, Vec<(i8, String)>) {
        let mut req = ListConfigResourcesRequest::default();
        req.resource_types = types;
        let r = handle(api, version, req);
        (r.error_code, r.config_resources.iter().map(|c| (c.resource_type, c.resource_name.to_string())).collect())
    }

    #[test]
    fn lists_each_type_in_kafkas_order() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        let set = |resource_type: i8, name: &str, key: &str, value: &str| ResourceChange {
            resource_type,
            name: name.into(),
            change: Change::Incremental(vec![(key.into(), OP_SET, Some(value.into()))]),
        };
        let changes = [set(RESOURCE_CLIENT_METRICS, "sub", "metrics", "*"), set(RESOURCE_GROUP, "g", "consumer.session.timeout.ms", "50000")];
        assert!(apply(&api, &changes, false).iter().all(Result::is_ok));
        let me = api.broker.node_id.to_string();
        assert_eq!(listed(&api, 0, vec![]), (0, vec![(RESOURCE_CLIENT_METRICS, "sub".to_string())]));
        let all = vec![
            (RESOURCE_GROUP, "g".to_string()),
            (RESOURCE_CLIENT_METRICS, "sub".to_string()),
            (RESOURCE_BROKER_LOGGER, me.clone()),
            (RESOURCE_BROKER, me.clone()),
            (RESOURCE_TOPIC, "t".to_string()),
        ];
        assert_eq!(listed(&api, 1, vec![]), (0, all));
        assert_eq!(listed(&api, 1, vec![RESOURCE_TOPIC, RESOURCE_BROKER]), (0, vec![(RESOURCE_BROKER, me), (RESOURCE_TOPIC, "t".to_string())]));
        assert_eq!(listed(&api, 1, vec![RESOURCE_TOPIC, 64]), (ResponseError::UnsupportedVersion.code(), vec![]));
    }
}
