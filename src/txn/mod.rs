//! The transaction coordinator: transactional ids, their producer ids and epochs, and the
//! transactions they run, in both protocols of KIP-890 (see [`state`] for the state machine):
//! a request's API version says which one its client speaks ([`TxnVersion`], as Kafka's
//! `TransactionVersion.transactionVersionForEndTxn` and friends), whatever level
//! `transaction.version` is finalized at; the finalized level decides the record version of
//! `__transaction_state` and how the coordinator itself aborts (timeouts, fencing).
//!
//! State lives in memory behind one lock and is durable in the compacted internal topic
//! `__transaction_state` (partition = Kafka's hash of the transactional id, created on first
//! use with `transaction.state.log.num.partitions` partitions), in Kafka's record formats
//! ([`records`]). Every transition is appended before it becomes current and before the
//! client hears of it, and the client hears once it is replicated (the handlers wait on
//! [`TransactionCoordinator::write_barrier`]). This node coordinates the transactional ids of
//! the `__transaction_state` partitions it leads ([`crate::coordinator`]): elected leader of
//! one, it replays that partition to its log end (COORDINATOR_LOAD_IN_PROGRESS meanwhile);
//! resigning, it drops those ids (NOT_COORDINATOR) and stops sending their markers. After a
//! load (at start-up or on election) a transaction found preparing (its decision durable,
//! its markers perhaps not all written) is completed: markers again (a duplicate marker
//! changes nothing), then the Complete state. An open transaction found at start-up is
//! aborted once its `transaction.timeout.ms` has passed, like any other.
//!
//! Ending a transaction: PrepareCommit/PrepareAbort is written; once it is replicated the
//! [`sender`] gets a marker into every partition of the transaction, on whichever broker
//! leads it ([`channel`] holds the rules, [`markers`] the local write, WriteTxnMarkers the
//! remote one), retrying until each leader acknowledged a replicated marker, and only then
//! is CompleteCommit/CompleteAbort written. The EndTxn answer waits a moment for that
//! ([`END_TXN_MARKERS_WAIT`]), which spares the producer CONCURRENT_TRANSACTIONS retries when
//! the leaders answer at once; Kafka answers as soon as the decision is replicated.
//!
//! Lock order: the coordinator's lock is never held while markers are written (they take the
//! group coordinator's lock for `__consumer_offsets`) nor while the sender's queue is locked;
//! appends to `__transaction_state` happen under it, as the group coordinator appends under
//! its own.

pub mod channel;
pub mod markers;
pub mod records;
pub mod sender;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;

use crate::broker::{Broker, InternalTopic};
use crate::coordinator::{LeadershipListener, OwnedPartitions, WriteBarrier};
use crate::metadata::features::{TRANSACTION_VERSION, transaction_version};
use crate::record::BatchBuilder;
use crate::types::{LeaderEpoch, PartitionId, TopicPartition};
use crate::sync::lock;
use channel::TxnKey;
use sender::{Completion, CompletionSink, MarkerSender, MarkerTransport};
pub use state::TxnVersion;
use state::{EndAction, InitAction, NO_EPOCH, NO_PRODUCER_ID, ProducerIdAndEpoch, TxnMetadata, TxnState};

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Bytes read per step while loading `__transaction_state`.
const LOAD_READ_BYTES: usize = 1 << 20;
/// How long an EndTxn answer waits for the transaction's markers once its decision is
/// replicated: enough for live leaders to answer, short against the client's
/// `request.timeout.ms` when one is unreachable (the producer then retries its next request
/// on CONCURRENT_TRANSACTIONS until the transaction completes, as with Kafka).
pub const END_TXN_MARKERS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The coordinator's settings, Kafka's keys.
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub min_isr: i32,
    pub segment_bytes: i32,
    pub max_timeout_ms: i32,
    pub abort_check_interval_ms: i64,
    pub expiration_ms: i64,
    pub expiration_check_interval_ms: i64,
}

