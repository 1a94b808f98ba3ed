//! DescribeTopicPartitions (API key 75, v0; KIP-966): the partitions of the named topics, or
//! of every topic, with their eligible leader replicas and last known ELR, a page at a time.
//! Kafka 4.x's AdminClient `describeTopics` (and so `kafka-topics --describe`) asks it first
//! and falls back to Metadata only when it is not served. As Kafka's
//! `DescribeTopicPartitionsRequestHandler` and `KRaftMetadataCache.describeTopicResponse`:
//!
//! - Topics are answered in name order, from the cursor's topic (and its partition) on. A
//!   page holds at most `response_partition_limit` partitions (capped by Kafka's
//!   `max.request.partition.size.limit` default, at least 1); when partitions are left,
//!   `next_cursor` names the first one not answered.
//! - Named topics that do not exist answer UNKNOWN_TOPIC_OR_PARTITION (INVALID_TOPIC_EXCEPTION
//!   for an illegal name); asking for every topic leaves nothing to answer that way.
//! - A cursor whose topic is not among the named ones, or whose partition is negative, is an
//!   invalid request: every named topic answers INVALID_REQUEST (Kafka's error response).
//! - Partitions carry no error of their own; the leader is -1 when it is not registered.
//!   Replicas and ISR are the registration's; offline replicas are those on brokers that are
//!   not registered or fenced. Authorized operations are always filled, as Metadata's
//!   (Blumfeld has no authorizer: every topic is described).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};

use super::{Api, authorized_operations, str_bytes};
use crate::metadata::controller::validate_topic_name;
use crate::metadata::{MetadataImage, TopicImage};
use crate::types::{NodeId, PartitionId};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one page holds.
pub const PARTITIONS_PER_PAGE_MAX: usize = 2000;

pub fn handle(api: &Api, req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    describe(&api.broker.image(), &req)
}

/// The answer to `req` from `image`.
pub fn describe(image: &MetadataImage, req: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let all = req.topics.is_empty();
    let cursor_topic = req.cursor.as_ref().map_or("", |c| c.topic_name.as_str());
    let mut names: Vec<&str> = if all {
        image.topics.keys().map(String::as_str).collect()
    } else {
        req.topics.iter().map(|t| t.name.as_str()).collect()
    };
    names.retain(|n| *n >= cursor_topic);
    names.sort_unstable();
    names.dedup();
    if let Some(c) = &req.cursor
        && ((!all && !names.contains(&c.topic_name.as_str())) || c.partition_index < 0)
    {
        return invalid_request(req);
    }
    let start_of = |name: &str| match &req.cursor {
        Some(c) if c.topic_name.as_str() == name => usize::try_from(c.partition_index).unwrap_or(0),
        _ => 0,
    };
    let limit = usize::try_from(req.response_partition_limit).unwrap_or(0).clamp(1, PARTITIONS_PER_PAGE_MAX);
    let mut r = DescribeTopicPartitionsResponse::default();
    let mut remaining = limit;
    for name in names {
        if remaining == 0 {
            r.next_cursor = Some(cursor(name, 0));
            break;
        }
        let Some(t) = image.topic(name) else {
            if !all {
                r.topics.push(unknown(name));
            }
            continue;
        };
        let start = start_of(name);
        let end = t.partitions.len().min(start.saturating_add(remaining));
        let mut topic = topic_response(image, t, start, end);
        topic.topic_authorized_operations = authorized_operations::topic(true);
        let answered = topic.partitions.len();
        r.topics.push(topic);
        if end < t.partitions.len() {
            r.next_cursor = Some(cursor(name, end));
            break;
        }
        remaining -= answered.min(remaining);
    }
    r
}

fn cursor(topic: &str, partition: usize) -> Cursor {
    let mut c = Cursor::default();
    c.topic_name = TopicName(str_bytes(topic));
    c.partition_index = i32::try_from(partition).unwrap_or(i32::MAX);
    c
}

/// Kafka's error response: every named topic with the error, no partitions.
fn invalid_request(req: &DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let mut r = DescribeTopicPartitionsResponse::default();
    r.topics = req
        .topics
        .iter()
        .map(|t| {
            let mut topic = DescribeTopicPartitionsResponseTopic::default();
            topic.name = Some(t.name.clone());
            topic.error_code = ResponseError::InvalidRequest.code();
            topic
        })
        .collect();
    r
}

