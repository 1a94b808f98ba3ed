//! The marker sender: gets the markers of every decided transaction written, wherever its
//! partitions are led, and then has the coordinator write the Complete state (Kafka's
//! `TransactionMarkerChannelManager` and its send thread).
//!
//! The coordinator hands over a transaction once its PrepareCommit/PrepareAbort is appended
//! ([`MarkerSender::enqueue`]), with the barrier that record must pass: nothing is sent
//! before the decision is replicated, so a coordinator that fails over can never find a
//! transaction open whose markers some partition already holds. One task then runs rounds of
//! the [`MarkerQueue`]: each round routes the waiting partitions to their leaders in the
//! current metadata image and sends one request per destination through the
//! [`MarkerTransport`] (this node's partitions are written directly, the others get
//! WriteTxnMarkers), applies the answers, and writes the Complete state of transactions
//! with no partition left. It sleeps until it is woken (new work, an answer), the metadata
//! changes (a partition may have a new leader) or a backoff ends.
//!
//! Nothing is retried by the transport; everything is retried here, for as long as this
//! node coordinates the transaction (resignation removes its entries, see
//! [`MarkerSender::remove_txn_partition`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};

use super::channel::{Acknowledged, MarkerQueue, PartitionAnswers, Route, Ticket, TxnKey};
use super::markers::TxnMarker;
use crate::coordinator::WriteBarrier;
use crate::partition::ReplicationWait;
use crate::types::{NodeId, PartitionId, TopicPartition};

/// How long the sender sleeps with nothing due (it is woken for everything else; this only
/// bounds how stale a missed wake-up can make it).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// The wait before the replication of a decision is awaited again after a timeout.
const GATE_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Each marker's answered partitions with their error (`None`: written), in the order the
/// markers were sent. A partition left out of an answer is retried.
pub type MarkerAnswer = Vec<PartitionAnswers>;

/// How markers reach partition leaders: this node's partitions directly, other brokers'
/// over WriteTxnMarkers. A fake one in tests.
pub trait MarkerTransport: Send + Sync {
    /// Where the marker of `tp` goes now.
    fn route(&self, tp: &TopicPartition) -> Route;
    /// Sends one request with `markers` to `destination` and waits for its answer; `Err`
    /// when none came (not connected, disconnected, timed out).
    fn send(&self, destination: NodeId, markers: Vec<TxnMarker>) -> BoxFuture<'_, Result<MarkerAnswer, String>>;
    /// Changes whenever routes may have changed (the metadata image); `None`: never.
    fn route_changes(&self) -> Option<watch::Receiver<i64>>;
}

/// Whether the Complete state of a transaction was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Written, or no longer to be written (the transaction moved on, this node no longer
    /// coordinates it): the entry leaves the queue.
    Done,
    /// Not now (the log refused for the moment): tried again after a backoff.
    Retry,
}

/// The coordinator's side of the sender.
pub trait CompletionSink: Send + Sync {
    /// These partitions of `key`'s transaction have their markers (or need none).
    fn acknowledged(&self, key: &TxnKey, partitions: &[TopicPartition]);
    /// A newer producer or coordinator epoch took over `key`'s partitions.
    fn abandoned(&self, key: &TxnKey);
    /// Every marker of `key` is written: write its Complete state.
    fn complete(&self, key: &TxnKey) -> Completion;
}

pub struct MarkerSender {
    queue: Mutex<MarkerQueue>,
    wake: Arc<Notify>,
    transport: Arc<dyn MarkerTransport>,
    sink: OnceLock<Weak<dyn CompletionSink>>,
    runtime: OnceLock<tokio::runtime::Handle>,
    running: AtomicBool,
    /// How long one wait for the replication of a decision lasts.
    gate_timeout: Duration,
    /// The sender's own time base (its backoffs are on tokio's clock).
    epoch: tokio::time::Instant,
    /// Bumped whenever a transaction leaves the queue.
    finished: watch::Sender<u64>,
    this: Weak<MarkerSender>,
}

