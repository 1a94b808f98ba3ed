//! Bytes on disk for one partition: segments, indexes, recovery, retention, producer state
//! and the leader-epoch cache. The [`Log`] type is the whole interface; the caller (the
//! partition) wraps it in a mutex and passes the time in (`now_ms`), so nothing here reads a
//! clock.
//!
//! Files in the partition directory (Kafka's names where Kafka has one):
//!
//! ```text
//! 00000000000000000000.log        batches as received, offsets patched (segment.rs)
//! 00000000000000000000.index      sparse offset index, written on roll/close (offset_index.rs)
//! 00000000000000000000.timeindex  sparse time index, written on roll/close (time_index.rs)
//! 00000000000000000000.txnindex   aborted transactions, written on roll/close (txn_index.rs)
//! 00000000000000001234.snapshot   producer state as of offset 1234 (producer_state.rs)
//! leader-epoch-checkpoint         epoch → start offset (epoch_cache.rs)
//! log-start-offset-checkpoint     the log start offset, so DeleteRecords survives restarts
//! clean-shutdown                  written last by close(); its presence means trust all files
//! cleaner-offset-checkpoint       first dirty offset and next delete horizon (cleaner/)
//! 00000000000000000000.log.cleaned  a cleaned segment being written (cleaner/swap.rs)
//! 00000000000000000000.log.swap     a cleaned segment committed but not yet renamed
//! ```
//!
//! Invariants of a `Log` (checked by the op-fuzzer in `tests_fuzz.rs`):
//! - there is always at least one segment; segments are contiguous and ordered, each one's
//!   `next_offset` is at most the next one's base; the last is the active segment and
//!   `log_end_offset` is its `next_offset`;
//! - `log_start_offset` lies in `[first segment base, log_end_offset]`;
//! - every segment but the active one is sealed: fsynced, with index files written. So after
//!   a crash only the active segment can be torn, and only it is recovered (its data above
//!   `recovery_point`, the flushed offset, may be lost; data below never is);
//! - producer state and the epoch cache describe exactly the batches in
//!   `[log_start_offset, log_end_offset)` (producer state may remember older producers too);
//! - every aborted transaction with data still in the log is in the txn index of its marker's
//!   segment (the cleaner drops entries whose data it removed), and nothing at or above the
//!   first unstable offset (the oldest open transaction's first offset) is stable.

mod checkpoint;
pub mod hw_checkpoint;
pub mod partition_metadata;
mod cleaner;
pub mod config;
pub mod epoch_cache;
mod offset_index;
mod producer_state;
mod read;
mod recovery;
mod retention;
mod segment;
mod time_index;
mod truncate;
pub mod txn_index;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fuzz;
#[cfg(test)]
mod tests_txn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::record::patch::PatchedBatches;
use crate::record::{BatchHeader, BatchIter, IterStop, RecordError};

pub use cleaner::{
    CLEANER_CHECKPOINT, CleanStats, FaultyRecord, RecordChecks, RecordFault, TimestampBounds, check_records,
};
pub use config::{CleanupPolicy, DirtyRatio, LogConfig, MessageTimestampType};
pub use epoch_cache::{EpochEntry, LeaderEpochCache};
use producer_state::StagedProducers;
pub use producer_state::{AppendOrigin, BatchMetadata, CompletedTxn, ProducerEntry, ProducerStateManager};
pub use txn_index::AbortedTxn;
use crate::record::control::Marker;
use crate::types::{LeaderEpoch, Offset, ProducerId};
pub use read::RegionRead;
pub use segment::{FileRegion, RecoveryMode};
use segment::{IndexLimits, Segment};

