//! TxnOffsetCommit: offsets committed inside a transaction (KIP-447: the consumer's
//! generation, member id and instance id are checked when given), pending until the
//! transaction's marker reaches the group's `__consumer_offsets` partition.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::Api;
use crate::group::TxnOffsetCommit;

pub fn handle(api: &Api, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let mut commits = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            commits.push(TxnOffsetCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let results: Vec<Result<(), ResponseError>> = match api.groups.txn_commit_offsets(
        req.group_id.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
        commits,
    ) {
        Ok(results) => results,
        Err(e) => req.topics.iter().flat_map(|t| t.partitions.iter().map(move |_| Err(e))).collect(),
    };
    let mut r = TxnOffsetCommitResponse::default();
    let mut results = results.into_iter();
    for t in req.topics {
        let mut tr = TxnOffsetCommitResponseTopic::default();
        tr.name = t.name;
        for p in t.partitions {
            let mut pr = TxnOffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = results.next().and_then(|r| r.err()).map_or(0, |e| e.code());
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
