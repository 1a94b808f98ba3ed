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
    /// `producer.id.expiration.ms`: forget idle producers' sequence state after this long.
    pub producer_id_expiration_ms: i64,
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
            producer_id_expiration_ms: DAY_MS,
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
        Ok(())
    }
}
