//! DescribeConfigs as Kafka answers it: sources, synonyms in Kafka's order, types,
//! documentation, read-only flags and the values in force.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::protocol::StrBytes;

use super::*;

fn request(resource_type: i8, name: &str, synonyms: bool, docs: bool) -> DescribeConfigsRequest {
    let mut res = DescribeConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name.into());
    res.configuration_keys = None;
    let mut r = DescribeConfigsRequest::default();
    r.resources = vec![res];
    r.include_synonyms = synonyms;
    r.include_documentation = docs;
    r
}

fn describe_at(api: &Api, version: i16, resource_type: i8, name: &str, synonyms: bool, docs: bool) -> DescribeConfigsResult {
    handle(api, version, request(resource_type, name, synonyms, docs)).results.remove(0)
}

fn config<'a>(r: &'a DescribeConfigsResult, name: &str) -> &'a DescribeConfigsResourceResult {
    r.configs.iter().find(|c| c.name.as_str() == name).unwrap_or_else(|| panic!("{name} missing"))
}

/// (name, value, source) of each synonym.
fn syns(c: &DescribeConfigsResourceResult) -> Vec<(String, Option<String>, i8)> {
    c.synonyms.iter().map(|s| (s.name.to_string(), s.value.as_ref().map(|v| v.to_string()), s.source)).collect()
}

fn value(c: &DescribeConfigsResourceResult) -> Option<&str> {
    c.value.as_ref().map(|v| v.as_str())
}

#[test]
fn topic_synonyms_follow_kafkas_layers_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let api = crate::api::test_api(dir.path(), &["log.retention.ms=5000", "log.segment.bytes=1048576"]);
    api.broker.auto_create_topic("t").unwrap();
    api.broker
        .apply_metadata(|image| Ok((crate::metadata::controller::set_topic_configs(image, "t", &[("segment.bytes".to_string(), "4096".to_string())].into())?, ())))
        .unwrap();
    let r = describe_at(&api, 4, RESOURCE_TOPIC, "t", true, false);
    assert_eq!(r.error_code, 0);
    let retention = config(&r, "retention.ms");
    assert_eq!((value(retention), retention.config_source), (Some("5000"), SOURCE_STATIC_BROKER_CONFIG));
    assert_eq!(
        syns(retention),
        [
            ("log.retention.ms".into(), Some("5000".into()), SOURCE_STATIC_BROKER_CONFIG),
            ("log.retention.hours".into(), Some("168".into()), SOURCE_DEFAULT_CONFIG),
        ]
    );
    let segment = config(&r, "segment.bytes");
    assert_eq!((value(segment), segment.config_source), (Some("4096"), SOURCE_TOPIC_CONFIG));
    assert_eq!(
        syns(segment),
        [
            ("segment.bytes".into(), Some("4096".into()), SOURCE_TOPIC_CONFIG),
            ("log.segment.bytes".into(), Some("1048576".into()), SOURCE_STATIC_BROKER_CONFIG),
            ("log.segment.bytes".into(), Some("1073741824".into()), SOURCE_DEFAULT_CONFIG),
        ]
    );
    let policy = config(&r, "cleanup.policy");
    assert_eq!(syns(policy), [("log.cleanup.policy".into(), Some("delete".into()), SOURCE_DEFAULT_CONFIG)]);
    assert_eq!((policy.config_source, policy.config_type, policy.read_only), (SOURCE_DEFAULT_CONFIG, 7, false));
    assert_eq!(policy.documentation, None, "documentation only when asked for");
    // Without include_synonyms the source stays, the synonyms go.
    let r = describe_at(&api, 4, RESOURCE_TOPIC, "t", false, true);
    let retention = config(&r, "retention.ms");
    assert!(retention.synonyms.is_empty());
    assert_eq!(retention.config_source, SOURCE_STATIC_BROKER_CONFIG);
    assert!(retention.documentation.as_ref().is_some_and(|d| !d.is_empty()));
    assert_eq!(retention.config_type, 5);
    // Before v3 there are no types or documentation.
    let r = describe_at(&api, 2, RESOURCE_TOPIC, "t", true, true);
    assert!(r.configs.iter().all(|c| c.config_type == 0 && c.documentation.is_none()));
    assert_eq!(describe_at(&api, 4, RESOURCE_TOPIC, "nope", true, false).error_code, ResponseError::UnknownTopicOrPartition.code());
}

