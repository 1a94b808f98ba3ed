//! What the active controller does on its own, every [`TICK`]:
//!
//! - on a new cluster, write its first records: the cluster id (`cluster.id` if configured,
//!   else a new one) and the bootstrap feature levels, so that every node shares them;
//! - fence the brokers whose sessions expired (`broker.session.timeout.ms`) and move their
//!   leaderships away;
//! - complete the partition reassignments whose ISR holds every target replica;
//!
//! and what every node of the quorum does, leader or not: keep the quorum's description
//! (replica lags, for the metrics) while it leads, and take a snapshot of the applied
//! image once `metadata.log.max.record.bytes.between.snapshots` bytes of records arrived
//! since the last one (or `metadata.snapshot.max.interval.ms` passed with records pending),
//! so the log behind it can be deleted (KIP-630).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiVersionsRequest;

use crate::broker::Broker;
use crate::client::{ClientError, NodeClient};
use crate::metadata::cluster_control;
use crate::metadata::election;
use crate::metadata::features;
use crate::metadata::store::{self, StoreError};
use crate::metadata::MetadataRecord;
use crate::raft::RoleKind;
use crate::types::Offset;

use super::Cluster;

pub const TICK: Duration = Duration::from_millis(250);

pub async fn run(broker: Arc<Broker>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let quorum = &broker.config.settings().quorum;
    let (snapshot_bytes, snapshot_interval_ms) = (quorum.snapshot_record_bytes_max, quorum.snapshot_interval_ms_max);
    let mut last_snapshot_ms = broker.clock.now_ms();
    let mut was_leader = false;
    let mut elections = ElectionSchedule::new(broker.clock.now_ms(), &broker.config.settings().elections);
    let mut quorum_changes = cluster.raft.watch();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = quorum_changes.changed() => {
                if changed.is_err() {
                    return;
                }
                // A new leadership is acted on at once (a new cluster's first records, the
                // sessions of the brokers), not at the next tick; other changes wait for it.
                let leads = quorum_changes.borrow_and_update().role == RoleKind::Leader && cluster.is_controller;
                if leads == was_leader {
                    continue;
                }
            }
        }
        let status = cluster.raft.status();
        if status.failed {
            return;
        }
        let leader = status.role == RoleKind::Leader && cluster.is_controller;
        if leader && !was_leader {
            if let Ok(mut s) = cluster.sessions.lock() {
                // Brokers alive under the previous controller get a full session with this one,
                // but for this node's own registration from an earlier process: that one is
                // certainly gone, and this process registers again without waiting it out.
                let image = broker.image();
                let now = broker.clock.now_ms();
                s.restart_all(&image, now);
                if let Some(own) = image.brokers.get(&cluster.node_id())
                    && own.incarnation_id != cluster.incarnation()
                {
                    s.expire_now(own.id, own.epoch, now, cluster.session_timeout_ms);
                }
            }
            // ...unless their process is gone: the previous controller may have died with one.
            let me = cluster.node_id();
            for b in broker.image().brokers.values().filter(|b| !b.fenced && b.id != me) {
                tokio::spawn(probe_and_fence(broker.clone(), cluster.clone(), b.id, b.epoch));
            }
        }
        if leader && !was_leader {
            elections = ElectionSchedule::new(broker.clock.now_ms(), &broker.config.settings().elections);
        }
        was_leader = leader;
        let described = if status.role == RoleKind::Leader { cluster.raft.describe().await } else { None };
        if let Ok(mut d) = cluster.described.lock() {
            *d = described;
        }
        if leader {
            let b = broker.clone();
            let c = cluster.clone();
            let mut schedule = elections.clone();
            // Store updates block while they wait for the quorum.
            let done = tokio::task::spawn_blocking(move || {
                leader_duties(&b, &c);
                run_elections(&b, &mut schedule);
                schedule
            })
            .await;
            if let Ok(schedule) = done {
                elections = schedule;
            }
        }
        let store = broker.metadata_store();
        let pending = store.bytes_since_snapshot();
        let now = broker.clock.now_ms();
        if pending >= snapshot_bytes || (pending > 0 && now - last_snapshot_ms >= snapshot_interval_ms) {
            let image = store.image();
            match store::snapshot_bytes(&image) {
                Ok(data) => {
                    let size = data.len();
                    match cluster.raft.snapshot(Offset(image.offset), data).await {
                        Ok(()) => {
                            store.snapshot_taken(pending);
                            last_snapshot_ms = now;
                            tracing::info!(end = image.offset, bytes = size, "metadata snapshot written");
                        }
                        // Not yet flushed or committed here: the next tick tries again.
                        Err(e) => tracing::debug!(error = %e, "metadata snapshot deferred"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "metadata snapshot failed"),
            }
        }
    }
}

