//! This node's part in a multi-node cluster, around the metadata quorum.
//!
//! - [`Cluster`] knows the controllers (`controller.quorum.voters`) and which one is active
//!   (the quorum leader), and carries requests to it: forwarded admin requests, a broker's
//!   registration and heartbeats, producer-id blocks. Like Kafka's forwarding manager it
//!   waits for a known leader and retries a call that could not be delivered, up to the
//!   request timeout; answers are returned as they are.
//! - [`lifecycle`]: a broker registers with the active controller, heartbeats, is unfenced
//!   once caught up with the metadata log, and on SIGTERM shuts down in a controlled way;
//!   [`clean_shutdown`] remembers the epoch of a clean stop for the next registration.
//! - [`active`]: the active controller's duties that no request triggers: it writes the
//!   cluster's first records (cluster id, feature levels), fences brokers whose sessions
//!   expired, and takes metadata snapshots.
//!
//! The rules themselves (what registration, heartbeats and fencing write) are pure functions
//! in [`crate::metadata::cluster_control`]; this module is their I/O.

pub mod active;
pub mod clean_shutdown;
pub mod lifecycle;
pub mod peers;
pub mod replica;
pub mod txn_markers;
pub mod txn_verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request};
use thiserror::Error;

use crate::client::{ClientError, NodeClient};
use crate::config::BrokerConfig;
use crate::metadata::cluster_control::BrokerSessions;
use crate::raft::RoleKind;
use crate::raft::driver::RaftHandle;
use crate::types::NodeId;

/// Pause between attempts to reach the active controller.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("no active controller is known after {0} ms")]
    NoController(u64),
    #[error("the active controller {controller} could not be reached: {source}")]
    Unreachable { controller: i32, source: ClientError },
}

pub struct Cluster {
    pub raft: RaftHandle,
    node_id: NodeId,
    /// Each controller's client, on its controller listener.
    controllers: HashMap<NodeId, Arc<NodeClient>>,
    /// When brokers last heartbeated (used while this node is the active controller).
    pub sessions: Mutex<BrokerSessions>,
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: u64,
    request_timeout: Duration,
    pub is_broker: bool,
    pub is_controller: bool,
    /// This broker's epoch once registered (-1 before).
    broker_epoch: AtomicI64,
    /// Set on SIGTERM: the lifecycle asks for a controlled shutdown.
    shutting_down: AtomicBool,
    /// Whether the controller has this broker unfenced (its last heartbeat's answer).
    unfenced: tokio::sync::watch::Sender<bool>,
    /// The quorum as last described while this node led it (for the metrics).
    pub described: Mutex<Option<crate::raft::QuorumDescription>>,
    /// Connections brokers heartbeat on, by peer address (see [`active::probe_and_fence`]).
    heartbeat_peers: Mutex<HashMap<std::net::SocketAddr, (NodeId, crate::types::BrokerEpoch)>>,
    /// When the controller last answered this broker's heartbeat, in ms after `created`
    /// (0: never).
    heartbeat_answered_ms: std::sync::atomic::AtomicU64,
    created: std::time::Instant,
    /// This process's incarnation id (a new one per start), registered by [`lifecycle`].
    incarnation: uuid::Uuid,
}

impl Cluster {
    pub fn new(config: &BrokerConfig, raft: RaftHandle) -> Self {
        let s = config.settings();
        let node_id = s.node_id;
        let request_timeout = s.request_timeout;
        let controllers = s
            .quorum
            .voters
            .iter()
            .map(|(id, addr)| (*id, Arc::new(NodeClient::new(addr.clone(), format!("broker-{}-to-controller", node_id.0), request_timeout))))
            .collect();
        Self {
            raft,
            node_id,
            controllers,
            sessions: Mutex::new(BrokerSessions::default()),
            session_timeout_ms: s.quorum.broker_session_timeout_ms,
            heartbeat_interval_ms: s.quorum.broker_heartbeat_interval_ms,
            request_timeout,
            is_broker: s.roles.broker,
            is_controller: s.roles.controller,
            broker_epoch: AtomicI64::new(-1),
            shutting_down: AtomicBool::new(false),
            unfenced: tokio::sync::watch::channel(false).0,
            described: Mutex::new(None),
            heartbeat_peers: Mutex::new(HashMap::new()),
            heartbeat_answered_ms: std::sync::atomic::AtomicU64::new(0),
            created: std::time::Instant::now(),
            incarnation: uuid::Uuid::new_v4(),
        }
    }

    /// This process's incarnation id.
    pub fn incarnation(&self) -> uuid::Uuid {
        self.incarnation
    }

    /// The controller answered a heartbeat of this broker just now.
    pub(crate) fn note_heartbeat_answered(&self) {
        let now = (self.created.elapsed().as_millis() as u64).max(1);
        self.heartbeat_answered_ms.store(now, Ordering::Release);
    }

