//! Fetch: read stored batches from each partition, unmodified, bounded by the high watermark
//! (read_uncommitted) or the last stable offset (read_committed, which also lists the aborted
//! transactions from the transaction indexes) and the request's byte limits; long-poll until `min_bytes` arrive or `max_wait_ms` passes,
//! woken by appends to the partitions it reads. Full and incremental fetch sessions (KIP-227)
//! decide which partitions the request covers and which the response carries. Record sets
//! go to the socket by reference, not through the encoder (`response_frame`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::sync::Notify;
use uuid::Uuid;

use super::fetch_session::{FINAL_EPOCH, INITIAL_EPOCH, PartitionKey, SessionPartition};
use super::{Api, RequestContext, errors, str_bytes};
use super::response_frame::ByReference;
use crate::log::AbortedTxn;
use crate::partition::{DivergingEpoch, Isolation, PartitionError, RecordSet};
use crate::replication::selector;
use crate::replication::throttle::{self, TokenBucket};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, TopicPartition};

/// Longest long poll we honour, whatever the client asks.
pub const MAX_WAIT_MS_MAX: i32 = 30_000;

/// What the request covers, after applying the session.
enum Mode {
    /// Sessionless full fetch; `create` opens a session afterwards.
    Full { create: bool },
    Incremental { session_id: i32 },
}

/// Who is fetching: a consumer, or a follower replica (Kafka's `replica_id` before v15,
/// `replica_state` since, KIP-903). A consumer's `rack` (v11+, possibly empty) is Kafka's
/// client metadata: with it the consumer may read from a follower (KIP-392).
#[derive(Debug, Clone)]
struct Fetcher {
    replica: Option<NodeId>,
    broker_epoch: Option<BrokerEpoch>,
    rack: Option<String>,
}

impl Fetcher {
    fn of(req: &FetchRequest, version: i16) -> Self {
        let (id, epoch) = if version >= 15 {
            (req.replica_state.replica_id.0, req.replica_state.replica_epoch)
        } else {
            (req.replica_id.0, -1)
        };
        let replica = (id >= 0).then_some(NodeId(id));
        let rack = (replica.is_none() && version >= 11).then(|| req.rack_id.to_string());
        Fetcher { replica, broker_epoch: (epoch >= 0).then_some(BrokerEpoch(epoch)), rack }
    }
}

/// The outcome for one partition.
struct PartitionResult {
    key: PartitionKey,
    topic_id: Uuid,
    error: ResponseError,
    has_error: bool,
    records: RecordSet,
    high_watermark: Offset,
    last_stable_offset: Offset,
    log_start_offset: Offset,
    aborted: Option<Vec<AbortedTxn>>,
    diverging: Option<DivergingEpoch>,
    /// A follower's read of a replica the leader throttle covers: its bytes draw on it.
    throttled: bool,
    /// KIP-392: the consumer should fetch this partition from that replica.
    preferred_read_replica: Option<NodeId>,
}

/// The response and its record sets to send by reference, in encoding order.
pub async fn handle(api: &Api, ctx: &RequestContext, req: FetchRequest) -> (FetchResponse, Vec<ByReference>) {
    let by_id = ctx.version >= 13;
    let (mode, targets) = match resolve(api, &req, by_id, ctx.version) {
        Ok(x) => x,
        Err(code) => {
            let mut r = FetchResponse::default();
            r.error_code = code.code();
            return (r, Vec::new());
        }
    };
    let fetcher = Fetcher::of(&req, ctx.version);
    let results = read_with_wait(api, &req, &fetcher, &targets).await;
    if fetcher.replica.is_some() {
        // Counted once per answer (a long poll may read more than once).
        let m = &api.broker.metrics;
        m.follower_fetches.inc();
        m.replication_bytes_out.inc_by(results.iter().map(|r| r.records.len() as u64).sum());
        let throttled: u64 = results.iter().filter(|r| r.throttled).map(|r| r.records.len() as u64).sum();
        if throttled > 0 {
            lock_bucket(&api.leader_throttle).record(throttled, api.broker.clock.now_ms());
        }
    }
    let (mut response, by_reference) = respond(api, &req, by_id, mode, targets, results);
    if ctx.version >= super::leader_hint::FETCH_MIN_VERSION {
        add_leader_hints(api, &mut response);
    }
    (response, by_reference)
}