#[test]
fn default_retention_has_no_synonyms_as_in_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let api = crate::api::test_api(dir.path(), &[]);
    api.broker.auto_create_topic("t").unwrap();
    let r = describe_at(&api, 4, RESOURCE_TOPIC, "t", true, false);
    let retention = config(&r, "retention.ms");
    assert_eq!((value(retention), retention.config_source), (Some("604800000"), SOURCE_DEFAULT_CONFIG));
    assert!(retention.synonyms.is_empty(), "{:?}", syns(retention));
}

#[test]
fn broker_configs_show_the_values_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let api = crate::api::test_api(dir.path(), &["log.retention.ms=5000"]);
    let r = describe_at(&api, 4, RESOURCE_BROKER, "1", true, true);
    assert_eq!(r.error_code, 0);
    let ms = config(&r, "log.retention.ms");
    assert_eq!((ms.config_source, ms.read_only), (SOURCE_STATIC_BROKER_CONFIG, false));
    assert_eq!(
        syns(ms),
        [
            ("log.retention.ms".into(), Some("5000".into()), SOURCE_STATIC_BROKER_CONFIG),
            ("log.retention.hours".into(), Some("168".into()), SOURCE_DEFAULT_CONFIG),
        ]
    );
    let hours = config(&r, "log.retention.hours");
    assert_eq!(hours.config_source, SOURCE_DEFAULT_CONFIG);
    assert_eq!(syns(hours), [("log.retention.hours".into(), Some("168".into()), SOURCE_DEFAULT_CONFIG)]);
    let dirs = config(&r, "log.dirs");
    assert_eq!((dirs.config_source, dirs.read_only), (SOURCE_STATIC_BROKER_CONFIG, true));
    let cluster = config(&r, "cluster.id");
    assert_eq!(value(cluster), Some(api.broker.image().cluster_id.as_str()));
    assert!(!api.broker.image().cluster_id.is_empty());
    let rf = config(&r, "offsets.topic.replication.factor");
    assert_eq!((value(rf), rf.config_source, rf.config_type), (Some("1"), SOURCE_DEFAULT_CONFIG, 4));
    assert!(config(&r, "num.partitions").documentation.as_ref().is_some_and(|d| !d.is_empty()));
    assert!(r.configs.iter().all(|c| !c.name.as_str().ends_with(".throttled.rate")), "no throttle set, none listed");
    // The empty name is the dynamic cluster default: nothing set yet. Other ids are refused.
    let r = describe_at(&api, 4, RESOURCE_BROKER, "", true, false);
    assert_eq!((r.error_code, r.configs.len()), (0, 0));
    let r = describe_at(&api, 4, RESOURCE_BROKER, "2", true, false);
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
    assert_eq!(r.error_message.unwrap().as_str(), "Unexpected broker id, expected 1 or empty string, but received 2");
}

