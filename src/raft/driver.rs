//! The quorum's driver: runs one [`RaftCore`] over the metadata log on disk
//! ([`FileRaftLog`]) and the `quorum-state` file, and does its I/O.
//!
//! The core runs on a thread of its own (a current-thread runtime), because what it asks for
//! must happen in order and before anything else: `PersistQuorumState` is written and
//! fsynced, appended entries are flushed, and only then do the messages that depend on them
//! go out. Blocking that one thread on an fsync is the point; the broker's runtime is never
//! blocked.
//!
//! Messages: a request from another node arrives through an API handler
//! ([`RaftHandle::request`]) and waits for the core's answer, which the driver hands back to
//! that handler (the core may hold a Fetch until it has something new). A request the core
//! sends goes out through a [`NodeClient`] per voter on the broker's runtime; its response
//! comes back as an event, with what the wire does not carry (the pre-vote flag, the fetch
//! position) filled from the request it answers. A request whose connection was refused or
//! reset comes back as `Event::Unreachable` (the peer's process is gone), a timeout as nothing.
//!
//! A metadata-log I/O failure stops the quorum on this node (Kafka halts the process): the
//! driver logs it and exits its loop; the node then answers quorum requests with errors.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::core::{Action, Event, RaftCore, RaftError};
use super::file_log::FileRaftLog;
use super::log::RaftLog;
use super::message::{Entry, Message, RaftErrorCode};
use super::quorum_state_file::QuorumStateFile;
use super::state::{QuorumDescription, RoleKind};
use super::wire;
use super::RaftConfig;
use crate::client::{ClientError, NodeClient};
use crate::clock::Clock;
use crate::types::{LeaderEpoch, NodeId, Offset};

/// Vote v2 carries the pre-vote flag; the newest Fetch we serve.
const VOTE_VERSION_MAX: i16 = 2;
const FETCH_VERSION_MAX: i16 = 17;

/// What the rest of the node sees of the quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumStatus {
    pub role: RoleKind,
    pub epoch: LeaderEpoch,
    pub leader: Option<NodeId>,
    pub high_watermark: Offset,
    /// The end of this node's metadata log (written, not necessarily committed).
    pub log_end_offset: Offset,
    /// Set once the metadata log failed and the quorum stopped on this node.
    pub failed: bool,
    /// Epochs this node has seen begin since it started.
    pub elections: u64,
}

/// What the driver hands the state machine, in log order: committed entries, or a snapshot
/// to start again from (after a restart with one on disk, or one fetched from the leader).
#[derive(Debug, Clone)]
pub enum Committed {
    /// Entries `base..base + entries.len()`, all committed.
    Entries { base: Offset, entries: Vec<Entry> },
    /// The state up to `end` (exclusive) as the snapshot's bytes.
    Snapshot { end: Offset, data: Bytes },
}

/// Where committed entries go (the metadata store's applier). Called on the quorum thread, so
/// it must only hand them on.
pub type CommitSink = Box<dyn Fn(Committed) + Send>;

/// Entries read from the log per hand-over.
const DELIVER_BATCH: usize = 4096;

enum Command {
    /// A request from `from`; the core's answer goes to `reply`.
    Request { from: NodeId, msg: Message, reply: oneshot::Sender<Message> },
    /// A peer's answer to a request this node sent.
    Response { from: NodeId, msg: Message },
    /// A request to `peer` failed with its connection refused or reset (`Event::Unreachable`).
    Unreachable { peer: NodeId },
    Propose { records: Vec<Bytes>, reply: oneshot::Sender<Result<Offset, RaftError>> },
    Describe { reply: oneshot::Sender<Option<QuorumDescription>> },
    /// The state machine's state up to `end` (committed, applied): keep it as the snapshot.
    Snapshot { end: Offset, data: Bytes, reply: oneshot::Sender<Result<(), RaftError>> },
    /// Leave the quorum: a leader resigns first (EndQuorumEpoch).
    Stop { done: oneshot::Sender<()> },
}

/// The handle API handlers and the controller use; cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<QuorumStatus>,
    local: NodeId,
    cluster_id: Arc<Mutex<Option<String>>>,
}

