//! Record batches (magic v2) as raw bytes: parse the header, validate, patch in place.
//!
//! The broker never decodes individual records on the hot path. A Produce request's record set
//! is checked once at the header level ([`validate_batches`]), patched in place with offsets
//! ([`assign_offsets`]) and, for `LogAppendTime` topics, the append time
//! ([`set_log_append_time`]); the bytes then go to disk as received and come back out of a
//! Fetch unmodified. [`BatchIter`] walks stored bytes for log recovery and reads.
//!
//! Invariants:
//! - Nothing here panics on arbitrary input: every length read from the bytes is checked
//!   before it is used as an index, and malformed input becomes a [`RecordError`].
//! - `baseOffset` and `partitionLeaderEpoch` lie outside the CRC, so patching them never
//!   invalidates a batch; every other patch recomputes the CRC.
//!
//! Submodules: [`batch`] (the 61-byte header), [`validate`] (Produce-side checks),
//! [`patch`] (in-place edits), [`iter`] (walking a byte range), [`records`] (per-record
//! offsets and timestamps of uncompressed batches), [`builder`] (writing batches, for tests
//! and for broker-written batches), [`control`] (transaction markers).

pub mod batch;
pub mod builder;
pub mod control;
pub mod iter;
pub mod patch;
pub mod records;
pub mod validate;
pub mod varint;

pub use batch::{BATCH_HEADER_LEN, BatchHeader, Compression, LOG_OVERHEAD_LEN, TimestampType};
pub use builder::{BatchBuilder, Record};
pub use iter::{BatchIter, IterStop};
pub use patch::{assign_offsets, set_log_append_time};
pub use records::{RecordPosition, record_positions};
pub use validate::{BatchesSummary, validate_batches};

/// Why a record set was refused. Each variant maps to one Kafka error code at the API boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Bad length, CRC mismatch, truncation: Kafka's `CORRUPT_MESSAGE` (2).
    #[error("corrupt record batch at byte {position}: {reason}")]
    CorruptMessage {
        position: usize,
        reason: &'static str,
    },
    /// Structurally fine but semantically invalid (empty set, bad counts, control batch from a
    /// client, negative sequence): Kafka's `INVALID_RECORD` (87).
    #[error("invalid record batch at byte {position}: {reason}")]
    InvalidRecord {
        position: usize,
        reason: &'static str,
    },
    /// A batch larger than `max.message.bytes`: Kafka's `MESSAGE_TOO_LARGE` (10).
    #[error("record batch of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    MessageTooLarge { size_bytes: usize, max_bytes: usize },
    /// A batch with magic 0 or 1 (or garbage). Kafka 4 removed the old formats; for Produce v3+
    /// it answers `INVALID_RECORD`, so the API layer should map this to that code.
    #[error("unsupported record batch magic {magic} at byte {position}")]
    UnsupportedMagic { position: usize, magic: i8 },
}

impl RecordError {
    /// The Kafka protocol error code this maps to (see the variant docs).
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            RecordError::CorruptMessage { .. } => 2,
            RecordError::MessageTooLarge { .. } => 10,
            RecordError::InvalidRecord { .. } | RecordError::UnsupportedMagic { .. } => 87,
        }
    }
}

#[cfg(test)]
mod proptests;
