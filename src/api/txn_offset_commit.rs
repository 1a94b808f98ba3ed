//! TxnOffsetCommit: offsets committed inside a transaction (KIP-447: the consumer's
//! generation, member id and instance id are checked when given), pending until the
//! transaction's marker reaches the group's `__consumer_offsets` partition. As for Produce,
//! the first write of a transaction to that partition goes by the transaction coordinator
//! (KIP-890): up to v4 the partition must be in the producer's transaction (AddOffsetsToTxn
//! put it there); v5 is transactions version 2, whose client sends no AddOffsetsToTxn, and
//! the coordinator adds the partition (whatever `transaction.partition.verification.enable`
//! says, as Kafka).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::{Api, errors};
use crate::cluster::txn_verify::TxnOperation;
use crate::group::{OFFSETS_TOPIC, TxnOffsetCommit};
use crate::types::{ProducerId, TopicPartition};

async fn verify(api: &Api, version: i16, req: &TxnOffsetCommitRequest) -> Result<(), ResponseError> {
    let op = TxnOperation::of_txn_offset_commit(version);
    if !op.adds() && !api.broker.config.settings().txn.partition_verification {
        return Ok(());
    }
    if op.adds() {
        // The partition must be the one the group's offsets go to, so the topic exists first
        // (AddOffsetsToTxn does the same for version 1).
        api.groups.ensure_offsets_topic().map_err(|e| {
            tracing::error!(error = %e, "cannot create __consumer_offsets");
            ResponseError::CoordinatorNotAvailable
        })?;
    }
    let tp = TopicPartition::new(OFFSETS_TOPIC, api.groups.partition_for(req.group_id.as_str()));
    if api.broker.partition(&tp).is_some_and(|p| p.has_open_transaction(ProducerId(req.producer_id.0), req.producer_epoch)) {
        return Ok(());
    }
    let verified = api.txn_verifier.verify(req.transactional_id.as_str(), req.producer_id.0, req.producer_epoch, &[tp], op).await;
    match verified.into_iter().next().unwrap_or(Ok(())) {
        Ok(()) => Ok(()),
        Err(e) => Err(errors::offset_commit_verification_error(e, op)),
    }
}

pub async fn handle(api: &Api, version: i16, req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
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
    let committed = verify(api, version, &req).await.and_then(|()| {
        api.groups.txn_commit_offsets(
        req.group_id.as_str(),
        req.producer_id.0,
        req.producer_epoch,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
        req.generation_id,
        commits,
        )
    });
    let committed = match committed {
        Ok(results) if results.iter().any(Result::is_ok) => match super::replicated(api, req.group_id.as_str()).await {
            Ok(()) => Ok(results),
            Err(e) => Ok(results.into_iter().map(|r| r.and(Err(e))).collect()),
        },
        other => other,
    };
    let results: Vec<Result<(), ResponseError>> = match committed {
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
