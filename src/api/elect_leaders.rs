//! ElectLeaders (KIP-460), v0-2: preferred or unclean leader elections an operator asks for
//! (`kafka-leader-election`). The rules are [`crate::metadata::election`]; this file decodes,
//! runs every named partition's election in one metadata change, and answers per partition
//! as Kafka's controller does: a request naming no partitions (null) elects every partition
//! that needs it and lists only those, one naming partitions lists each. A node that is not
//! the active controller forwards the request to it.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{Api, errors, str_bytes};
use crate::metadata::election::{self, ElectionError, ElectionType};
use crate::types::PartitionId;

/// One partition's outcome before it is encoded.
type Outcome = (i32, Result<(), ElectionError>);

pub fn handle(api: &Api, version: i16, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let mut r = ElectLeadersResponse::default();
    let kind = if version == 0 { Some(ElectionType::Preferred) } else { ElectionType::from_wire(req.election_type) };
    let Some(kind) = kind else {
        // Kafka throws InvalidRequestException: the whole request fails.
        r.error_code = ResponseError::InvalidRequest.code();
        return r;
    };
    let all = req.topic_partitions.is_none();
    let asked: Option<Vec<(TopicName, Vec<i32>)>> =
        req.topic_partitions.map(|ts| ts.into_iter().map(|t| (t.topic, t.partitions)).collect());
    let decided = api.broker.apply_metadata(|image| {
        let wanted: Vec<(TopicName, Vec<i32>)> = match &asked {
            Some(a) => a.clone(),
            None => image
                .topics
                .values()
                .map(|t| (TopicName(str_bytes(&t.name)), t.partitions.keys().map(|p| p.0).collect()))
                .collect(),
        };
        let mut work = image.clone();
        let mut records = Vec::new();
        let mut results: Vec<(TopicName, Vec<Outcome>)> = Vec::with_capacity(wanted.len());
        for (topic, partitions) in wanted {
            let mut outcomes = Vec::with_capacity(partitions.len());
            for p in partitions {
                match election::elect(&work, &crate::metadata::partition_change::TopicDefaults::from_config(&api.broker.effective_config()), topic.as_str(), PartitionId(p), kind) {
                    Ok(record) => {
                        work.replay(&record);
                        records.push(record);
                        outcomes.push((p, Ok(())));
                    }
                    Err(e) => outcomes.push((p, Err(e))),
                }
            }
            results.push((topic, outcomes));
        }
        Ok((records, results))
    });
    match decided {
        Ok(results) => {
            for (topic, outcomes) in results {
                let mut tr = ReplicaElectionResult::default();
                tr.topic = topic;
                for (p, outcome) in outcomes {
                    if all && outcome == Err(ElectionError::ElectionNotNeeded) {
                        continue;
                    }
                    let mut pr = PartitionResult::default();
                    pr.partition_id = p;
                    if let Err(e) = outcome {
                        pr.error_code = errors::election_error(&e).code();
                        pr.error_message = Some(str_bytes(&e.message()));
                    }
                    tr.partition_result.push(pr);
                }
                r.replica_election_results.push(tr);
            }
        }
        Err(e) => {
            // Nothing was elected (the change was not committed): every partition says why.
            let code = errors::broker_error(&e).code();
            let message = e.to_string();
            for (topic, partitions) in asked.unwrap_or_default() {
                let mut tr = ReplicaElectionResult::default();
                tr.topic = topic;
                for p in partitions {
                    let mut pr = PartitionResult::default();
                    pr.partition_id = p;
                    pr.error_code = code;
                    pr.error_message = Some(str_bytes(&message));
                    tr.partition_result.push(pr);
                }
                r.replica_election_results.push(tr);
            }
            if all {
                r.error_code = code;
            }
        }
    }
    r
}