/// Attempts of a probe, the pause between them, and how long one may take.
const PROBE_ATTEMPTS: u32 = 2;
const PROBE_PAUSE: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What one probe attempt learnt about a broker's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeOutcome {
    /// It answered ApiVersions: alive.
    Answered,
    /// Nothing listens (connection refused), or the connection was accepted and then reset
    /// without an answer: a process dies by closing its sockets one by one, so its
    /// heartbeat connection can close while its listener still completes handshakes.
    Gone,
    /// No answer in time, or a failure that proves nothing (a network partition looks so).
    Unknown,
}

/// Asks the broker's listener at `addr` for its API versions on a fresh connection.
async fn probe_once(addr: &str) -> ProbeOutcome {
    let client = NodeClient::new(addr, "blumfeld-controller-probe", PROBE_TIMEOUT);
    let outcome = match client.call(&ApiVersionsRequest::default(), 3).await {
        Ok(_) => ProbeOutcome::Answered,
        Err(ClientError::Connect { source, .. }) if source.kind() == std::io::ErrorKind::ConnectionRefused => ProbeOutcome::Gone,
        Err(ClientError::Disconnected(_)) => ProbeOutcome::Gone,
        Err(_) => ProbeOutcome::Unknown,
    };
    client.disconnect().await;
    outcome
}

/// Failure detection beyond the session timeout. A broker process that dies closes its
/// connections, among them the one it heartbeats on; when that happens (or when this node
/// becomes the active controller) the controller asks the broker's listener for its API
/// versions. Gone twice, 100 ms apart (refused, or accepted and reset unanswered), nothing
/// serves there: the process is gone, and the broker is fenced at once, its leaderships
/// moving in a few hundred milliseconds instead of `broker.session.timeout.ms`. Anything else
/// (an answer, or no answer in time, as across a network partition) leaves the broker to its
/// session, so a partition never fences a live broker early and a flapping link changes
/// nothing.
pub async fn probe_and_fence(broker: Arc<Broker>, cluster: Arc<Cluster>, id: crate::types::NodeId, epoch: crate::types::BrokerEpoch) {
    let Some(addr) = broker.image().brokers.get(&id).and_then(|b| {
        let e = b.endpoint(crate::api::metadata::LOCAL_LISTENER_NAME).or(b.endpoints.first())?;
        Some(format!("{}:{}", e.host, e.port))
    }) else {
        return;
    };
    for attempt in 0..PROBE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        let outcome = probe_once(&addr).await;
        if outcome != ProbeOutcome::Gone {
            tracing::debug!(broker = id.0, addr, attempt, ?outcome, "probed broker is not gone: left to its session");
            return;
        }
    }
    if !cluster.is_active_controller() || cluster.shutting_down() {
        return;
    }
    let b = broker.clone();
    let fenced = tokio::task::spawn_blocking(move || {
        b.metadata_store().update(|image| {
            let current = image.brokers.get(&id).is_some_and(|r| r.epoch == epoch && !r.fenced);
            let records = if current { cluster_control::fence(image, &crate::metadata::partition_change::TopicDefaults::from_config(&broker.effective_config()), &[id]) } else { vec![] };
            Ok::<_, StoreError>((records, current))
        })
    })
    .await;
    match fenced {
        Ok(Ok((_, true))) => tracing::info!(broker = id.0, addr, "broker process is gone (connection refused or reset): fenced without waiting for its session to expire"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(broker = id.0, error = %e, "fencing a gone broker failed"),
        Err(e) => tracing::warn!(broker = id.0, error = %e, "fencing a gone broker failed"),
    }
}

fn leader_duties(broker: &Broker, cluster: &Cluster) {
    let store = broker.metadata_store();
    if store.image().cluster_id.is_empty() {
        let configured = broker.config.settings().cluster_id.clone();
        let out = store.update(|image| {
            if !image.cluster_id.is_empty() {
                return Ok::<_, StoreError>((vec![], ()));
            }
            let cluster_id = configured.clone().unwrap_or_else(crate::broker::new_cluster_id);
            tracing::info!(cluster_id, "writing the new cluster's first records");
            let mut records = vec![MetadataRecord::Cluster { cluster_id }];
            if !image.features.contains_key(features::METADATA_VERSION) {
                records.extend(features::bootstrap_records());
            }
            Ok((records, ()))
        });
        if let Err(e) = out {
            tracing::debug!(error = %e, "bootstrap records not written yet");
            return;
        }
    }
    complete_reassignments(store, &crate::metadata::partition_change::TopicDefaults::from_config(&broker.effective_config()));
    let now = broker.clock.now_ms();
    let expired = match cluster.sessions.lock() {
        Ok(mut s) => s.expired(&store.image(), now, cluster.session_timeout_ms),
        Err(_) => return,
    };
    if expired.is_empty() {
        return;
    }
    let out = store.update(|image| Ok::<_, StoreError>((cluster_control::fence(image, &crate::metadata::partition_change::TopicDefaults::from_config(&broker.effective_config()), &expired), ())));
    match out {
        Ok(_) => tracing::info!(brokers = ?expired.iter().map(|b| b.0).collect::<Vec<_>>(), "fenced brokers whose sessions expired"),
        Err(e) => tracing::warn!(error = %e, "fencing expired brokers failed"),
    }
}

