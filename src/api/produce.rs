//! Produce: validate each partition's record batches in one pass, append them as received
//! (offsets patched in place), answer with the base offsets. acks=0 gets no answer; a failed
//! acks=0 request closes the connection, as Kafka does. Records are decoded only where a rule
//! needs them (keys for a compacted topic, timestamps the batch header cannot vouch for); each
//! refused record is then named in `record_errors` (v8+), as Kafka's `LogValidator` does.
//! A transactional batch that would open a transaction in its partition is first checked with
//! the transaction coordinator (KIP-890 part 1, `transaction.partition.verification.enable`),
//! on this node or another ([`crate::cluster::txn_verify`]), once for the whole request:
//! the partition must be in the producer's open transaction, so a zombie cannot start a
//! transaction nobody will ever end. From v12 (transactions version 2, KIP-890 part 2) the
//! coordinator adds the partition instead, whatever that setting says, as Kafka does; while
//! the producer's previous transaction completes (CONCURRENT_TRANSACTIONS) the add is retried
//! for up to `add.partitions.to.txn.retry.backoff.max.ms`, and then that error is answered
//! as it is (the client retries).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};

use super::{Api, Reply, RequestContext, errors, str_bytes};
use crate::cluster::txn_verify::TxnOperation;
use crate::log::{FaultyRecord, RecordChecks, RecordFault, TimestampBounds};
use crate::partition::AppendResult;
use crate::record;
use crate::types::{ProducerId, TopicPartition};

pub async fn handle(api: &Api, ctx: &RequestContext, req: ProduceRequest) -> Reply {
    let broker = &api.broker;
    let acks = req.acks;
    let mut any_error = false;
    let mut response = ProduceResponse::default();
    let image = broker.image();
    // Partitions whose flush policy wants an fsync before the answer, by response position.
    let mut to_sync: Vec<(usize, usize, TopicPartition)> = Vec::new();
    // acks=all: partitions whose high watermark must pass an offset before the answer.
    let mut to_replicate: Vec<(usize, usize, TopicPartition, i64)> = Vec::new();
    let verified = verify_request(api, &req, ctx.version).await;
    let txn = Txn { id: req.transactional_id.as_ref().map(|t| t.as_str()), version: ctx.version, verified: &verified };
    for topic in req.topic_data {
        let by_id = ctx.version >= 13;
        let topic_image = if by_id { image.topic_by_id(&topic.topic_id) } else { image.topic(topic.name.as_str()) };
        let mut tr = TopicProduceResponse::default();
        tr.name = if by_id { TopicName::default() } else { topic.name.clone() };
        tr.topic_id = topic.topic_id;
        for pd in topic.partition_data {
            let mut pr = PartitionProduceResponse::default();
            pr.index = pd.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            let outcome = match topic_image {
                None if by_id => Err(Rejection::new(ResponseError::UnknownTopicId, None)),
                None => Err(Rejection::new(ResponseError::UnknownTopicOrPartition, None)),
                Some(_) if !matches!(acks, -1..=1) => Err(Rejection::new(ResponseError::InvalidRequiredAcks, None)),
                Some(t) => append_partition(api, &t.name, pd.index, pd.records.as_deref(), acks, txn),
            };
            match outcome {
                Ok(a) => {
                    let position = (response.responses.len(), tr.partition_responses.len());
                    if a.flush_due && let Some(t) = topic_image {
                        to_sync.push((position.0, position.1, TopicPartition::new(t.name.clone(), pd.index)));
                    }
                    if acks == -1 && let Some(t) = topic_image {
                        to_replicate.push((position.0, position.1, TopicPartition::new(t.name.clone(), pd.index), a.last_offset.0 + 1));
                    }
                    pr.base_offset = a.first_offset.0;
                    pr.log_append_time_ms = a.log_append_time_ms;
                    pr.log_start_offset = a.log_start_offset.0;
                }
                Err(rejection) => {
                    any_error = true;
                    pr.error_code = rejection.error.code();
                    pr.error_message = rejection.message.map(|m| str_bytes(&m));
                    pr.record_errors = rejection.record_errors;
                }
            }
            tr.partition_responses.push(pr);
        }
        response.responses.push(tr);
    }
    for (t, p, tp) in to_sync {
        if let Err(e) = sync_partition(api, tp).await {
            any_error = true;
            if let Some(pr) = response.responses.get_mut(t).and_then(|t| t.partition_responses.get_mut(p)) {
                pr.error_code = ResponseError::KafkaStorageError.code();
                pr.error_message = Some(str_bytes(&e));
                pr.base_offset = -1;
            }
        }
    }
    if !to_replicate.is_empty() {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
        for (t, p, tp, required) in to_replicate {
            if let Err(code) = wait_for_replication(api, &tp, required, deadline).await {
                any_error = true;
                if let Some(pr) = response.responses.get_mut(t).and_then(|t| t.partition_responses.get_mut(p))
                    && pr.error_code == 0
                {
                    pr.error_code = code.code();
                    pr.base_offset = -1;
                }
            }
        }
    }
    if any_error && ctx.version >= super::leader_hint::PRODUCE_MIN_VERSION {
        let mut hints = super::leader_hint::Hints::new(api);
        for t in &mut response.responses {
            let name = if ctx.version >= 13 {
                image.topic_by_id(&t.topic_id).map(|x| x.name.clone()).unwrap_or_default()
            } else {
                t.name.as_str().to_string()
            };
            for pr in t.partition_responses.iter_mut().filter(|p| super::leader_hint::wants_hint(p.error_code)) {
                if let Some(h) = hints.hint(&name, pr.index) {
                    pr.current_leader.leader_id = kafka_protocol::messages::BrokerId(h.leader);
                    pr.current_leader.leader_epoch = h.epoch;
                }
            }
        }
        response.node_endpoints = hints.produce_endpoints();
    }
    if acks == 0 {
        return if any_error { Reply::Close } else { Reply::NoResponse };
    }
    Reply::Response(ResponseKind::Produce(response))
}

