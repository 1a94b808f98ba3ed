//! Produce: validate each partition's record batches in one pass, append them as received
//! (offsets patched in place), answer with the base offsets. acks=0 gets no answer; a failed
//! acks=0 request closes the connection, as Kafka does.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};

use super::{Api, Reply, RequestContext, errors, str_bytes};
use crate::partition::AppendResult;
use crate::record;
use crate::types::TopicPartition;

pub async fn handle(api: &Api, ctx: &RequestContext, req: ProduceRequest) -> Reply {
    let broker = &api.broker;
    let acks = req.acks;
    let mut any_error = false;
    let mut response = ProduceResponse::default();
    let image = broker.image();
    // Partitions whose flush policy wants an fsync before the answer, by response position.
    let mut to_sync: Vec<(usize, usize, TopicPartition)> = Vec::new();
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
                None if by_id => Err((ResponseError::UnknownTopicId, None)),
                None => Err((ResponseError::UnknownTopicOrPartition, None)),
                Some(t) if !matches!(acks, -1..=1) => {
                    let _ = t;
                    Err((ResponseError::InvalidRequiredAcks, None))
                }
                Some(t) => append_partition(api, &t.name, pd.index, pd.records.as_deref(), acks, t),
            };
            match outcome {
                Ok(a) => {
                    if a.flush_due && let Some(t) = topic_image {
                        let position = (response.responses.len(), tr.partition_responses.len());
                        to_sync.push((position.0, position.1, TopicPartition::new(t.name.clone(), pd.index)));
                    }
                    pr.base_offset = a.first_offset;
                    pr.log_append_time_ms = a.log_append_time_ms;
                    pr.log_start_offset = a.log_start_offset;
                }
                Err((code, message)) => {
                    any_error = true;
                    pr.error_code = code.code();
                    pr.error_message = message.map(|m| str_bytes(&m));
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

/// Kafka's `message.timestamp.before/after.max.ms`, checked on batch headers (the first and
/// largest timestamps) so records need not be decoded.
fn check_timestamps(
    summary: &record::BatchesSummary,
    now_ms: i64,
    before_max_ms: i64,
    after_max_ms: i64,
) -> Result<(), (ResponseError, Option<String>)> {
    for b in &summary.batches {
        let too_old = b.base_timestamp >= 0 && now_ms.saturating_sub(b.base_timestamp) > before_max_ms;
        let too_new = b.max_timestamp.saturating_sub(now_ms) > after_max_ms;
        if too_old || too_new {
            return Err((
                ResponseError::InvalidTimestamp,
                Some(format!(
                    "Timestamp {} of the batch is out of range: it must be within [{}, {}] of the broker's time {now_ms}",
                    if too_old { b.base_timestamp } else { b.max_timestamp },
                    before_max_ms,
                    after_max_ms
                )),
            ));
        }
    }
    Ok(())
}

type PartitionOutcome = Result<AppendResult, (ResponseError, Option<String>)>;

fn append_partition(
    api: &Api,
    topic: &str,
    index: i32,
    records: Option<&[u8]>,
    acks: i16,
    t: &crate::metadata::TopicImage,
) -> PartitionOutcome {
    let broker = &api.broker;
    let Some(partition) = broker.partition(&TopicPartition::new(topic, index)) else {
        return Err((ResponseError::UnknownTopicOrPartition, None));
    };
    let Some(records) = records else {
        return Err((ResponseError::InvalidRecord, Some("null record set".into())));
    };
    let config = broker.log_config(t);
    if acks == -1 {
        let min_isr = t
            .configs
            .get("min.insync.replicas")
            .cloned()
            .or_else(|| broker.config.topic_default("min.insync.replicas"))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(1);
        // On one node the ISR is this broker alone.
        if min_isr > 1 {
            return Err((ResponseError::NotEnoughReplicas, None));
        }
    }
    let summary = match record::validate_batches(records, config.max_message_bytes) {
        Ok(s) => s,
        Err(e) => return Err((errors::record_error(&e), Some(e.to_string()))),
    };
    if summary.batches.len() != 1 {
        // Produce v3+ carries exactly one batch per partition.
        return Err((ResponseError::InvalidRecord, Some("Produce requests with version 3 and above must contain exactly one record batch per partition".into())));
    }
    if config.message_timestamp_type == crate::log::MessageTimestampType::CreateTime {
        let setting = |key: &str| {
            t.configs.get(key).cloned().or_else(|| broker.config.topic_default(key)).and_then(|v| v.parse::<i64>().ok())
        };
        let before_max = setting("message.timestamp.before.max.ms").unwrap_or(i64::MAX);
        let after_max = setting("message.timestamp.after.max.ms").unwrap_or(i64::MAX);
        check_timestamps(&summary, broker.clock.now_ms(), before_max, after_max)?;
    }
    if config.cleanup_policy.compacts() {
        if let Err(reason) = crate::log::check_keys_for_compaction(records) {
            return Err((ResponseError::InvalidRecord, Some(format!("{reason} in topic partition {topic}-{index}"))));
        }
    }
    // Written straight from the request frame: the log patches copies of the headers.
    partition
        .append(records, broker.clock.now_ms())
        .map_err(|e| (errors::partition_error(&e), Some(e.to_string())))
}