/// Works out the partitions to read and their fetch positions from the request and session.
fn resolve(
    api: &Api,
    req: &FetchRequest,
    by_id: bool,
    version: i16,
) -> Result<(Mode, IndexMap<PartitionKey, SessionPartition>), ResponseError> {
    let image = api.broker.image();
    let name_of = |name: &TopicName, id: &Uuid| -> String {
        if by_id {
            image.topic_by_id(id).map(|t| t.name.clone()).unwrap_or_default()
        } else {
            name.as_str().to_string()
        }
    };
    let mut requested = IndexMap::new();
    for t in &req.topics {
        let name = name_of(&t.topic, &t.topic_id);
        let topic_id = if by_id { t.topic_id } else { image.topic(&name).map(|x| x.id).unwrap_or_default() };
        for p in &t.partitions {
            requested.insert(
                (name.clone(), p.partition),
                SessionPartition {
                    topic_id,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: p.last_fetched_epoch,
                    log_start_offset: p.log_start_offset,
                    sent_high_watermark: -1,
                    sent_log_start_offset: -1,
                },
            );
        }
    }
    let mut sessions = match api.fetch_sessions.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if version < 7 {
        // Fetch sessions arrived in v7 (KIP-227).
        return Ok((Mode::Full { create: false }, requested));
    }
    match (req.session_id, req.session_epoch) {
        (0, FINAL_EPOCH) => Ok((Mode::Full { create: false }, requested)),
        (0, INITIAL_EPOCH) => Ok((Mode::Full { create: true }, requested)),
        (0, _) => Err(ResponseError::InvalidFetchSessionEpoch),
        (id, FINAL_EPOCH) => {
            sessions.remove(id);
            Ok((Mode::Full { create: false }, requested))
        }
        (id, INITIAL_EPOCH) => {
            sessions.remove(id);
            Ok((Mode::Full { create: true }, requested))
        }
        (id, epoch) => {
            let session = sessions.get(id, epoch)?;
            for (key, p) in requested {
                match session.partitions.get_mut(&key) {
                    Some(s) => {
                        s.fetch_offset = p.fetch_offset;
                        s.max_bytes = p.max_bytes;
                        s.current_leader_epoch = p.current_leader_epoch;
                        s.last_fetched_epoch = p.last_fetched_epoch;
                        s.log_start_offset = p.log_start_offset;
                    }
                    None => {
                        session.partitions.insert(key, p);
                    }
                }
            }
            for f in &req.forgotten_topics_data {
                let name = name_of(&f.topic, &f.topic_id);
                for p in &f.partitions {
                    session.partitions.shift_remove(&(name.clone(), *p));
                }
            }
            Ok((Mode::Incremental { session_id: id }, session.partitions.clone()))
        }
    }
}

/// Reads every target; if fewer than `min_bytes` came back and no error, waits for appends
/// until the deadline and reads again.
async fn read_with_wait(
    api: &Api,
    req: &FetchRequest,
    fetcher: &Fetcher,
    targets: &IndexMap<PartitionKey, SessionPartition>,
) -> Vec<PartitionResult> {
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    // Registered with every target partition before each read, so an append that lands
    // after the read still wakes us (`notify_one` keeps a permit).
    let waiter = Arc::new(Notify::new());
    loop {
        let results = read_all(api, req, fetcher, targets, Some(&waiter));
        let bytes: usize = results.iter().map(|r| r.records.len()).sum();
        // A partition sent to another replica answers at once, as an error does.
        let has_error = results.iter().any(|r| r.has_error || r.preferred_read_replica.is_some());
        if bytes >= req.min_bytes.max(0) as usize || has_error || targets.is_empty() {
            return results;
        }
        tokio::select! {
            _ = waiter.notified() => {}
            _ = tokio::time::sleep_until(deadline) => return read_all(api, req, fetcher, targets, None),
        }
        if tokio::time::Instant::now() >= deadline {
            return read_all(api, req, fetcher, targets, None);
        }
    }
}

