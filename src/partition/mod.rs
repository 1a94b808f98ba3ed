//! One hosted partition: its log, its high watermark, its leader epoch and its part in
//! replication.
//!
//! The Kafka layer sees a partition only through this narrow interface. A partition is led or
//! followed by this replica ([`Role`]). As leader it runs the ISR and high-watermark rules of
//! [`crate::replication::leader`] (alone, on a single node or with replication factor 1, the
//! high watermark is the log end after every append); as follower it appends what its leader
//! sent, takes the high watermark from the leader's answers and truncates where its log
//! diverged ([`crate::replication::follower`]).
//!
//! Invariants: `log_start_offset <= high_watermark <= log_end_offset` and
//! `last_stable_offset <= high_watermark`: the LSO is the first offset of the oldest open
//! transaction, or the high watermark when none is open.
//!
//! Long-polling fetches register a waiter here and are woken when this partition's high
//! watermark or log end moves (Kafka's fetch purgatory keyed by partition), so an append
//! wakes only the fetches that read this partition. Consumers wait for the high watermark,
//! followers for the log end, producers with `acks=all` for the high watermark.
//!
//! Truncation and `sendfile`: a truncated segment that was queued for sending as a file region
//! fails the connection (the file ends early, see `server::connection`); one re-written after
//! the truncation could send other bytes for the same region, which only a follower can have
//! asked for (consumers read below the high watermark, which a leader never truncates), and a
//! follower checks every batch's CRC before appending it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::log::{AbortedTxn, AppendOrigin, AppendOutcome, FileRegion, Log, LogConfig, LogError, RecoveryMode, partition_metadata};
use crate::record::control::Marker;
use crate::metrics::TopicMetrics;
use crate::replication::leader::{LeaderRegistration, LeaderReplicas, ReplicationConfig};
use crate::replication::{AlterIsrRequest, AlterIsrResult};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, ProducerId, TopicPartition};
pub use crate::types::TimestampedOffset;

#[derive(Debug, Error)]
pub enum PartitionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("offset {requested} is beyond the high watermark {high_watermark}")]
    OffsetBeyondHighWatermark { requested: Offset, high_watermark: Offset },
    /// This replica does not lead the partition (it follows, or has no role yet).
    #[error("this replica is not the leader")]
    NotLeader,
    /// A replica that is not among the partition's replicas fetched as a follower.
    #[error("node {0} is not a replica of this partition")]
    NotAReplica(NodeId),
    /// A fetch answer arrived after this replica stopped following that leader in that
    /// epoch (it leads now, or follows another): it is not applied.
    #[error("this replica no longer follows {} in leader epoch {}", .0.leader, .0.leader_epoch.0)]
    StaleFetch(FetchedFrom),
}

/// The leader and leader epoch a follower's fetch was sent in. Follower-side changes
/// (append, truncation, the high watermark) carry it and apply only while the replica still
/// follows that leader in that epoch, checked under the log's lock that becoming leader also
/// takes: an answer to a fetch sent before this replica was elected must not truncate or
/// extend the log it now leads with (found by `replication::sim`: a new leader truncated
/// committed records on a late answer from its former leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchedFrom {
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
}

/// This replica's part in the partition.
#[derive(Debug)]
pub enum Role {
    /// It leads: the ISR and high-watermark rules run here.
    Leader(Box<LeaderReplicas>),
    /// It follows `leader`; appends come from the leader's fetch answers only.
    Follower { leader: Option<NodeId> },
}

/// What a leader's answer to a follower fetch needs besides the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DivergingEpoch {
    pub epoch: LeaderEpoch,
    pub end_offset: Offset,
}

/// What an append did.
#[derive(Debug, Clone, Copy)]
pub struct AppendResult {
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// True when the batch was a retry of one already written (idempotence).
    pub duplicate: bool,
    /// `flush.messages` or `flush.ms` says the log must be fsynced before this append is
    /// acknowledged: call [`Partition::sync`] (off the async runtime).
    pub flush_due: bool,
}

/// Record batches for a fetch response: in memory, or file regions sent from the page cache.
#[derive(Debug, Clone)]
pub enum RecordSet {
    Memory(Bytes),
    Regions { regions: Vec<FileRegion>, len: usize },
}