/// Everything that can go wrong in the log. The API layer maps these to Kafka codes:
/// `OffsetOutOfRange` → OFFSET_OUT_OF_RANGE, `OutOfOrderSequence` → OUT_OF_ORDER_SEQUENCE_NUMBER,
/// `InvalidProducerEpoch` → INVALID_PRODUCER_EPOCH, `InvalidRecords` → per `RecordError`,
/// anything else → KAFKA_STORAGE_ERROR.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A failed read, write or fsync. As in Kafka (which takes the log directory offline),
    /// the caller should stop using this log: in-memory and on-disk state may now differ.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    #[error("records given to the log are not whole v2 batches: {0}")]
    InvalidRecords(#[from] RecordError),
    #[error("follower append at offset {got} but the log end offset is {log_end}")]
    NonMonotonicOffsets { got: Offset, log_end: Offset },
    #[error(
        "out of order sequence for producer {producer_id}: expected {expected}, got {received}"
    )]
    OutOfOrderSequence {
        producer_id: ProducerId,
        expected: i32,
        received: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: ProducerId,
        epoch: i16,
        current_epoch: i16,
    },
    /// A non-transactional batch from a producer with an open transaction: INVALID_TXN_STATE.
    #[error("producer {producer_id} has an open transaction: its batches must be transactional")]
    InvalidTxnState { producer_id: ProducerId },
    /// A marker from an older coordinator than the last one: TRANSACTION_COORDINATOR_FENCED.
    #[error("marker of producer {producer_id} has coordinator epoch {coordinator_epoch}, older than {current_coordinator_epoch}")]
    CoordinatorFenced { producer_id: ProducerId, coordinator_epoch: i32, current_coordinator_epoch: i32 },
    #[error("corrupt index {path}: {reason}")]
    CorruptIndex { path: PathBuf, reason: &'static str },
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint { path: PathBuf, reason: &'static str },
    #[error("corrupt producer snapshot {path}: {reason}")]
    CorruptSnapshot { path: PathBuf, reason: &'static str },
    #[error("corrupt batch in {path} at byte {position}")]
    CorruptSegment { path: PathBuf, position: u64 },
    #[error("segment {base_offset} cannot take more bytes")]
    SegmentFull { base_offset: i64 },
    #[error("invalid log config: {0}")]
    InvalidConfig(&'static str),
}

/// The result of an append that wrote (Kafka's `LogAppendInfo`, the parts Produce needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// The broker time written into the batches, or -1 under `CreateTime`.
    pub log_append_time: i64,
    pub max_timestamp: i64,
    /// Base offset of the batch holding `max_timestamp` (batch granularity).
    pub offset_of_max_timestamp: Offset,
    pub log_start_offset: Offset,
}

/// Whether an append wrote, or recognised an idempotent retry and wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended(AppendInfo),
    /// A retry of a batch already in the log; the info names the original offsets.
    Duplicate(AppendInfo),
}

impl AppendOutcome {
    pub fn info(&self) -> &AppendInfo {
        match self {
            AppendOutcome::Appended(info) | AppendOutcome::Duplicate(info) => info,
        }
    }
}

/// Stored batches returned by [`Log::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, exactly as stored.
    pub bytes: Bytes,
    /// Offset after the last batch returned (the start offset when nothing was returned).
    pub next_offset: Offset,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

/// Name of the file holding the log start offset.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// Name of the clean-shutdown marker.
pub const CLEAN_SHUTDOWN_MARKER: &str = "clean-shutdown";

/// One partition's log; see the module docs.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// By base offset; never empty; the last is the active segment.
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    /// Offsets below this are fsynced.
    recovery_point: i64,
    last_flush_ms: i64,
    epoch_cache: LeaderEpochCache,
    producers: ProducerStateManager,
}

