//! AlterPartitionReassignments (KIP-455), v0-1: start, change or cancel (null replicas)
//! partition reassignments; v1 carries KIP-860's `allow_replication_factor_change`. The rules are [`crate::metadata::reassignment::alter`]; this file
//! decodes, maps each partition's refusal to Kafka's code and answers once the records are
//! committed (all of the request's changes in one metadata change, as Kafka's controller
//! writes them atomically). A node that is not the active controller forwards the request.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{ReassignablePartitionResponse, ReassignableTopicResponse};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};

use super::{Api, errors, str_bytes};
use crate::metadata::reassignment::{self, Reassign};
use crate::types::{NodeId, PartitionId};

const UNCLEAN_KEY: &str = "unclean.leader.election.enable";

pub fn handle(api: &Api, req: AlterPartitionReassignmentsRequest) -> AlterPartitionReassignmentsResponse {
    let mut r = AlterPartitionReassignmentsResponse::default();
    r.error_message = None;
    r.allow_replication_factor_change = req.allow_replication_factor_change;
    let items: Vec<Reassign> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassign {
                topic: t.name.to_string(),
                partition: PartitionId(p.partition_index),
                replicas: p.replicas.as_ref().map(|rs| rs.iter().map(|b| NodeId(b.0)).collect()),
                allow_rf_change: req.allow_replication_factor_change,
            })
        })
        .collect();
    let broker_unclean = api.broker.effective_config().topic_default(UNCLEAN_KEY).is_some_and(|v| v == "true");
    let out = api.broker.apply_metadata(|image| {
        let unclean = |topic: &str| {
            image.topic(topic).and_then(|t| t.configs.get(UNCLEAN_KEY)).map_or(broker_unclean, |v| v == "true")
        };
        Ok(reassignment::alter(image, &crate::metadata::partition_change::TopicDefaults::from_config(&api.broker.effective_config()), &items, unclean))
    });
    let results = match out {
        Ok(results) => results,
        Err(e) => {
            r.error_code = errors::broker_error(&e).code();
            r.error_message = Some(str_bytes(&e.to_string()));
            return r;
        }
    };
    let mut results = results.into_iter();
    for t in &req.topics {
        let mut topic = ReassignableTopicResponse::default();
        topic.name = t.name.clone();
        for p in &t.partitions {
            let mut out = ReassignablePartitionResponse::default();
            out.partition_index = p.partition_index;
            out.error_message = None;
            match results.next() {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    out.error_code = errors::reassign_error(&e).code();
                    out.error_message = Some(str_bytes(&e.to_string()));
                }
                None => out.error_code = ResponseError::UnknownServerError.code(),
            }
            topic.partitions.push(out);
        }
        r.responses.push(topic);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    use kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, TopicName};

    use super::*;

    fn request(topic: &str, partition: i32, replicas: Option<Vec<i32>>) -> AlterPartitionReassignmentsRequest {
        let mut p = ReassignablePartition::default();
        p.partition_index = partition;
        p.replicas = replicas.map(|r| r.into_iter().map(BrokerId).collect());
        let mut t = ReassignableTopic::default();
        t.name = TopicName(str_bytes(topic));
        t.partitions = vec![p];
        let mut r = AlterPartitionReassignmentsRequest::default();
        r.topics = vec![t];
        r
    }

    fn code(api: &Api, topic: &str, partition: i32, replicas: Option<Vec<i32>>) -> i16 {
        let r = handle(api, request(topic, partition, replicas));
        assert_eq!(r.error_code, 0);
        r.responses[0].partitions[0].error_code
    }

    /// On a single node the only target is the node itself: a no-op; everything else gets
    /// Kafka's per-partition codes, and nothing is listed.
    #[test]
    fn a_single_node_answers_with_kafkas_codes() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        let me = api.broker.node_id;
        assert_eq!(code(&api, "t", 0, Some(vec![me])), 0);
        assert_eq!(code(&api, "t", 0, Some(vec![me + 7])), ResponseError::InvalidReplicaAssignment.code());
        assert_eq!(code(&api, "t", 0, Some(vec![me, me])), ResponseError::InvalidReplicaAssignment.code());
        assert_eq!(code(&api, "t", 0, Some(vec![])), ResponseError::InvalidReplicaAssignment.code());
        assert_eq!(code(&api, "t", 9, Some(vec![me])), ResponseError::UnknownTopicOrPartition.code());
        assert_eq!(code(&api, "nope", 0, Some(vec![me])), ResponseError::UnknownTopicOrPartition.code());
        assert_eq!(code(&api, "t", 0, None), ResponseError::NoReassignmentInProgress.code());
        let listed = crate::api::list_partition_reassignments::handle(&api, ListPartitionReassignmentsRequest::default());
        assert_eq!((listed.error_code, listed.topics.len()), (0, 0));
    }
}
