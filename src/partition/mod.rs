//! One hosted partition: its log, its high watermark and its leader epoch.
//!
//! The Kafka layer sees a partition only through this narrow interface. On a single node the
//! leader is this broker, the ISR is `{self}` and the high watermark equals the log end offset
//! after every append; replication will make the high watermark the minimum log end over the
//! ISR without changing callers.
//!
//! Invariants: `log_start_offset <= high_watermark <= log_end_offset` and
//! `last_stable_offset <= high_watermark`: the LSO is the first offset of the oldest open
//! transaction, or the high watermark when none is open.
//!
//! Long-polling fetches register a waiter here and are woken when this partition's high
//! watermark moves (Kafka's fetch purgatory keyed by partition), so an append wakes only the
//! fetches that read this partition.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::log::{AbortedTxn, AppendOrigin, AppendOutcome, FileRegion, Log, LogConfig, LogError, RecoveryMode};
use crate::record::control::Marker;
use crate::metrics::TopicMetrics;
use crate::types::{LeaderEpoch, TopicPartition};

#[derive(Debug, Error)]
pub enum PartitionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("offset {requested} is beyond the high watermark {high_watermark}")]
    OffsetBeyondHighWatermark { requested: i64, high_watermark: i64 },
}

/// What an append did.
#[derive(Debug, Clone, Copy)]
pub struct AppendResult {
    pub first_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
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
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
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
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
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
    last_stable_offset: AtomicI64,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    leader_epoch: LeaderEpoch,
    pub metrics: TopicMetrics,
    waiters: Mutex<Waiters>,
    /// Held for one fsync at a time; whoever waited behind it usually finds its appends
    /// covered by that fsync (group commit).
    sync_lock: Mutex<()>,
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
        let log = Log::open_with(dir, LogConfig::clone(&config), now_ms, recovery)?;
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let lso = log.first_unstable_offset().map_or(end, |first| first.min(end));
        Ok(Self {
            tp,
            topic_id,
            dir: dir.to_path_buf(),
            log: Mutex::new(log),
            config: RwLock::new(config),
            high_watermark: AtomicI64::new(end),
            last_stable_offset: AtomicI64::new(lso),
            log_start_offset: AtomicI64::new(start),
            log_end_offset: AtomicI64::new(end),
            leader_epoch: LeaderEpoch(0),
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// The first offset a read_committed consumer may not see yet: the oldest open
    /// transaction's first offset, or the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset.load(Ordering::Acquire)
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
        let mut log = self.log();
        let outcome = log.append_with_origin(records, self.leader_epoch.0, now_ms, origin)?;
        let (info, duplicate) = match outcome {
            AppendOutcome::Appended(info) => {
                let records_count = (info.last_offset - info.first_offset + 1).max(0) as u64;
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
        self.publish_positions(&log);
        Ok(result)
    }

    /// Appends a COMMIT or ABORT marker of `producer_id` (WriteTxnMarkers). Does not fsync:
    /// see [`AppendResult::flush_due`].
    pub fn append_marker(&self, producer_id: i64, producer_epoch: i16, marker: Marker, now_ms: i64) -> Result<AppendResult, PartitionError> {
        let mut log = self.log();
        let info = log.append_marker(producer_id, producer_epoch, marker, self.leader_epoch.0, now_ms)?;
        self.metrics.record_produce(0, 1);
        let result = AppendResult {
            first_offset: info.first_offset,
            last_offset: info.last_offset,
            log_append_time_ms: -1,
            log_start_offset: log.log_start_offset(),
            duplicate: false,
            flush_due: log.flush_due(now_ms),
        };
        self.publish_positions(&log);
        Ok(result)
    }

    /// Whether `producer_id` has an open transaction here (its next transactional batch then
    /// needs no verification).
    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.log().producer_state().entry(producer_id).is_some_and(|e| e.current_txn_first_offset.is_some())
    }

    /// Every producer's entry, for DescribeProducers.
    pub fn producers(&self) -> Vec<(i64, crate::log::ProducerEntry)> {
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

    fn publish_positions(&self, log: &Log) {
        let end = log.log_end_offset();
        self.log_end_offset.store(end, Ordering::Release);
        self.log_start_offset.store(log.log_start_offset(), Ordering::Release);
        // Single node: the ISR is this replica alone, so everything written is replicated.
        let lso = log.first_unstable_offset().map_or(end, |first| first.min(end));
        self.last_stable_offset.store(lso, Ordering::Release);
        let before = self.high_watermark.swap(end, Ordering::AcqRel);
        if before != end {
            self.wake_waiters();
        }
    }

    /// Reads whole batches from `offset`, at most `max_bytes` unless `min_one_batch` and the
    /// first batch is larger (KIP-74). Only data below the high watermark is visible.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<ReadResult, PartitionError> {
        let log = self.log();
        let high_watermark = self.high_watermark();
        let read = log.read(offset, max_bytes, high_watermark, min_one_batch)?;
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
    pub fn read_for_fetch(&self, offset: i64, max_bytes: usize, min_one_batch: bool, isolation: Isolation) -> Result<FetchRead, PartitionError> {
        let log = self.log();
        let high_watermark = self.high_watermark();
        let last_stable_offset = self.last_stable_offset();
        let bound = match isolation {
            Isolation::ReadUncommitted => high_watermark,
            Isolation::ReadCommitted => last_stable_offset,
        };
        let located = log.read_regions(offset, max_bytes, bound, min_one_batch)?;
        let aborted = match isolation {
            Isolation::ReadUncommitted => None,
            Isolation::ReadCommitted => Some(log.collect_aborted(offset, located.next_offset)),
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

    /// ListOffsets by timestamp: the first offset whose timestamp is at least `timestamp_ms`.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>, PartitionError> {
        Ok(self.log().offset_for_timestamp(timestamp_ms)?)
    }

    /// ListOffsets MAX_TIMESTAMP: the offset of the first record with the largest timestamp,
    /// and that timestamp.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<(i64, i64)>, PartitionError> {
        Ok(self.log().offset_of_max_timestamp()?)
    }

    /// OffsetForLeaderEpoch: the end offset of `epoch` (or of the largest epoch below it).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let log = self.log();
        log.epoch_cache().end_offset_for_epoch(epoch, log.log_end_offset())
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        let high_watermark = self.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target > high_watermark {
            return Err(PartitionError::OffsetBeyondHighWatermark { requested: target, high_watermark });
        }
        let mut log = self.log();
        let start = if target > log.log_start_offset() { log.delete_records_before(target)? } else { log.log_start_offset() };
        self.publish_positions(&log);
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
        self.publish_positions(&log);
        Ok(stats)
    }

    /// Deletes segments past retention; returns the bytes freed.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<u64, PartitionError> {
        let mut log = self.log();
        let freed = log.enforce_retention(now_ms)?;
        self.publish_positions(&log);
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
    pub fn set_config(&self, config: impl Into<Arc<LogConfig>>) {
        let config = config.into();
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
        assert_eq!(p.log().recovery_point(), 0, "append must not fsync");
        p.sync(1).unwrap();
        assert_eq!(p.log().recovery_point(), 5);
        p.sync(2).unwrap();
        assert_eq!(p.log().recovery_point(), 5);
    }

    #[test]
    fn without_a_flush_policy_appends_are_not_due() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), i64::MAX);
        let a = p.append(&BatchBuilder::new(0).records(3, 10).build(), 0).unwrap();
        assert!(!a.flush_due);
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