fn lock(m: &Mutex<MarkerQueue>) -> MutexGuard<'_, MarkerQueue> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl MarkerSender {
    pub fn new(transport: Arc<dyn MarkerTransport>, gate_timeout: Duration) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            queue: Mutex::new(MarkerQueue::default()),
            wake: Arc::new(Notify::new()),
            transport,
            sink: OnceLock::new(),
            runtime: OnceLock::new(),
            running: AtomicBool::new(false),
            gate_timeout,
            epoch: tokio::time::Instant::now(),
            finished: watch::channel(0).0,
            this: this.clone(),
        })
    }

    /// Who completes the transactions (set once, before anything is queued).
    pub fn set_sink(&self, sink: Weak<dyn CompletionSink>) {
        let _ = self.sink.set(sink);
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }

    /// The runtime the sender's tasks run on: the caller's, remembered from the first call
    /// made inside one (the coordinator's loader threads have none of their own).
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        if let Some(h) = self.runtime.get() {
            return Some(h.clone());
        }
        let h = tokio::runtime::Handle::try_current().ok()?;
        let _ = self.runtime.set(h.clone());
        Some(h)
    }

    /// Starts the sending task, if a runtime is at hand and it is not running yet.
    pub fn start(&self) {
        let Some(handle) = self.runtime() else { return };
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.this.clone();
        let wake = self.wake.clone();
        let changes = self.transport.route_changes();
        handle.spawn(run(me, wake, changes));
    }

    /// Queues the markers of a decided transaction. They go out once `gate` (the decision's
    /// record) is replicated; without a gate, at once.
    pub fn enqueue(&self, key: TxnKey, partitions: BTreeSet<TopicPartition>, gate: Option<WriteBarrier>) {
        let id = key.transactional_id.clone();
        let Some(ticket) = lock(&self.queue).add(key, partitions) else { return };
        self.start();
        match (gate, self.runtime()) {
            (None, _) => {
                lock(&self.queue).release(&id, ticket, self.now_ms());
                self.wake.notify_one();
            }
            (Some(gate), Some(handle)) => {
                handle.spawn(await_gate(self.this.clone(), id, ticket, gate));
            }
            (Some(_), None) => tracing::error!(transactional_id = %id, "no runtime to send transaction markers on"),
        }
    }

    /// Forgets the transactions of a `__transaction_state` partition this node no longer
    /// leads.
    pub fn remove_txn_partition(&self, partition: PartitionId) {
        let removed = lock(&self.queue).remove_txn_partition(partition);
        if removed > 0 {
            tracing::info!(partition = partition.0, transactions = removed, "stopped sending markers of a resigned partition");
            self.finished.send_modify(|n| *n += 1);
        }
    }

    pub fn is_queued(&self, transactional_id: &str) -> bool {
        lock(&self.queue).is_queued(transactional_id)
    }

    /// Transactions whose markers are being written.
    pub fn pending(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Changes whenever a transaction leaves the queue.
    pub fn watch_finished(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    fn sink(&self) -> Option<Arc<dyn CompletionSink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    fn report(&self, acked: Acknowledged) {
        let Some(sink) = self.sink() else { return };
        for (key, partitions) in &acked.by_txn {
            sink.acknowledged(key, partitions);
        }
        for key in &acked.abandoned {
            tracing::info!(transactional_id = %key.transactional_id, producer_id = key.producer_id, "markers abandoned: a newer epoch took over");
            sink.abandoned(key);
        }
        if !acked.abandoned.is_empty() {
            self.finished.send_modify(|n| *n += 1);
        }
    }

    /// One round: sends what is ready, writes what is complete; when the next backoff ends.
    fn round(&self) -> Option<i64> {
        let now = self.now_ms();
        let (requests, gone) = lock(&self.queue).requests(now, |tp| self.transport.route(tp));
        for (key, tps) in &gone.by_txn {
            tracing::info!(transactional_id = %key.transactional_id, partitions = ?tps, "partitions gone; no marker written there");
        }
        self.report(gone);
        if let Some(handle) = self.runtime() {
            for r in requests {
                handle.spawn(send_request(self.this.clone(), r.destination, r.markers));
            }
        }
        let due = lock(&self.queue).due_completions(now);
        if !due.is_empty() {
            let sink = self.sink();
            for (ticket, key) in due {
                let result = sink.as_ref().map_or(Completion::Done, |s| s.complete(&key));
                let mut q = lock(&self.queue);
                match result {
                    Completion::Done => q.completed(&key.transactional_id, ticket),
                    Completion::Retry => q.completion_failed(&key.transactional_id, ticket, self.now_ms()),
                }
            }
            self.finished.send_modify(|n| *n += 1);
        }
        lock(&self.queue).next_due_ms()
    }

    fn release(&self, transactional_id: &str, ticket: Ticket) {
        lock(&self.queue).release(transactional_id, ticket, self.now_ms());
        self.wake.notify_one();
    }

    /// Whether the entry is still queued under `ticket`.
    fn holds(&self, transactional_id: &str, ticket: Ticket) -> bool {
        lock(&self.queue).ticket_of(transactional_id) == Some(ticket)
    }

    fn drop_entry(&self, transactional_id: &str, ticket: Ticket) {
        if lock(&self.queue).remove(transactional_id, ticket).is_some() {
            self.finished.send_modify(|n| *n += 1);
        }
    }
}

/// The sending task: rounds until the sender is gone.
async fn run(me: Weak<MarkerSender>, wake: Arc<Notify>, mut changes: Option<watch::Receiver<i64>>) {
    loop {
        let (next_due, now) = {
            let Some(s) = me.upgrade() else { return };
            (s.round(), s.now_ms())
        };
        let wait = next_due.map_or(IDLE_WAIT, |at| Duration::from_millis(at.saturating_sub(now).max(0) as u64).min(IDLE_WAIT));
        let changed = async {
            match changes.as_mut() {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        futures::future::pending::<()>().await;
                    }
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = changed => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sends one request and applies its answer.
async fn send_request(me: Weak<MarkerSender>, destination: NodeId, markers: Vec<(Ticket, TxnMarker)>) {
    let Some(s) = me.upgrade() else { return };
    let (tickets, sent): (Vec<Ticket>, Vec<TxnMarker>) = markers.into_iter().unzip();
    let count = sent.len();
    let answer = s.transport.send(destination, sent).await;
    let now = s.now_ms();
    match answer {
        Ok(answer) => {
            if answer.len() != count {
                tracing::warn!(destination = destination.0, sent = count, answered = answer.len(), "WriteTxnMarkers answer does not match the request");
            }
            let answers: Vec<(Ticket, PartitionAnswers)> = tickets.into_iter().zip(answer).collect();
            for (_, results) in &answers {
                for (tp, e) in results.iter().filter(|(_, e)| e.is_some()) {
                    tracing::debug!(destination = destination.0, partition = %tp, error = ?e, "marker not written; retrying");
                }
            }
            let acked = lock(&s.queue).on_response(destination, &answers, now);
            s.report(acked);
        }
        Err(e) => {
            tracing::info!(destination = destination.0, error = %e, "WriteTxnMarkers not delivered; retrying");
            lock(&s.queue).on_undelivered(destination, now);
        }
    }
    s.wake.notify_one();
}

/// Waits until the decision of an entry is replicated, then releases its markers. A lost
/// leadership drops the entry (the next coordinator completes it); a timeout waits again.
async fn await_gate(me: Weak<MarkerSender>, transactional_id: String, ticket: Ticket, gate: WriteBarrier) {
    loop {
        let timeout = match me.upgrade() {
            Some(s) if s.holds(&transactional_id, ticket) => s.gate_timeout,
            _ => return,
        };
        let waited = gate.wait(timeout).await;
        let Some(s) = me.upgrade() else { return };
        match waited {
            Ok(()) => return s.release(&transactional_id, ticket),
            Err(ReplicationWait::NotLeader) => {
                tracing::info!(transactional_id = %transactional_id, "leadership moved before the decision was replicated; the next coordinator completes it");
                return s.drop_entry(&transactional_id, ticket);
            }
            Err(e) => tracing::debug!(transactional_id = %transactional_id, reason = ?e, "decision not replicated yet"),
        }
        tokio::time::sleep(GATE_RETRY_BACKOFF).await;
    }
}