/// The kind of a message, to pair a request with the answer the core gives later.
fn kind(msg: &Message) -> u8 {
    match msg {
        Message::VoteRequest(_) | Message::VoteResponse(_) => 0,
        Message::BeginQuorumEpochRequest(_) | Message::BeginQuorumEpochResponse(_) => 1,
        Message::EndQuorumEpochRequest(_) | Message::EndQuorumEpochResponse(_) => 2,
        Message::FetchRequest(_) | Message::FetchResponse(_) => 3,
        Message::FetchSnapshotRequest(_) | Message::FetchSnapshotResponse(_) => 4,
    }
}

fn is_request(msg: &Message) -> bool {
    matches!(
        msg,
        Message::VoteRequest(_)
            | Message::BeginQuorumEpochRequest(_)
            | Message::EndQuorumEpochRequest(_)
            | Message::FetchRequest(_)
            | Message::FetchSnapshotRequest(_)
    )
}

impl RaftHandle {
    pub fn local(&self) -> NodeId {
        self.local
    }

    pub fn status(&self) -> QuorumStatus {
        *self.status.borrow()
    }

    /// Changes of [`RaftHandle::status`].
    pub fn watch(&self) -> watch::Receiver<QuorumStatus> {
        self.status.clone()
    }

    /// Hands a request from another node to the core; resolves to its answer, or `None` when
    /// the quorum is not running (stopped, failed) or dropped the request.
    pub async fn request(&self, from: NodeId, msg: Message) -> Option<Message> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Request { from, msg, reply }).ok()?;
        rx.await.ok()
    }

    /// Leader only: appends records; resolves to the offset of the first once written.
    pub async fn propose(&self, records: Vec<Bytes>) -> Result<Offset, RaftError> {
        let (reply, rx) = oneshot::channel();
        let not_leader = || RaftError::NotLeader { epoch: self.status().epoch, leader: self.status().leader };
        self.commands.send(Command::Propose { records, reply }).map_err(|_| not_leader())?;
        rx.await.map_err(|_| not_leader())?
    }

    /// DescribeQuorum's data; `None` when this node is not the leader.
    pub async fn describe(&self) -> Option<QuorumDescription> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Describe { reply }).ok()?;
        rx.await.ok().flatten()
    }

    /// Hands the quorum a snapshot of the state machine at `end` (exclusive, committed and
    /// applied); the log prefix behind it is deleted (KIP-630).
    pub async fn snapshot(&self, end: Offset, data: Bytes) -> Result<(), RaftError> {
        let (reply, rx) = oneshot::channel();
        let refused = || RaftError::InvalidSnapshot { end };
        self.commands.send(Command::Snapshot { end, data, reply }).map_err(|_| refused())?;
        rx.await.map_err(|_| refused())?
    }

    /// Stops the quorum on this node; a leader resigns first so the others elect at once.
    pub async fn stop(&self) {
        let (done, rx) = oneshot::channel();
        if self.commands.send(Command::Stop { done }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }

    /// The cluster id carried in quorum requests, once known.
    pub fn set_cluster_id(&self, id: Option<String>) {
        if let Ok(mut c) = self.cluster_id.lock() {
            *c = id;
        }
    }
}

/// Everything the driver thread owns.
struct Driver {
    core: RaftCore<FileRaftLog>,
    state_file: QuorumStateFile,
    clock: Arc<dyn Clock>,
    peers: HashMap<NodeId, Arc<NodeClient>>,
    runtime: tokio::runtime::Handle,
    commands: mpsc::UnboundedSender<Command>,
    /// Requests from peers waiting for the core's answer, per peer and kind, oldest first.
    waiting: HashMap<(NodeId, u8), VecDeque<oneshot::Sender<Message>>>,
    status: watch::Sender<QuorumStatus>,
    cluster_id: Arc<Mutex<Option<String>>>,
    failed: bool,
    sink: CommitSink,
    /// The next offset to hand to `sink`.
    delivered: Offset,
}