impl TxnConfig {
    pub fn from_broker(c: &crate::config::BrokerConfig) -> Self {
        let t = &c.settings().txn;
        TxnConfig {
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            min_isr: t.min_isr,
            segment_bytes: t.segment_bytes,
            max_timeout_ms: t.max_timeout_ms,
            abort_check_interval_ms: t.abort_check_interval_ms,
            expiration_ms: t.expiration_ms,
            expiration_check_interval_ms: t.expiration_check_interval_ms,
        }
    }
}

/// A transaction as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub partitions: Vec<(String, Vec<i32>)>,
}

/// ListTransactions' filters (empty: any).
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<i64>,
    /// Only transactions started longer ago than this (v1+); negative: any.
    pub duration_ms: i64,
    pub transactional_id_pattern: Option<regex::Regex>,
}

pub struct TransactionCoordinator {
    broker: Arc<Broker>,
    /// Gets the markers of decided transactions written.
    sender: Arc<MarkerSender>,
    config: TxnConfig,
    /// The transactional ids of the loaded partitions in `owned`.
    /// Lock order: `txns`, then `owned` (never held while taking another lock).
    txns: Mutex<HashMap<String, TxnMetadata>>,
    owned: OwnedPartitions,
    /// Set while [`TransactionCoordinator::start`] runs: loads happen on its thread.
    starting: std::sync::atomic::AtomicBool,
    this: std::sync::Weak<TransactionCoordinator>,
    last_abort_check_ms: AtomicI64,
    last_expiration_check_ms: AtomicI64,
}


impl TransactionCoordinator {
    pub fn new(broker: Arc<Broker>, transport: Arc<dyn MarkerTransport>) -> Arc<Self> {
        let config = TxnConfig::from_broker(&broker.config);
        let now = broker.clock.now_ms();
        let sender = MarkerSender::new(transport, broker.config.settings().request_timeout);
        Arc::new_cyclic(|this: &std::sync::Weak<Self>| {
            let sink: std::sync::Weak<dyn CompletionSink> = this.clone();
            sender.set_sink(sink);
            Self {
                broker,
                sender,
                config,
                txns: Mutex::new(HashMap::new()),
                owned: OwnedPartitions::default(),
                starting: std::sync::atomic::AtomicBool::new(false),
                this: this.clone(),
                last_abort_check_ms: AtomicI64::new(now),
                last_expiration_check_ms: AtomicI64::new(now),
            }
        })
    }

    fn now(&self) -> i64 {
        self.broker.clock.now_ms()
    }

    /// Starts coordinating the `__transaction_state` partitions this node leads: loads them
    /// on this thread and completes the transactions they left preparing; later elections
    /// load on a thread of their own.
    pub fn start(&self) {
        use std::sync::atomic::Ordering;
        self.starting.store(true, Ordering::Release);
        self.sender.start();
        let me: std::sync::Weak<dyn LeadershipListener> = self.this.clone();
        self.broker.add_leadership_listener(me);
        self.starting.store(false, Ordering::Release);
    }

    /// Loads partition `index` led in `epoch` to its log end; unless leadership moved
    /// meanwhile, installs its transactional ids and completes those found preparing
    /// (Kafka's `loadTransactionsForTxnTopicPartition`).
    fn load_partition(&self, index: PartitionId, epoch: LeaderEpoch) {
        let started = std::time::Instant::now();
        let Some(p) = self.broker.partition(&TopicPartition::new(TRANSACTION_STATE_TOPIC, index.0)) else { return };
        let loaded = replay(&p);
        let preparing: Vec<String> = loaded.values().filter(|m| m.state.is_preparing()).map(|m| m.transactional_id.clone()).collect();
        {
            let mut txns = lock(&self.txns);
            if !self.owned.finish_load(index, epoch) {
                tracing::info!(partition = index.0, epoch = epoch.0, "leadership moved while loading; load discarded");
                return;
            }
            txns.retain(|id, _| self.partition_for(id) != index.0);
            tracing::info!(partition = index.0, epoch = epoch.0, transactional_ids = loaded.len(), elapsed_ms = started.elapsed().as_millis() as u64, "loaded transaction state");
            txns.extend(loaded);
        }
        for id in preparing {
            self.complete_transaction(&id);
        }
    }

