//! AddPartitionsToTxn: v0-3 (a producer adds partitions to its transaction) and the batched
//! v4-5 form brokers use, whose `verify_only` transactions ask whether partitions are already
//! in (KIP-890 part 1) and whose other transactions add the partitions a transactions
//! version 2 client produced to (KIP-890 part 2: v4+ is version 2 at the coordinator, as
//! Kafka's `transactionVersionForAddPartitionsToTxn`). v5 differs from v4 only in that its
//! clients know TRANSACTION_ABORTABLE, which the coordinator's verification answers either
//! way. A partition of an unknown topic fails the whole transaction's request: it gets
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as in Kafka.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName};

use super::{Api, errors};
use crate::types::TopicPartition;

/// First version of the batched, broker-to-coordinator form.
const BATCHED_MIN_VERSION: i16 = 4;
/// First version whose clients know PRODUCER_FENCED.
const PRODUCER_FENCED_MIN_VERSION: i16 = 2;

pub async fn handle(api: &Api, version: i16, req: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let mut r = AddPartitionsToTxnResponse::default();
    if version < BATCHED_MIN_VERSION {
        let id = req.v3_and_below_transactional_id.to_string();
        let pid = req.v3_and_below_producer_id.0;
        let partitions = flatten(&req.v3_and_below_topics);
        let results = replicated(api, &id, add(api, version, &id, pid, req.v3_and_below_producer_epoch, &partitions)).await;
        r.results_by_topic_v3_and_below = by_topic(&partitions, &results);
        return r;
    }
    for t in req.transactions {
        let id = t.transactional_id.to_string();
        let partitions = flatten(&t.topics);
        let results = if t.verify_only {
            api.txns.verify_partitions(&id, t.producer_id.0, t.producer_epoch, &partitions)
        } else {
            replicated(api, &id, add(api, version, &id, t.producer_id.0, t.producer_epoch, &partitions)).await
        };
        let mut tr = AddPartitionsToTxnResult::default();
        tr.transactional_id = t.transactional_id;
        tr.topic_results = by_topic(&partitions, &results);
        r.results_by_transaction.push(tr);
    }
    r
}

/// Successful results stand once the transaction's state is replicated.
async fn replicated(api: &Api, id: &str, results: Vec<Result<(), ResponseError>>) -> Vec<Result<(), ResponseError>> {
    if !results.iter().any(Result::is_ok) {
        return results;
    }
    match super::txn_replicated(api, id).await {
        Ok(()) => results,
        Err(e) => results.into_iter().map(|r| r.and(Err(e))).collect(),
    }
}

fn flatten(topics: &[AddPartitionsToTxnTopic]) -> Vec<TopicPartition> {
    topics.iter().flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.name.to_string(), *p))).collect()
}

/// One result per partition, in order.
fn add(api: &Api, version: i16, id: &str, producer_id: i64, epoch: i16, partitions: &[TopicPartition]) -> Vec<Result<(), ResponseError>> {
    let image = api.broker.image();
    let known = |tp: &TopicPartition| image.topic(&tp.topic).is_some_and(|t| t.partition(tp.partition.0).is_some());
    if !partitions.iter().all(known) {
        return partitions
            .iter()
            .map(|tp| Err(if known(tp) { ResponseError::OperationNotAttempted } else { ResponseError::UnknownTopicOrPartition }))
            .collect();
    }
    let set: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
    let result = api
        .txns
        .add_partitions(id, producer_id, epoch, &set, crate::txn::TxnVersion::of_add_partitions(version))
        .map_err(|e| errors::fenced_for_version(e, version, PRODUCER_FENCED_MIN_VERSION));
    partitions.iter().map(|_| result).collect()
}

fn by_topic(partitions: &[TopicPartition], results: &[Result<(), ResponseError>]) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (tp, result) in partitions.iter().zip(results) {
        let mut pr = AddPartitionsToTxnPartitionResult::default();
        pr.partition_index = tp.partition.0;
        pr.partition_error_code = result.err().map_or(0, |e| e.code());
        match out.iter_mut().find(|t| t.name.as_str() == tp.topic) {
            Some(t) => t.results_by_partition.push(pr),
            None => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(super::str_bytes(&tp.topic));
                t.results_by_partition.push(pr);
                out.push(t);
            }
        }
    }
    out
}