/// Starts the quorum on its own thread. `voters` maps every voter's id to its controller
/// listener (`host:port`); `runtime` runs the outbound calls; `sink` receives what is
/// committed, starting with the snapshot on disk if there is one.
#[allow(clippy::too_many_arguments)]
pub fn start(
    config: RaftConfig,
    log: FileRaftLog,
    state_file: QuorumStateFile,
    voters: HashMap<NodeId, String>,
    clock: Arc<dyn Clock>,
    runtime: tokio::runtime::Handle,
    sink: CommitSink,
) -> Result<RaftHandle, String> {
    let persisted = state_file.load().map_err(|e| e.to_string())?;
    let now = clock.now_ms().max(0) as u64;
    let local = config.node_id;
    let request_timeout = Duration::from_millis(config.request_timeout_ms.max(1));
    // The seed only spreads election timeouts; any per-process value will do.
    let seed = now ^ (u64::from(local.0 as u32) << 32);
    let core = RaftCore::new(config, log, persisted, seed, now).map_err(|e| e.to_string())?;
    let peers = voters
        .into_iter()
        .filter(|(id, _)| *id != local)
        .map(|(id, addr)| (id, Arc::new(NodeClient::new(addr, format!("raft-{}", local.0), request_timeout))))
        .collect();
    let (tx, rx) = mpsc::unbounded_channel();
    let initial = QuorumStatus {
        role: core.role(),
        epoch: core.epoch(),
        leader: core.leader(),
        high_watermark: core.high_watermark(),
        log_end_offset: core.log().end_offset(),
        failed: false,
        elections: 0,
    };
    let (status, status_rx) = watch::channel(initial);
    let cluster_id = Arc::new(Mutex::new(None));
    let driver = Driver {
        core,
        state_file,
        clock,
        peers,
        runtime,
        commands: tx.clone(),
        waiting: HashMap::new(),
        status,
        cluster_id: cluster_id.clone(),
        failed: false,
        sink,
        delivered: Offset(0),
    };
    std::thread::Builder::new()
        .name(format!("raft-{}", local.0))
        .spawn(move || driver.run(rx))
        .map_err(|e| format!("cannot start the quorum thread: {e}"))?;
    Ok(RaftHandle { commands: tx, status: status_rx, local, cluster_id })
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms().max(0) as u64
    }

    fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "quorum thread cannot start its runtime");
                return;
            }
        };
        let node = self.core.local().0;
        // A snapshot on disk holds only committed state: the state machine starts from it.
        if let Some(id) = self.core.log().latest_snapshot() {
            self.deliver_snapshot(id);
        } else {
            self.delivered = self.core.log().start_offset();
        }
        rt.block_on(async move {
            loop {
                let wait_ms = self.core.next_deadline_ms().saturating_sub(self.now_ms());
                let command = tokio::select! {
                    c = commands.recv() => c,
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms.min(60_000))) => {
                        let now = self.now_ms();
                        let actions = self.core.step(now, Event::Tick);
                        self.execute(actions);
                        if self.failed {
                            break;
                        }
                        continue;
                    }
                };
                let Some(command) = command else { break };
                if !self.handle(command) || self.failed {
                    break;
                }
            }
        });
        tracing::info!(node, "quorum stopped");
    }

    /// Returns false when the driver must stop.
    fn handle(&mut self, command: Command) -> bool {
        let now = self.now_ms();
        match command {
            Command::Request { from, msg, reply } => {
                let waiting = self.waiting.entry((from, kind(&msg))).or_default();
                if matches!(msg, Message::FetchRequest(_)) {
                    // The core holds at most one fetch per replica and drops the older one
                    // unanswered when a newer arrives. Answers pair with requests in order, so
                    // its waiter must go too, or every later answer would reach the request
                    // before it (a restarted voter then heard nothing for tens of seconds).
                    // Dropped, it answers its (abandoned) caller with an error.
                    waiting.clear();
                }
                waiting.push_back(reply);
                let actions = self.core.step(now, Event::Message { from, msg });
                self.execute(actions);
            }
            Command::Response { from, msg } => {
                let actions = self.core.step(now, Event::Message { from, msg });
                self.execute(actions);
            }
            Command::Unreachable { peer } => {
                let actions = self.core.step(now, Event::Unreachable { peer });
                self.execute(actions);
            }
            Command::Propose { records, reply } => match self.core.propose(now, records) {
                Ok((offset, actions)) => {
                    self.execute(Ok(actions));
                    let _ = reply.send(if self.failed {
                        Err(RaftError::NotLeader { epoch: self.core.epoch(), leader: None })
                    } else {
                        Ok(offset)
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Describe { reply } => {
                let _ = reply.send(self.core.describe_quorum());
            }
            Command::Snapshot { end, data, reply } => {
                let out = self.core.snapshot_taken(end, data).map(|id| {
                    tracing::info!(end = id.offset.0, epoch = id.epoch.0, "metadata snapshot taken");
                });
                let _ = reply.send(out);
                if let Some(f) = self.core.log().failure() {
                    let f = f.to_string();
                    self.fail(&f);
                }
            }
            Command::Stop { done } => {
                if self.core.role() == RoleKind::Leader {
                    let actions = self.core.step(now, Event::Resign);
                    self.execute(actions);
                }
                let _ = done.send(());
                return false;
            }
        }
        true
    }

    /// Executes the core's actions in order (see `raft`'s module doc for why the order is the
    /// contract); stops at the first I/O failure.
    fn execute(&mut self, actions: Result<Vec<Action>, RaftError>) {
        let actions = match actions {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "quorum step refused");
                return;
            }
        };
        for action in actions {
            if self.failed {
                return;
            }
            match action {
                Action::PersistQuorumState(state) => {
                    if let Err(e) = self.state_file.store(&state) {
                        self.fail(&e.to_string());
                    }
                }
                Action::Flush { .. } => match self.core.log_mut().flush() {
                    Ok(up_to) => {
                        let now = self.now_ms();
                        // The report's own actions run before the rest of this list, which
                        // keeps their order after the flush they depend on.
                        let more = self.core.step(now, Event::Flushed { up_to });
                        self.execute(more);
                    }
                    Err(e) => self.fail(&e),
                },
                Action::LogTruncated { to } => {
                    tracing::info!(to = to.0, "metadata log truncated to the leader's");
                }
                Action::Send { to, msg } => self.send(to, msg),
                Action::Commit { up_to } => self.deliver(up_to),
                Action::SnapshotLoaded { id } => self.deliver_snapshot(id),
                Action::RoleChanged { .. } => {}
            }
            if let Some(f) = self.core.log().failure() {
                let f = f.to_string();
                self.fail(&f);
            }
        }
        self.publish();
    }

    /// Hands the committed entries below `up_to` that the sink has not seen to it.
    fn deliver(&mut self, up_to: Offset) {
        if self.delivered < self.core.log().start_offset()
            && let Some(id) = self.core.log().latest_snapshot()
        {
            self.deliver_snapshot(id);
        }
        while self.delivered < up_to {
            let want = ((up_to.0 - self.delivered.0) as usize).min(DELIVER_BATCH);
            let entries = self.core.log().read(self.delivered, want);
            if entries.is_empty() {
                tracing::warn!(from = self.delivered.0, up_to = up_to.0, "committed entries missing from the metadata log");
                return;
            }
            let base = self.delivered;
            self.delivered = Offset(base.0 + entries.len() as i64);
            (self.sink)(Committed::Entries { base, entries });
        }
    }

    fn deliver_snapshot(&mut self, id: super::message::SnapshotId) {
        match self.core.log().read_snapshot(id, 0, u32::MAX) {
            Some((data, _)) => {
                self.delivered = id.offset;
                (self.sink)(Committed::Snapshot { end: id.offset, data });
            }
            None => tracing::error!(end = id.offset.0, "the metadata snapshot cannot be read"),
        }
    }

    fn fail(&mut self, why: &str) {
        tracing::error!(error = why, "the metadata log failed: the quorum stops on this node");
        self.failed = true;
        self.publish();
    }

    fn publish(&self) {
        let status = QuorumStatus {
            role: self.core.role(),
            epoch: self.core.epoch(),
            leader: self.core.leader(),
            high_watermark: self.core.high_watermark(),
            log_end_offset: self.core.log().end_offset(),
            failed: self.failed,
            elections: 0,
        };
        self.status.send_if_modified(|s| {
            let status = QuorumStatus { elections: s.elections + u64::from(status.epoch > s.epoch), ..status };
            let changed = *s != status;
            if changed && (s.leader != status.leader || s.epoch != status.epoch) {
                tracing::info!(role = ?status.role, epoch = status.epoch.0, leader = ?status.leader.map(|l| l.0), "quorum state");
            }
            *s = status;
            changed
        });
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        if !is_request(&msg) {
            // The answer to a waiting request from `to`.
            if let Some(reply) = self.waiting.get_mut(&(to, kind(&msg))).and_then(|q| q.pop_front()) {
                let _ = reply.send(msg);
            }
            return;
        }
        let Some(client) = self.peers.get(&to).cloned() else { return };
        let commands = self.commands.clone();
        let local = self.core.local();
        let cluster_id = self.cluster_id.lock().ok().and_then(|c| c.clone());
        self.runtime.spawn(async move {
            match call(&client, local, to, msg, cluster_id.as_deref()).await {
                Ok(response) => {
                    let _ = commands.send(Command::Response { from: to, msg: response });
                }
                Err(CallFailed::Unreachable) => {
                    let _ = commands.send(Command::Unreachable { peer: to });
                }
                Err(CallFailed::Other) => {}
            }
        });
    }
}

/// Why a quorum request got no answer.
enum CallFailed {
    /// The peer's process is gone: nothing listens on its port, or the connection the request
    /// was on was reset or closed under it. The core may stand for election early.
    Unreachable,
    /// Anything else (a timeout, a bad answer): the core's timers deal with it.
    Other,
}

/// A refused or reset connection says the peer's process is gone; a timeout says nothing of
/// the kind (the peer may be slow, or cut off by the network, and alive).
fn classify(e: &ClientError) -> CallFailed {
    use std::io::ErrorKind;
    match e {
        ClientError::Connect { source, .. }
            if matches!(
                source.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) =>
        {
            CallFailed::Unreachable
        }
        // The reader saw the connection end (EOF or reset) while the request waited. (Our own
        // close after another call's timeout also ends here; the core's reaction to a wrong
        // guess is one refused pre-vote round.)
        ClientError::Disconnected(_) => CallFailed::Unreachable,
        _ => CallFailed::Other,
    }
}

/// One request to a voter over the wire; an error when it failed (the core retries on its
/// timers, and stands early when the peer is gone).
async fn call(
    client: &NodeClient,
    local: NodeId,
    to: NodeId,
    msg: Message,
    cluster_id: Option<&str>,
) -> Result<Message, CallFailed> {
    let failed = |e: &ClientError| {
        tracing::debug!(to = to.0, error = %e, "quorum request failed");
        classify(e)
    };
    let undecodable = |_| CallFailed::Other;
    match msg {
        Message::VoteRequest(r) => {
            let w = wire::vote_request_to_wire(&r, to, cluster_id, VOTE_VERSION_MAX).map_err(undecodable)?;
            let (_, resp) = client.call(&w, VOTE_VERSION_MAX).await.map_err(|e| failed(&e))?;
            wire::vote_response_from_wire(&resp, r.pre_vote).map(Message::VoteResponse).map_err(undecodable)
        }
        Message::BeginQuorumEpochRequest(r) => {
            let w = wire::begin_quorum_epoch_request_to_wire(&r, to, cluster_id);
            let (_, resp) = client.call(&w, 1).await.map_err(|e| failed(&e))?;
            wire::begin_quorum_epoch_response_from_wire(&resp).map(Message::BeginQuorumEpochResponse).map_err(undecodable)
        }
        Message::EndQuorumEpochRequest(r) => {
            let w = wire::end_quorum_epoch_request_to_wire(&r, cluster_id);
            let (_, resp) = client.call(&w, 1).await.map_err(|e| failed(&e))?;
            wire::end_quorum_epoch_response_from_wire(&resp).map(Message::EndQuorumEpochResponse).map_err(undecodable)
        }
        Message::FetchRequest(r) => {
            // The version is negotiated per call; encode for the highest the peer may pick.
            let w = wire::fetch_request_to_wire(&r, cluster_id, FETCH_VERSION_MAX);
            let (_, resp) = client.call(&w, FETCH_VERSION_MAX).await.map_err(|e| failed(&e))?;
            wire::fetch_response_from_wire(&resp, r.position).map(Message::FetchResponse).map_err(undecodable)
        }
        Message::FetchSnapshotRequest(r) => {
            let w = wire::fetch_snapshot_request_to_wire(&r, cluster_id);
            let (_, resp) = client.call(&w, 1).await.map_err(|e| failed(&e))?;
            wire::fetch_snapshot_response_from_wire(&resp).map(Message::FetchSnapshotResponse).map_err(undecodable)
        }
        _ => {
            let _ = local;
            Err(CallFailed::Other)
        }
    }
}

/// The error a quorum request gets when no quorum runs here.
pub fn not_running() -> RaftErrorCode {
    RaftErrorCode::Other(kafka_protocol::ResponseError::UnknownServerError.code())
}