impl RecordSet {
    pub fn len(&self) -> usize {
        match self {
            RecordSet::Memory(b) => b.len(),
            RecordSet::Regions { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for RecordSet {
    fn default() -> Self {
        RecordSet::Memory(Bytes::new())
    }
}

/// Record sets smaller than this are read into memory: a region costs a syscall to send.
pub const REGION_MIN_BYTES: usize = 16 * 1024;

/// Batches read for a Fetch, with the partition's positions at the time of the read.
#[derive(Debug, Clone)]
pub struct FetchRead {
    pub records: RecordSet,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
    /// For read_committed: the aborted transactions overlapping what was read.
    pub aborted: Option<Vec<AbortedTxn>>,
}

/// A Fetch's isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Everything below the high watermark.
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions listed.
    ReadCommitted,
}

/// Bytes read, with the partition's positions at the time of the read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    dir: PathBuf,
    log: Mutex<Log>,
    /// The topic's log configuration, shared with its other partitions; what produce checks
    /// batches against, without taking the log's lock. The log holds a copy.
    config: RwLock<Arc<LogConfig>>,
    high_watermark: AtomicI64,
    /// The high watermark `replication-offset-checkpoint` held for this partition at start
    /// (-1: none); where a replicated role starts its mark (see `leads_unregistered`).
    checkpointed_high_watermark: AtomicI64,
    last_stable_offset: AtomicI64,
    /// The first offset of the oldest open transaction (`i64::MAX`: none); the LSO is this
    /// bounded by the high watermark.
    first_unstable: AtomicI64,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    leader_epoch: AtomicI32,
    role: Mutex<Role>,
    pub metrics: TopicMetrics,
    waiters: Mutex<Waiters>,
    /// Held for one fsync at a time; whoever waited behind it usually finds its appends
    /// covered by that fsync (group commit).
    sync_lock: Mutex<()>,
}

/// How often [`Partition::wait_replicated`] asks its caller whether to give up.
const GIVE_UP_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Why [`Partition::wait_replicated`] ended without the records committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationWait {
    /// Leadership moved (or the epoch changed) meanwhile.
    NotLeader,
    /// The deadline passed first.
    TimedOut,
    /// Committed, but the ISR shrank below `min.insync.replicas` meanwhile.
    BelowMinIsr,
}

/// Fetches waiting for this partition's high watermark to move. Entries of fetches that
/// finished are dropped on the next wake-up or when the list doubles.
#[derive(Default)]
struct Waiters {
    list: Vec<Weak<Notify>>,
    prune_at: usize,
}

/// Waiters kept before the first pruning of finished fetches.
const WAITERS_PRUNE_MIN: usize = 64;

impl Partition {
    /// Opens the partition's log in `dir`, recovering it if the last shutdown was not clean.
    /// It leads alone until told otherwise ([`Partition::become_leader`],
    /// [`Partition::become_follower`]): the high watermark is the log end, as a single node's.
    pub fn open(
        tp: TopicPartition,
        topic_id: Uuid,
        dir: &Path,
        config: impl Into<Arc<LogConfig>>,
        now_ms: i64,
        metrics: TopicMetrics,
        recovery: RecoveryMode,
    ) -> Result<Self, PartitionError> {
        let config = config.into();
        let recorded = set_aside_if_another_topics(&tp, topic_id, dir)?;
        let log = Log::open_with(dir, LogConfig::clone(&config), now_ms, recovery)?;
        if !topic_id.is_nil() && recorded != Some(topic_id) {
            partition_metadata::write(dir, topic_id)?;
        }
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let lso = log.first_unstable_offset().map_or(end, |first| first.min(end));
        let first_unstable = log.first_unstable_offset().unwrap_or(Offset(i64::MAX));
        Ok(Self {
            tp,
            topic_id,
            dir: dir.to_path_buf(),
            log: Mutex::new(log),
            config: RwLock::new(config),
            high_watermark: AtomicI64::new(end.0),
            checkpointed_high_watermark: AtomicI64::new(-1),
            last_stable_offset: AtomicI64::new(lso.0),
            first_unstable: AtomicI64::new(first_unstable.0),
            log_start_offset: AtomicI64::new(start.0),
            log_end_offset: AtomicI64::new(end.0),
            leader_epoch: AtomicI32::new(0),
            role: Mutex::new(Role::Leader(Box::new(LeaderReplicas::alone(end)))),
            metrics,
            waiters: Mutex::new(Waiters::default()),
            sync_lock: Mutex::new(()),
        })
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written in memory in a way
        // a reader could observe wrongly: positions are published only after a write succeeds.
        match self.log.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        match self.waiters.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Notifies `waiter` (once) when the high watermark next moves.
    pub fn watch_high_watermark(&self, waiter: &Arc<Notify>) {
        let mut w = self.waiters();
        if w.list.len() >= w.prune_at.max(WAITERS_PRUNE_MIN) {
            w.list.retain(|x| x.strong_count() > 0);
            w.prune_at = 2 * w.list.len();
        }
        w.list.push(Arc::downgrade(waiter));
    }

    fn wake_waiters(&self) {
        let list = std::mem::take(&mut self.waiters().list);
        for waiter in list.iter().filter_map(Weak::upgrade) {
            waiter.notify_one();
        }
    }

    /// acks=all (Kafka's `DelayedProduce`): waits until the high watermark reaches
    /// `required` (every in-sync replica holds what lies before it) while this replica leads
    /// in `epoch`, then checks the ISR still meets `min.insync.replicas`. Only the caller
    /// waits: appends and other waits go on.
    pub async fn wait_replicated(
        &self,
        required: Offset,
        epoch: LeaderEpoch,
        deadline: tokio::time::Instant,
        give_up: impl Fn() -> bool,
    ) -> Result<(), ReplicationWait> {
        let waiter = Arc::new(Notify::new());
        loop {
            self.watch_high_watermark(&waiter);
            if !self.is_leader() || self.leader_epoch() != epoch {
                return Err(ReplicationWait::NotLeader);
            }
            if self.high_watermark() >= required {
                let min_isr = usize::try_from(self.config().min_insync_replicas.max(1)).unwrap_or(1);
                let isr = self.isr().map_or(0, |(isr, _)| isr.len());
                return if isr >= min_isr { Ok(()) } else { Err(ReplicationWait::BelowMinIsr) };
            }
            // The caller knows this leader can no longer replicate (its controller session
            // lapsed): answered as a lost leadership.
            if give_up() {
                return Err(ReplicationWait::NotLeader);
            }
            tokio::select! {
                _ = waiter.notified() => {}
                _ = tokio::time::sleep(GIVE_UP_CHECK_INTERVAL) => {}
                _ = tokio::time::sleep_until(deadline) => return Err(ReplicationWait::TimedOut),
            }
        }
    }

    /// Whether the committed ISR is at least `min.insync.replicas` (acks=all's check before
    /// an append; a follower has no ISR and fails it).
    pub fn meets_min_isr(&self) -> bool {
        let min_isr = usize::try_from(self.config().min_insync_replicas.max(1)).unwrap_or(1);
        self.isr().is_some_and(|(isr, _)| isr.len() >= min_isr)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        LeaderEpoch(self.leader_epoch.load(Ordering::Acquire))
    }

    fn role(&self) -> MutexGuard<'_, Role> {
        match self.role.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(*self.role(), Role::Leader(_))
    }

    /// The leader this replica follows (`None` when it leads, or knows no leader).
    pub fn follows(&self) -> Option<NodeId> {
        match &*self.role() {
            Role::Follower { leader } => *leader,
            Role::Leader(_) => None,
        }
    }

    /// The committed ISR is smaller than `min.insync.replicas` (a leader only).
    pub fn under_min_isr(&self) -> bool {
        matches!(&*self.role(), Role::Leader(l) if l.under_min_isr())
    }

    /// On the leader, how far behind each follower is (empty on a follower).
    pub fn follower_lags(&self, now_ms: u64) -> Vec<crate::replication::leader::FollowerLag> {
        let log_start = self.log_start_offset();
        match &*self.role() {
            Role::Leader(l) if l.local() != LeaderReplicas::UNREGISTERED => l.follower_lags(log_start, now_ms),
            _ => Vec::new(),
        }
    }

    /// On the leader, the followers that fetched in this leader epoch as candidates for a
    /// consumer's reads (KIP-392); their racks and reachability are the caller's to fill in.
    pub fn read_replica_candidates(&self, now_ms: u64) -> Vec<crate::replication::selector::ReadReplica> {
        match &*self.role() {
            Role::Leader(l) if l.local() != LeaderReplicas::UNREGISTERED => l
                .followers()
                .filter_map(|(id, f)| {
                    Some(crate::replication::selector::ReadReplica {
                        id: *id,
                        rack: None,
                        log_start_offset: f.log_start_offset?,
                        log_end_offset: f.log_end_offset?,
                        in_sync: l.isr_state().isr().contains(id),
                        reachable: true,
                        lag_ms: f.last_caught_up_ms.map_or(u64::MAX, |t| now_ms.saturating_sub(t)),
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The committed ISR and the replicas, as the leader knows them (`None` on a follower).
    pub fn isr(&self) -> Option<(Vec<NodeId>, Vec<NodeId>)> {
        match &*self.role() {
            Role::Leader(l) => Some((l.isr_state().isr().iter().copied().collect(), l.replicas().to_vec())),
            Role::Follower { .. } => None,
        }
    }

    /// With the role's lock held, runs `f` on the leader state and publishes the high
    /// watermark it computed; wakes the waiters when it moved.
    fn with_leader<T>(&self, f: impl FnOnce(&mut LeaderReplicas) -> T) -> Result<T, PartitionError> {
        let mut role = self.role();
        let Role::Leader(leader) = &mut *role else { return Err(PartitionError::NotLeader) };
        let before = leader.isr_state().isr().len();
        let out = f(leader);
        self.metrics.record_isr_change(before, leader.isr_state().isr().len());
        let hw = leader.high_watermark();
        drop(role);
        self.publish_high_watermark(hw.0);
        Ok(out)
    }

    /// This replica leads in `registration.leader_epoch` (new leadership, or a newer
    /// registration of the same one). A new epoch is recorded in the epoch cache at the
    /// current log end before anything is appended in it.
    pub fn become_leader(
        &self,
        local: NodeId,
        config: ReplicationConfig,
        registration: &LeaderRegistration,
        now_ms: u64,
    ) -> Result<Option<AlterIsrRequest>, PartitionError> {
        // The log's lock first, then the role's, as appends take them (`publish_positions`
        // runs under the log's lock and takes the role's): one order, no deadlock, and no
        // follower-side change can slip in between (see `FetchedFrom`).
        let mut log = self.log();
        let mut role = self.role();
        if let Role::Leader(l) = &mut *role
            && l.leader_epoch() == registration.leader_epoch
            && l.local() == local
        {
            let before = l.isr_state().isr().len();
            let effect = l.set_config(config, now_ms);
            let effect = l.on_registration(registration, now_ms).unwrap_or(effect);
            self.metrics.record_isr_change(before, l.isr_state().isr().len());
            let hw = l.high_watermark();
            drop(role);
            drop(log);
            self.publish_high_watermark(hw.0);
            return Ok(effect.alter_isr);
        }
        let unreplicated = registration.replicas.len() > 1 && Self::leads_unregistered(&role);
        let (end, hw) = {
            if log.epoch_cache().latest_epoch().is_none_or(|e| e < registration.leader_epoch) {
                log.assign_epoch_start(registration.leader_epoch)?;
            }
            let hw = if unreplicated { self.restart_high_watermark(log.log_start_offset(), log.log_end_offset()) } else { self.high_watermark() };
            (log.log_end_offset(), hw)
        };
        drop(log);
        let leader = LeaderReplicas::new(local, config, registration, end, hw, now_ms);
        let hw = leader.high_watermark();
        *role = Role::Leader(Box::new(leader));
        self.leader_epoch.store(registration.leader_epoch.0, Ordering::Release);
        drop(role);
        self.publish_high_watermark(hw.0);
        // Waiting fetches re-check who leads.
        self.wake_waiters();
        Ok(None)
    }

    /// This replica follows `leader` in `leader_epoch` (`None`: the partition has no leader).
    pub fn become_follower(&self, leader: Option<NodeId>, leader_epoch: LeaderEpoch) {
        let mut role = self.role();
        let unregistered = Self::leads_unregistered(&role);
        *role = Role::Follower { leader };
        drop(role);
        if unregistered {
            let hw = self.restart_high_watermark(self.log_start_offset(), self.log_end_offset());
            self.high_watermark.store(hw.0, Ordering::Release);
            self.publish_lso();
        }
        self.leader_epoch.store(leader_epoch.0, Ordering::Release);
        self.wake_waiters();
    }

    /// Whether this replica still leads alone as [`Partition::open`] left it, before any
    /// registration gave it a role. Its high watermark is then its log end, which is right
    /// for a single node but says nothing once the partition turns out to be replicated: the
    /// tail may never have been committed. As Kafka, a replica taking a replicated role
    /// starts its mark at the one `replication-offset-checkpoint` held (a mark is only ever
    /// written once committed), bounded by its log; without one at the log start. It then
    /// learns the mark again (from the leader's answers, or as leader from its ISR's
    /// fetches), so a restart never exposes uncommitted records, and committed ones stay
    /// readable through it.
    fn leads_unregistered(role: &Role) -> bool {
        matches!(role, Role::Leader(l) if l.local() == LeaderReplicas::UNREGISTERED)
    }

    /// The mark a replicated role starts from after a restart (see `leads_unregistered`).
    fn restart_high_watermark(&self, log_start: Offset, log_end: Offset) -> Offset {
        let checkpointed = self.checkpointed_high_watermark.load(Ordering::Acquire);
        if checkpointed < 0 { log_start } else { Offset(checkpointed).clamp(log_start, log_end.max(log_start)) }
    }

    /// Gives the partition the high watermark `replication-offset-checkpoint` held for it.
    pub fn set_checkpointed_high_watermark(&self, hw: Offset) {
        self.checkpointed_high_watermark.store(hw.0.max(-1), Ordering::Release);
    }

    /// The high watermark to write to `replication-offset-checkpoint`: the current one once a
    /// registration gave the partition a role, before that the one read at start (if any):
    /// an unregistered replica's mark is its log end, never known to be committed.
    pub fn high_watermark_to_checkpoint(&self) -> Option<Offset> {
        if Self::leads_unregistered(&self.role()) {
            let checkpointed = self.checkpointed_high_watermark.load(Ordering::Acquire);
            (checkpointed >= 0).then_some(Offset(checkpointed))
        } else {
            Some(self.high_watermark())
        }
    }

    /// A follower fetched at `fetch_offset` (the leader's side of replication). Returns the
    /// ISR change it caused, if any.
    pub fn record_follower_fetch(
        &self,
        follower: NodeId,
        fetch_offset: Offset,
        log_start_offset: Offset,
        broker_epoch: Option<BrokerEpoch>,
        now_ms: u64,
    ) -> Result<Option<AlterIsrRequest>, PartitionError> {
        let effect = self.with_leader(|l| l.on_follower_fetch(follower, fetch_offset, log_start_offset, broker_epoch, now_ms))?;
        effect.map(|e| e.alter_isr).ok_or(PartitionError::NotAReplica(follower))
    }

    /// The periodic ISR check of a leader (shrinks lagging members).
    pub fn isr_tick(&self, now_ms: u64) -> Option<AlterIsrRequest> {
        self.with_leader(|l| l.on_tick(now_ms).alter_isr).ok().flatten()
    }

    /// The answer to this partition's AlterPartition.
    pub fn on_alter_result(&self, sent: &AlterIsrRequest, result: AlterIsrResult, now_ms: u64) {
        let _ = self.with_leader(|l| l.on_alter_result(sent, result, now_ms));
    }

    /// This replica leads and still waits on the ISR change `sent` (see
    /// [`crate::replication::LeaderReplicas::awaits`]).
    pub fn awaits_alter(&self, sent: &AlterIsrRequest) -> bool {
        match &*self.role() {
            Role::Leader(l) => l.awaits(sent),
            Role::Follower { .. } => false,
        }
    }

    /// The brokers that may join the ISR changed.
    pub fn set_isr_eligible(&self, eligible: std::collections::BTreeSet<NodeId>, now_ms: u64) -> Option<AlterIsrRequest> {
        self.with_leader(|l| l.set_eligible(eligible, now_ms).alter_isr).ok().flatten()
    }

    /// KIP-320 on the leader: when a follower's last fetched epoch ends earlier in this log
    /// than its fetch offset (or is unknown here), where its log diverged.
    pub fn diverging_epoch(&self, last_fetched_epoch: LeaderEpoch, fetch_offset: Offset) -> Option<DivergingEpoch> {
        let (epoch, end) = self.end_offset_for_epoch(last_fetched_epoch);
        let epoch = epoch.unwrap_or(LeaderEpoch(-1));
        (end < fetch_offset || epoch < last_fetched_epoch).then_some(DivergingEpoch { epoch, end_offset: end })
    }

    /// The largest epoch of the local log, sent as a follower's `last_fetched_epoch`.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.log().epoch_cache().latest_epoch()
    }

    /// The local epoch cache's `(largest epoch ≤ epoch, its end offset)`, or `None` when it
    /// has no epoch at or below.
    pub fn local_end_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let (e, end) = self.log().end_offset_for_epoch(epoch);
        (e.0 >= 0).then_some((e, end))
    }

    /// Fails with [`PartitionError::StaleFetch`] unless this replica follows `from`'s leader
    /// in its epoch. Call with the log's lock held.
    fn check_follows(&self, from: FetchedFrom) -> Result<(), PartitionError> {
        let follows = matches!(&*self.role(), Role::Follower { leader: Some(l) } if *l == from.leader);
        if follows && self.leader_epoch() == from.leader_epoch { Ok(()) } else { Err(PartitionError::StaleFetch(from)) }
    }

    /// A follower appends what its leader sent: offsets as the leader assigned them.
    pub fn append_as_follower(&self, from: FetchedFrom, records: &[u8], now_ms: i64) -> Result<Option<(Offset, Offset)>, PartitionError> {
        let mut log = self.log();
        self.check_follows(from)?;
        let appended = log.append_as_follower(records, now_ms)?;
        self.publish_positions(&log, now_ms);
        Ok(appended)
    }

    /// A follower takes the leader's high watermark (bounded by its own log end) and log
    /// start offset.
    pub fn follower_update(&self, from: FetchedFrom, leader_high_watermark: Offset, leader_log_start: Offset, now_ms: i64) -> Result<(), PartitionError> {
        let mut log = self.log();
        self.check_follows(from)?;
        if leader_log_start > log.log_start_offset() && leader_log_start <= log.log_end_offset() {
            log.delete_records_before(leader_log_start)?;
        }
        let hw = crate::replication::follower_high_watermark(
            self.high_watermark(),
            leader_high_watermark,
            log.log_end_offset(),
        );
        self.publish_positions(&log, now_ms);
        drop(log);
        self.publish_high_watermark(hw.0);
        Ok(())
    }

    /// A follower removes everything from `offset` on (its log diverged from the leader's).
    pub fn truncate_to(&self, from: FetchedFrom, offset: Offset, now_ms: i64) -> Result<(), PartitionError> {
        let mut log = self.log();
        self.check_follows(from)?;
        log.truncate_to(offset, now_ms)?;
        let end = log.log_end_offset();
        self.publish_positions(&log, now_ms);
        drop(log);
        let hw = self.high_watermark().min(end);
        self.high_watermark.store(hw.0, Ordering::Release);
        self.wake_waiters();
        Ok(())
    }

    /// A follower whose fetch offset the leader no longer has (below its log start) restarts
    /// its log empty at `offset`.
    pub fn truncate_fully_and_start_at(&self, from: FetchedFrom, offset: Offset, now_ms: i64) -> Result<(), PartitionError> {
        let mut log = self.log();
        self.check_follows(from)?;
        log.truncate_fully_and_start_at(offset, now_ms)?;
        self.publish_positions(&log, now_ms);
        drop(log);
        self.high_watermark.store(offset.0, Ordering::Release);
        self.wake_waiters();
        Ok(())
    }

    pub fn high_watermark(&self) -> Offset {
        Offset(self.hw())
    }

    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log_start_offset.load(Ordering::Acquire))
    }

    pub fn log_end_offset(&self) -> Offset {
        Offset(self.log_end_offset.load(Ordering::Acquire))
    }

    fn hw(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The first offset a read_committed consumer may not see yet: the oldest open
    /// transaction's first offset, or the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        Offset(self.last_stable_offset.load(Ordering::Acquire))
    }

    pub fn size_bytes(&self) -> u64 {
        self.log().size_bytes()
    }

    /// Appends validated record batches as the leader; offsets are assigned in place. Does
    /// not fsync: see [`AppendResult::flush_due`].
    pub fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendResult, PartitionError> {
        self.append_with_origin(records, now_ms, AppendOrigin::Client)
    }

    /// [`Partition::append`] of the broker's own batches (a coordinator's), which skip the
    /// client sequence checks.
    pub fn append_as_coordinator(&self, records: &[u8], now_ms: i64) -> Result<AppendResult, PartitionError> {
        self.append_with_origin(records, now_ms, AppendOrigin::Coordinator)
    }

    fn append_with_origin(&self, records: &[u8], now_ms: i64, origin: AppendOrigin) -> Result<AppendResult, PartitionError> {
        if !self.is_leader() {
            return Err(PartitionError::NotLeader);
        }
        let mut log = self.log();
        let outcome = log.append_with_origin(records, self.leader_epoch(), now_ms, origin)?;
        let (info, duplicate) = match outcome {
            AppendOutcome::Appended(info) => {
                let records_count = (info.last_offset.0 - info.first_offset.0 + 1).max(0) as u64;
                self.metrics.record_produce(records.len() as u64, records_count);
                (info, false)
            }
            AppendOutcome::Duplicate(info) => (info, true),
        };
        let result = AppendResult {
            first_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: if duplicate { -1 } else { info.log_append_time },
            log_start_offset: log.log_start_offset(),
            duplicate,
            flush_due: log.flush_due(now_ms),
        };
        self.publish_positions(&log, now_ms);
        Ok(result)
    }

    /// Appends a COMMIT or ABORT marker of `producer_id` (WriteTxnMarkers). Does not fsync:
    /// see [`AppendResult::flush_due`].
    pub fn append_marker(&self, producer_id: ProducerId, producer_epoch: i16, marker: Marker, now_ms: i64) -> Result<AppendResult, PartitionError> {
        if !self.is_leader() {
            return Err(PartitionError::NotLeader);
        }
        let mut log = self.log();
        let info = log.append_marker(producer_id, producer_epoch, marker, self.leader_epoch(), now_ms)?;
        self.metrics.record_produce(0, 1);
        let result = AppendResult {
            first_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: -1,
            log_start_offset: log.log_start_offset(),
            duplicate: false,
            flush_due: log.flush_due(now_ms),
        };
        self.publish_positions(&log, now_ms);
        Ok(result)
    }

    /// Whether `producer_id` has a transaction open here at `epoch` (its next transactional
    /// batch at that epoch then needs no verification; Kafka's `hasOngoingTransaction`). The
    /// epoch matters for transactions version 2: a batch at the bumped epoch belongs to the
    /// next transaction even while the previous one's marker has not arrived yet.
    pub fn has_open_transaction(&self, producer_id: ProducerId, epoch: i16) -> bool {
        self.log().producer_state().entry(producer_id).is_some_and(|e| e.current_txn_first_offset.is_some() && e.epoch == epoch)
    }

    /// Every producer's entry, for DescribeProducers.
    pub fn producers(&self) -> Vec<(ProducerId, crate::log::ProducerEntry)> {
        self.log().producer_state().entries().map(|(pid, e)| (pid, e.clone())).collect()
    }

    /// fsyncs everything appended so far, unless a concurrent call already did; blocking.
    /// The log stays available to appends and reads during the fsync.
    pub fn sync(&self, now_ms: i64) -> Result<(), PartitionError> {
        let wanted = self.log_end_offset();
        let _one_at_a_time = match self.sync_lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (file, end) = {
            let log = self.log();
            if log.recovery_point() >= wanted {
                return Ok(());
            }
            log.flush_target()
        };
        file.sync_data().map_err(LogError::from)?;
        self.log().mark_flushed(end, now_ms);
        Ok(())
    }

    /// Publishes the log's positions after a change; on a leader the append may move the
    /// high watermark (at once when it leads alone).
    fn publish_positions(&self, log: &Log, now_ms: i64) {
        let end = log.log_end_offset();
        let before_end = self.log_end_offset.swap(end.0, Ordering::AcqRel);
        self.log_start_offset.store(log.log_start_offset().0, Ordering::Release);
        self.first_unstable.store(log.first_unstable_offset().map_or(i64::MAX, |o| o.0), Ordering::Release);
        let hw = match &mut *self.role() {
            Role::Leader(l) => l.on_append(end, now_ms.max(0) as u64).high_watermark_advanced.then(|| l.high_watermark().0),
            Role::Follower { .. } => None,
        };
        let woken = match hw {
            Some(hw) => self.publish_high_watermark(hw),
            None => {
                self.publish_lso();
                false
            }
        };
        if before_end != end.0 && !woken {
            // Followers' fetches wait for the log end.
            self.wake_waiters();
        }
    }

    /// Stores a new high watermark (never above the log end) and the LSO it bounds; wakes
    /// the waiters when it moved.
    fn publish_high_watermark(&self, hw: i64) -> bool {
        let hw = hw.min(self.log_end_offset().0).max(0);
        let before = self.high_watermark.swap(hw, Ordering::AcqRel);
        self.publish_lso();
        if before != hw {
            self.wake_waiters();
        }
        before != hw
    }

    fn publish_lso(&self) {
        let hw = self.hw();
        let lso = self.first_unstable.load(Ordering::Acquire).min(hw);
        self.last_stable_offset.store(lso, Ordering::Release);
    }

    /// Reads whole batches from `offset`, at most `max_bytes` unless `min_one_batch` and the
    /// first batch is larger (KIP-74). Only data below the high watermark is visible.
    pub fn read(&self, offset: Offset, max_bytes: usize, min_one_batch: bool) -> Result<ReadResult, PartitionError> {
        self.read_in_memory(offset, max_bytes, min_one_batch, false)
    }

    /// [`Partition::read`] up to the log end: a coordinator loading its state reads what its
    /// leader's log holds, as Kafka's loaders do (this log is the truth now; what is not yet
    /// replicated will be, or this leadership ends and the state is unloaded).
    pub fn read_to_log_end(&self, offset: Offset, max_bytes: usize, min_one_batch: bool) -> Result<ReadResult, PartitionError> {
        self.read_in_memory(offset, max_bytes, min_one_batch, true)
    }

    fn read_in_memory(&self, offset: Offset, max_bytes: usize, min_one_batch: bool, to_log_end: bool) -> Result<ReadResult, PartitionError> {
        let log = self.log();
        let high_watermark = self.high_watermark();
        let bound = if to_log_end { log.log_end_offset() } else { high_watermark };
        let read = log.read(offset, max_bytes, bound, min_one_batch)?;
        self.metrics.record_fetch(read.bytes.len() as u64);
        Ok(ReadResult {
            records: read.bytes,
            high_watermark,
            last_stable_offset: self.last_stable_offset(),
            log_start_offset: log.log_start_offset(),
        })
    }

    /// [`Partition::read`] for a fetch: large sets come back as file regions, not read.
    /// read_committed stops at the last stable offset and lists the aborted transactions
    /// (from the transaction indexes: the record bytes are still not read).
    pub fn read_for_fetch(&self, offset: Offset, max_bytes: usize, min_one_batch: bool, isolation: Isolation) -> Result<FetchRead, PartitionError> {
        self.read_bounded(offset, max_bytes, min_one_batch, Some(isolation))
    }

    /// [`Partition::read_for_fetch`] for a follower: up to the log end, uncommitted records
    /// included (the follower's fetch is what commits them).
    pub fn read_for_follower(&self, offset: Offset, max_bytes: usize, min_one_batch: bool) -> Result<FetchRead, PartitionError> {
        self.read_bounded(offset, max_bytes, min_one_batch, None)
    }

    /// Reads below the high watermark (read_uncommitted), the LSO (read_committed) or the log
    /// end (`None`: a follower).
    fn read_bounded(&self, offset: Offset, max_bytes: usize, min_one_batch: bool, isolation: Option<Isolation>) -> Result<FetchRead, PartitionError> {
        let log = self.log();
        let high_watermark = self.high_watermark();
        let last_stable_offset = self.last_stable_offset();
        let bound = match isolation {
            Some(Isolation::ReadUncommitted) => high_watermark,
            Some(Isolation::ReadCommitted) => last_stable_offset,
            None => log.log_end_offset(),
        };
        let located = log.read_regions(offset, max_bytes, bound, min_one_batch)?;
        let aborted = match isolation {
            Some(Isolation::ReadCommitted) => Some(log.collect_aborted(offset, located.next_offset)),
            _ => None,
        };
        let log_start_offset = log.log_start_offset();
        // The regions stay valid without the lock: the data below the end is immutable.
        drop(log);
        let len = located.len as usize;
        self.metrics.record_fetch(len as u64);
        let records = if len >= REGION_MIN_BYTES {
            RecordSet::Regions { regions: located.regions, len }
        } else {
            let mut bytes = Vec::with_capacity(len);
            for region in &located.regions {
                bytes.extend_from_slice(&region.read_to_vec().map_err(LogError::from)?);
            }
            RecordSet::Memory(Bytes::from(bytes))
        };
        Ok(FetchRead { records, high_watermark, last_stable_offset, log_start_offset, aborted })
    }

    /// ListOffsets by timestamp: the first offset whose timestamp is at least `timestamp_ms`,
    /// with that record's timestamp.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<TimestampedOffset>, PartitionError> {
        Ok(self.log().offset_for_timestamp(timestamp_ms)?)
    }

    /// ListOffsets MAX_TIMESTAMP: the offset of the first record with the largest timestamp,
    /// and that timestamp.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampedOffset>, PartitionError> {
        Ok(self.log().offset_of_max_timestamp()?)
    }

    /// OffsetForLeaderEpoch: the end offset of `epoch` (or of the largest epoch below it),
    /// with that epoch (`None`: no epoch at or below `epoch` is known).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> (Option<LeaderEpoch>, Offset) {
        let (found, end) = self.log().end_offset_for_epoch(epoch);
        ((found.0 >= 0).then_some(found), end)
    }

    /// DeleteRecords: moves the log start offset to `offset` (`None`: the high watermark).
    /// Returns the new log start offset.
    pub fn delete_records_before(&self, offset: Option<Offset>, now_ms: i64) -> Result<Offset, PartitionError> {
        let high_watermark = self.high_watermark();
        let target = offset.unwrap_or(high_watermark);
        if target > high_watermark {
            return Err(PartitionError::OffsetBeyondHighWatermark { requested: target, high_watermark });
        }
        let mut log = self.log();
        let start = if target > log.log_start_offset() { log.delete_records_before(target)? } else { log.log_start_offset() };
        self.publish_positions(&log, now_ms);
        Ok(start)
    }

    /// Compacts the log if the topic compacts and cleaning is due; never above the high
    /// watermark.
    pub fn clean(&self, now_ms: i64) -> Result<Option<crate::log::CleanStats>, PartitionError> {
        let mut log = self.log();
        if !log.config().cleanup_policy.compacts() {
            return Ok(None);
        }
        // Kafka cleans below the first unstable offset only.
        let stats = log.clean(now_ms, self.last_stable_offset())?;
        self.publish_positions(&log, now_ms);
        Ok(stats)
    }

    /// Deletes segments past retention; returns the bytes freed.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<u64, PartitionError> {
        let mut log = self.log();
        let freed = log.enforce_retention(now_ms)?;
        self.publish_positions(&log, now_ms);
        Ok(freed)
    }

