//! A broker's membership, as Kafka's `BrokerLifecycleManager` keeps it: register with the
//! active controller (a new incarnation id per process start), heartbeat every
//! `broker.heartbeat.interval.ms` with the metadata offset applied here, and let the
//! controller unfence the broker once that offset reaches its registration. On SIGTERM the
//! heartbeats ask to shut down; the controller moves leadership away and answers
//! `should_shut_down` once the broker leads nothing, and only then does the process go on
//! to exit ([`controlled_shutdown`]).
//!
//! A heartbeat answered STALE_BROKER_EPOCH or BROKER_ID_NOT_REGISTERED (the controller lost
//! or replaced this registration) makes the broker register again.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::broker_registration_request::{Feature, Listener};
use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::Cluster;
use crate::broker::Broker;
use crate::metadata::features::FEATURES;

/// BrokerRegistration v4 and BrokerHeartbeat v1: the newest whose fields we fill.
const REGISTRATION_VERSION_MAX: i16 = 4;
const HEARTBEAT_VERSION_MAX: i16 = 1;
/// Pause before registering again after a refusal.
const REGISTER_BACKOFF: Duration = Duration::from_millis(500);

/// Registers and heartbeats until the process stops; returns once a controlled shutdown
/// completed (see [`controlled_shutdown`]). `previous_epoch` is the epoch the previous
/// process shut down cleanly with ([`super::clean_shutdown`]), named in every registration.
pub async fn run(broker: Arc<Broker>, cluster: Arc<Cluster>, previous_epoch: Option<i64>) {
    let incarnation = cluster.incarnation();
    let interval = Duration::from_millis(cluster.heartbeat_interval_ms);
    loop {
        let Some(epoch) = register(&broker, &cluster, incarnation, previous_epoch).await else {
            tokio::time::sleep(REGISTER_BACKOFF).await;
            continue;
        };
        cluster.set_broker_epoch(epoch);
        tracing::info!(epoch, "registered with the active controller");
        let mut fenced = true;
        loop {
            match heartbeat(&broker, &cluster, epoch, false).await {
                Some(Ok(reply)) => {
                    cluster.note_heartbeat_answered();
                    cluster.set_unfenced(!reply.is_fenced);
                    if fenced != reply.is_fenced {
                        fenced = reply.is_fenced;
                        tracing::info!(fenced, "broker fencing changed");
                    }
                }
                Some(Err(code)) if code == ResponseError::StaleBrokerEpoch || code == ResponseError::BrokerIdNotRegistered => {
                    tracing::warn!(?code, "the controller dropped this registration; registering again");
                    break;
                }
                _ => {}
            }
            // Heartbeat again sooner while fenced: being unfenced is what the broker waits on.
            let wait = if fenced { interval.min(Duration::from_millis(500)) } else { interval };
            tokio::time::sleep(wait).await;
        }
        cluster.set_broker_epoch(-1);
        cluster.set_unfenced(false);
    }
}

async fn register(broker: &Broker, cluster: &Cluster, incarnation: Uuid, previous_epoch: Option<i64>) -> Option<i64> {
    let advertised = broker.advertised();
    let mut req = BrokerRegistrationRequest::default();
    req.broker_id = BrokerId(broker.node_id);
    req.cluster_id = StrBytes::from_string(broker.image().cluster_id.clone());
    req.incarnation_id = incarnation;
    let mut listener = Listener::default();
    listener.name = StrBytes::from_static_str("PLAINTEXT");
    listener.host = StrBytes::from_string(advertised.host.clone());
    listener.port = u16::try_from(advertised.port).unwrap_or(0);
    listener.security_protocol = 0;
    req.listeners = vec![listener];
    req.features = FEATURES
        .iter()
        .map(|f| {
            let mut x = Feature::default();
            x.name = StrBytes::from_static_str(f.name);
            x.min_supported_version = f.min;
            x.max_supported_version = f.max;
            x
        })
        .collect();
    req.rack = broker.config.settings().rack.clone().map(StrBytes::from_string);
    req.previous_broker_epoch = previous_epoch.unwrap_or(-1);
    match cluster.call_controller(&req, REGISTRATION_VERSION_MAX).await {
        Ok((_, r)) if r.error_code == 0 => Some(r.broker_epoch),
        Ok((_, r)) => {
            tracing::warn!(error = r.error_code, "broker registration refused");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "broker registration not delivered");
            None
        }
    }
}

/// The controller's answer to one heartbeat.
#[derive(Debug, Clone, Copy)]
struct Reply {
    is_fenced: bool,
    should_shut_down: bool,
}

/// One heartbeat; `None` when it did not reach the controller.
async fn heartbeat(broker: &Broker, cluster: &Cluster, epoch: i64, want_shut_down: bool) -> Option<Result<Reply, ResponseError>> {
    let mut req = BrokerHeartbeatRequest::default();
    req.broker_id = BrokerId(broker.node_id);
    req.broker_epoch = epoch;
    // The offset of the last record applied here.
    req.current_metadata_offset = broker.metadata_applied_offset() - 1;
    req.want_fence = false;
    req.want_shut_down = want_shut_down || cluster.shutting_down();
    match cluster.call_controller(&req, HEARTBEAT_VERSION_MAX).await {
        Ok((_, r)) if r.error_code == 0 => Some(Ok(Reply { is_fenced: r.is_fenced, should_shut_down: r.should_shut_down })),
        Ok((_, r)) => Some(Err(ResponseError::try_from_code(r.error_code).unwrap_or(ResponseError::UnknownServerError))),
        Err(e) => {
            tracing::debug!(error = %e, "heartbeat not delivered");
            None
        }
    }
}

/// Asks the active controller to move this broker's leaderships away and waits until it
/// says the broker may stop, or until `limit` passes (a controller that cannot be reached,
/// or a quorum that lost its majority, must not keep the process from exiting; after the
/// session timeout the controller fences the broker anyway).
pub async fn controlled_shutdown(broker: &Broker, cluster: &Cluster, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let started = std::time::Instant::now();
    cluster.begin_shutdown();
    loop {
        let epoch = cluster.broker_epoch();
        if epoch < 0 {
            return; // never registered: nothing to hand over
        }
        let answer = tokio::time::timeout_at(deadline, heartbeat(broker, cluster, epoch, true)).await;
        if let Ok(Some(Ok(reply))) = answer
            && reply.should_shut_down
        {
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "controlled shutdown complete");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("controlled shutdown did not complete in time; stopping anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