#[test]
fn groups_and_loggers_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let api = crate::api::test_api(dir.path(), &[]);
    let r = describe_at(&api, 4, RESOURCE_GROUP, "g", true, true);
    assert_eq!(r.error_code, 0);
    let names: Vec<&str> = r.configs.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"consumer.session.timeout.ms") && names.contains(&"consumer.heartbeat.interval.ms"), "{names:?}");
    let session = config(&r, "consumer.session.timeout.ms");
    assert_eq!((value(session), session.config_source, session.config_type), (Some("45000"), SOURCE_DEFAULT_CONFIG, 3));
    assert_eq!(syns(session), [("group.consumer.session.timeout.ms".into(), Some("45000".into()), SOURCE_DEFAULT_CONFIG)]);
    api.broker
        .apply_metadata(|image| {
            let set = [("consumer.session.timeout.ms".to_string(), "50000".to_string())].into();
            Ok((crate::metadata::controller::set_group_configs(image, &api.broker.config, "g", &set)?, ()))
        })
        .unwrap();
    let r = describe_at(&api, 4, RESOURCE_GROUP, "g", true, false);
    let session = config(&r, "consumer.session.timeout.ms");
    assert_eq!((value(session), session.config_source), (Some("50000"), SOURCE_GROUP_CONFIG));
    assert_eq!(
        syns(session),
        [
            ("consumer.session.timeout.ms".into(), Some("50000".into()), SOURCE_GROUP_CONFIG),
            ("group.consumer.session.timeout.ms".into(), Some("45000".into()), SOURCE_DEFAULT_CONFIG),
        ]
    );
    assert_eq!(describe_at(&api, 4, RESOURCE_GROUP, "", true, false).error_code, ResponseError::InvalidRequest.code());

    let r = describe_at(&api, 4, RESOURCE_BROKER_LOGGER, "1", true, false);
    assert_eq!(r.error_code, 0);
    let root = config(&r, "root");
    assert_eq!(root.config_source, SOURCE_DYNAMIC_BROKER_LOGGER_CONFIG);
    assert!(logging::LEVELS.contains(&value(root).unwrap()));
    config(&r, "blumfeld.group");
    let r = describe_at(&api, 4, RESOURCE_BROKER_LOGGER, "", true, false);
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
}

/// The replication throttles, the dynamic broker configs Blumfeld stores: listed while set,
/// the broker's own value over the cluster default, with Kafka's synonyms, type and flags.
#[test]
fn throttles_are_described_as_kafka_describes_them() {
    use crate::api::config_change::{OP_DELETE, OP_SET};
    use crate::api::incremental_alter_configs::tests::{op, request};
    let dir = tempfile::tempdir().unwrap();
    let api = crate::api::test_api(dir.path(), &[]);
    let alter = |name: &str, ops| {
        let r = crate::api::incremental_alter_configs::handle(&api, request(RESOURCE_BROKER, name, ops));
        assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
    };
    alter("", vec![op("leader.replication.throttled.rate", OP_SET, Some("500")), op("follower.replication.throttled.rate", OP_SET, Some("700"))]);
    alter("1", vec![op("leader.replication.throttled.rate", OP_SET, Some("1000"))]);

    let r = describe_at(&api, 4, RESOURCE_BROKER, "1", true, true);
    let leader = config(&r, "leader.replication.throttled.rate");
    assert_eq!((value(leader), leader.config_source, leader.config_type), (Some("1000"), SOURCE_DYNAMIC_BROKER_CONFIG, 5));
    assert!(leader.read_only && leader.documentation.is_none() && !leader.is_sensitive);
    assert_eq!(
        syns(leader),
        [
            ("leader.replication.throttled.rate".into(), Some("1000".into()), SOURCE_DYNAMIC_BROKER_CONFIG),
            ("leader.replication.throttled.rate".into(), Some("500".into()), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG),
        ]
    );
    let follower = config(&r, "follower.replication.throttled.rate");
    assert_eq!((value(follower), follower.config_source), (Some("700"), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG));
    assert!(r.configs.iter().all(|c| c.name.as_str() != "replica.alter.log.dirs.io.max.bytes.per.second"));

    let r = describe_at(&api, 4, RESOURCE_BROKER, "", true, false);
    let names: Vec<_> = r.configs.iter().map(|c| (c.name.to_string(), value(c).map(str::to_string), c.config_source)).collect();
    assert_eq!(
        names,
        [
            ("follower.replication.throttled.rate".into(), Some("700".into()), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG),
            ("leader.replication.throttled.rate".into(), Some("500".into()), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG),
        ]
    );
    assert_eq!(syns(&r.configs[1]), [("leader.replication.throttled.rate".into(), Some("500".into()), SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG)]);

    alter("1", vec![op("leader.replication.throttled.rate", OP_DELETE, None)]);
    let r = describe_at(&api, 4, RESOURCE_BROKER, "1", true, false);
    assert_eq!(value(config(&r, "leader.replication.throttled.rate")), Some("500"), "the cluster default again");
}