    /// Creates `__transaction_state` on first use, as Kafka does, with Kafka's configs for it
    /// (`min.insync.replicas` from `transaction.state.log.min.isr`).
    pub fn ensure_state_topic(&self) -> Result<(), ResponseError> {
        if self.broker.image().topic(TRANSACTION_STATE_TOPIC).is_some() {
            return Ok(());
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("compression.type".to_string(), "uncompressed".to_string());
        configs.insert("unclean.leader.election.enable".to_string(), "false".to_string());
        configs.insert("min.insync.replicas".to_string(), self.config.min_isr.to_string());
        configs.insert("segment.bytes".to_string(), self.config.segment_bytes.to_string());
        let topic = InternalTopic {
            name: TRANSACTION_STATE_TOPIC.to_string(),
            partitions: self.config.num_partitions,
            replication_factor: self.config.replication_factor,
            configs,
        };
        self.broker.create_internal_topic(&topic).map_err(|e| {
            tracing::warn!(error = %e, "cannot create __transaction_state");
            ResponseError::CoordinatorNotAvailable
        })
    }

    /// Whether requests for `transactional_id` are served here (creating the topic on first
    /// use): NOT_COORDINATOR unless this node leads its partition, COORDINATOR_LOAD_IN_PROGRESS
    /// while that partition loads. Called before the coordinator's lock is taken.
    pub fn check_coordinator(&self, transactional_id: &str) -> Result<(), ResponseError> {
        self.ensure_state_topic()?;
        self.owned.check(PartitionId(self.partition_for(transactional_id)))
    }

    /// What the answer of a request for `transactional_id` waits on: everything written to
    /// its partition so far replicated.
    pub fn write_barrier(&self, transactional_id: &str) -> Option<WriteBarrier> {
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, self.partition_for(transactional_id));
        self.broker.partition(&tp).map(WriteBarrier::at_log_end)
    }

    /// How long a write waits for replication (`request.timeout.ms`, as Kafka's
    /// `TransactionStateManager` appends).
    pub fn write_timeout(&self) -> std::time::Duration {
        self.broker.config.settings().request_timeout
    }