    pub fn flush(&self, now_ms: i64) -> Result<(), PartitionError> {
        Ok(self.log().flush(now_ms)?)
    }

    /// Flushes if `flush.ms` has passed since the last flush (blocking).
    pub fn maybe_flush(&self, now_ms: i64) -> Result<(), PartitionError> {
        let due = self.log().flush_due(now_ms);
        if due { self.sync(now_ms) } else { Ok(()) }
    }

    /// The topic's log configuration in force.
    pub fn config(&self) -> Arc<LogConfig> {
        match self.config.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the log's configuration (topic config changed).
    pub fn set_config(&self, config: impl Into<Arc<LogConfig>>, now_ms: i64) {
        let config = config.into();
        let min_isr = usize::try_from(config.min_insync_replicas.max(1)).unwrap_or(1);
        let now = now_ms.max(0) as u64;
        let _ = self.with_leader(|l| {
            let replication = ReplicationConfig { min_insync_replicas: min_isr, ..l.config() };
            l.set_config(replication, now)
        });
        {
            let mut log = self.log();
            if log.config() != &*config {
                log.set_config(LogConfig::clone(&config));
            }
        }
        match self.config.write() {
            Ok(mut g) => *g = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// Flushes everything and writes the clean-shutdown marker.
    pub fn close(self, now_ms: i64) -> Result<(), PartitionError> {
        let log = match self.log.into_inner() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        Ok(log.close(now_ms)?)
    }
}


/// Checks the topic id recorded in `dir` (`partition.metadata`) against `topic_id`: a
/// directory of another topic of the same name (deleted and created again while this node
/// was away) is renamed aside as stray, kept as Kafka keeps strays, and the partition starts
/// empty. Returns the id recorded, if it matched or there was none to compare: a directory
/// from before Blumfeld kept the file, or whose file is damaged, is taken as this topic's (its
/// file is then written).
fn set_aside_if_another_topics(tp: &TopicPartition, topic_id: Uuid, dir: &Path) -> Result<Option<Uuid>, LogError> {
    if topic_id.is_nil() || !dir.exists() {
        return Ok(None);
    }
    match partition_metadata::read(dir) {
        Ok(Some(id)) if id == topic_id => Ok(Some(id)),
        Ok(Some(other)) => {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| tp.to_string());
            let aside = dir.with_file_name(partition_metadata::stray_dir_name(&name));
            std::fs::rename(dir, &aside)?;
            tracing::warn!(partition = %tp, other_topic_id = %partition_metadata::encode_topic_id(other),
                stray = %aside.display(), "the partition's directory belongs to an earlier topic of this name; set aside as stray");
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::warn!(partition = %tp, error = %e, "unreadable partition.metadata; rewritten for the topic in the metadata");
            Ok(None)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, MetricsConfig};
    use crate::record::BatchBuilder;

    fn open(dir: &Path, flush_interval_messages: i64) -> Arc<Partition> {
        let metrics = Metrics::new(MetricsConfig { partition_detail: false }).unwrap();
        let config = LogConfig { flush_interval_messages, ..LogConfig::default() };
        let tp = TopicPartition::new("t", 0);
        Arc::new(Partition::open(tp, Uuid::nil(), dir, config, 0, metrics.topic("t"), RecoveryMode::Full).unwrap())
    }

    #[test]
    fn flush_per_message_is_left_to_sync_and_one_sync_covers_earlier_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), 1);
        let a = p.append(&BatchBuilder::new(0).records(3, 10).build(), 0).unwrap();
        let b = p.append(&BatchBuilder::new(0).records(2, 10).build(), 0).unwrap();
        assert!(a.flush_due && b.flush_due);
        assert_eq!(p.log().recovery_point(), Offset(0), "append must not fsync");
        p.sync(1).unwrap();
        assert_eq!(p.log().recovery_point(), Offset(5));
        p.sync(2).unwrap();
        assert_eq!(p.log().recovery_point(), Offset(5));
    }