impl Log {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies a changed topic config; it takes effect from the next append or retention run.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log_start_offset)
    }

    pub fn log_end_offset(&self) -> Offset {
        Offset(self.leo())
    }

    /// The log end offset as a plain number, for offset arithmetic inside the log.
    pub(super) fn leo(&self) -> i64 {
        self.active().next_offset()
    }

    /// Offsets below this are durable (fsynced).
    pub fn recovery_point(&self) -> Offset {
        Offset(self.recovery_point)
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.segments.keys().copied().map(Offset).collect()
    }

    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epoch_cache
    }

    /// A new leader records that its epoch starts at the current log end offset, before
    /// any append, so OffsetForLeaderEpoch answers correctly at once (Kafka's
    /// `maybeAssignEpochStartOffset` on becoming leader).
    pub fn assign_epoch_start(&mut self, leader_epoch: LeaderEpoch) -> Result<(), LogError> {
        self.epoch_cache.assign(leader_epoch, self.log_end_offset())
    }

    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }

    fn active(&self) -> &Segment {
        match self.segments.last_key_value() {
            Some((_, segment)) => segment,
            None => unreachable!("a log always has an active segment"),
        }
    }

    fn active_mut(&mut self) -> &mut Segment {
        match self.segments.last_entry() {
            Some(entry) => entry.into_mut(),
            None => unreachable!("a log always has an active segment"),
        }
    }

    fn index_limits(&self) -> IndexLimits {
        index_limits(&self.config)
    }

    /// Appends a client's record set (already accepted by `record::validate_batches`) as
    /// leader in `leader_epoch`: producer checks, then offsets from the log end offset, the
    /// append time if configured, a roll if due, one write, index and cache updates, and an
    /// fsync if the flush policy asks for one. A duplicate retry writes nothing.
    pub fn append(
        &mut self,
        records: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        let outcome = self.append_unflushed(records, leader_epoch, now_ms)?;
        self.maybe_flush(now_ms)?;
        Ok(outcome)
    }

    /// [`Log::append`] without the flush: the caller fsyncs when [`Log::flush_due`] says so,
    /// without holding the log (see [`Log::flush_target`]).
    pub fn append_unflushed(
        &mut self,
        records: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        self.append_with_origin(records, leader_epoch, now_ms, AppendOrigin::Client)
    }

    /// [`Log::append_unflushed`] for `origin`: the broker's own batches (the group
    /// coordinator's transactional offsets) skip the sequence checks and duplicate detection.
    pub fn append_with_origin(
        &mut self,
        records: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<AppendOutcome, LogError> {
        whole_batches(records)?;
        // The records are written as received; only copies of the batch headers change.
        let mut batches = PatchedBatches::new(records);
        let log_append_time = match self.config.message_timestamp_type {
            MessageTimestampType::LogAppendTime => {
                batches.set_log_append_time(now_ms);
                now_ms
            }
            MessageTimestampType::CreateTime => -1,
        };
        let headers = batches.headers();
        let first_offset = self.leo();
        let mut staged = StagedProducers::default();
        let mut next = first_offset;
        for header in &headers {
            if let Some(original) = self.producers.check_and_stage(&mut staged, header, next, origin)? {
                return Ok(AppendOutcome::Duplicate(self.duplicate_info(&original)));
            }
            next += i64::from(header.last_offset_delta) + 1;
        }
        let next_offset = batches.assign_offsets(first_offset, leader_epoch.0);
        assert_eq!(
            next_offset, next,
            "offset assignment must match the headers"
        );
        self.write_batches(&batches, first_offset, next_offset - 1, now_ms)?;
        self.epoch_cache.assign(leader_epoch, Offset(first_offset))?;
        self.producers.commit(staged);
        let (max_timestamp, offset_of_max_timestamp) = max_timestamp_of(&headers, first_offset);
        Ok(AppendOutcome::Appended(AppendInfo {
            first_offset: Offset(first_offset),
            last_offset: Offset(next_offset - 1),
            log_append_time,
            max_timestamp,
            offset_of_max_timestamp: Offset(offset_of_max_timestamp),
            log_start_offset: Offset(self.log_start_offset),
        }))
    }

    fn duplicate_info(&self, original: &BatchMetadata) -> AppendInfo {
        let log_append_time = match self.config.message_timestamp_type {
            MessageTimestampType::LogAppendTime => original.timestamp,
            MessageTimestampType::CreateTime => -1,
        };
        AppendInfo {
            first_offset: original.first_offset,
            last_offset: original.last_offset,
            log_append_time,
            max_timestamp: original.timestamp,
            offset_of_max_timestamp: original.first_offset,
            log_start_offset: Offset(self.log_start_offset),
        }
    }

    /// Appends batches a leader already numbered (replication). Offsets must increase from
    /// the log end offset (gaps are allowed, as compacted leaders produce them); CRCs are
    /// checked. Producer state and the epoch cache follow the batches without checks.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<Option<(Offset, Offset)>, LogError> {
        let mut iter = BatchIter::with_crc_check(records);
        let headers: Vec<BatchHeader> = iter.by_ref().map(|(h, _)| h).collect();
        ensure_whole(iter.stop())?;
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Ok(None);
        };
        let mut expected = self.leo();
        for header in &headers {
            if header.base_offset < expected || header.last_offset_delta < 0 {
                return Err(LogError::NonMonotonicOffsets {
                    got: Offset(header.base_offset),
                    log_end: Offset(expected),
                });
            }
            expected = header.next_offset();
        }
        self.write_batches(&PatchedBatches::new(records), first.base_offset, last.last_offset(), now_ms)?;
        let mut at = 0usize;
        for header in &headers {
            self.epoch_cache
                .assign(LeaderEpoch(header.partition_leader_epoch), Offset(header.base_offset))?;
            let batch = records.get(at..at + header.total_len()).unwrap_or_default();
            at += header.total_len();
            if header.is_control() {
                if let Some(marker) = crate::record::control::parse_marker(batch) {
                    self.replay_marker_into_active(header, marker);
                }
            } else {
                self.producers.replay(header);
            }
        }
        self.maybe_flush(now_ms)?;
        Ok(Some((Offset(first.base_offset), Offset(last.last_offset()))))
    }

    /// Appends a transaction marker of `producer_id` as leader (the coordinator's
    /// WriteTxnMarkers): the epoch and coordinator-epoch checks, one control batch, and for
    /// an abort an entry in the active segment's transaction index. Does not fsync.
    pub fn append_marker(
        &mut self,
        producer_id: ProducerId,
        producer_epoch: i16,
        marker: Marker,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let offset = self.leo();
        let staged = self.producers.stage_marker(producer_id, producer_epoch, marker, offset, now_ms)?;
        let bytes = crate::record::control::marker_batch(producer_id.0, producer_epoch, marker, now_ms);
        let mut batches = PatchedBatches::new(&bytes);
        if self.config.message_timestamp_type == MessageTimestampType::LogAppendTime {
            batches.set_log_append_time(now_ms);
        }
        let next_offset = batches.assign_offsets(offset, leader_epoch.0);
        assert_eq!(next_offset, offset + 1, "a marker batch holds one record");
        self.write_batches(&batches, offset, offset, now_ms)?;
        self.epoch_cache.assign(leader_epoch, Offset(offset))?;
        let completed = staged.completed;
        self.producers.commit_marker(staged);
        if let Some(completed) = completed.filter(|c| c.aborted) {
            self.index_abort(&completed);
        }
        Ok(AppendInfo {
            first_offset: Offset(offset),
            last_offset: Offset(offset),
            log_append_time: -1,
            max_timestamp: now_ms,
            offset_of_max_timestamp: Offset(offset),
            log_start_offset: Offset(self.log_start_offset),
        })
    }

    /// Applies a stored marker (a follower's copy) to producer state and the active
    /// segment's transaction index.
    fn replay_marker_into_active(&mut self, header: &BatchHeader, marker: Marker) {
        if let Some(completed) = self.producers.replay_marker(header, marker).filter(|c| c.aborted) {
            self.index_abort(&completed);
        }
    }

    /// Records an aborted transaction whose marker was just appended to the active segment.
    fn index_abort(&mut self, completed: &CompletedTxn) {
        let entry = AbortedTxn {
            producer_id: completed.producer_id.0,
            first_offset: completed.first_offset.0,
            last_offset: completed.last_offset.0,
            last_stable_offset: self.producers.last_stable_offset_after(completed).0,
        };
        self.active_mut().txn_index_mut().append(entry);
    }

    /// First offset of the oldest open transaction, if any: the last stable offset is at
    /// most this.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.producers.first_unstable_offset()
    }

    /// The aborted transactions a read_committed fetch of `[fetch_offset, upper_bound)` must
    /// report (Kafka's `collectAbortedTransactions`): from the segment holding `fetch_offset`
    /// on, until an entry's last stable offset shows no later segment can add one.
    pub fn collect_aborted(&self, fetch_offset: Offset, upper_bound: Offset) -> Vec<AbortedTxn> {
        let (Offset(fetch_offset), Offset(upper_bound)) = (fetch_offset, upper_bound);
        let first_base = self
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(fetch_offset, |(b, _)| *b);
        let mut out = Vec::new();
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            if segment.txn_index().collect(fetch_offset, upper_bound, &mut out) {
                break;
            }
        }
        out
    }

    /// Rolls if due, then writes `bytes` (whole batches holding `first_offset..=last_offset`)
    /// to the active segment. A roll starts the new segment at the first batch's offset when
    /// a follower's batches leave a gap above the log end offset, as Kafka does.
    fn write_batches(
        &mut self,
        batches: &PatchedBatches<'_>,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        if last_offset - first_offset > i64::from(i32::MAX) {
            let reason = "batch offsets span more than one segment can index";
            return Err(RecordError::InvalidRecord {
                position: 0,
                reason,
            }
            .into());
        }
        let config = &self.config;
        let active = self.active();
        if active.should_roll(
            config.segment_bytes,
            config.roll_ms(),
            batches.len(),
            last_offset,
            now_ms,
        ) {
            let new_base = first_offset.max(self.leo());
            self.roll_at(new_base, now_ms)?;
        }
        self.active_mut().append(batches)
    }

    /// Starts a new active segment at the log end offset (a no-op if the active one is
    /// empty). The old one is sealed and a producer snapshot is taken at the boundary.
    pub fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.roll_at(self.leo(), now_ms)
    }

    fn roll_at(&mut self, new_base: i64, now_ms: i64) -> Result<(), LogError> {
        let (active_base, active_empty) =
            (self.active().base_offset(), self.active().size_bytes() == 0);
        if active_empty {
            return self.rebase_empty_active(active_base, new_base, now_ms);
        }
        self.active_mut().seal()?;
        self.producers.write_snapshot(&self.dir, new_base)?;
        let segment = Segment::create(&self.dir, new_base, self.index_limits(), now_ms)?;
        self.segments.insert(new_base, segment);
        self.recovery_point = self.recovery_point.max(new_base);
        tracing::debug!(dir = %self.dir.display(), new_base, "rolled segment");
        Ok(())
    }

    /// An empty active segment stays unless offsets must jump too far past its base for a
    /// relative index entry (a follower's gap): then it is replaced by one at `new_base`.
    fn rebase_empty_active(
        &mut self,
        active_base: i64,
        new_base: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        if new_base <= active_base {
            return Ok(());
        }
        let segment = Segment::create(&self.dir, new_base, self.index_limits(), now_ms)?;
        self.segments.insert(new_base, segment);
        if let Some(old) = self.segments.remove(&active_base) {
            old.delete()?;
        }
        if self.segments.len() == 1 && self.log_start_offset < new_base {
            self.log_start_offset = new_base;
            self.write_log_start_offset()?;
        }
        self.recovery_point = self.recovery_point.max(new_base);
        Ok(())
    }

    /// fsyncs the active segment: everything appended so far becomes durable.
    pub fn flush(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.active().flush()?;
        self.recovery_point = self.leo();
        self.last_flush_ms = now_ms;
        Ok(())
    }

    /// Flushes if `flush.messages` unflushed offsets piled up or `flush.ms` passed; callers
    /// may also run this periodically.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<(), LogError> {
        if self.flush_due(now_ms) {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// True if `flush.messages` unflushed offsets piled up or `flush.ms` passed.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        let unflushed = self.leo() - self.recovery_point;
        let due_by_count = unflushed >= self.config.flush_interval_messages;
        let due_by_time = unflushed > 0
            && now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_interval_ms;
        due_by_count || due_by_time
    }

    /// For an fsync outside the log's lock: a handle on the active segment's file and the
    /// log end offset it holds. Sealed segments are already flushed, so once this file is
    /// synced everything below the returned offset is; then call [`Log::mark_flushed`].
    /// (If the segment rolls meanwhile, the roll syncs it anyway.)
    pub fn flush_target(&self) -> (std::sync::Arc<std::fs::File>, Offset) {
        (self.active().shared_file(), self.log_end_offset())
    }

    /// Records an fsync done through [`Log::flush_target`] up to `offset`.
    pub fn mark_flushed(&mut self, offset: Offset, now_ms: i64) {
        self.recovery_point = self.recovery_point.max(offset.0.min(self.leo()));
        self.last_flush_ms = now_ms;
    }

    /// Shuts down cleanly: data and indexes flushed, producer snapshot and checkpoints
    /// written, then the clean-shutdown marker last, so its presence vouches for the rest.
    pub fn close(mut self, now_ms: i64) -> Result<(), LogError> {
        self.flush(now_ms)?;
        self.active_mut().seal()?;
        let log_end_offset = self.leo();
        // Snapshots of earlier closes inside the active segment are superseded by this one;
        // the one at the segment's base stays for truncations into it.
        let active_base = self.active().base_offset();
        producer_state::delete_snapshots_outside(&self.dir, i64::MIN..=active_base)?;
        self.producers.write_snapshot(&self.dir, log_end_offset)?;
        self.epoch_cache.persist()?;
        self.write_log_start_offset()?;
        let active = self.active();
        let marker = recovery::CleanShutdown {
            log_end_offset,
            active_base_offset: active.base_offset(),
            active_size_bytes: active.size_bytes(),
            first_batch_timestamp: active.first_batch_timestamp(),
        };
        marker.write(&self.dir)
    }

    fn write_log_start_offset(&self) -> Result<(), LogError> {
        let path = self.dir.join(LOG_START_OFFSET_CHECKPOINT);
        checkpoint::write_checkpoint(&path, 0, &[self.log_start_offset.to_string()])
    }
}