    /// The `__transaction_state` partition of `transactional_id` (Kafka's `partitionFor`).
    /// Decided transactions whose markers are still being written.
    pub fn markers_pending(&self) -> usize {
        self.sender.pending()
    }

    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        let n = self
            .broker
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partition_count())
            .unwrap_or(self.config.num_partitions)
            .max(1);
        let h = crate::group::java_hash(transactional_id);
        (if h == i32::MIN { 0 } else { h.abs() }) % n
    }

    /// The epoch of this coordinator for `transactional_id`: its partition's leader epoch.
    fn coordinator_epoch(&self, transactional_id: &str) -> i32 {
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, self.partition_for(transactional_id));
        self.broker.partition(&tp).map_or(0, |p| p.leader_epoch().0)
    }

    /// Appends `value` (None: a tombstone) for `transactional_id`, fsynced if the topic's
    /// flush policy says so, before anything depends on it.
    fn persist(&self, transactional_id: &str, value: Option<&TxnMetadata>) -> Result<(), ResponseError> {
        let tp = TopicPartition::new(TRANSACTION_STATE_TOPIC, self.partition_for(transactional_id));
        let partition = self.broker.partition(&tp).ok_or(ResponseError::NotCoordinator)?;
        if !partition.meets_min_isr() {
            // Kafka appends with acks=all: NOT_ENOUGH_REPLICAS, answered as this.
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let version = self.broker.image().feature_level(TRANSACTION_VERSION);
        let now = self.now();
        let record = crate::record::Record {
            timestamp_delta_ms: 0,
            key: Some(records::key(transactional_id)),
            value: value.map(|m| records::value(&m.to_value(), version)),
        };
        let batch = BatchBuilder::new(0).timestamps(now).record(record).build();
        let failed = |e: crate::partition::PartitionError| {
            tracing::warn!(error = %e, "cannot write to __transaction_state");
            crate::coordinator::append_error(&e)
        };
        let appended = partition.append(&batch, now).map_err(failed)?;
        if appended.flush_due {
            partition.sync(now).map_err(failed)?;
        }
        Ok(())
    }

    /// Writes `next` and makes it current.
    fn transition(&self, txns: &mut HashMap<String, TxnMetadata>, next: TxnMetadata) -> Result<(), ResponseError> {
        self.persist(&next.transactional_id, Some(&next))?;
        txns.insert(next.transactional_id.clone(), next);
        Ok(())
    }

    /// The finalized `transaction.version`: how the coordinator ends transactions on its own.
    fn server_version(&self) -> TxnVersion {
        TxnVersion(transaction_version(&self.broker.image()))
    }

    fn allocate_producer_id(&self) -> Result<i64, ResponseError> {
        self.broker.allocate_producer_id().map_err(|e| {
            tracing::error!(error = %e, "cannot allocate a producer id");
            ResponseError::CoordinatorNotAvailable
        })
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use, or the
    /// error to answer (CONCURRENT_TRANSACTIONS after fencing an open transaction).
    pub fn init_producer_id(&self, transactional_id: &str, timeout_ms: i32, expected: Option<ProducerIdAndEpoch>) -> Result<(i64, i16), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.check_coordinator(transactional_id)?;
        let now = self.now();
        let mut txns = lock(&self.txns);
        if !txns.contains_key(transactional_id) {
            let producer_id = self.allocate_producer_id()?;
            txns.insert(transactional_id.to_string(), TxnMetadata::new(transactional_id, producer_id, timeout_ms, now));
        }
        let Some(current) = txns.get(transactional_id).cloned() else { return Err(ResponseError::UnknownServerError) };
        let next = match current.init_producer_id(timeout_ms, expected, now)? {
            InitAction::Write(next) => next,
            InitAction::RotateProducerId => current.rotate_producer_id(self.allocate_producer_id()?, timeout_ms, expected.is_some(), now),
            InitAction::FenceAndAbort => {
                let next = current.fence_and_abort(self.server_version(), &mut || self.allocate_producer_id(), now)?;
                if let Err(e) = self.transition(&mut txns, next) {
                    if let Some(m) = txns.get_mut(transactional_id) {
                        m.has_failed_epoch_fence = true;
                    }
                    return Err(e);
                }
                drop(txns);
                self.complete_transaction(transactional_id);
                return Err(ResponseError::ConcurrentTransactions);
            }
        };
        let answer = (next.producer_id, next.producer_epoch);
        self.transition(&mut txns, next)?;
        tracing::info!(transactional_id, producer_id = answer.0, epoch = answer.1, "initialized transactional id");
        Ok(answer)
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn, and the partitions a version 2 client's
    /// Produce and TxnOffsetCommit add (`version`: the request's transactions version).
    pub fn add_partitions(&self, transactional_id: &str, producer_id: i64, epoch: i16, partitions: &BTreeSet<TopicPartition>, version: TxnVersion) -> Result<(), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        self.check_coordinator(transactional_id)?;
        let now = self.now();
        let mut txns = lock(&self.txns);
        let current = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        match current.add_partitions(producer_id, epoch, partitions, version, now)? {
            None => Ok(()),
            Some(next) => self.transition(&mut txns, next),
        }
    }

    /// AddPartitionsToTxn v4+ with `verify_only`: whether each partition is in the open
    /// transaction (TRANSACTION_ABORTABLE if not), without changing anything.
    pub fn verify_partitions(&self, transactional_id: &str, producer_id: i64, epoch: i16, partitions: &[TopicPartition]) -> Vec<Result<(), ResponseError>> {
        if let Err(e) = self.check_coordinator(transactional_id) {
            return partitions.iter().map(|_| Err(e)).collect();
        }
        let txns = lock(&self.txns);
        let check = || -> Result<&TxnMetadata, ResponseError> {
            let m = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
            m.check_producer(producer_id, epoch)?;
            if m.state.is_preparing() {
                return Err(ResponseError::ConcurrentTransactions);
            }
            Ok(m)
        };
        match check() {
            Err(e) => partitions.iter().map(|_| Err(e)).collect(),
            Ok(m) => partitions.iter().map(|tp| if m.partitions.contains(tp) { Ok(()) } else { Err(ResponseError::TransactionAbortable) }).collect(),
        }
    }

    /// EndTxn in the protocol of `version`: the decision is written when this returns Ok
    /// (its markers go out once it is replicated). The answer is the producer id and epoch
    /// EndTxn v5 returns (the ones the producer goes on with; a retry of a completed decision
    /// gets the current ones); version 1 answers -1 for both, as Kafka.
    pub fn end_txn(&self, transactional_id: &str, producer_id: i64, epoch: i16, commit: bool, version: TxnVersion) -> Result<(i64, i16), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        self.check_coordinator(transactional_id)?;
        let now = self.now();
        let mut txns = lock(&self.txns);
        let current = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        let identity = |pid: i64, epoch: i16| if version.supports_epoch_bump() { (pid, epoch) } else { (NO_PRODUCER_ID, NO_EPOCH) };
        let next = match current.end_txn(producer_id, epoch, commit, version, &mut || self.allocate_producer_id(), now)? {
            EndAction::AlreadyDone => return Ok(identity(current.producer_id, current.producer_epoch)),
            EndAction::Write(next) => next,
        };
        let (pid, bumped) = next.completed_identity();
        if next.next_producer_id != NO_PRODUCER_ID {
            tracing::info!(transactional_id, producer_id = next.producer_id, next_producer_id = next.next_producer_id, "producer epoch used up; the transaction completes onto a new producer id");
        }
        self.transition(&mut txns, next)?;
        drop(txns);
        self.complete_transaction(transactional_id);
        Ok(identity(pid, bumped))
    }

    /// Hands a preparing transaction to the sender: its markers go out once everything
    /// written to its partition so far (its decision included) is replicated, then its
    /// Complete state is written. Queuing the same transaction again changes nothing.
    fn complete_transaction(&self, transactional_id: &str) {
        let index = self.partition_for(transactional_id);
        let Some(m) = lock(&self.txns).get(transactional_id).filter(|m| m.state.is_preparing()).cloned() else { return };
        let key = TxnKey {
            transactional_id: transactional_id.to_string(),
            txn_partition: PartitionId(index),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            coordinator_epoch: self.coordinator_epoch(transactional_id),
            commit: m.state == TxnState::PrepareCommit,
        };
        self.sender.enqueue(key, m.partitions.iter().cloned().collect(), self.write_barrier(transactional_id));
    }

    /// Waits up to `timeout` until `transactional_id` has no decided transaction whose
    /// markers are still being written.
    pub async fn wait_markers(&self, transactional_id: &str, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finished = self.sender.watch_finished();
        loop {
            let preparing = lock(&self.txns).get(transactional_id).is_some_and(|m| m.state.is_preparing());
            if !preparing || !self.sender.is_queued(transactional_id) {
                return;
            }
            tokio::select! {
                changed = finished.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Whether `key` is still the transaction this node coordinates for its id (same
    /// producer, epoch, decision and coordinator epoch, still preparing).
    fn is_current(&self, m: &TxnMetadata, key: &TxnKey) -> bool {
        let state = if key.commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        m.producer_id == key.producer_id && m.producer_epoch == key.producer_epoch && m.state == state
    }

    /// Aborts transactions past their timeout, retries unfinished markers, and expires idle
    /// transactional ids, each on its Kafka interval.
    pub fn tick(&self) {
        let now = self.now();
        if now - self.last_abort_check_ms.load(Ordering::Relaxed) >= self.config.abort_check_interval_ms {
            self.last_abort_check_ms.store(now, Ordering::Relaxed);
            self.abort_timed_out(now);
            let preparing: Vec<String> =
                lock(&self.txns).values().filter(|m| m.state.is_preparing()).map(|m| m.transactional_id.clone()).collect();
            for id in preparing {
                self.complete_transaction(&id);
            }
        }
        if now - self.last_expiration_check_ms.load(Ordering::Relaxed) >= self.config.expiration_check_interval_ms {
            self.last_expiration_check_ms.store(now, Ordering::Relaxed);
            self.expire(now);
        }
    }

    fn abort_timed_out(&self, now: i64) {
        let mut aborted = Vec::new();
        {
            let mut txns = lock(&self.txns);
            let due: Vec<TxnMetadata> = txns.values().filter(|m| m.timed_out(now)).cloned().collect();
            for m in due {
                let Ok(next) = m.fence_and_abort(self.server_version(), &mut || self.allocate_producer_id(), now) else { continue };
                let id = m.transactional_id.clone();
                tracing::info!(transactional_id = %id, producer_id = m.producer_id, open_ms = now - m.start_ms, timeout_ms = m.timeout_ms, "aborting a transaction past its timeout");
                match self.transition(&mut txns, next) {
                    Ok(()) => aborted.push(id),
                    Err(_) => {
                        if let Some(m) = txns.get_mut(&id) {
                            m.has_failed_epoch_fence = true;
                        }
                    }
                }
            }
        }
        for id in aborted {
            self.complete_transaction(&id);
        }
    }

    fn expire(&self, now: i64) {
        let mut txns = lock(&self.txns);
        let expired: Vec<String> = txns.values().filter(|m| m.expired(now, self.config.expiration_ms)).map(|m| m.transactional_id.clone()).collect();
        for id in expired {
            if self.persist(&id, None).is_ok() {
                tracing::info!(transactional_id = %id, "transactional id expired");
                txns.remove(&id);
            }
        }
    }

    /// DescribeTransactions of one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        self.owned.check(PartitionId(self.partition_for(transactional_id)))?;
        lock(&self.txns)
            .get(transactional_id)
            .filter(|m| m.state != TxnState::Dead)
            .map(describe)
            .ok_or(ResponseError::TransactionalIdNotFound)
    }

    /// ListTransactions.
    pub fn list(&self, filter: &ListFilter) -> Vec<TxnDescription> {
        let now = self.now();
        let mut out: Vec<TxnDescription> = lock(&self.txns)
            .values()
            .filter(|m| m.state != TxnState::Dead)
            .filter(|m| filter.states.is_empty() || filter.states.contains(&m.state))
            .filter(|m| filter.producer_ids.is_empty() || filter.producer_ids.contains(&m.producer_id))
            // As Kafka: by the start time, whatever the state.
            .filter(|m| filter.duration_ms < 0 || now - m.start_ms > filter.duration_ms)
            .filter(|m| filter.transactional_id_pattern.as_ref().is_none_or(|re| re.is_match(&m.transactional_id)))
            .map(describe)
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// Sets the producer epoch of `transactional_id` in memory (tests of the epoch's end).
    #[cfg(test)]
    pub(crate) fn set_epoch_for_test(&self, transactional_id: &str, epoch: i16) {
        if let Some(m) = lock(&self.txns).get_mut(transactional_id) {
            m.producer_epoch = epoch;
        }
    }

    /// Transactional ids by state, for metrics.
    pub fn counts_by_state(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for m in lock(&self.txns).values() {
            *out.entry(m.state.name()).or_default() += 1;
        }
        out
    }
}

/// The transactional ids of one `__transaction_state` partition, read from its log start to
/// its log end (as Kafka's loader reads, not to the high watermark).
fn replay(p: &crate::partition::Partition) -> HashMap<String, TxnMetadata> {
    let mut txns = HashMap::new();
    let mut offset = p.log_start_offset();
    while offset < p.log_end_offset() {
        let Ok(read) = p.read_to_log_end(offset, LOAD_READ_BYTES, true) else { break };
        if read.records.is_empty() {
            break;
        }
        let mut buf = read.records.clone();
        let Ok(sets) = RecordBatchDecoder::decode_all(&mut buf) else {
            tracing::warn!(partition = %p.tp, offset = offset.0, "undecodable batch in __transaction_state; stopping load of this partition");
            break;
        };
        let mut next = offset;
        for record in sets.iter().flat_map(|s| s.records.iter()) {
            next = next.max(crate::types::Offset(record.offset + 1));
            let Some(id) = record.key.as_deref().and_then(records::parse_key) else { continue };
            match record.value.as_deref().map(records::parse_value) {
                None => {
                    txns.remove(&id);
                }
                Some(Some(v)) => {
                    txns.insert(id.clone(), TxnMetadata::from_value(&id, &v));
                }
                Some(None) => tracing::warn!(transactional_id = %id, "unreadable transaction state record; skipped"),
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    txns
}

impl LeadershipListener for TransactionCoordinator {
    fn topic(&self) -> &str {
        TRANSACTION_STATE_TOPIC
    }

    /// Loads the partition: at once when there is nothing to read or during start-up, else
    /// on a thread of its own (requests meanwhile answer COORDINATOR_LOAD_IN_PROGRESS).
    fn on_election(&self, partition: PartitionId, epoch: LeaderEpoch) {
        if !self.owned.begin_load(partition, epoch) {
            return;
        }
        let empty = self
            .broker
            .partition(&TopicPartition::new(TRANSACTION_STATE_TOPIC, partition.0))
            .is_none_or(|p| p.log_end_offset() <= p.log_start_offset());
        if empty || self.starting.load(Ordering::Acquire) {
            self.load_partition(partition, epoch);
            return;
        }
        let Some(me) = self.this.upgrade() else { return };
        let spawned = std::thread::Builder::new()
            .name(format!("load-{TRANSACTION_STATE_TOPIC}-{}", partition.0))
            .spawn(move || me.load_partition(partition, epoch));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a loader thread; loading inline");
            self.load_partition(partition, epoch);
        }
    }

    /// Drops the partition's transactional ids (Kafka's
    /// `removeTransactionsForTxnTopicPartition`): their requests answer NOT_COORDINATOR.
    fn on_resignation(&self, partition: PartitionId) {
        self.sender.remove_txn_partition(partition);
        let mut txns = lock(&self.txns);
        if !self.owned.resign(partition) {
            return;
        }
        let before = txns.len();
        txns.retain(|id, _| self.partition_for(id) != partition.0);
        tracing::info!(partition = partition.0, transactional_ids = before - txns.len(), "unloaded transaction state");
    }
}

impl CompletionSink for TransactionCoordinator {
    fn acknowledged(&self, key: &TxnKey, partitions: &[TopicPartition]) {
        let mut txns = lock(&self.txns);
        if let Some(m) = txns.get_mut(&key.transactional_id).filter(|m| self.is_current(m, key)) {
            m.partitions.retain(|tp| !partitions.contains(tp));
        }
    }

    fn abandoned(&self, key: &TxnKey) {
        tracing::warn!(transactional_id = %key.transactional_id, producer_id = key.producer_id, epoch = key.producer_epoch, "a partition refused the marker for a fenced epoch; the transaction stays preparing");
    }

    /// Writes CompleteCommit/CompleteAbort, unless the transaction or this node's
    /// coordination of it changed since its markers were queued (Kafka's
    /// `writeTxnCompletion`); a refused append is retried.
    fn complete(&self, key: &TxnKey) -> Completion {
        if self.owned.check(key.txn_partition).is_err() || self.coordinator_epoch(&key.transactional_id) != key.coordinator_epoch {
            tracing::info!(transactional_id = %key.transactional_id, "no longer coordinating in this epoch; not completing");
            return Completion::Done;
        }
        let now = self.now();
        let mut txns = lock(&self.txns);
        let Some(current) = txns.get(&key.transactional_id).filter(|m| self.is_current(m, key)) else { return Completion::Done };
        let next = current.complete(now);
        match self.transition(&mut txns, next) {
            Ok(()) => Completion::Done,
            Err(ResponseError::NotCoordinator) => Completion::Done,
            Err(e) => {
                tracing::warn!(transactional_id = %key.transactional_id, error = ?e, "cannot write the completed transaction; will retry");
                Completion::Retry
            }
        }
    }
}

fn describe(m: &TxnMetadata) -> TxnDescription {
    TxnDescription {
        transactional_id: m.transactional_id.clone(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        state: m.state,
        timeout_ms: m.timeout_ms,
        start_ms: m.start_ms,
        partitions: m.partitions_by_topic(),
    }
}

#[cfg(test)]
mod tests;
