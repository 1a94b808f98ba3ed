//! The 61-byte header of a magic-v2 record batch: field positions, parsing, CRC.
//!
//! Layout (big-endian), as Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! [0..8)   baseOffset i64          [27..35) baseTimestamp i64
//! [8..12)  batchLength i32 (*)     [35..43) maxTimestamp i64
//! [12..16) partitionLeaderEpoch    [43..51) producerId i64
//! [16]     magic i8 (= 2)          [51..53) producerEpoch i16
//! [17..21) crc u32 (CRC32C of      [53..57) baseSequence i32
//!          bytes [21..end))        [57..61) recordsCount i32
//! [21..23) attributes i16          [61..)   records
//! [23..27) lastOffsetDelta i32
//! ```
//! (*) bytes after the batchLength field, so a batch occupies `12 + batchLength` bytes.
//!
//! Invariant: a parsed header has magic 2 and `batchLength >= 49`, so `total_len() >= 61`.

use super::RecordError;

/// Bytes of the fixed header, records start here.
pub const BATCH_HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the bytes not counted by batchLength (Kafka's `LOG_OVERHEAD`).
pub const LOG_OVERHEAD_LEN: usize = 12;
/// The only record format this broker reads or writes.
pub const MAGIC_V2: i8 = 2;

pub(crate) const BASE_OFFSET_AT: usize = 0;
pub(crate) const BATCH_LENGTH_AT: usize = 8;
pub(crate) const LEADER_EPOCH_AT: usize = 12;
pub(crate) const MAGIC_AT: usize = 16;
pub(crate) const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
pub(crate) const CRC_COVERS_FROM: usize = 21;
pub(crate) const ATTRIBUTES_AT: usize = 21;
pub(crate) const MAX_TIMESTAMP_AT: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const DELETE_HORIZON_BIT: i16 = 0x40;

/// Codec named by attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Values 5-7 are unassigned; kept rather than refused so headers of stored data still parse.
    Unknown(u8),
}

/// Attribute bit 3: who set the timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Every field of a v2 batch header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Only the header has to be present; the caller
    /// checks that `total_len()` bytes are there before trusting the records.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, RecordError> {
        let corrupt = |reason| RecordError::CorruptMessage {
            position: 0,
            reason,
        };
        if buf.len() <= MAGIC_AT {
            return Err(corrupt("truncated batch header"));
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic { position: 0, magic });
        }
        if buf.len() < BATCH_HEADER_LEN {
            return Err(corrupt("truncated batch header"));
        }
        let header = BatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET_AT),
            batch_length: read_i32(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: read_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: read_i32(buf, CRC_AT) as u32,
            attributes: read_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: read_i32(buf, 23),
            base_timestamp: read_i64(buf, 27),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: read_i64(buf, 43),
            producer_epoch: read_i16(buf, 51),
            base_sequence: read_i32(buf, 53),
            records_count: read_i32(buf, 57),
        };
        if (header.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD_LEN) as i64 {
            return Err(corrupt("batch length smaller than the header"));
        }
        Ok(header)
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_len(&self) -> usize {
        // batch_length >= 49 after parse, so the cast cannot wrap.
        LOG_OVERHEAD_LEN + self.batch_length.max(0) as usize
    }

    /// Offset of the batch's last record (base + lastOffsetDelta).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Compression {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }

    /// Idempotent and transactional producers set a producer id; others send -1.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence of the last record, wrapping at `i32::MAX` back to 0 as Kafka's
    /// `DefaultRecordBatch.incrementSequence` does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `sequence + increment` modulo 2^31 (sequences are non-negative and wrap to 0).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    (sum.rem_euclid(i64::from(i32::MAX) + 1)) as i32
}

/// CRC32C over `batch[21..]`, the value the header's crc field must hold. `batch` must be a
/// whole batch of at least [`BATCH_HEADER_LEN`] bytes (callers check the length).
pub fn compute_crc(batch: &[u8]) -> u32 {
    match batch.get(CRC_COVERS_FROM..) {
        Some(covered) => crc32c::crc32c(covered),
        None => 0,
    }
}

/// Whether the stored CRC matches the bytes of this whole batch.
pub fn crc_matches(batch: &[u8]) -> bool {
    batch.len() >= BATCH_HEADER_LEN && compute_crc(batch) == read_i32(batch, CRC_AT) as u32
}

// The readers below are only called with `at + N <= buf.len()`, checked by every caller; the
// fallback keeps them panic-free regardless.
pub(crate) fn read_i16(buf: &[u8], at: usize) -> i16 {
    let mut b = [0u8; 2];
    if let Some(src) = buf.get(at..at + 2) {
        b.copy_from_slice(src);
    }
    i16::from_be_bytes(b)
}

pub(crate) fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    if let Some(src) = buf.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    i32::from_be_bytes(b)
}

pub(crate) fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    if let Some(src) = buf.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    i64::from_be_bytes(b)
}

pub(crate) fn write_bytes(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::builder::BatchBuilder;

    #[test]
    fn parses_every_field_of_a_built_batch() {
        let bytes = BatchBuilder::new(100)
            .producer(7, 3, 42)
            .partition_leader_epoch(5)
            .timestamps(1_000)
            .records(3, 10)
            .build();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.total_len(), bytes.len());
        assert_eq!(h.partition_leader_epoch, 5);
        assert_eq!(h.magic, 2);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.last_offset(), 102);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.producer_epoch, 3);
        assert_eq!(h.base_sequence, 42);
        assert_eq!(h.last_sequence(), 44);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_002);
        assert_eq!(h.compression(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(h.has_producer_id());
        assert!(!h.is_transactional());
        assert!(!h.is_control());
        assert!(crc_matches(&bytes));
    }

    #[test]
    fn rejects_short_and_old_magic() {
        assert!(matches!(
            BatchHeader::parse(&[0; 10]),
            Err(RecordError::CorruptMessage { .. })
        ));
        let mut bytes = BatchBuilder::new(0).records(1, 1).build();
        bytes[MAGIC_AT] = 1;
        assert!(matches!(
            BatchHeader::parse(&bytes),
            Err(RecordError::UnsupportedMagic { magic: 1, .. })
        ));
        let bytes = BatchBuilder::new(0).records(1, 1).build();
        assert!(BatchHeader::parse(&bytes[..60]).is_err());
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 0), 5);
    }
}