    /// No heartbeat of this broker has been answered for longer than
    /// `broker.session.timeout.ms` (never true before the first answer): the controller has
    /// fenced this broker, or is about to, and elects other leaders for its partitions. A
    /// leader then stops holding `acks=all` writes it cannot replicate and answers
    /// NOT_LEADER_OR_FOLLOWER, so that clients find the new leader at once instead of waiting
    /// out their request timeout on a node that is cut off (Kafka holds them until the
    /// timeout). The answer is never an acknowledgement, so giving up early is always safe.
    pub fn session_lapsed(&self) -> bool {
        let last = self.heartbeat_answered_ms.load(Ordering::Acquire);
        let now = self.created.elapsed().as_millis() as u64;
        last != 0 && now.saturating_sub(last) > self.session_timeout_ms.max(0) as u64
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Whether this node is the active controller (the quorum leader).
    pub fn is_active_controller(&self) -> bool {
        let s = self.raft.status();
        s.role == RoleKind::Leader && !s.failed
    }

    /// The active controller as far as this node knows.
    pub fn active_controller(&self) -> Option<NodeId> {
        self.raft.status().leader
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    pub(crate) fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.store(epoch, Ordering::Release);
    }

    pub(crate) fn set_unfenced(&self, unfenced: bool) {
        self.unfenced.send_replace(unfenced);
    }

    /// Resolves once the controller has unfenced this broker (Kafka's brokers become ready
    /// only then).
    pub async fn wait_unfenced(&self) {
        let mut rx = self.unfenced.subscribe();
        let _ = rx.wait_for(|u| *u).await;
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// A broker heartbeated on the connection from `peer`.
    pub fn heartbeat_connection(&self, peer: std::net::SocketAddr, id: NodeId, epoch: crate::types::BrokerEpoch) {
        if let Ok(mut m) = self.heartbeat_peers.lock() {
            m.insert(peer, (id, epoch));
        }
    }

    /// The connection from `peer` closed: the broker that heartbeated on it, if any.
    pub fn heartbeat_connection_closed(&self, peer: std::net::SocketAddr) -> Option<(NodeId, crate::types::BrokerEpoch)> {
        self.heartbeat_peers.lock().ok()?.remove(&peer)
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends `request` to the active controller, waiting for one to be known and retrying a
    /// call that failed in transit, until the request timeout.
    pub async fn call_controller<R>(&self, request: &R, max_version: i16) -> Result<(i16, R::Response), ClusterError>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut status = self.raft.watch();
        let mut last_error = None;
        loop {
            let leader = status.borrow_and_update().leader;
            if let Some(client) = leader.and_then(|l| self.controllers.get(&l)) {
                match client.call(request, max_version).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) => {
                        tracing::debug!(controller = ?leader, error = %e, "call to the active controller failed");
                        last_error = Some((leader.map_or(-1, |l| l.0), e));
                        tokio::select! {
                            _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                            _ = tokio::time::sleep_until(deadline) => {}
                        }
                    }
                }
            } else {
                tokio::select! {
                    _ = status.changed() => {}
                    _ = tokio::time::sleep(RETRY_BACKOFF) => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match last_error {
                    Some((controller, source)) => ClusterError::Unreachable { controller, source },
                    None => ClusterError::NoController(self.request_timeout.as_millis() as u64),
                });
            }
        }
    }
}

/// The controller's answer as this node's error: its code and message, passed on as they are.
fn refused(code: i16, message: Option<&str>) -> crate::broker::BrokerError {
    let message = message.map(str::to_string).unwrap_or_else(|| {
        kafka_protocol::ResponseError::try_from_code(code).map(|e| e.to_string()).unwrap_or_else(|| format!("error {code}"))
    });
    crate::broker::BrokerError::Controller(crate::metadata::ControllerError::Forwarded { code, message })
}

fn undelivered(e: &ClusterError) -> crate::broker::BrokerError {
    refused(kafka_protocol::ResponseError::RequestTimedOut.code(), Some(&e.to_string()))
}

/// Asks the active controller to create `spec` (CreateTopics), then waits until the topic is
/// in this node's image. A topic that already exists is not an error.
pub async fn forward_create_topic(
    broker: &crate::broker::Broker,
    cluster: &Cluster,
    spec: &crate::metadata::TopicSpec,
) -> Result<(), crate::broker::BrokerError> {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(spec.name.clone()));
    t.num_partitions = spec.partitions;
    t.replication_factor = spec.replication_factor;
    t.configs = spec
        .configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.clone());
            c.value = Some(StrBytes::from_string(v.clone()));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = cluster.request_timeout.as_millis() as i32;
    let (_, resp) = cluster.call_controller(&req, 7).await.map_err(|e| undelivered(&e))?;
    if let Some(r) = resp.topics.first()
        && r.error_code != 0
        && r.error_code != kafka_protocol::ResponseError::TopicAlreadyExists.code()
    {
        return Err(refused(r.error_code, r.error_message.as_deref()));
    }
    let mut applied = broker.metadata_store().watch_applied();
    let wait = applied.wait_for(|_| broker.image().topic(&spec.name).is_some());
    match tokio::time::timeout(cluster.request_timeout, wait).await {
        Ok(_) => Ok(()),
        Err(_) => Err(refused(kafka_protocol::ResponseError::RequestTimedOut.code(), Some("the new topic did not reach this broker in time"))),
    }
}

/// A block of producer ids from the active controller (AllocateProducerIds): `(first, end)`.
pub async fn allocate_producer_ids(broker: &crate::broker::Broker, cluster: &Cluster) -> Result<(i64, i64), crate::broker::BrokerError> {
    use kafka_protocol::messages::{AllocateProducerIdsRequest, BrokerId};
    let mut req = AllocateProducerIdsRequest::default();
    req.broker_id = BrokerId(broker.node_id);
    req.broker_epoch = cluster.broker_epoch();
    let (_, resp) = cluster.call_controller(&req, 0).await.map_err(|e| undelivered(&e))?;
    if resp.error_code != 0 {
        return Err(refused(resp.error_code, None));
    }
    let start = resp.producer_id_start.0;
    Ok((start, start + i64::from(resp.producer_id_len.max(0))))
}
