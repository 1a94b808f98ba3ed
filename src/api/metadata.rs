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
use crate::types::NodeId;

/// Metadata versions whose response has `cluster_authorized_operations` (v11 moved it to
/// DescribeCluster).
const CLUSTER_OPERATIONS_VERSIONS: std::ops::RangeInclusive<i16> = 8..=10;
/// First version with a partition's `offline_replicas`.
const OFFLINE_REPLICAS_MIN_VERSION: i16 = 5;
/// First version with `include_topic_authorized_operations`.
const TOPIC_OPERATIONS_MIN_VERSION: i16 = 8;

pub fn handle(api: &Api, ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let broker = &api.broker;
    let mut r = MetadataResponse::default();
    // A broker whose controller session lapsed answers as the cluster sees it: fenced, so not
    // listed (Kafka lists unfenced brokers only) and leading nothing (`topic_response`).
    // Clients then drop it and ask the others, instead of coming back to a leader that is
    // cut off (librdkafka asks the broker it used last).
    let mut listed = listed_brokers(api, false);
    if broker.cluster().is_some_and(|c| c.session_lapsed()) {
        listed.retain(|b| b.id.0 != broker.node_id);
    }
    r.brokers = brokers(&listed);
    r.cluster_id = Some(str_bytes(&broker.image().cluster_id));
    // The Java AdminClient sends CreateTopics/DeleteTopics to the controller it is told of.
    r.controller_id = BrokerId(controller_id_for_clients(api, &listed));
    r.cluster_authorized_operations = authorized_operations::cluster(
        CLUSTER_OPERATIONS_VERSIONS.contains(&ctx.version) && req.include_cluster_authorized_operations,
    );
    let topic_operations =
        authorized_operations::topic(ctx.version >= TOPIC_OPERATIONS_MIN_VERSION && req.include_topic_authorized_operations);
    let mut r = handle_topics(api, ctx, req, r);
    // With no authorizer every topic in the answer, known or not, gets the same set (Kafka too).
    for t in &mut r.topics {
        t.topic_authorized_operations = topic_operations;
        if ctx.version < OFFLINE_REPLICAS_MIN_VERSION {
            t.partitions.iter_mut().for_each(|p| p.offline_replicas.clear());
        }
    }
    r
}

/// A broker as Metadata and DescribeCluster list it.
#[derive(Debug, Clone)]
pub struct ListedBroker {
    pub id: NodeId,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// The registered brokers (unfenced ones only, as Kafka's Metadata lists them, unless
/// `include_fenced`). This node answers with its live advertised listener and configured rack
/// (its registration may predate the bound port); others with their registered endpoint of
/// this node's listener name, else the first. A broker-role node always lists itself.
pub fn listed_brokers(api: &Api, include_fenced: bool) -> Vec<ListedBroker> {
    let broker = &api.broker;
    let me = NodeId(broker.node_id);
    let local = |fenced: bool| {
        let advertised = broker.advertised();
        ListedBroker { id: me, host: advertised.host, port: advertised.port, rack: broker.config.settings().rack.clone(), fenced }
    };
    let image = broker.image();
    let mut out: Vec<ListedBroker> = image
        .brokers
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .filter_map(|reg| {
            if reg.id == me {
                return Some(local(reg.fenced));
            }
            let e = reg.endpoint(LOCAL_LISTENER_NAME).or(reg.endpoints.first())?;
            Some(ListedBroker { id: reg.id, host: e.host.clone(), port: i32::from(e.port), rack: reg.rack.clone(), fenced: reg.fenced })
        })
        .collect();
    let is_broker = broker.cluster().is_none_or(|c| c.is_broker);
    if is_broker && !out.iter().any(|b| b.id == me) {
        out.insert(0, local(image.brokers.get(&me).is_some_and(|b| b.fenced)));
    }
    out
}

/// The `controller_id` clients are told. A single node is its own controller. In a cluster
/// Kafka 4 names a live broker (clients send admin requests there and it forwards them):
/// this one when it is listed, else the first listed.
pub fn controller_id_for_clients(api: &Api, listed: &[ListedBroker]) -> i32 {
    let me = api.broker.node_id;
    if api.broker.cluster().is_none() || listed.iter().any(|b| b.id.0 == me) {
        return me;
    }
    listed.first().map_or(-1, |b| b.id.0)
}

fn brokers(listed: &[ListedBroker]) -> Vec<MetadataResponseBroker> {
    listed
        .iter()
        .map(|l| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(l.id.0);
            b.host = str_bytes(&l.host);
            b.port = l.port;
            b.rack = l.rack.as_deref().map(str_bytes);
            b
        })
        .collect()
}

/// The listener name clients reach this node on; others are looked up by the same name.
pub const LOCAL_LISTENER_NAME: &str = "PLAINTEXT";

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
    let auto_create = broker.config.settings().topics.auto_create
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