    fn open_as(dir: &Path, topic_id: Uuid) -> Partition {
        let metrics = Metrics::new(MetricsConfig { partition_detail: false }).unwrap();
        Partition::open(TopicPartition::new("t", 0), topic_id, dir, LogConfig::default(), 0, metrics.topic("t"), RecoveryMode::Full).unwrap()
    }

    /// `partition.metadata` names the topic id a directory holds: written at open, and a
    /// directory of an earlier topic of the same name is set aside as stray (kept whole) while
    /// the partition starts empty; a directory without the file (older Blumfeld) is adopted.
    #[test]
    fn a_directory_of_an_earlier_topic_of_the_same_name_is_set_aside() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t-0");
        let (old, new) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let p = open_as(&dir, old);
        p.append(&BatchBuilder::new(0).records(3, 10).build(), 0).unwrap();
        drop(p);
        assert_eq!(partition_metadata::read(&dir).unwrap(), Some(old));
        assert_eq!(open_as(&dir, old).log_end_offset(), Offset(3), "the same topic keeps its records");

        let p = open_as(&dir, new);
        assert_eq!(p.log_end_offset(), Offset(0), "another topic's records are not served");
        assert_eq!(partition_metadata::read(&dir).unwrap(), Some(new));
        drop(p);
        let strays: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(partition_metadata::STRAY_SUFFIX)).collect();
        assert_eq!(strays.len(), 1, "{strays:?}");
        let stray = root.path().join(&strays[0]);
        assert!(strays[0].starts_with("t-0."));
        assert_eq!(partition_metadata::read(&stray).unwrap(), Some(old), "kept whole");

        // A directory from before the file existed is taken as the topic's.
        std::fs::remove_file(dir.join(partition_metadata::FILE_NAME)).unwrap();
        let p = open_as(&dir, new);
        p.append(&BatchBuilder::new(0).records(2, 10).build(), 0).unwrap();
        drop(p);
        assert_eq!(open_as(&dir, new).log_end_offset(), Offset(2));
        assert_eq!(partition_metadata::read(&dir).unwrap(), Some(new));
    }

    #[test]
    fn without_a_flush_policy_appends_are_not_due() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), i64::MAX);
        let a = p.append(&BatchBuilder::new(0).records(3, 10).build(), 0).unwrap();
        assert!(!a.flush_due);
    }

    fn registration(replicas: &[i32], isr: &[i32]) -> LeaderRegistration {
        LeaderRegistration {
            replicas: replicas.iter().map(|r| NodeId(*r)).collect(),
            isr: isr.iter().map(|r| NodeId(*r)).collect(),
            leader_epoch: LeaderEpoch(4),
            partition_epoch: crate::types::PartitionEpoch(9),
        }
    }

    /// Five records appended, then the process dies (no close).
    fn written_and_closed_by_a_crash(dir: &Path) {
        let p = open(dir, i64::MAX);
        p.append(&BatchBuilder::new(0).records(5, 10).build(), 0).unwrap();
    }

    /// Found by `replication::sim`: a broker that crashed with records past the committed
    /// mark reopened its log with the mark at the log end and, leading again by the metadata
    /// it had before the crash, served the uncommitted tail to consumers; the replicas the
    /// controller elected next lacked it.
    #[test]
    fn a_reopened_replica_does_not_take_its_log_end_for_committed() {
        let config = ReplicationConfig { replica_lag_time_max_ms: 30_000, min_insync_replicas: 2 };
        let dir = tempfile::tempdir().unwrap();
        written_and_closed_by_a_crash(dir.path());
        let p = open(dir.path(), i64::MAX);
        assert_eq!(p.high_watermark(), Offset(5), "leading alone, as a single node's partition");
        p.become_leader(NodeId(1), config, &registration(&[1, 2, 3], &[1, 2]), 10).unwrap();
        assert_eq!(p.high_watermark(), Offset(0), "nobody has fetched: nothing is known to be committed");
        p.record_follower_fetch(NodeId(2), Offset(5), Offset(0), None, 11).unwrap();
        assert_eq!(p.high_watermark(), Offset(5));

        let dir = tempfile::tempdir().unwrap();
        written_and_closed_by_a_crash(dir.path());
        let p = open(dir.path(), i64::MAX);
        p.become_follower(Some(NodeId(2)), LeaderEpoch(4));
        assert_eq!(p.high_watermark(), Offset(0));
        let from = FetchedFrom { leader: NodeId(2), leader_epoch: LeaderEpoch(4) };
        p.follower_update(from, Offset(3), Offset(0), 12).unwrap();
        assert_eq!(p.high_watermark(), Offset(3), "the leader's mark is taken");

        // A partition whose only replica is this node still commits its whole log.
        let dir = tempfile::tempdir().unwrap();
        written_and_closed_by_a_crash(dir.path());
        let p = open(dir.path(), i64::MAX);
        let one = ReplicationConfig { min_insync_replicas: 1, ..config };
        p.become_leader(NodeId(1), one, &registration(&[1], &[1]), 10).unwrap();
        assert_eq!(p.high_watermark(), Offset(5));
    }

    /// `replication-offset-checkpoint`: a reopened replica starts its mark where the file
    /// left it (bounded by its log), so committed records stay readable through a restart,
    /// and until a role is given the checkpoint keeps the file's mark, not the log end.
    #[test]
    fn a_reopened_replica_starts_its_mark_at_the_checkpointed_high_watermark() {
        let config = ReplicationConfig { replica_lag_time_max_ms: 30_000, min_insync_replicas: 2 };
        let dir = tempfile::tempdir().unwrap();
        written_and_closed_by_a_crash(dir.path());
        let p = open(dir.path(), i64::MAX);
        assert_eq!(p.high_watermark_to_checkpoint(), None, "no mark known yet: none written");
        p.set_checkpointed_high_watermark(Offset(3));
        assert_eq!(p.high_watermark_to_checkpoint(), Some(Offset(3)), "the file's mark, not the log end");
        p.become_leader(NodeId(1), config, &registration(&[1, 2, 3], &[1, 2]), 10).unwrap();
        assert_eq!(p.high_watermark(), Offset(3));
        p.record_follower_fetch(NodeId(2), Offset(5), Offset(0), None, 11).unwrap();
        assert_eq!(p.high_watermark(), Offset(5));
        assert_eq!(p.high_watermark_to_checkpoint(), Some(Offset(5)));

        // A mark beyond the log (its tail was lost) is cut to the log end.
        let dir = tempfile::tempdir().unwrap();
        written_and_closed_by_a_crash(dir.path());
        let p = open(dir.path(), i64::MAX);
        p.set_checkpointed_high_watermark(Offset(9));
        p.become_follower(Some(NodeId(2)), LeaderEpoch(4));
        assert_eq!(p.high_watermark(), Offset(5));
    }

    /// Found by `replication::sim`: a follower elected while its fetch to the old leader was
    /// in flight took the late answer's truncation and cut records it had committed as leader.
    #[test]
    fn a_late_fetch_answer_does_not_touch_a_replica_that_leads_or_follows_another_epoch() {
        let config = ReplicationConfig { replica_lag_time_max_ms: 30_000, min_insync_replicas: 1 };
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), i64::MAX);
        p.become_follower(Some(NodeId(1)), LeaderEpoch(3));
        let sent = FetchedFrom { leader: NodeId(1), leader_epoch: LeaderEpoch(3) };
        let batch = BatchBuilder::new(0).partition_leader_epoch(3).records(4, 10).build();
        p.append_as_follower(sent, &batch, 0).unwrap();
        p.become_leader(NodeId(2), config, &registration(&[1, 2], &[2]), 10).unwrap();
        assert!(matches!(p.truncate_to(sent, Offset(0), 11), Err(PartitionError::StaleFetch(_))));
        assert!(matches!(p.follower_update(sent, Offset(0), Offset(0), 11), Err(PartitionError::StaleFetch(_))));
        assert_eq!(p.log_end_offset(), Offset(4));
        p.become_follower(Some(NodeId(1)), LeaderEpoch(5));
        assert!(matches!(p.append_as_follower(sent, &batch, 12), Err(PartitionError::StaleFetch(_))), "another epoch");
        assert!(matches!(p.truncate_fully_and_start_at(sent, Offset(9), 12), Err(PartitionError::StaleFetch(_))));
        assert_eq!(p.log_end_offset(), Offset(4));
    }

    #[tokio::test]
    async fn an_append_wakes_only_the_waiters_of_its_partition() {
        let (d0, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (p0, p1) = (open(d0.path(), i64::MAX), open(d1.path(), i64::MAX));
        let (w0, w1) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        p0.watch_high_watermark(&w0);
        p1.watch_high_watermark(&w1);
        p0.append(&BatchBuilder::new(0).records(1, 10).build(), 0).unwrap();
        // notify_one left a permit for w0 only.
        tokio::time::timeout(std::time::Duration::from_secs(5), w0.notified()).await.unwrap();
        assert!(tokio::time::timeout(std::time::Duration::ZERO, w1.notified()).await.is_err());
    }
}
