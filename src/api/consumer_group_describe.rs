//! ConsumerGroupDescribe (KIP-848): epochs, assignor, members with current and target
//! assignments.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName};

use super::{Api, authorized_operations, str_bytes};
use crate::group::consumer::Tp;
use crate::metadata::features;

/// `member_type` of ConsumerGroupDescribe v1: a member speaking the consumer protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

fn assignment(api: &Api, set: &BTreeSet<Tp>) -> Assignment {
    let image = api.broker.image();
    let mut a = Assignment::default();
    for (topic_id, partition) in set {
        match a.topic_partitions.last_mut().filter(|t| t.topic_id == *topic_id) {
            Some(t) => t.partitions.push(*partition),
            None => {
                let mut t = TopicPartitions::default();
                t.topic_id = *topic_id;
                t.topic_name = TopicName(str_bytes(image.topic_by_id(topic_id).map(|x| x.name.as_str()).unwrap_or("")));
                t.partitions.push(*partition);
                a.topic_partitions.push(t);
            }
        }
    }
    a
}

pub fn handle(api: &Api, version: i16, req: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let mut r = ConsumerGroupDescribeResponse::default();
    if !features::consumer_protocol_enabled(&api.broker.image()) {
        r.groups = req
            .group_ids
            .into_iter()
            .map(|id| {
                let mut g = DescribedGroup::default();
                g.group_id = id;
                g.error_code = ResponseError::UnsupportedVersion.code();
                g
            })
            .collect();
        return r;
    }
    for id in req.group_ids {
        let mut g = DescribedGroup::default();
        g.group_id = id.clone();
        g.authorized_operations = authorized_operations::OMITTED;
        match api.groups.describe_consumer(id.as_str()) {
            None => {
                g.error_code = ResponseError::GroupIdNotFound.code();
                g.error_message = Some(str_bytes(&format!("Group {} not found.", id.as_str())));
                g.group_state = str_bytes("Dead");
            }
            Some(d) => {
                // Kafka fills the field only for groups it found.
                g.authorized_operations = authorized_operations::group(req.include_authorized_operations);
                g.group_state = str_bytes(d.state);
                g.group_epoch = d.group_epoch;
                g.assignment_epoch = d.assignment_epoch;
                g.assignor_name = str_bytes(&d.assignor);
                g.members = d
                    .members
                    .iter()
                    .map(|m| {
                        let mut x = Member::default();
                        x.member_id = str_bytes(&m.member_id);
                        x.instance_id = m.instance_id.as_deref().map(str_bytes);
                        x.rack_id = m.rack_id.as_deref().map(str_bytes);
                        x.member_epoch = m.member_epoch;
                        x.client_id = str_bytes(&m.client_id);
                        x.client_host = str_bytes(&m.client_host);
                        x.subscribed_topic_names = m.subscribed_topic_names.iter().map(|t| TopicName(str_bytes(t))).collect();
                        x.subscribed_topic_regex = m.subscribed_topic_regex.as_deref().map(str_bytes);
                        x.assignment = assignment(api, &m.assigned);
                        x.target_assignment = assignment(api, d.targets.get(&m.member_id).unwrap_or(&BTreeSet::new()));
                        if version >= 1 {
                            x.member_type = MEMBER_TYPE_CONSUMER;
                        }
                        x
                    })
                    .collect();
            }
        }
        r.groups.push(g);
    }
    r
}
