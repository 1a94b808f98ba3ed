//! Replication at run time, around the pure rules of [`crate::replication`]: the follower
//! fetchers (Kafka's `ReplicaFetcherThread`, one per source broker), the leaders' periodic ISR
//! check, and the AlterPartition sender (Kafka's `AlterPartitionManager`: one request in
//! flight, carrying every pending change).
//!
//! A fetcher sends Fetch to its leader for every partition this node follows there, at each
//! partition's log end and with the epoch of its last batch; the leader long-polls
//! (`replica.fetch.wait.max.ms`), so idle replication costs a request every half second and
//! no CPU in between. Each answer is appended as it came (offsets as the leader assigned
//! them), the high watermark taken, a diverging epoch truncated (KIP-320). A partition that
//! changes role leaves its fetcher at the next round; a fetcher with nothing to fetch ends,
//! and the supervisor starts one when a partition needs it. The bytes fetched for replicas a
//! reassignment throttles draw on the broker's follower throttle; while it is in debt those
//! partitions are left out of the requests (see [`crate::replication::throttle`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData as AlterPartitionData, TopicData as AlterTopicData};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{AlterPartitionRequest, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Cluster;
use crate::broker::{Broker, IsrChange};
use crate::client::NodeClient;
use crate::partition::{FetchedFrom, Partition};
use crate::replication::throttle::{self, TokenBucket};
use crate::replication::{truncation_offset, AlterIsrResult, EpochEndOffset};
use crate::types::{LeaderEpoch, NodeId, Offset, PartitionEpoch};

/// Fetch up to v17, as Kafka 4.x's replica fetcher sends it: KIP-320's `last_fetched_epoch`
/// and `diverging_epoch` (v12+), topics by id (v13+), the follower's id and broker epoch in
/// `replica_state` (v15+, KIP-903: the leader hands the epoch to the controller with the ISR
/// it proposes, so a restarted follower's old incarnation cannot rejoin). The request is
/// built for the version the leader speaks (the encoder refuses fields of other versions).
/// AlterPartition v3.
const FETCH_VERSION_MAX: i16 = 17;
const ALTER_PARTITION_VERSION_MAX: i16 = 3;
/// The wait before an unanswered AlterPartition change is sent again.
const ALTER_PARTITION_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How often the supervisor looks for followed partitions without a fetcher (it is also
/// woken by every metadata change).
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(250);

/// Runs the AlterPartition sender, the ISR check and the fetcher supervisor until the
/// process stops.
pub async fn run(broker: Arc<Broker>, cluster: Arc<Cluster>) {
    // One follower throttle for the whole broker, shared by its fetchers (Kafka's quota is per
    // broker, not per fetcher).
    let throttle = Arc::new(Mutex::new(TokenBucket::new(broker.clock.now_ms())));
    tokio::join!(
        send_isr_changes(broker.clone(), cluster.clone()),
        check_isr(broker.clone()),
        supervise_fetchers(broker, cluster, throttle),
    );
}

/// Every `replica.lag.time.max.ms / 2`, each leader drops members that stopped catching up.
async fn check_isr(broker: Arc<Broker>) {
    let every = Duration::from_millis((broker.config.settings().replica.lag_time_max_ms / 2).max(1));
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let now = broker.clock.now_ms().max(0) as u64;
        for partition in broker.partitions() {
            if let Some(change) = partition.isr_tick(now) {
                broker.submit_isr_change(&partition, change);
            }
        }
    }
}

