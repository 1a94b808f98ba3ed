//! Metadata: brokers, controller and topics with their ids and partition leaders.
//! Unknown topics are created here when `auto.create.topics.enable` and the request allow it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{Api, RequestContext, authorized_operations, errors, str_bytes};
use crate::metadata::TopicImage;
use crate::metadata::controller::validate_topic_name;

/// Metadata versions whose response has `cluster_authorized_operations` (v11 moved it to
/// DescribeCluster).
const CLUSTER_OPERATIONS_VERSIONS: std::ops::RangeInclusive<i16> = 8..=10;
/// First version with `include_topic_authorized_operations`.
const TOPIC_OPERATIONS_MIN_VERSION: i16 = 8;

pub fn handle(api: &Api, ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let broker = &api.broker;
    let mut r = MetadataResponse::default();
    let advertised = broker.advertised();
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(broker.node_id);
    b.host = str_bytes(&advertised.host);
    b.port = advertised.port;
    b.rack = broker.config.get("broker.rack").map(str_bytes);
    r.brokers = vec![b];
    r.cluster_id = Some(str_bytes(&broker.image().cluster_id));
    // The Java AdminClient sends CreateTopics/DeleteTopics to the controller: it must be us.
    r.controller_id = BrokerId(broker.node_id);
    r.cluster_authorized_operations = authorized_operations::cluster(
        CLUSTER_OPERATIONS_VERSIONS.contains(&ctx.version) && req.include_cluster_authorized_operations,
    );
    let topic_operations =
        authorized_operations::topic(ctx.version >= TOPIC_OPERATIONS_MIN_VERSION && req.include_topic_authorized_operations);
    let mut r = handle_topics(api, ctx, req, r);
    // With no authorizer every topic in the answer, known or not, gets the same set (Kafka too).
    for t in &mut r.topics {
        t.topic_authorized_operations = topic_operations;
    }
    r
}

fn handle_topics(api: &Api, ctx: &RequestContext, req: MetadataRequest, mut r: MetadataResponse) -> MetadataResponse {
    let broker = &api.broker;
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    if all {
        let image = broker.image();
        r.topics = image.topics.values().map(|t| topic_response(api, t)).collect();
        return r;
    }
    let auto_create = broker.config.bool("auto.create.topics.enable")
        && (ctx.version < 4 || req.allow_auto_topic_creation);
    for t in req.topics.unwrap_or_default() {
        let response = match t.name {
            Some(name) => by_name(api, name, auto_create),
            None => by_id(api, t.topic_id),
        };
        r.topics.push(response);
    }
    r
}

fn by_name(api: &Api, name: TopicName, auto_create: bool) -> MetadataResponseTopic {
    let broker = &api.broker;
    if let Some(t) = broker.image().topic(name.as_str()) {
        return topic_response(api, t);
    }
    let error = if let Err(e) = validate_topic_name(name.as_str()) {
        errors::controller_error(&e)
    } else if auto_create {
        match broker.auto_create_topic(name.as_str()) {
            Ok(()) => match broker.image().topic(name.as_str()) {
                Some(t) => return topic_response(api, t),
                None => ResponseError::LeaderNotAvailable,
            },
            Err(e) => {
                tracing::warn!(topic = name.as_str(), error = %e, "auto-creation failed");
                errors::broker_error(&e)
            }
        }
    } else {
        ResponseError::UnknownTopicOrPartition
    };
    let mut r = MetadataResponseTopic::default();
    r.error_code = error.code();
    r.name = Some(name);
    r
}

fn by_id(api: &Api, id: Uuid) -> MetadataResponseTopic {
    if let Some(t) = api.broker.image().topic_by_id(&id) {
        return topic_response(api, t);
    }
    let mut r = MetadataResponseTopic::default();
    r.error_code = ResponseError::UnknownTopicId.code();
    r.topic_id = id;
    r
}

fn topic_response(api: &Api, t: &TopicImage) -> MetadataResponseTopic {
    let node = BrokerId(api.broker.node_id);
    let mut r = MetadataResponseTopic::default();
    r.name = Some(TopicName(str_bytes(&t.name)));
    r.topic_id = t.id;
    r.is_internal = t.name.starts_with("__");
    r.partitions = (0..t.partitions)
        .map(|i| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i;
            p.leader_id = node;
            p.leader_epoch = 0;
            p.replica_nodes = vec![node];
            p.isr_nodes = vec![node];
            p
        })
        .collect();
    r
}
