//! ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile and leave in one API; the broker
//! computes assignments.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::{Api, RequestContext, str_bytes};
use crate::group::consumer::HeartbeatRequest;
use crate::metadata::features;

pub fn handle(api: &Api, ctx: &RequestContext, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    if !features::consumer_protocol_enabled(&api.broker.image()) {
        let mut r = ConsumerGroupHeartbeatResponse::default();
        r.error_code = ResponseError::UnsupportedVersion.code();
        return r;
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p))).collect::<BTreeSet<_>>()
    });
    let hb = HeartbeatRequest {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req.subscribed_topic_names.as_ref().map(|ts| ts.iter().map(|t| t.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
    };
    let result = api.groups.consumer_heartbeat(req.group_id.as_str(), hb);
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = result.error.map(|e| e.code()).unwrap_or(0);
    r.error_message = result.error.map(|e| str_bytes(&e.to_string()));
    r.member_id = Some(str_bytes(&result.member_id));
    r.member_epoch = result.member_epoch;
    r.heartbeat_interval_ms = result.heartbeat_interval_ms;
    r.assignment = result.assignment.map(|set| {
        let mut a = Assignment::default();
        for (topic_id, partition) in set {
            match a.topic_partitions.last_mut().filter(|t| t.topic_id == topic_id) {
                Some(t) => t.partitions.push(partition),
                None => {
                    let mut t = TopicPartitions::default();
                    t.topic_id = topic_id;
                    t.partitions.push(partition);
                    a.topic_partitions.push(t);
                }
            }
        }
        a
    });
    r
}