fn index_limits(config: &LogConfig) -> IndexLimits {
    IndexLimits {
        index_interval_bytes: config.index_interval_bytes,
        max_index_bytes: config.segment_index_bytes,
    }
}

/// Headers of `records`, which must be whole batches and at least one.
fn whole_batches(records: &[u8]) -> Result<Vec<BatchHeader>, LogError> {
    let mut iter = BatchIter::new(records);
    let headers: Vec<BatchHeader> = iter.by_ref().map(|(h, _)| h).collect();
    ensure_whole(iter.stop())?;
    if headers.is_empty() {
        return Err(RecordError::InvalidRecord {
            position: 0,
            reason: "no record batch to append",
        }
        .into());
    }
    Ok(headers)
}

fn ensure_whole(stop: Option<&IterStop>) -> Result<(), LogError> {
    match stop {
        Some(IterStop::End) => Ok(()),
        Some(IterStop::Corrupt { error, .. }) => Err(error.clone().into()),
        Some(IterStop::PartialTail { position }) => Err(RecordError::CorruptMessage {
            position: *position,
            reason: "truncated record batch",
        }
        .into()),
        None => Err(RecordError::CorruptMessage {
            position: 0,
            reason: "unfinished batch walk",
        }
        .into()),
    }
}

/// The largest batch timestamp and the base offset of its batch, with offsets assigned
/// from `first_offset`.
fn max_timestamp_of(headers: &[BatchHeader], first_offset: i64) -> (i64, i64) {
    let mut best = (-1, first_offset);
    let mut base = first_offset;
    for header in headers {
        if header.max_timestamp > best.0 {
            best = (header.max_timestamp, base);
        }
        base += i64::from(header.last_offset_delta) + 1;
    }
    best
}