/// A topic's partitions as their registrations say. A partition without a leader answers
/// LEADER_NOT_AVAILABLE, as Kafka does. So does one this broker leads while its controller
/// session has lapsed (see `Cluster::session_lapsed`): its image is stale, and naming itself
/// would send clients that ask it back to a leader that can no longer replicate.
fn topic_response(api: &Api, t: &TopicImage) -> MetadataResponseTopic {
    let image = api.broker.image();
    let local = NodeId(api.broker.node_id);
    let lapsed = api.broker.cluster().is_some_and(|c| c.session_lapsed());
    // Kafka's offline replicas: on a broker that is not registered, fenced, or unreachable.
    let offline = |nodes: &[NodeId]| {
        nodes
            .iter()
            .filter(|n| image.brokers.get(n).is_none_or(|b| b.fenced || (b.id != local && b.endpoints.is_empty())))
            .map(|n| BrokerId(n.0))
            .collect::<Vec<_>>()
    };
    let ids = |nodes: &[NodeId]| nodes.iter().map(|n| BrokerId(n.0)).collect::<Vec<_>>();
    let mut r = MetadataResponseTopic::default();
    r.name = Some(TopicName(str_bytes(&t.name)));
    r.topic_id = t.id;
    r.is_internal = t.name.starts_with("__");
    r.partitions = t
        .partitions
        .iter()
        .map(|(i, reg)| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i.0;
            let leader = reg.leader.filter(|l| !(lapsed && *l == local));
            p.leader_id = BrokerId(leader.map_or(-1, |l| l.0));
            p.leader_epoch = reg.leader_epoch.0;
            p.replica_nodes = ids(&reg.replicas);
            p.isr_nodes = ids(&reg.isr);
            p.offline_replicas = offline(&reg.replicas);
            if leader.is_none() {
                p.error_code = ResponseError::LeaderNotAvailable.code();
            }
            p
        })
        .collect();
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::metadata::MetadataRecord;
    use crate::metadata::records::{Endpoint, LeaderChange};
    use crate::types::{BrokerEpoch, PartitionId};

    fn request(topic: &str) -> MetadataRequest {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(TopicName(str_bytes(topic)));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        req
    }

    #[test]
    fn partitions_and_brokers_come_from_the_registrations() {
        let dir = tempfile::tempdir().unwrap();
        let api = super::super::test_api(dir.path(), &["node.id=1"]);
        let ctx = RequestContext { api_key: ApiKey::Metadata, version: 12, correlation_id: 1, client_id: None, client_host: String::new(), peer: None };
        api.broker.auto_create_topic("t").unwrap();
        let id = api.broker.topic_id("t").unwrap();
        let endpoint = Endpoint { name: "PLAINTEXT".into(), host: "10.0.0.2".into(), port: 9093, security_protocol: "PLAINTEXT".into() };
        api.broker
            .apply_metadata(|image| {
                let epoch = BrokerEpoch(image.offset);
                Ok((
                    vec![
                        MetadataRecord::RegisterBroker { id: NodeId(2), incarnation_id: Uuid::new_v4(), epoch, endpoints: vec![endpoint.clone()], rack: Some("b".into()), fenced: false, in_controlled_shutdown: false },
                        MetadataRecord::RegisterBroker { id: NodeId(3), incarnation_id: Uuid::new_v4(), epoch, endpoints: vec![endpoint.clone()], rack: None, fenced: true, in_controlled_shutdown: false },
                        MetadataRecord::PartitionChange { topic_id: id, partition: PartitionId(0), isr: Some(vec![NodeId(2)]), leader: Some(LeaderChange::Elected(NodeId(2))), replicas: Some(vec![NodeId(1), NodeId(2), NodeId(3)]), elr: None, last_known_elr: None, adding_replicas: None, removing_replicas: None },
                    ],
                    (),
                ))
            })
            .unwrap();
        let r = handle(&api, &ctx, request("t"));
        let brokers: Vec<(i32, String, i32)> = r.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
        assert_eq!(brokers.len(), 2, "the fenced broker is not listed: {brokers:?}");
        assert_eq!(brokers[1], (2, "10.0.0.2".to_string(), 9093));
        assert_eq!(r.brokers[1].rack.as_ref().map(|r| r.to_string()), Some("b".to_string()));
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.leader_id.0, p.leader_epoch, p.error_code), (2, 1, 0));
        assert_eq!(p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(p.offline_replicas.iter().map(|b| b.0).collect::<Vec<_>>(), [3], "broker 3 is fenced");
        assert_eq!(p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(), [2]);

        api.broker
            .apply_metadata(|_| {
                let change = MetadataRecord::PartitionChange { topic_id: id, partition: PartitionId(0), isr: None, leader: Some(LeaderChange::NoLeader), replicas: None, elr: None, last_known_elr: None, adding_replicas: None, removing_replicas: None };
                Ok((vec![change], ()))
            })
            .unwrap();
        let r = handle(&api, &ctx, request("t"));
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.leader_id.0, p.leader_epoch, p.error_code), (-1, 2, ResponseError::LeaderNotAvailable.code()));
    }
}