fn unknown(name: &str) -> DescribeTopicPartitionsResponseTopic {
    let mut t = DescribeTopicPartitionsResponseTopic::default();
    t.name = Some(TopicName(str_bytes(name)));
    t.is_internal = is_internal(name);
    t.error_code = match validate_topic_name(name) {
        Ok(()) => ResponseError::UnknownTopicOrPartition.code(),
        Err(_) => ResponseError::InvalidTopicException.code(),
    };
    t
}

fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// Partitions `start..end` of `t`.
fn topic_response(image: &MetadataImage, t: &TopicImage, start: usize, end: usize) -> DescribeTopicPartitionsResponseTopic {
    let ids = |nodes: &[NodeId]| nodes.iter().map(|n| BrokerId(n.0)).collect::<Vec<_>>();
    let offline = |nodes: &[NodeId]| {
        nodes.iter().filter(|n| image.brokers.get(n).is_none_or(|b| b.fenced)).map(|n| BrokerId(n.0)).collect::<Vec<_>>()
    };
    let mut r = DescribeTopicPartitionsResponseTopic::default();
    r.name = Some(TopicName(str_bytes(&t.name)));
    r.topic_id = t.id;
    r.is_internal = is_internal(&t.name);
    r.partitions = (start..end)
        .filter_map(|i| {
            let index = PartitionId(i32::try_from(i).ok()?);
            let reg = t.partitions.get(&index)?;
            let mut p = DescribeTopicPartitionsResponsePartition::default();
            p.partition_index = index.0;
            p.leader_id = BrokerId(reg.leader.filter(|l| image.brokers.contains_key(l)).map_or(-1, |l| l.0));
            p.leader_epoch = reg.leader_epoch.0;
            p.replica_nodes = ids(&reg.replicas);
            p.isr_nodes = ids(&reg.isr);
            p.eligible_leader_replicas = Some(ids(&reg.elr));
            p.last_known_elr = Some(ids(&reg.last_known_elr));
            p.offline_replicas = offline(&reg.replicas);
            Some(p)
        })
        .collect();
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kafka_protocol::messages::describe_topic_partitions_request::{self, TopicRequest};
    use uuid::Uuid;

    use super::*;
    use crate::metadata::MetadataRecord;
    use crate::types::{BrokerEpoch, LeaderEpoch, PartitionEpoch};

    /// Brokers 1 and 2 (2 fenced); topics `a` (3 partitions), `b` (1) and `c` (2), replicas
    /// [1, 2]; `b`-0 has lost its ISR to the ELR.
    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        for b in [1, 2] {
            image.replay(&MetadataRecord::RegisterBroker {
                id: NodeId(b),
                incarnation_id: Uuid::from_u128(b as u128),
                epoch: BrokerEpoch(i64::from(b)),
                endpoints: vec![],
                rack: None,
                fenced: b == 2,
                in_controlled_shutdown: false,
            });
        }
        for (name, count) in [("a", 3), ("b", 1), ("c", 2)] {
            let id = Uuid::new_v4();
            image.replay(&MetadataRecord::Topic { name: name.into(), id, partitions: count, replication_factor: 2, configs: Default::default() });
            for p in 0..count {
                let lost = name == "b";
                image.replay(&MetadataRecord::Partition {
                    topic_id: id,
                    partition: PartitionId(p),
                    replicas: vec![NodeId(1), NodeId(2)],
                    isr: if lost { vec![] } else { vec![NodeId(1)] },
                    elr: if lost { vec![NodeId(1), NodeId(2)] } else { vec![] },
                    last_known_elr: if lost { vec![NodeId(1)] } else { vec![] },
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                    leader: (!lost).then_some(NodeId(1)),
                    leader_epoch: LeaderEpoch(4),
                    partition_epoch: PartitionEpoch(0),
                });
            }
        }
        image
    }

    fn request(topics: &[&str], limit: i32, cursor: Option<(&str, i32)>) -> DescribeTopicPartitionsRequest {
        let mut r = DescribeTopicPartitionsRequest::default();
        r.topics = topics
            .iter()
            .map(|t| {
                let mut x = TopicRequest::default();
                x.name = TopicName(str_bytes(t));
                x
            })
            .collect();
        r.response_partition_limit = limit;
        r.cursor = cursor.map(|(t, p)| {
            let mut c = describe_topic_partitions_request::Cursor::default();
            c.topic_name = TopicName(str_bytes(t));
            c.partition_index = p;
            c
        });
        r
    }

    /// (topic, partitions) of each answered topic, and the next cursor.
    type Page = (Vec<(String, Vec<i32>)>, Option<(String, i32)>);

    fn pages(r: &DescribeTopicPartitionsResponse) -> Page {
        let topics = r
            .topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().to_string(), t.partitions.iter().map(|p| p.partition_index).collect()))
            .collect();
        (topics, r.next_cursor.as_ref().map(|c| (c.topic_name.to_string(), c.partition_index)))
    }

    #[test]
    fn every_topic_is_described_a_page_at_a_time_in_name_order() {
        let image = image();
        let r = describe(&image, &request(&[], 2000, None));
        assert_eq!(pages(&r), (vec![("a".into(), vec![0, 1, 2]), ("b".into(), vec![0]), ("c".into(), vec![0, 1])], None));
        let r = describe(&image, &request(&[], 2, None));
        assert_eq!(pages(&r), (vec![("a".into(), vec![0, 1])], Some(("a".into(), 2))));
        let r = describe(&image, &request(&[], 2, Some(("a", 2))));
        assert_eq!(pages(&r), (vec![("a".into(), vec![2]), ("b".into(), vec![0])], Some(("c".into(), 0))), "a full page ends at the next topic");
        let r = describe(&image, &request(&[], 2, Some(("c", 0))));
        assert_eq!(pages(&r), (vec![("c".into(), vec![0, 1])], None));
        let r = describe(&image, &request(&[], 0, None));
        assert_eq!(pages(&r).1, Some(("a".into(), 1)), "a limit below 1 is 1");
    }

    #[test]
    fn partitions_carry_the_elr_and_the_last_known_elr() {
        let r = describe(&image(), &request(&["b", "a"], 2000, None));
        assert_eq!(r.topics.iter().map(|t| t.name.as_ref().unwrap().to_string()).collect::<Vec<_>>(), ["a", "b"], "in name order");
        let a = &r.topics[0];
        assert_eq!((a.error_code, a.is_internal), (0, false));
        assert_eq!(a.topic_authorized_operations, authorized_operations::topic(true));
        let p = &r.topics[1].partitions[0];
        assert_eq!((p.error_code, p.leader_id.0, p.leader_epoch), (0, -1, 4));
        assert!(p.isr_nodes.is_empty());
        assert_eq!(p.eligible_leader_replicas, Some(vec![BrokerId(1), BrokerId(2)]));
        assert_eq!(p.last_known_elr, Some(vec![BrokerId(1)]));
        assert_eq!(p.offline_replicas, vec![BrokerId(2)], "broker 2 is fenced");
    }

    #[test]
    fn unknown_and_invalid_names_and_cursors_get_kafkas_errors() {
        let image = image();
        let r = describe(&image, &request(&["nope", "bad name", "a"], 2000, None));
        let codes: Vec<(String, i16)> = r.topics.iter().map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code)).collect();
        assert_eq!(codes, [("a".to_string(), 0), ("bad name".to_string(), 17), ("nope".to_string(), 3)]);
        let r = describe(&image, &request(&["a"], 2000, Some(("b", 0))));
        assert_eq!(r.topics.iter().map(|t| t.error_code).collect::<Vec<_>>(), [42], "the cursor's topic is not asked for");
        let r = describe(&image, &request(&["a"], 2000, Some(("a", -1))));
        assert_eq!((r.topics[0].error_code, r.topics[0].partitions.len()), (42, 0));
        let r = describe(&image, &request(&[], 2000, Some(("bb", 0))));
        assert_eq!(pages(&r).0, vec![("c".into(), vec![0, 1])], "every topic from the cursor's name on");
    }
}
