//! Per-partition log settings, named after and defaulting to Kafka's topic/broker configs.
//!
//! Invariant after [`LogConfig::validate`]: sizes fit the on-disk formats (positions in an
//! index entry are u32, Kafka caps `segment.bytes` at `i32::MAX`) and intervals are positive.

use super::LogError;

/// How a batch's timestamp is chosen (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageTimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Overwrite `maxTimestamp` with the broker's clock at append.
    LogAppendTime,
}

/// `cleanup.policy` / `log.cleanup.policy`: what happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// `delete`: retention by time and size removes old segments.
    #[default]
    Delete,
    /// `compact`: the cleaner keeps the latest record per key; nothing expires by time or size.
    Compact,
    /// `compact,delete` (either order): both.
    CompactDelete,
    /// The empty list: neither. As in Kafka 4.x, nothing expires by time or size and the
    /// cleaner leaves the log alone, so data stays until DeleteRecords moves the log start
    /// (infinite retention without compaction).
    Neither,
}

impl CleanupPolicy {
    /// Parses Kafka's list syntax: `delete`, `compact`, `compact,delete`, `delete,compact`,
    /// or the empty list (`""`), which Kafka 4.x accepts and means neither.
    pub fn parse(text: &str) -> Option<CleanupPolicy> {
        let (mut compact, mut delete) = (false, false);
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => Some(CleanupPolicy::Neither),
        }
    }

    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// `min.cleanable.dirty.ratio`, a fraction in `[0, 1]`. A newtype so `LogConfig` stays `Eq`
/// (compared bit for bit; the value is never NaN after `validate`).
#[derive(Debug, Clone, Copy)]
pub struct DirtyRatio(pub f64);

impl PartialEq for DirtyRatio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for DirtyRatio {}

/// See the field docs for the Kafka property each field stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes` / `log.segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms` / `log.roll.ms`: roll when the active segment's first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms` / `log.retention.ms`: delete segments whose newest timestamp is older;
    /// -1 keeps them forever.
    pub retention_ms: i64,
    /// `retention.bytes` / `log.retention.bytes`: delete old segments while the log is larger;
    /// -1 means no size limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes of log between offset-index entries, hence also the most a
    /// lookup scans after its index search.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes` / `log.index.size.max.bytes`: largest index file; roll when full.
    pub segment_index_bytes: u64,
    /// `flush.messages` / `log.flush.interval.messages`: fsync after this many unflushed
    /// offsets; `i64::MAX` leaves flushing to the OS.
    pub flush_interval_messages: i64,
    /// `flush.ms` / `log.flush.interval.ms`: fsync when the last flush is this old.
    pub flush_interval_ms: i64,
    /// `file.delete.delay.ms`: Kafka renames to `.deleted` first; we delete at once for now.
    pub file_delete_delay_ms: i64,
    /// `message.timestamp.type` / `log.message.timestamp.type`.
    pub message_timestamp_type: MessageTimestampType,
    /// `max.message.bytes` / `message.max.bytes`: the largest batch a producer may send
    /// (pass it to `record::validate_batches`; the log itself does not re-check it).
    pub max_message_bytes: usize,
    /// `message.timestamp.before.max.ms`: how far behind the broker clock a CreateTime
    /// timestamp may be (checked by produce, not by the log).
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far ahead of the broker clock it may be.
    pub message_timestamp_after_max_ms: i64,
    /// `min.insync.replicas`: replicas that must hold an acks=all write (checked by produce).
    pub min_insync_replicas: i32,
    /// `producer.id.expiration.ms`: forget idle producers' sequence state after this long.
    pub producer_id_expiration_ms: i64,
    /// `cleanup.policy` / `log.cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms` / `log.cleaner.delete.retention.ms`: how long a tombstone stays
    /// readable after the cleaner first kept it (its batch's delete horizon).
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` / `log.cleaner.min.cleanable.ratio`: clean when the dirty
    /// bytes are at least this fraction of the cleanable bytes.
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// `min.compaction.lag.ms` / `log.cleaner.min.compaction.lag.ms`: a segment holding a batch
    /// younger than this is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` / `log.cleaner.max.compaction.lag.ms`: a dirty segment whose
    /// first batch is older than this is cleaned whatever the ratio; the active segment also
    /// rolls at this age so its data becomes cleanable.
    pub max_compaction_lag_ms: i64,
    /// `log.cleaner.dedupe.buffer.size` (a broker setting in Kafka, shared by the cleaner
    /// threads): the memory budget of one pass's key map.
    pub cleaner_dedupe_buffer_bytes: usize,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_interval_messages: i64::MAX,
            flush_interval_ms: i64::MAX,
            file_delete_delay_ms: 60_000,
            message_timestamp_type: MessageTimestampType::CreateTime,
            max_message_bytes: 1_048_588,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: 3_600_000,
            min_insync_replicas: 1,
            producer_id_expiration_ms: DAY_MS,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DAY_MS,
            min_cleanable_dirty_ratio: DirtyRatio(0.5),
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            cleaner_dedupe_buffer_bytes: 128 * 1024 * 1024,
        }
    }
}

impl LogConfig {
    /// Refuses settings the on-disk formats cannot honour.
    pub fn validate(&self) -> Result<(), LogError> {
        let bad = |reason: &'static str| Err(LogError::InvalidConfig(reason));
        if self.segment_bytes < 14 || self.segment_bytes > i32::MAX as u64 {
            return bad("segment.bytes must be between 14 and 2147483647");
        }
        if self.segment_ms <= 0 {
            return bad("segment.ms must be positive");
        }
        if self.index_interval_bytes == 0 {
            return bad("index.interval.bytes must be positive");
        }
        if self.segment_index_bytes < 8 || self.segment_index_bytes > i32::MAX as u64 {
            return bad("segment.index.bytes must hold at least one entry");
        }
        if self.flush_interval_messages < 1 || self.flush_interval_ms < 0 {
            return bad("flush intervals must be positive");
        }
        self.validate_cleaner()
    }

    fn validate_cleaner(&self) -> Result<(), LogError> {
        let bad = |reason: &'static str| Err(LogError::InvalidConfig(reason));
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio.0) {
            return bad("min.cleanable.dirty.ratio must be between 0 and 1");
        }
        if self.delete_retention_ms < 0 || self.min_compaction_lag_ms < 0 {
            return bad("delete.retention.ms and min.compaction.lag.ms must not be negative");
        }
        if self.max_compaction_lag_ms < 1 || self.max_compaction_lag_ms < self.min_compaction_lag_ms
        {
            return bad(
                "max.compaction.lag.ms must be positive and at least min.compaction.lag.ms",
            );
        }
        if self.cleaner_dedupe_buffer_bytes == 0 {
            return bad("log.cleaner.dedupe.buffer.size must be positive");
        }
        Ok(())
    }

    /// The age at which the active segment rolls: `segment.ms`, or `max.compaction.lag.ms` if
    /// smaller on a compacted log (Kafka's `LogConfig.maxSegmentMs`), since the cleaner never
    /// touches the active segment.
    pub fn roll_ms(&self) -> i64 {
        if self.cleanup_policy.compacts() {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}