/// Sends the queued ISR changes to the active controller, one request at a time, and hands
/// each partition its answer. A change left unanswered (not delivered, refused as a whole,
/// missing from the answer, an unexpected error) is sent again after a backoff, as Kafka's
/// `AlterPartitionManager` does: it may have been committed, so it is never reverted. Only
/// the partition still waiting on that very change takes an answer or a retry.
async fn send_isr_changes(broker: Arc<Broker>, cluster: Arc<Cluster>) {
    loop {
        let changes = broker.next_isr_changes().await;
        let request = alter_partition_request(&cluster, &changes);
        let sent = std::time::Instant::now();
        let answer = cluster.call_controller(&request, ALTER_PARTITION_VERSION_MAX).await;
        broker.metrics.alter_partition_seconds.observe(sent.elapsed().as_secs_f64());
        let now = broker.clock.now_ms().max(0) as u64;
        let mut results: HashMap<(uuid::Uuid, i32), Option<AlterIsrResult>> = HashMap::new();
        match answer {
            Ok((_, response)) if response.error_code == 0 => {
                for t in &response.topics {
                    for p in &t.partitions {
                        results.insert((t.topic_id, p.partition_index), alter_result(p));
                    }
                }
            }
            Ok((_, response)) => {
                tracing::warn!(error = response.error_code, "AlterPartition refused; retrying");
            }
            Err(e) => tracing::warn!(error = %e, "AlterPartition not delivered; retrying"),
        }
        let mut retry = Vec::new();
        for change in changes {
            let Some(partition) = broker.partition(&change.tp) else { continue };
            if !partition.awaits_alter(&change.request) {
                continue;
            }
            let Some(result) = results.remove(&(change.topic_id, change.tp.partition.0)).flatten() else {
                retry.push(change);
                continue;
            };
            // (The ISR counters move in the partition, wherever the committed ISR changes.)
            partition.on_alter_result(&change.request, result, now);
        }
        if !retry.is_empty() {
            tokio::time::sleep(ALTER_PARTITION_RETRY_BACKOFF).await;
            broker.requeue_isr_changes(retry);
        }
    }
}

fn alter_partition_request(cluster: &Cluster, changes: &[IsrChange]) -> AlterPartitionRequest {
    let mut request = AlterPartitionRequest::default();
    let me = cluster.node_id();
    request.broker_id = BrokerId(me.0);
    request.broker_epoch = cluster.broker_epoch();
    let mut by_topic: Vec<AlterTopicData> = Vec::new();
    for change in changes {
        let mut p = AlterPartitionData::default();
        p.partition_index = change.tp.partition.0;
        p.leader_epoch = change.request.leader_epoch.0;
        p.partition_epoch = change.request.partition_epoch.0;
        for (id, epoch) in &change.request.new_isr {
            let mut b = BrokerState::default();
            b.broker_id = BrokerId(id.0);
            b.broker_epoch = if *id == me { cluster.broker_epoch() } else { epoch.map_or(-1, |e| e.0) };
            // v3 carries members with epochs only (`new_isr` is v0-2's field).
            p.new_isr_with_epochs.push(b);
        }
        match by_topic.iter_mut().find(|t| t.topic_id == change.topic_id) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = AlterTopicData::default();
                t.topic_id = change.topic_id;
                t.partitions.push(p);
                by_topic.push(t);
            }
        }
    }
    request.topics = by_topic;
    request
}

/// A partition's answer; `None` for an error that says nothing of whether the change can
/// ever apply (Kafka retries those).
pub(crate) fn alter_result(p: &kafka_protocol::messages::alter_partition_response::PartitionData) -> Option<AlterIsrResult> {
    Some(match ResponseError::try_from_code(p.error_code) {
        None => AlterIsrResult::Committed {
            isr: p.isr.iter().map(|b| NodeId(b.0)).collect(),
            leader_epoch: LeaderEpoch(p.leader_epoch),
            partition_epoch: PartitionEpoch(p.partition_epoch),
        },
        Some(
            ResponseError::FencedLeaderEpoch
            | ResponseError::InvalidUpdateVersion
            | ResponseError::UnknownTopicOrPartition
            | ResponseError::UnknownTopicId
            | ResponseError::NewLeaderElected
            | ResponseError::InvalidRequest,
        ) => AlterIsrResult::Superseded,
        Some(ResponseError::IneligibleReplica | ResponseError::OperationNotAttempted) => AlterIsrResult::Rejected,
        Some(_) => return None,
    })
}