/// When the active controller runs its own elections next (Kafka's `QuorumController`
/// schedules the same two): the preferred-leader balance every
/// `leader.imbalance.check.interval.seconds` while `auto.leader.rebalance.enable` holds, the
/// first one an interval after this node became active; and unclean elections of leaderless
/// partitions whose topic allows them, after every metadata change (a fencing or an
/// unfencing is what leaves or finds a partition without an in-sync leader) and every
/// `unclean.leader.election.interval.ms` besides.
#[derive(Debug, Clone)]
struct ElectionSchedule {
    next_balance_ms: i64,
    next_unclean_ms: i64,
    /// The image offset the last unclean check looked at.
    unclean_checked_offset: i64,
}

impl ElectionSchedule {
    fn new(now_ms: i64, settings: &crate::config::ElectionSettings) -> Self {
        Self { next_balance_ms: now_ms.saturating_add(settings.imbalance_check_interval_ms), next_unclean_ms: now_ms, unclean_checked_offset: -1 }
    }
}

fn run_elections(broker: &Broker, schedule: &mut ElectionSchedule) {
    let settings = &broker.config.settings().elections;
    let defaults = crate::metadata::partition_change::TopicDefaults::from_config(&broker.effective_config());
    let store = broker.metadata_store();
    let now = broker.clock.now_ms();
    if settings.auto_rebalance && now >= schedule.next_balance_ms {
        let out = store.update(|image| {
            let records = election::balance_leaders(image, &defaults, election::ELECTIONS_PER_PASS_MAX);
            let n = records.len();
            Ok::<_, StoreError>((records, n))
        });
        match out {
            Ok((image, moved)) => {
                if moved > 0 {
                    tracing::info!(partitions = moved, "moved leadership back to preferred replicas (auto.leader.rebalance.enable)");
                }
                // A pass that hit the limit goes on at the next tick, as Kafka reschedules at once.
                let more = !election::balance_leaders(&image, &defaults, 1).is_empty();
                schedule.next_balance_ms = if more { now } else { now.saturating_add(settings.imbalance_check_interval_ms) };
            }
            Err(e) => tracing::warn!(error = %e, "preferred leader balancing failed; retried at the next tick"),
        }
    }
    let offset = store.image().offset;
    if offset != schedule.unclean_checked_offset || now >= schedule.next_unclean_ms {
        let out = store.update(|image| {
            Ok::<_, StoreError>((election::elect_unclean_leaderless(image, &defaults, election::ELECTIONS_PER_PASS_MAX), ()))
        });
        match out {
            Ok((image, ())) => {
                schedule.unclean_checked_offset = image.offset;
                schedule.next_unclean_ms = now.saturating_add(settings.unclean_check_interval_ms);
            }
            Err(e) => tracing::warn!(error = %e, "unclean leader elections failed; retried at the next tick"),
        }
    }
}

/// Reassignments whose ISR already holds every target replica complete here when no
/// AlterPartition completed them (see [`crate::metadata::reassignment`]).
fn complete_reassignments(store: &crate::metadata::MetadataStore, defaults: &crate::metadata::partition_change::TopicDefaults) {
    if crate::metadata::reassignment::complete_ready(&store.image(), defaults).is_empty() {
        return;
    }
    let out = store.update(|image| Ok::<_, StoreError>((crate::metadata::reassignment::complete_ready(image, defaults), ())));
    match out {
        Ok(_) => tracing::info!("completed partition reassignments whose replicas are in sync"),
        Err(e) => tracing::warn!(error = %e, "completing partition reassignments failed"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_gone() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert_eq!(probe_once(&addr).await, ProbeOutcome::Gone);
    }

    #[tokio::test]
    async fn a_listener_that_resets_what_it_accepted_is_gone() {
        // A dying process: its listener completed the handshake, then closed unanswered.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            drop(socket);
        });
        assert_eq!(probe_once(&addr).await, ProbeOutcome::Gone);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_listener_that_never_answers_is_unknown() {
        // A stopped process, or one across a partition: left to its session.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            let _ = rx.await;
        });
        assert_eq!(probe_once(&addr).await, ProbeOutcome::Unknown);
        let _ = tx.send(());
        server.await.unwrap();
    }
}