/// fsyncs one partition on a blocking thread, so the runtime keeps serving other
/// connections meanwhile; concurrent producers share one fsync (`Partition::sync`).
async fn sync_partition(api: &Api, tp: TopicPartition) -> Result<(), String> {
    let Some(partition) = api.broker.partition(&tp) else {
        return Err(format!("{tp:?} went away before its flush"));
    };
    let now_ms = api.broker.clock.now_ms();
    match tokio::task::spawn_blocking(move || partition.sync(now_ms)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "fsync failed");
            Err(e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// acks=all: waits for the partition's high watermark to reach `required`
/// ([`crate::partition::Partition::wait_replicated`]); leadership lost meanwhile answers
/// NOT_LEADER_OR_FOLLOWER, the deadline REQUEST_TIMED_OUT, a shrunk ISR
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND.
async fn wait_for_replication(api: &Api, tp: &TopicPartition, required: i64, deadline: tokio::time::Instant) -> Result<(), ResponseError> {
    use crate::partition::ReplicationWait;
    let Some(partition) = api.broker.partition(tp) else { return Err(ResponseError::NotLeaderOrFollower) };
    let epoch = partition.leader_epoch();
    // Cut off from the controller past the session timeout: leadership has moved or is
    // about to (see `Cluster::session_lapsed`).
    let session_lapsed = || api.broker.cluster().is_some_and(|c| c.session_lapsed());
    partition.wait_replicated(crate::types::Offset(required), epoch, deadline, session_lapsed).await.map_err(|e| match e {
        ReplicationWait::NotLeader => ResponseError::NotLeaderOrFollower,
        ReplicationWait::TimedOut => ResponseError::RequestTimedOut,
        ReplicationWait::BelowMinIsr => ResponseError::NotEnoughReplicasAfterAppend,
    })
}

/// Why a partition's records are refused: the error code, the partition's `error_message`
/// and, for faults of single records, each one's index and message (Produce v8+ carries them,
/// so a client fails those records and retries the rest).
struct Rejection {
    error: ResponseError,
    message: Option<String>,
    record_errors: Vec<BatchIndexAndErrorMessage>,
}

impl Rejection {
    fn new(error: ResponseError, message: Option<String>) -> Self {
        Rejection { error, message, record_errors: Vec::new() }
    }

    /// Kafka's `LogValidator.processRecordErrors`: INVALID_TIMESTAMP if any record's timestamp
    /// is out of range, INVALID_RECORD otherwise; every refused record is listed.
    fn of_records(faults: &[FaultyRecord], topic_partition: &str, bounds: Option<TimestampBounds>) -> Self {
        let describe = |f: &FaultyRecord| match (f.fault, bounds) {
            (RecordFault::Timestamp { timestamp, offset }, Some(b)) => format!(
                "Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{}, {}]",
                b.now_ms.saturating_sub(b.before_max_ms),
                b.now_ms.saturating_add(b.after_max_ms)
            ),
            (RecordFault::Timestamp { timestamp, offset }, None) => {
                format!("Timestamp {timestamp} of message with offset {offset} is out of range")
            }
            (RecordFault::NoKey, _) => {
                format!("Compacted topic cannot accept message without key in topic partition {topic_partition}")
            }
        };
        let record_errors: Vec<BatchIndexAndErrorMessage> = faults
            .iter()
            .map(|f| {
                let mut e = BatchIndexAndErrorMessage::default();
                e.batch_index = f.batch_index;
                e.batch_index_error_message = Some(str_bytes(&describe(f)));
                e
            })
            .collect();
        if faults.iter().any(|f| matches!(f.fault, RecordFault::Timestamp { .. })) {
            let message = "One or more records have been rejected due to invalid timestamp".to_string();
            return Rejection { error: ResponseError::InvalidTimestamp, message: Some(message), record_errors };
        }
        let first: Vec<String> = faults
            .iter()
            .take(3)
            .map(|f| format!("RecordError(batchIndex={}, message='{}')", f.batch_index, describe(f)))
            .collect();
        let message = format!(
            "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
            faults.len(),
            first.join(", ")
        );
        Rejection { error: ResponseError::InvalidRecord, message: Some(message), record_errors }
    }
}

/// Whether the batch headers leave room for a record outside `bounds`: none is newer than
/// its batch's `maxTimestamp`, and with `before.max.ms` unbounded (the default) none is too
/// old, so the usual batch is not decoded. Anything else needs the records themselves.
fn timestamps_need_records(summary: &record::BatchesSummary, bounds: &TimestampBounds) -> bool {
    bounds.before_max_ms < i64::MAX || summary.batches.iter().any(|b| bounds.rejects(b.max_timestamp))
}

type PartitionOutcome = Result<AppendResult, Rejection>;

/// The request's transactional id and version, for verification.
#[derive(Clone, Copy)]
struct Txn<'a> {
    id: Option<&'a str>,
    version: i16,
    /// What the coordinator answered for the partitions [`verify_request`] asked about.
    verified: &'a Verified,
}

/// The coordinator's answer per partition, from before anything was appended.
type Verified = std::collections::HashMap<TopicPartition, Result<(), ResponseError>>;

/// Asks the transaction coordinator (here or on another node) about every partition whose
/// transactional batch would open a transaction here (v12+: has it add them): one question
/// for the whole request, before the appends, so that the request's other partitions do not
/// wait on it one by one.
async fn verify_request(api: &Api, req: &ProduceRequest, version: i16) -> Verified {
    let mut verified = Verified::new();
    let Some(id) = req.transactional_id.as_ref().map(|t| t.as_str()) else { return verified };
    let op = TxnOperation::of_produce(version);
    let txn = &api.broker.config.settings().txn;
    if !op.adds() && !txn.partition_verification {
        return verified;
    }
    let by_id = version >= 13;
    let mut wanted: std::collections::HashMap<(i64, i16), Vec<TopicPartition>> = std::collections::HashMap::new();
    {
        let image = api.broker.image();
        for topic in &req.topic_data {
            let Some(t) = (if by_id { image.topic_by_id(&topic.topic_id) } else { image.topic(topic.name.as_str()) }) else { continue };
            for pd in &topic.partition_data {
                let Some(header) = pd.records.as_deref().and_then(|r| record::BatchHeader::parse(r).ok()) else { continue };
                if !header.is_transactional() {
                    continue;
                }
                let tp = TopicPartition::new(t.name.clone(), pd.index);
                if api.broker.partition(&tp).is_none_or(|p| p.has_open_transaction(ProducerId(header.producer_id), header.producer_epoch)) {
                    continue;
                }
                wanted.entry((header.producer_id, header.producer_epoch)).or_default().push(tp);
            }
        }
    }
    // Adding retries CONCURRENT_TRANSACTIONS (the previous transaction completing) a little,
    // as Kafka's ReplicaManager: a produce request is costly for the client to retry.
    let retry_for = std::time::Duration::from_millis(txn.add_partitions_retry_backoff_max_ms).min(api.broker.config.settings().request_timeout);
    let backoff = std::time::Duration::from_millis(txn.add_partitions_retry_backoff_ms);
    let started = tokio::time::Instant::now();
    for ((producer_id, epoch), mut tps) in wanted {
        loop {
            let answers = api.txn_verifier.verify(id, producer_id, epoch, &tps, op).await;
            let (busy, done): (Vec<_>, Vec<_>) =
                tps.into_iter().zip(answers).partition(|(_, a)| op.adds() && *a == Err(ResponseError::ConcurrentTransactions));
            verified.extend(done);
            if busy.is_empty() {
                break;
            }
            if started.elapsed() + backoff > retry_for {
                verified.extend(busy);
                break;
            }
            tokio::time::sleep(backoff).await;
            tps = busy.into_iter().map(|(tp, _)| tp).collect();
        }
    }
    verified
}

/// KIP-890: a transactional batch that opens a transaction in `tp` must belong to the
/// producer's open transaction at the coordinator (v12+: was added to it).
fn verify_transaction(api: &Api, tp: &TopicPartition, header: &record::BatchHeader, txn: Txn<'_>) -> Result<(), Rejection> {
    let op = TxnOperation::of_produce(txn.version);
    if !header.is_transactional() || !(op.adds() || api.broker.config.settings().txn.partition_verification) {
        return Ok(());
    }
    let Some(partition) = api.broker.partition(tp) else { return Ok(()) };
    if partition.has_open_transaction(ProducerId(header.producer_id), header.producer_epoch) {
        return Ok(());
    }
    let Some(id) = txn.id else {
        return Err(Rejection::new(ResponseError::InvalidTxnState, Some("transactional batch without a transactional id".into())));
    };
    let answer = match txn.verified.get(tp) {
        Some(answer) => *answer,
        // Not asked before the appends (the partition's state changed since): this node's
        // coordinator answers, or the request is retried.
        None => api.txns.verify_partitions(id, header.producer_id, header.producer_epoch, std::slice::from_ref(tp)).into_iter().next().unwrap_or(Ok(())),
    };
    answer.map_err(|e| {
        let (error, message) = errors::produce_verification_error(e, op);
        Rejection::new(error, message)
    })
}

fn append_partition(
    api: &Api,
    topic: &str,
    index: i32,
    records: Option<&[u8]>,
    acks: i16,
    txn: Txn<'_>,
) -> PartitionOutcome {
    let broker = &api.broker;
    let Some(partition) = broker.partition(&TopicPartition::new(topic, index)) else {
        return Err(Rejection::new(ResponseError::UnknownTopicOrPartition, None));
    };
    if !broker.leads(topic, index) || !partition.is_leader() {
        return Err(Rejection::new(ResponseError::NotLeaderOrFollower, None));
    }
    let Some(records) = records else {
        return Err(Rejection::new(ResponseError::InvalidRecord, Some("null record set".into())));
    };
    // The topic's configs, parsed when they last changed.
    let config = partition.config();
    if acks == -1 {
        // Kafka refuses before appending when the ISR is already too small.
        let isr = partition.isr().map_or(0, |(isr, _)| isr.len());
        if isr < usize::try_from(config.min_insync_replicas.max(1)).unwrap_or(1) {
            return Err(Rejection::new(ResponseError::NotEnoughReplicas, None));
        }
    }
    let summary = match record::validate_batches(records, config.max_message_bytes) {
        Ok(s) => s,
        Err(e) => return Err(Rejection::new(errors::record_error(&e), Some(e.to_string()))),
    };
    if summary.batches.len() != 1 {
        // Produce v3+ carries exactly one batch per partition.
        return Err(Rejection::new(
            ResponseError::InvalidRecord,
            Some("Produce requests with version 3 and above must contain exactly one record batch per partition".into()),
        ));
    }
    let bounds = (config.message_timestamp_type == crate::log::MessageTimestampType::CreateTime).then(|| TimestampBounds {
        now_ms: broker.clock.now_ms(),
        before_max_ms: config.message_timestamp_before_max_ms,
        after_max_ms: config.message_timestamp_after_max_ms,
    });
    let checks = RecordChecks {
        require_key: config.cleanup_policy.compacts(),
        timestamps: bounds.filter(|b| timestamps_need_records(&summary, b)),
    };
    let topic_partition = format!("{topic}-{index}");
    let faults = crate::log::check_records(records, &checks).map_err(|reason| {
        Rejection::new(ResponseError::InvalidRecord, Some(format!("{reason} in topic partition {topic_partition}")))
    })?;
    if !faults.is_empty() {
        return Err(Rejection::of_records(&faults, &topic_partition, checks.timestamps));
    }
    if let Some(header) = summary.first() {
        verify_transaction(api, &TopicPartition::new(topic, index), header, txn)?;
    }
    // Written straight from the request frame: the log patches copies of the headers.
    partition
        .append(records, broker.clock.now_ms())
        .map_err(|e| Rejection::new(errors::partition_error(&e), Some(e.to_string())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    const BOUNDS: TimestampBounds = TimestampBounds { now_ms: 10_000, before_max_ms: i64::MAX, after_max_ms: 500 };

    #[test]
    fn keyless_records_make_one_invalid_record_naming_the_first_three() {
        let faults: Vec<FaultyRecord> =
            [2, 5, 7, 9].iter().map(|&batch_index| FaultyRecord { batch_index, fault: RecordFault::NoKey }).collect();
        let r = Rejection::of_records(&faults, "t-0", None);
        assert_eq!(r.error, ResponseError::InvalidRecord);
        assert_eq!(r.record_errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(), vec![2, 5, 7, 9]);
        let why = "Compacted topic cannot accept message without key in topic partition t-0";
        assert_eq!(r.record_errors[0].batch_index_error_message.as_deref(), Some(why));
        assert_eq!(
            r.message.as_deref(),
            Some(&*format!(
                "One or more records have been rejected due to 4 record errors in total, and only showing the first three errors at most: [RecordError(batchIndex=2, message='{why}'), RecordError(batchIndex=5, message='{why}'), RecordError(batchIndex=7, message='{why}')]"
            ))
        );
    }

    #[test]
    fn a_bad_timestamp_makes_the_whole_answer_invalid_timestamp() {
        let faults = [
            FaultyRecord { batch_index: 0, fault: RecordFault::NoKey },
            FaultyRecord { batch_index: 1, fault: RecordFault::Timestamp { timestamp: 20_000, offset: 1 } },
        ];
        let r = Rejection::of_records(&faults, "t-0", Some(BOUNDS));
        assert_eq!(r.error, ResponseError::InvalidTimestamp);
        assert_eq!(r.message.as_deref(), Some("One or more records have been rejected due to invalid timestamp"));
        assert_eq!(
            r.record_errors[1].batch_index_error_message.as_deref(),
            Some(&*format!(
                "Timestamp 20000 of message with offset 1 is out of range. The timestamp should be within [{}, 10500]",
                10_000 - i64::MAX
            ))
        );
    }

    /// With the default unbounded `before.max.ms`, only a batch whose maxTimestamp is too new
    /// is decoded; a bounded `before.max.ms` needs the records.
    #[test]
    fn only_suspect_batches_are_decoded_for_timestamps() {
        let summary = |max_ts: i64| {
            let batch = BatchBuilder::new(0).timestamps(max_ts).records(1, 1).build();
            record::validate_batches(&batch, 1 << 20).unwrap()
        };
        assert!(!timestamps_need_records(&summary(10_500), &BOUNDS));
        assert!(!timestamps_need_records(&summary(0), &BOUNDS));
        assert!(timestamps_need_records(&summary(10_501), &BOUNDS));
        let bounded = TimestampBounds { before_max_ms: 60_000, ..BOUNDS };
        assert!(timestamps_need_records(&summary(10_000), &bounded));
    }
}