/// Keeps one fetcher running per leader this node follows partitions of.
async fn supervise_fetchers(broker: Arc<Broker>, cluster: Arc<Cluster>, throttle: Arc<Mutex<TokenBucket>>) {
    let mut fetchers: HashMap<NodeId, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut ticks = tokio::time::interval(SUPERVISE_INTERVAL);
    loop {
        ticks.tick().await;
        fetchers.retain(|_, task| !task.is_finished());
        let me = cluster.node_id();
        let mut leaders: Vec<NodeId> = broker.partitions().iter().filter_map(|p| p.follows()).filter(|l| *l != me).collect();
        leaders.sort();
        leaders.dedup();
        for leader in leaders {
            if fetchers.contains_key(&leader) {
                continue;
            }
            let task = tokio::spawn(fetch_from(broker.clone(), cluster.clone(), leader, throttle.clone()));
            fetchers.insert(leader, task);
        }
    }
}

/// The address of `leader`'s client listener, from its registration.
pub(crate) fn leader_address(broker: &Broker, leader: NodeId) -> Option<String> {
    let image = broker.image();
    let reg = image.brokers.get(&leader)?;
    let e = reg.endpoint(crate::api::metadata::LOCAL_LISTENER_NAME).or(reg.endpoints.first())?;
    Some(format!("{}:{}", e.host, e.port))
}