fn read_all(
    api: &Api,
    req: &FetchRequest,
    fetcher: &Fetcher,
    targets: &IndexMap<PartitionKey, SessionPartition>,
    waiter: Option<&Arc<Notify>>,
) -> Vec<PartitionResult> {
    let broker_max = api.broker.config.settings().socket.fetch_bytes_max;
    let mut budget = (req.max_bytes.max(0) as usize).min(broker_max.max(1));
    let isolation = if req.isolation_level == 1 { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let mut first = true;
    targets
        .iter()
        .map(|(key, s)| {
            let r = read_one(api, isolation, fetcher, key, s, budget, first, waiter);
            if !r.records.is_empty() {
                first = false;
                budget = budget.saturating_sub(r.records.len());
            }
            r
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn read_one(
    api: &Api,
    isolation: Isolation,
    fetcher: &Fetcher,
    key: &PartitionKey,
    s: &SessionPartition,
    budget: usize,
    first: bool,
    waiter: Option<&Arc<Notify>>,
) -> PartitionResult {
    let mut r = PartitionResult {
        key: key.clone(),
        topic_id: s.topic_id,
        error: ResponseError::UnknownServerError,
        has_error: false,
        records: RecordSet::default(),
        high_watermark: Offset(-1),
        last_stable_offset: Offset(-1),
        log_start_offset: Offset(-1),
        aborted: None,
        diverging: None,
        throttled: false,
        preferred_read_replica: None,
    };
    let fail = |mut r: PartitionResult, e: ResponseError| {
        r.error = e;
        r.has_error = true;
        r
    };
    let Some(partition) = api.broker.partition(&TopicPartition::new(key.0.clone(), key.1)) else {
        let e = if key.0.is_empty() { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
        return fail(r, e);
    };
    // KIP-392: a consumer that sent client metadata may read from a follower (below the
    // follower's high watermark); anyone else reads from the leader only.
    let leads = partition.is_leader();
    let may_read_a_follower = fetcher.replica.is_none() && fetcher.rack.is_some();
    if !leads && !may_read_a_follower {
        return fail(r, ResponseError::NotLeaderOrFollower);
    }
    if let Some(w) = waiter {
        partition.watch_high_watermark(w);
    }
    let epoch = partition.leader_epoch().0;
    if s.current_leader_epoch > epoch {
        return fail(r, ResponseError::UnknownLeaderEpoch);
    }
    if s.current_leader_epoch >= 0 && s.current_leader_epoch < epoch {
        return fail(r, ResponseError::FencedLeaderEpoch);
    }
    let max_bytes = (s.max_bytes.max(0) as usize).min(budget);
    if let Some(follower) = fetcher.replica {
        return read_for_follower(api, &partition, follower, fetcher.broker_epoch, s, max_bytes, first, r);
    }
    if leads
        && let Some(rack) = fetcher.rack.as_deref()
        && let Some(id) = preferred_read_replica(api, &partition, rack, s.fetch_offset)
    {
        r.preferred_read_replica = Some(id);
        r.high_watermark = partition.high_watermark();
        r.last_stable_offset = partition.last_stable_offset();
        r.log_start_offset = partition.log_start_offset();
        return r;
    }
    match partition.read_for_fetch(Offset(s.fetch_offset), max_bytes, first, isolation) {
        Ok(read) => {
            r.records = read.records;
            r.aborted = read.aborted;
            r.high_watermark = read.high_watermark;
            r.last_stable_offset = read.last_stable_offset;
            r.log_start_offset = read.log_start_offset;
            r
        }
        // The offsets stay unknown (-1), as Kafka's `createLogReadResult` answers a failed
        // read: a consumer out of range then resets by its own policy (librdkafka would take
        // a log start offset sent here as its new position).
        Err(e) => {
            let code = match &e {
                PartitionError::Log(l) => errors::log_error(l),
                other => errors::partition_error(other),
            };
            fail(r, code)
        }
    }
}

/// A follower's fetch: records up to the log end (not the high watermark), after the KIP-320
/// divergence check; the fetch offset tells the leader what the follower holds, which may move
/// the high watermark and the ISR (the change goes to the controller).
#[allow(clippy::too_many_arguments)]
fn read_for_follower(
    api: &Api,
    partition: &crate::partition::Partition,
    follower: NodeId,
    broker_epoch: Option<BrokerEpoch>,
    s: &SessionPartition,
    max_bytes: usize,
    first: bool,
    mut r: PartitionResult,
) -> PartitionResult {
    let positions = |r: &mut PartitionResult| {
        r.high_watermark = partition.high_watermark();
        r.last_stable_offset = partition.last_stable_offset();
        r.log_start_offset = partition.log_start_offset();
    };
    if s.last_fetched_epoch >= 0
        && let Some(d) = partition.diverging_epoch(LeaderEpoch(s.last_fetched_epoch), Offset(s.fetch_offset))
    {
        positions(&mut r);
        r.diverging = Some(d);
        return r;
    }
    let now = api.broker.clock.now_ms().max(0) as u64;
    match partition.record_follower_fetch(follower, Offset(s.fetch_offset), Offset(s.log_start_offset), broker_epoch, now) {
        Ok(Some(change)) => api.broker.submit_isr_change(partition, change),
        Ok(None) => {}
        Err(e) => {
            positions(&mut r);
            r.error = errors::partition_error(&e);
            r.has_error = true;
            return r;
        }
    }
    let throttled = leader_throttled(api, partition);
    if throttled && !in_sync(partition, follower) && leader_throttle_exceeded(api) {
        // Kafka's `shouldLeaderThrottle`: an out-of-sync follower of a throttled replica gets
        // no records while the leader's quota is used up (the fetch waits as for no data).
        positions(&mut r);
        return r;
    }
    match partition.read_for_follower(Offset(s.fetch_offset), max_bytes, first) {
        Ok(read) => {
            r.records = read.records;
            r.throttled = throttled;
            positions(&mut r);
            r
        }
        Err(e) => {
            positions(&mut r);
            r.error = match &e {
                PartitionError::Log(l) => errors::log_error(l),
                other => errors::partition_error(other),
            };
            r.has_error = true;
            r
        }
    }
}

/// KIP-392 on the leader, with `replica.selector.class` set: the in-sync follower in the
/// consumer's rack that should serve it (see [`crate::replication::selector`]).
fn preferred_read_replica(api: &Api, partition: &crate::partition::Partition, rack: &str, fetch_offset: i64) -> Option<NodeId> {
    let settings = api.broker.config.settings();
    if !settings.replica.rack_aware_selector || rack.is_empty() {
        return None;
    }
    let image = api.broker.image();
    let now = api.broker.clock.now_ms().max(0) as u64;
    let mut followers = partition.read_replica_candidates(now);
    for f in &mut followers {
        let broker = image.brokers.get(&f.id);
        f.rack = broker.and_then(|b| b.rack.clone());
        f.reachable = broker.is_some_and(|b| !b.fenced && !b.endpoints.is_empty());
    }
    selector::preferred_read_replica(rack, settings.rack.as_deref(), Offset(fetch_offset), &followers)
}

/// Whether this leader's replica of `partition` is named by its topic's
/// `leader.replication.throttled.replicas`.
fn leader_throttled(api: &Api, partition: &crate::partition::Partition) -> bool {
    let image = api.broker.image();
    let value = image.topic(&partition.tp.topic).and_then(|t| t.configs.get(throttle::LEADER_REPLICAS));
    value.is_some() && throttle::is_throttled(value.map(String::as_str), partition.tp.partition, NodeId(api.broker.node_id))
}

fn in_sync(partition: &crate::partition::Partition, follower: NodeId) -> bool {
    partition.isr().is_some_and(|(isr, _)| isr.contains(&follower))
}

/// Whether the leader throttle is in debt, at the rate in force for this broker.
fn leader_throttle_exceeded(api: &Api) -> bool {
    let now = api.broker.clock.now_ms();
    let rate = throttle::rate(&api.broker.image().broker_configs, NodeId(api.broker.node_id), throttle::LEADER_RATE);
    let mut bucket = lock_bucket(&api.leader_throttle);
    bucket.set_rate(rate, now);
    bucket.throttled(now)
}

fn lock_bucket(bucket: &std::sync::Mutex<TokenBucket>) -> std::sync::MutexGuard<'_, TokenBucket> {
    match bucket.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// KIP-951's hints on partitions answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH
/// (Fetch v16+ names topics by id).
fn add_leader_hints(api: &Api, response: &mut FetchResponse) {
    let image = api.broker.image();
    let mut hints = super::leader_hint::Hints::new(api);
    for t in &mut response.responses {
        let Some(name) = image.topic_by_id(&t.topic_id).map(|x| x.name.clone()) else { continue };
        for p in t.partitions.iter_mut().filter(|p| super::leader_hint::wants_hint(p.error_code)) {
            if let Some(h) = hints.hint(&name, p.partition_index) {
                p.current_leader.leader_id = kafka_protocol::messages::BrokerId(h.leader);
                p.current_leader.leader_epoch = h.epoch;
            }
        }
    }
    response.node_endpoints = hints.fetch_endpoints();
}

/// Builds the response; for incremental sessions keeps only partitions with news.
fn respond(
    api: &Api,
    req: &FetchRequest,
    by_id: bool,
    mode: Mode,
    mut targets: IndexMap<PartitionKey, SessionPartition>,
    results: Vec<PartitionResult>,
) -> (FetchResponse, Vec<ByReference>) {
    let mut response = FetchResponse::default();
    let mut by_reference = Vec::new();
    let read_committed = req.isolation_level == 1;
    let mut sessions = match api.fetch_sessions.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let incremental = matches!(mode, Mode::Incremental { .. });
    let mut session = match mode {
        Mode::Incremental { session_id } => {
            response.session_id = session_id;
            sessions.get_any_epoch(session_id)
        }
        Mode::Full { .. } => None,
    };
    for r in results {
        let cached = match session.as_deref_mut() {
            Some(s) => s.partitions.get_mut(&r.key),
            None => targets.get_mut(&r.key),
        };
        let changed = r.has_error
            || !r.records.is_empty()
            || r.preferred_read_replica.is_some()
            || r.diverging.is_some()
            || cached.as_ref().is_none_or(|c| {
                c.sent_high_watermark != r.high_watermark.0 || c.sent_log_start_offset != r.log_start_offset.0
            });
        if let Some(c) = cached {
            c.sent_high_watermark = r.high_watermark.0;
            c.sent_log_start_offset = r.log_start_offset.0;
        }
        if incremental && !changed {
            continue;
        }
        push_partition(&mut response, &mut by_reference, by_id, read_committed, r);
    }
    if let Some(s) = session {
        s.advance_epoch();
    }
    if let Mode::Full { create: true } = mode {
        response.session_id = sessions.create(targets);
    }
    (response, by_reference)
}

fn push_partition(
    response: &mut FetchResponse,
    by_reference: &mut Vec<ByReference>,
    by_id: bool,
    read_committed: bool,
    r: PartitionResult,
) {
    let mut p = PartitionData::default();
    p.partition_index = r.key.1;
    let (records, reference) = match ByReference::for_set(r.records, by_reference.len()) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "cannot read fetched records");
            p.error_code = ResponseError::KafkaStorageError.code();
            (Bytes::new(), None)
        }
    };
    by_reference.extend(reference);
    if r.has_error {
        p.error_code = r.error.code();
    }
    p.high_watermark = r.high_watermark.0;
    p.last_stable_offset = r.last_stable_offset.0;
    p.log_start_offset = r.log_start_offset.0;
    if let Some(id) = r.preferred_read_replica {
        p.preferred_read_replica = kafka_protocol::messages::BrokerId(id.0);
    }
    p.aborted_transactions = match r.aborted {
        Some(list) => Some(
            list.into_iter()
                .map(|a| {
                    let mut t = kafka_protocol::messages::fetch_response::AbortedTransaction::default();
                    t.producer_id = kafka_protocol::messages::ProducerId(a.producer_id);
                    t.first_offset = a.first_offset;
                    t
                })
                .collect(),
        ),
        None if read_committed => Some(vec![]),
        None => None,
    };
    if let Some(d) = r.diverging {
        p.diverging_epoch.epoch = d.epoch.0;
        p.diverging_epoch.end_offset = d.end_offset.0;
    }
    // librdkafka mis-parses null records: always send an empty set instead.
    p.records = Some(records);
    let same_topic = |t: &&mut FetchableTopicResponse| {
        if by_id { t.topic_id == r.topic_id } else { t.topic.as_str() == r.key.0 }
    };
    if let Some(t) = response.responses.last_mut().filter(|t| same_topic(t)) {
        t.partitions.push(p);
        return;
    }
    let mut t = FetchableTopicResponse::default();
    if by_id {
        t.topic_id = r.topic_id;
    } else {
        t.topic = TopicName(str_bytes(&r.key.0));
    }
    t.partitions.push(p);
    response.responses.push(t);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
    use kafka_protocol::protocol::Encodable;

    use super::*;
    use crate::api::encode_response;
    use crate::log::FileRegion;

    /// Record sets of assorted sizes, some in memory and some as regions of `file` (whose
    /// byte at position i is i % 251), with the plain bytes each stands for.
    fn sets(file: &std::sync::Arc<std::fs::File>) -> Vec<(RecordSet, Bytes)> {
        let region = |position: u64, len: u64| FileRegion { file: file.clone(), position, len };
        let content = |position: u64, len: u64| Bytes::from((position..position + len).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        vec![
            (RecordSet::Memory(Bytes::from(vec![3u8; 5000])), Bytes::from(vec![3u8; 5000])),
            (RecordSet::Memory(Bytes::new()), Bytes::new()),
            (RecordSet::Regions { regions: vec![region(10, 20_000)], len: 20_000 }, content(10, 20_000)),
            (RecordSet::Memory(Bytes::from(vec![4u8; 100])), Bytes::from(vec![4u8; 100])),
            (
                RecordSet::Regions { regions: vec![region(0, 30_000), region(50_000, 17_000)], len: 47_000 },
                [content(0, 30_000), content(50_000, 17_000)].concat().into(),
            ),
            (RecordSet::Regions { regions: vec![region(7, 20_000)], len: 20_000 }, content(7, 20_000)),
        ]
    }

    /// The chunked frame is byte for byte what the encoder writes into one buffer with the
    /// real records, for every version, with sets in memory and in files mixed.
    #[test]
    fn chunked_fetch_frames_equal_the_plain_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        std::fs::write(&path, (0..100_000u64).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
        let file = std::sync::Arc::new(std::fs::File::open(&path).unwrap());
        for version in 4..=17i16 {
            let by_id = version >= 13;
            let (mut with_refs, mut plain) = (FetchResponse::default(), FetchResponse::default());
            let mut by_reference = Vec::new();
            for (i, (set, bytes)) in sets(&file).into_iter().enumerate() {
                let key: PartitionKey = (format!("topic-{}", i / 3), i as i32);
                let topic_id = Uuid::from_u128(i as u128 / 3 + 1);
                let result = |records| PartitionResult {
                    key: key.clone(),
                    topic_id,
                    error: ResponseError::UnknownServerError,
                    has_error: false,
                    records,
                    high_watermark: Offset(1000 + i as i64),
                    last_stable_offset: Offset(1000 + i as i64),
                    log_start_offset: Offset(0),
                    aborted: None,
                    diverging: None,
                    throttled: false,
                    preferred_read_replica: None,
                };
                push_partition(&mut with_refs, &mut by_reference, by_id, false, result(set));
                push_partition(&mut plain, &mut Vec::new(), by_id, false, result(RecordSet::Memory(bytes)));
            }
            assert_eq!(by_reference.len(), 4, "sets of 1 KiB and more go by reference");
            let frame = encode_response(ApiKey::Fetch, version, 9, &ResponseKind::Fetch(with_refs), &by_reference).unwrap();
            let mut body = BytesMut::new();
            let mut header = ResponseHeader::default();
            header.correlation_id = 9;
            header.encode(&mut body, ApiKey::Fetch.response_header_version(version)).unwrap();
            ResponseKind::Fetch(plain).encode(&mut body, version).unwrap();
            let mut expected = BytesMut::new();
            expected.put_u32(body.len() as u32);
            expected.extend_from_slice(&body);
            assert_eq!(frame.to_bytes().unwrap(), expected, "v{version}");
        }
    }

    /// The leader side of the replication throttle: once the leader's quota is used up, an
    /// out-of-sync follower of a throttled replica gets no records; an in-sync follower and
    /// consumers still do.
    /// One Fetch v12 of t-0 at `offset` by `replica` (-1: a consumer), answered at once.
    fn fetch_once(api: &Api, rt: &tokio::runtime::Runtime, replica: i32, offset: i64) -> kafka_protocol::messages::FetchResponse {
        use kafka_protocol::messages::{BrokerId, RequestKind, ResponseKind, fetch_request};
        let mut fp = fetch_request::FetchPartition::default();
        fp.fetch_offset = offset;
        fp.partition_max_bytes = 1 << 20;
        fp.current_leader_epoch = -1;
        fp.last_fetched_epoch = -1;
        let mut t = fetch_request::FetchTopic::default();
        t.topic = TopicName(str_bytes("t"));
        t.partitions = vec![fp];
        let mut r = FetchRequest::default();
        r.replica_id = BrokerId(replica);
        r.max_bytes = 1 << 20;
        r.max_wait_ms = 0;
        r.session_epoch = -1;
        r.topics = vec![t];
        let ctx = RequestContext { api_key: ApiKey::Fetch, version: 12, correlation_id: 1, client_id: None, client_host: "/127.0.0.1".into(), peer: None };
        let ResponseKind::Fetch(r) = (match rt.block_on(api.dispatch(&ctx, RequestKind::Fetch(r))) {
            crate::api::Reply::Response(r) | crate::api::Reply::WithRecords(r, _) => r,
            _ => panic!("no response"),
        }) else {
            panic!("not a fetch response")
        };
        r
    }

    #[test]
    fn the_leader_throttle_holds_back_an_out_of_sync_follower_only() {
        use crate::metadata::MetadataRecord;
        use crate::replication::leader::{LeaderRegistration, ReplicationConfig};
        use crate::types::PartitionEpoch;
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        let topic_id = api.broker.image().topic("t").unwrap().id;
        api.broker
            .apply_metadata(|_| {
                Ok((
                    vec![
                        MetadataRecord::TopicConfig { id: topic_id, key: throttle::LEADER_REPLICAS.into(), value: Some("*".into()) },
                        MetadataRecord::BrokerConfig { broker: String::new(), key: throttle::LEADER_RATE.into(), value: Some("1000".into()) },
                    ],
                    (),
                ))
            })
            .unwrap();
        let p = api.broker.partition(&TopicPartition::new("t", 0)).unwrap();
        p.append(&crate::record::BatchBuilder::new(0).records(20, 100).build(), 0).unwrap();
        let lead = |isr: &[i32], epoch: i32| {
            let registration = LeaderRegistration {
                replicas: vec![NodeId(1), NodeId(2)],
                isr: isr.iter().map(|i| NodeId(*i)).collect(),
                leader_epoch: LeaderEpoch(epoch),
                partition_epoch: PartitionEpoch(epoch),
            };
            let config = ReplicationConfig { replica_lag_time_max_ms: 30_000, min_insync_replicas: 1 };
            p.become_leader(NodeId(1), config, &registration, 0).unwrap();
        };
        lead(&[1], 1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let fetch = |replica: i32| {
            let r = fetch_once(&api, &rt, replica, 0);
            let pd = &r.responses[0].partitions[0];
            assert_eq!(pd.error_code, 0);
            pd.records.as_ref().map_or(0, |b| b.len())
        };
        assert!(fetch(2) > 1000, "the first fetch is served and takes the quota into debt");
        assert_eq!(fetch(2), 0, "then the out-of-sync follower waits");
        assert!(fetch(-1) > 0, "consumers are not throttled");
        lead(&[1, 2], 2);
        assert!(fetch(2) > 0, "an in-sync follower is never held back");
    }

    /// A consumer fetching outside the log gets OFFSET_OUT_OF_RANGE with the offsets
    /// unknown (-1), as Kafka answers a failed read, so it resets by its own policy.
    #[test]
    fn out_of_range_answers_unknown_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        let p = api.broker.partition(&TopicPartition::new("t", 0)).unwrap();
        p.append(&crate::record::BatchBuilder::new(0).records(5, 10).build(), 0).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = fetch_once(&api, &rt, -1, 100);
        let pd = &r.responses[0].partitions[0];
        assert_eq!(pd.error_code, ResponseError::OffsetOutOfRange.code());
        assert_eq!((pd.high_watermark, pd.last_stable_offset, pd.log_start_offset), (-1, -1, -1));
    }
}
