//! IncrementalAlterConfigs: SET, DELETE, APPEND to or SUBTRACT from the configs of topics,
//! groups, client-metrics subscriptions and broker loggers (see [`super::config_change`], shared with AlterConfigs).
//! Broker configs are static (from the configuration file) and refused at run time, except
//! the replication throttles, which are stored in the metadata log.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::config_change::{self, Change, ResourceChange};
use super::{Api, str_bytes};

pub fn handle(api: &Api, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let changes: Vec<ResourceChange> = req
        .resources
        .iter()
        .map(|res| ResourceChange {
            resource_type: res.resource_type,
            name: res.resource_name.to_string(),
            change: Change::Incremental(
                res.configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
                    .collect(),
            ),
        })
        .collect();
    let results = config_change::apply(api, &changes, req.validate_only);
    let mut r = IncrementalAlterConfigsResponse::default();
    for (res, result) in req.resources.iter().zip(results) {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        out.error_message = None;
        if let Err((code, message)) = result {
            out.error_code = code.code();
            out.error_message = Some(str_bytes(&message));
        }
        r.responses.push(out);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::config_change::{
        OP_APPEND, OP_DELETE, OP_SET, OP_SUBTRACT, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP, RESOURCE_TOPIC,
    };
    use kafka_protocol::ResponseError;

    pub(crate) fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        let mut c = AlterableConfig::default();
        c.name = StrBytes::from_string(name.into());
        c.config_operation = operation;
        c.value = value.map(|v| StrBytes::from_string(v.into()));
        c
    }

    pub(crate) fn request(resource_type: i8, name: &str, configs: Vec<AlterableConfig>) -> IncrementalAlterConfigsRequest {
        let mut res = AlterConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = StrBytes::from_string(name.into());
        res.configs = configs;
        let mut r = IncrementalAlterConfigsRequest::default();
        r.resources = vec![res];
        r
    }

    fn alter(api: &Api, resource_type: i8, name: &str, configs: Vec<AlterableConfig>) -> (i16, Option<String>) {
        let r = handle(api, request(resource_type, name, configs));
        let out = &r.responses[0];
        (out.error_code, out.error_message.as_ref().map(|m| m.to_string()))
    }

    /// Kafka 4.x accepts an empty `cleanup.policy`, set directly or by subtracting the last
    /// item, and the log then neither deletes nor compacts.
    #[test]
    fn empty_cleanup_policy_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SET, Some(""))]), (0, None));
        let t = api.broker.image().topic("t").cloned().unwrap();
        assert_eq!(t.configs.get("cleanup.policy").map(String::as_str), Some(""));
        assert_eq!(api.broker.log_config(&t).cleanup_policy, crate::log::CleanupPolicy::Neither);
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SET, Some("compact,delete"))]), (0, None));
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SUBTRACT, Some("compact"))]), (0, None));
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SUBTRACT, Some("delete"))]), (0, None));
        let t = api.broker.image().topic("t").cloned().unwrap();
        assert_eq!(t.configs.get("cleanup.policy").map(String::as_str), Some(""));
        let (code, _) = alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SET, Some("remove"))]);
        assert_eq!(code, ResponseError::InvalidConfig.code());
    }

    /// A topic config change takes effect on the next produce: the partitions hold the
    /// topic's parsed log config (one per topic, shared), replaced when the configs change.
    #[test]
    fn topic_config_changes_reach_produce() {
        use kafka_protocol::messages::{ProduceRequest, ResponseKind, TopicName, produce_request};
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &["num.partitions=2"]);
        api.broker.auto_create_topic("t").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let produce = |acks: i16| {
            let batch = crate::record::BatchBuilder::new(0).timestamps(1).records(4, 500).build();
            let mut p = produce_request::PartitionProduceData::default();
            p.records = Some(bytes::Bytes::from(batch));
            let mut t = produce_request::TopicProduceData::default();
            t.name = TopicName(StrBytes::from_static_str("t"));
            t.partition_data = vec![p];
            let mut r = ProduceRequest::default();
            r.acks = acks;
            r.topic_data = vec![t];
            let ctx = crate::api::RequestContext { api_key: kafka_protocol::messages::ApiKey::Produce, version: 9, correlation_id: 1, client_id: None, client_host: String::new(), peer: None };
            let crate::api::Reply::Response(ResponseKind::Produce(r)) = rt.block_on(crate::api::produce::handle(&api, &ctx, r)) else { panic!("no answer") };
            r.responses[0].partition_responses[0].error_code
        };
        let partitions = || [0, 1].map(|i| api.broker.partition(&crate::types::TopicPartition::new("t", i)).unwrap().config());
        assert_eq!(produce(1), 0);
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("max.message.bytes", OP_SET, Some("1000"))]), (0, None));
        assert_eq!(produce(1), ResponseError::MessageTooLarge.code());
        let [a, b] = partitions();
        assert!(std::sync::Arc::ptr_eq(&a, &b), "one log config per topic");
        assert_eq!(a.max_message_bytes, 1000);

        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("max.message.bytes", OP_DELETE, None), op("min.insync.replicas", OP_SET, Some("2"))]), (0, None));
        assert_eq!(produce(1), 0);
        assert_eq!(produce(-1), ResponseError::NotEnoughReplicas.code());
        assert_eq!(partitions()[0].max_message_bytes, api.broker.config.settings().log.defaults.max_message_bytes);
    }

    /// GROUP resources: stored, validated against the broker's bounds with Kafka's messages.
    #[test]
    fn group_configs_are_set_validated_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        let set = |key: &str, v: &str| alter(&api, RESOURCE_GROUP, "g", vec![op(key, OP_SET, Some(v))]);
        assert_eq!(set("consumer.session.timeout.ms", "50000"), (0, None));
        assert_eq!(api.broker.image().group_configs["g"]["consumer.session.timeout.ms"], "50000");
        let low = (ResponseError::InvalidConfig.code(), Some("consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms".to_string()));
        assert_eq!(set("consumer.session.timeout.ms", "1000"), low);
        let high = (ResponseError::InvalidConfig.code(), Some("consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms".to_string()));
        assert_eq!(set("consumer.heartbeat.interval.ms", "20000"), high);
        assert_eq!(set("no.such.key", "1").1.as_deref(), Some("Unknown group config name: no.such.key"));
        assert_eq!(set("consumer.session.timeout.ms", "soon").0, ResponseError::InvalidConfig.code());
        let append = alter(&api, RESOURCE_GROUP, "g", vec![op("consumer.session.timeout.ms", OP_APPEND, Some("1"))]);
        assert_eq!(append.1.as_deref(), Some("Can't APPEND to key consumer.session.timeout.ms because its type is not LIST."));
        assert_eq!(alter(&api, RESOURCE_GROUP, "g", vec![op("consumer.session.timeout.ms", OP_DELETE, None)]), (0, None));
        assert!(!api.broker.image().group_configs.contains_key("g"));
        assert_eq!(alter(&api, RESOURCE_GROUP, "", vec![]).0, ResponseError::InvalidRequest.code());
    }

    /// CLIENT_METRICS resources (KIP-714): stored in the metadata log, validated with Kafka's
    /// codes, listed by DescribeConfigs with defaults, and gone once every key is deleted.
    #[test]
    fn client_metrics_subscriptions_are_set_validated_described_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        let cm = |configs| alter(&api, RESOURCE_CLIENT_METRICS, "sub", configs);
        assert_eq!(cm(vec![op("metrics", OP_SET, Some("org.apache.kafka.producer.")), op("interval.ms", OP_SET, Some("1000"))]), (0, None));
        assert_eq!(cm(vec![op("metrics", OP_APPEND, Some("org.apache.kafka.consumer."))]), (0, None));
        assert_eq!(cm(vec![op("match", OP_SET, Some("client_id=app.*"))]), (0, None));
        let stored = api.broker.image().client_metrics_configs["sub"].clone();
        assert_eq!(stored["metrics"], "org.apache.kafka.producer.,org.apache.kafka.consumer.");
        assert_eq!(stored["interval.ms"], "1000");

        assert_eq!(cm(vec![op("interval.ms", OP_SET, Some("50"))]).0, ResponseError::InvalidRequest.code());
        assert_eq!(cm(vec![op("interval.ms", OP_SET, Some("often"))]).0, ResponseError::InvalidConfig.code());
        assert_eq!(cm(vec![op("colour", OP_SET, Some("red"))]), (ResponseError::InvalidRequest.code(), Some("Unknown client metrics configuration: colour".into())));
        assert_eq!(cm(vec![op("match", OP_SET, Some("hostname=x"))]), (ResponseError::InvalidConfig.code(), Some("Illegal client matching pattern: hostname=x".into())));
        assert_eq!(cm(vec![op("interval.ms", OP_APPEND, Some("1"))]).0, ResponseError::InvalidConfig.code());
        assert_eq!(alter(&api, RESOURCE_CLIENT_METRICS, "", vec![op("interval.ms", OP_SET, Some("1000"))]).0, ResponseError::InvalidRequest.code());
        assert_eq!(api.broker.image().client_metrics_configs["sub"], stored, "refused changes store nothing");

        let described = crate::api::describe_configs::handle(&api, 4, {
            let mut res = kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default();
            res.resource_type = RESOURCE_CLIENT_METRICS;
            res.resource_name = StrBytes::from_static_str("sub");
            let mut r = kafka_protocol::messages::DescribeConfigsRequest::default();
            r.resources = vec![res];
            r
        });
        let configs: Vec<(String, Option<String>, i8)> = described.results[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()), c.config_source))
            .collect();
        assert_eq!(
            configs,
            vec![
                ("metrics".into(), Some("org.apache.kafka.producer.,org.apache.kafka.consumer.".into()), 7),
                ("interval.ms".into(), Some("1000".into()), 7),
                ("match".into(), Some("client_id=app.*".into()), 7),
            ]
        );

        let all_gone = vec![op("metrics", OP_DELETE, None), op("interval.ms", OP_DELETE, None), op("match", OP_DELETE, None)];
        assert_eq!(cm(all_gone), (0, None));
        assert!(!api.broker.image().client_metrics_configs.contains_key("sub"));
    }

    /// A subscription is metadata: it survives a restart, as group configs do.
    #[test]
    fn client_metrics_subscriptions_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let api = crate::api::test_api(dir.path(), &[]);
            let set = vec![op("metrics", OP_SET, Some("*")), op("interval.ms", OP_SET, Some("60000"))];
            assert_eq!(alter(&api, RESOURCE_CLIENT_METRICS, "all", set), (0, None));
        }
        let api = crate::api::test_api(dir.path(), &[]);
        let configs = &api.broker.image().client_metrics_configs["all"];
        assert_eq!((configs["metrics"].as_str(), configs["interval.ms"].as_str()), ("*", "60000"));
    }

    /// BROKER_LOGGER resources change levels as Kafka's RuntimeLoggerManager does.
    #[test]
    fn broker_logger_levels_change() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        let logger = |configs| alter(&api, RESOURCE_BROKER_LOGGER, "1", configs);
        assert_eq!(logger(vec![op("blumfeld.metrics", OP_SET, Some("DEBUG"))]), (0, None));
        let level = |name: &str| crate::logging::levels().describe().into_iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(level("blumfeld.metrics"), "DEBUG");
        assert_eq!(logger(vec![op("blumfeld::metrics", OP_DELETE, None)]), (0, None));
        assert_eq!(level("blumfeld.metrics"), level("root"));
        assert_eq!(logger(vec![op("nope", OP_SET, Some("DEBUG"))]), (ResponseError::InvalidConfig.code(), Some("Logger nope does not exist!".into())));
        assert_eq!(logger(vec![op("root", OP_DELETE, None)]).0, ResponseError::InvalidRequest.code());
        assert_eq!(logger(vec![op("root", OP_APPEND, Some("x"))]).0, ResponseError::InvalidRequest.code());
        assert_eq!(logger(vec![op("root", OP_SET, Some("LOUD"))]).0, ResponseError::InvalidConfig.code());
        let other = alter(&api, RESOURCE_BROKER_LOGGER, "7", vec![op("root", OP_SET, Some("INFO"))]);
        assert_eq!(other.0, ResponseError::InvalidRequest.code());
        let broker = alter(&api, RESOURCE_BROKER, "1", vec![op("num.partitions", OP_SET, Some("1"))]);
        assert_eq!(broker, (ResponseError::InvalidRequest.code(), Some("Cannot update these configs dynamically: [num.partitions]".into())));
    }

    /// Dynamic broker configs are stored per broker or for the default entity and applied
    /// live: the hosted partitions take the new broker-level log defaults at once, a topic
    /// override still wins, the broker's own value beats the default entity's, and DELETE
    /// brings back the static value. Bad values and listener keys are refused, nothing stored.
    #[test]
    fn dynamic_broker_configs_apply_live() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &["log.retention.ms=5000"]);
        api.broker.auto_create_topic("t").unwrap();
        api.broker.auto_create_topic("kept").unwrap();
        assert_eq!(alter(&api, RESOURCE_TOPIC, "kept", vec![op("retention.ms", OP_SET, Some("42"))]), (0, None));
        let retention = |topic: &str| api.broker.partition(&crate::types::TopicPartition::new(topic, 0)).unwrap().config().retention_ms;
        let max_message = || api.broker.partition(&crate::types::TopicPartition::new("t", 0)).unwrap().config().max_message_bytes;
        assert_eq!(retention("t"), 5000);

        assert_eq!(alter(&api, RESOURCE_BROKER, "", vec![op("log.retention.ms", OP_SET, Some("60000")), op("message.max.bytes", OP_SET, Some("2048"))]), (0, None));
        assert_eq!((retention("t"), max_message()), (60_000, 2048));
        assert_eq!(retention("kept"), 42, "a topic override wins over the broker default");
        assert_eq!(alter(&api, RESOURCE_BROKER, "1", vec![op("log.retention.ms", OP_SET, Some("70000"))]), (0, None));
        assert_eq!(retention("t"), 70_000, "the broker's own value wins over the default entity's");
        assert_eq!(api.broker.effective_config().retention_ms(), 70_000);
        assert_eq!(api.broker.config.retention_ms(), 5000, "the static layer is kept");
        // New topics are made with the values in force.
        api.broker.auto_create_topic("new").unwrap();
        assert_eq!(retention("new"), 70_000);

        let (code, message) = alter(&api, RESOURCE_BROKER, "1", vec![op("message.max.bytes", OP_SET, Some("big"))]);
        assert_eq!(code, ResponseError::InvalidConfig.code());
        assert!(message.as_deref().is_some_and(|m| m.starts_with("Invalid value big for configuration message.max.bytes")), "{message:?}");
        let (code, _) = alter(&api, RESOURCE_BROKER, "1", vec![op("listeners", OP_SET, Some("PLAINTEXT://127.0.0.1:1"))]);
        assert_eq!(code, ResponseError::InvalidRequest.code());
        assert_eq!(api.broker.image().broker_configs["1"].len(), 1, "nothing refused was stored");

        // validate_only changes nothing.
        let mut req = request(RESOURCE_BROKER, "1", vec![op("log.retention.ms", OP_SET, Some("1"))]);
        req.validate_only = true;
        assert_eq!(handle(&api, req).responses[0].error_code, 0);
        assert_eq!(retention("t"), 70_000);

        assert_eq!(alter(&api, RESOURCE_BROKER, "1", vec![op("log.retention.ms", OP_DELETE, None)]), (0, None));
        assert_eq!(retention("t"), 60_000);
        assert_eq!(alter(&api, RESOURCE_BROKER, "", vec![op("log.retention.ms", OP_DELETE, None), op("message.max.bytes", OP_DELETE, None)]), (0, None));
        assert_eq!((retention("t"), max_message()), (5000, 1_048_588));
        // A restart applies what the log holds.
        assert_eq!(alter(&api, RESOURCE_BROKER, "", vec![op("log.segment.bytes", OP_SET, Some("1048576"))]), (0, None));
        drop(api);
        let api = crate::api::test_api(dir.path(), &["log.retention.ms=5000"]);
        let segment = api.broker.partition(&crate::types::TopicPartition::new("t", 0)).unwrap().config().segment_bytes;
        assert_eq!(segment, 1_048_576);
    }

    /// The reassignment throttles: broker rates stored per broker (or cluster-wide) and
    /// removed by DELETE, as `kafka-reassign-partitions --throttle` and `--verify` send them;
    /// the topic replica lists validated as Kafka validates them.
    #[test]
    fn replication_throttles_are_stored_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        let me = api.broker.node_id.to_string();
        let rates = |op_: i8, v: Option<&str>| {
            vec![op("leader.replication.throttled.rate", op_, v), op("follower.replication.throttled.rate", op_, v)]
        };
        assert_eq!(alter(&api, RESOURCE_BROKER, &me, rates(OP_SET, Some("1000"))), (0, None));
        assert_eq!(api.broker.image().broker_configs[&me]["follower.replication.throttled.rate"], "1000");
        assert_eq!(alter(&api, RESOURCE_BROKER, "", vec![op("leader.replication.throttled.rate", OP_SET, Some("5"))]), (0, None));
        assert_eq!(alter(&api, RESOURCE_BROKER, &me, rates(OP_SET, Some("-1"))).0, ResponseError::InvalidConfig.code());
        let mut clear = rates(OP_DELETE, None);
        clear.push(op("replica.alter.log.dirs.io.max.bytes.per.second", OP_DELETE, None));
        assert_eq!(alter(&api, RESOURCE_BROKER, &me, clear), (0, None));
        assert!(!api.broker.image().broker_configs.contains_key(&me));
        assert_eq!(alter(&api, RESOURCE_BROKER, "99", rates(OP_SET, Some("1"))).0, ResponseError::InvalidRequest.code());

        let replicas = |v: &str| alter(&api, RESOURCE_TOPIC, "t", vec![op("follower.replication.throttled.replicas", OP_SET, Some(v))]);
        assert_eq!(replicas("0:1,0:2"), (0, None));
        assert_eq!(replicas("*"), (0, None));
        assert_eq!(replicas("0-1").0, ResponseError::InvalidConfig.code());
        let clear = vec![op("leader.replication.throttled.replicas", OP_DELETE, None), op("follower.replication.throttled.replicas", OP_DELETE, None)];
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", clear), (0, None));
        assert!(!api.broker.image().topic("t").unwrap().configs.contains_key("follower.replication.throttled.replicas"));
    }
}