/// One fetcher: fetches from `leader` for every partition this node follows there, until
/// there is none left.
async fn fetch_from(broker: Arc<Broker>, cluster: Arc<Cluster>, leader: NodeId, throttle: Arc<Mutex<TokenBucket>>) {
    let settings = broker.config.settings().replica;
    let Some(addr) = leader_address(&broker, leader) else {
        tokio::time::sleep(settings.fetch_backoff).await;
        return;
    };
    let me = cluster.node_id();
    let client = NodeClient::new(addr, format!("broker-{}-fetcher-{}", me.0, leader.0), settings.socket_timeout);
    tracing::info!(leader = leader.0, "replica fetcher started");
    loop {
        // Each partition with the leader epoch it is fetched in: an answer is applied only
        // while the partition still follows `leader` in that epoch (see `apply_partition`).
        let partitions: Vec<(Arc<Partition>, LeaderEpoch)> = broker
            .partitions()
            .into_iter()
            .filter(|p| p.follows() == Some(leader))
            .map(|p| {
                let epoch = p.leader_epoch();
                (p, epoch)
            })
            .collect();
        if partitions.is_empty() || cluster.shutting_down() && partitions.is_empty() {
            tracing::info!(leader = leader.0, "replica fetcher stopped: nothing to fetch");
            return;
        }
        if leader_address(&broker, leader).is_none_or(|a| a != client.addr()) {
            // The leader re-registered elsewhere: a new fetcher will use its new address.
            return;
        }
        let throttled = throttled_partitions(&broker, me, &partitions);
        let partitions = match hold_throttled(&broker, &throttle, partitions, &throttled) {
            Ok(p) => p,
            Err(wait) => {
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let answer = client.call_with(FETCH_VERSION_MAX, |version| fetch_request(&cluster, &settings, &partitions, version)).await;
        match answer {
            Ok((version, response)) if response.error_code == 0 => {
                let bytes = throttled_bytes(&response, version, &partitions, &throttled);
                if bytes > 0 {
                    lock(&throttle).record(bytes, broker.clock.now_ms());
                }
                let failed = apply_fetch_response(&broker, leader, &partitions, version, response);
                if failed {
                    tokio::time::sleep(settings.fetch_backoff).await;
                }
            }
            Ok((_, response)) => {
                tracing::debug!(leader = leader.0, error = response.error_code, "fetch refused");
                tokio::time::sleep(settings.fetch_backoff).await;
            }
            Err(e) => {
                tracing::debug!(leader = leader.0, error = %e, "fetch failed");
                tokio::time::sleep(settings.fetch_backoff).await;
            }
        }
    }
}

/// The longest a fetcher waits at once for the throttle to let its partitions fetch again
/// (it then looks again: the rate may have been lifted).
const THROTTLE_WAIT_MAX: Duration = Duration::from_millis(500);

fn lock(bucket: &Mutex<TokenBucket>) -> std::sync::MutexGuard<'_, TokenBucket> {
    match bucket.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The (topic, partition) of each partition whose replica here the topic's
/// `follower.replication.throttled.replicas` names.
fn throttled_partitions(broker: &Broker, me: NodeId, partitions: &[(Arc<Partition>, LeaderEpoch)]) -> Vec<(String, i32)> {
    let image = broker.image();
    partitions
        .iter()
        .filter(|(p, _)| {
            let value = image.topic(&p.tp.topic).and_then(|t| t.configs.get(throttle::FOLLOWER_REPLICAS));
            throttle::is_throttled(value.map(String::as_str), p.tp.partition, me)
        })
        .map(|(p, _)| (p.tp.topic.clone(), p.tp.partition.0))
        .collect()
}

/// The partitions to fetch now: all of them, or, while the follower throttle is in debt, all
/// but the throttled ones. `Err` with the wait when nothing is left to fetch.
fn hold_throttled(
    broker: &Broker,
    bucket: &Mutex<TokenBucket>,
    partitions: Vec<(Arc<Partition>, LeaderEpoch)>,
    throttled: &[(String, i32)],
) -> Result<Vec<(Arc<Partition>, LeaderEpoch)>, Duration> {
    let me = NodeId(broker.node_id);
    let now = broker.clock.now_ms();
    let mut bucket = lock(bucket);
    bucket.set_rate(throttle::rate(&broker.image().broker_configs, me, throttle::FOLLOWER_RATE), now);
    if throttled.is_empty() || !bucket.throttled(now) {
        return Ok(partitions);
    }
    let wait = Duration::from_millis(bucket.wait_ms(now)).min(THROTTLE_WAIT_MAX);
    let free: Vec<_> = partitions.into_iter().filter(|(p, _)| !throttled.contains(&(p.tp.topic.clone(), p.tp.partition.0))).collect();
    if free.is_empty() { Err(wait) } else { Ok(free) }
}

/// The record bytes a fetch answer carries for throttled partitions.
fn throttled_bytes(
    response: &kafka_protocol::messages::FetchResponse,
    version: i16,
    partitions: &[(Arc<Partition>, LeaderEpoch)],
    throttled: &[(String, i32)],
) -> u64 {
    if throttled.is_empty() {
        return 0;
    }
    let mut bytes = 0u64;
    for t in &response.responses {
        // Topics come by id from v13 on.
        let name = if version >= 13 {
            match partitions.iter().find(|(p, _)| p.topic_id == t.topic_id) {
                Some((p, _)) => p.tp.topic.as_str(),
                None => continue,
            }
        } else {
            t.topic.as_str()
        };
        for pd in &t.partitions {
            if throttled.iter().any(|(topic, p)| *p == pd.partition_index && topic.as_str() == name) {
                bytes += pd.records.as_ref().map_or(0, |r| r.len() as u64);
            }
        }
    }
    bytes
}

/// The follower's fetch of `partitions` at `version` (12 to 17).
fn fetch_request(
    cluster: &Cluster,
    settings: &crate::config::ReplicaSettings,
    partitions: &[(Arc<Partition>, LeaderEpoch)],
    version: i16,
) -> FetchRequest {
    let me = cluster.node_id();
    let mut request = FetchRequest::default();
    if version >= 15 {
        request.replica_id = BrokerId(-1);
        request.replica_state.replica_id = BrokerId(me.0);
        request.replica_state.replica_epoch = cluster.broker_epoch();
    } else {
        request.replica_id = BrokerId(me.0);
    }
    request.max_wait_ms = settings.fetch_wait_max_ms;
    request.min_bytes = settings.fetch_min_bytes;
    request.max_bytes = settings.fetch_response_max_bytes;
    request.isolation_level = 0;
    // Sessionless full fetches: every partition every time.
    request.session_id = 0;
    request.session_epoch = -1;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (p, epoch) in partitions {
        let mut fp = FetchPartition::default();
        fp.partition = p.tp.partition.0;
        fp.current_leader_epoch = epoch.0;
        fp.fetch_offset = p.log_end_offset().0;
        fp.last_fetched_epoch = p.latest_epoch().map_or(-1, |e| e.0);
        fp.log_start_offset = p.log_start_offset().0;
        fp.partition_max_bytes = settings.fetch_max_bytes;
        let by_id = version >= 13;
        match topics.iter_mut().find(|t| if by_id { t.topic_id == p.topic_id } else { t.topic.as_str() == p.tp.topic }) {
            Some(t) => t.partitions.push(fp),
            None => {
                let mut t = FetchTopic::default();
                if by_id {
                    t.topic_id = p.topic_id;
                } else {
                    t.topic = TopicName(StrBytes::from_string(p.tp.topic.clone()));
                }
                t.partitions.push(fp);
                topics.push(t);
            }
        }
    }
    request.topics = topics;
    request
}

/// Applies a leader's answer; returns whether any partition failed (the fetcher backs off).
fn apply_fetch_response(
    broker: &Broker,
    leader: NodeId,
    partitions: &[(Arc<Partition>, LeaderEpoch)],
    version: i16,
    response: kafka_protocol::messages::FetchResponse,
) -> bool {
    let now = broker.clock.now_ms();
    let mut failed = false;
    for t in response.responses {
        for pd in t.partitions {
            let Some((partition, epoch)) = partitions.iter().find(|(p, _)| {
                p.tp.partition.0 == pd.partition_index && if version >= 13 { p.topic_id == t.topic_id } else { p.tp.topic == t.topic.as_str() }
            }) else {
                continue;
            };
            let from = FetchedFrom { leader, leader_epoch: *epoch };
            match apply_partition(partition, from, &pd, now) {
                Ok(()) => broker.metrics.replication_bytes_in.inc_by(pd.records.as_ref().map_or(0, |r| r.len() as u64)),
                Err(e) => {
                    failed = true;
                    tracing::debug!(partition = %partition.tp, error = %e, "replication of a partition failed");
                }
            }
        }
    }
    failed
}

/// Applies one partition's answer to a fetch sent to `from.leader` in `from.leader_epoch`;
/// nothing is applied once the partition has stopped following that leader in that epoch
/// (`PartitionError::StaleFetch`).
pub(crate) fn apply_partition(
    partition: &Partition,
    from: FetchedFrom,
    pd: &kafka_protocol::messages::fetch_response::PartitionData,
    now_ms: i64,
) -> Result<(), String> {
    let leader_hw = Offset(pd.high_watermark);
    let leader_start = Offset(pd.log_start_offset);
    match ResponseError::try_from_code(pd.error_code) {
        None => {}
        Some(ResponseError::OffsetOutOfRange) => {
            // Below the leader's log start: start over there. Above its end (it lost a tail we
            // hold that the diverging-epoch check did not catch): cut back to its high
            // watermark, which it holds.
            let end = partition.log_end_offset();
            let result = if end < leader_start {
                partition.truncate_fully_and_start_at(from, leader_start, now_ms)
            } else {
                partition.truncate_to(from, leader_hw, now_ms)
            };
            return result.map_err(|e| e.to_string());
        }
        Some(e) => return Err(e.to_string()),
    }
    #[cfg(test)]
    let diverged = pd.diverging_epoch.end_offset >= 0
        && !crate::replication::planted::is(crate::replication::planted::PlantedBug::NoTruncateOnDiverge);
    #[cfg(not(test))]
    let diverged = pd.diverging_epoch.end_offset >= 0;
    if diverged {
        let leader = EpochEndOffset {
            epoch: (pd.diverging_epoch.epoch >= 0).then_some(LeaderEpoch(pd.diverging_epoch.epoch)),
            end_offset: Offset(pd.diverging_epoch.end_offset),
        };
        let point = truncation_offset(leader, partition.log_end_offset(), |e| partition.local_end_for_epoch(e));
        tracing::info!(partition = %partition.tp, to = point.offset.0, complete = point.complete, "follower truncates a diverged log");
        return partition.truncate_to(from, point.offset, now_ms).map_err(|e| e.to_string());
    }
    let records: Bytes = pd.records.clone().unwrap_or_default();
    if !records.is_empty() {
        partition.append_as_follower(from, &records, now_ms).map_err(|e| e.to_string())?;
    }
    partition.follower_update(from, leader_hw, leader_start, now_ms).map_err(|e| e.to_string())
}
