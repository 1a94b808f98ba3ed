//! One header-level pass over a Produce request's record set, in Kafka's order of checks.
//!
//! Per batch, as Kafka's `UnifiedLog.analyzeAndValidateRecords` and `LogValidator.validateBatch`
//! do for a client append:
//! 1. framing: magic 2 (else `UnsupportedMagic`), `batchLength` sane and the batch wholly inside
//!    the buffer (a cut batch or trailing bytes: `CorruptMessage`; Kafka would silently trim a
//!    partial tail, we refuse it because clients never send one);
//! 2. `baseOffset` must be 0, clients leave offsets to the broker (`InvalidRecord`);
//! 3. the whole batch at most `max.message.bytes` (`MessageTooLarge`);
//! 4. CRC32C (`CorruptMessage`);
//! 5. `recordsCount >= 1`, `lastOffsetDelta >= 0`, `recordsCount == lastOffsetDelta + 1` for
//!    every batch, compressed or not, since Kafka checks it on the header alone (`InvalidRecord`);
//! 6. a producer id needs a non-negative base sequence; clients may not write control batches.
//!
//! An empty set is `InvalidRecord` (Kafka: "must have at least one record batch"). Kafka also
//! insists on exactly one batch for Produce v3+; that is a request-level rule, so the API layer
//! checks `BatchesSummary::batches.len()`. Records are never decompressed or decoded here, so
//! per-record problems inside compressed batches are not found (a documented gap).

use super::RecordError;
use super::batch::BatchHeader;
use super::iter::{BatchIter, IterStop};

/// What a validated record set contains, for offset assignment and producer-state checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchesSummary {
    /// Every batch header, in order (a Produce v3+ set holds exactly one).
    pub batches: Vec<BatchHeader>,
    /// Offsets the set will take: the sum of `lastOffsetDelta + 1`.
    pub record_count: i64,
    /// Largest `maxTimestamp` over the batches (-1 when none has a timestamp).
    pub max_timestamp: i64,
    /// Whether all batches carry the same producer id (idempotence needs one producer per set).
    pub single_producer: bool,
}

impl BatchesSummary {
    pub fn first(&self) -> Option<&BatchHeader> {
        self.batches.first()
    }

    pub fn last(&self) -> Option<&BatchHeader> {
        self.batches.last()
    }
}

/// Validates a Produce record set; see the module docs for the checks and their order.
pub fn validate_batches(buf: &[u8], max_batch_bytes: usize) -> Result<BatchesSummary, RecordError> {
    if buf.is_empty() {
        return Err(RecordError::InvalidRecord {
            position: 0,
            reason: "produce requests must have at least one record batch",
        });
    }
    let mut summary = BatchesSummary {
        batches: Vec::new(),
        record_count: 0,
        max_timestamp: -1,
        single_producer: true,
    };
    let mut iter = BatchIter::new(buf);
    for (header, range) in iter.by_ref() {
        check_batch(&header, &buf[range.clone()], range.start, max_batch_bytes)?;
        summary.record_count += i64::from(header.last_offset_delta) + 1;
        summary.max_timestamp = summary.max_timestamp.max(header.max_timestamp);
        if let Some(first) = summary.batches.first() {
            summary.single_producer &= first.producer_id == header.producer_id;
        }
        summary.batches.push(header);
    }
    match iter.stop() {
        Some(IterStop::End) => Ok(summary),
        Some(IterStop::PartialTail { position }) => Err(RecordError::CorruptMessage {
            position: *position,
            reason: "truncated record batch",
        }),
        Some(IterStop::Corrupt { error, .. }) => Err(error.clone()),
        None => Err(RecordError::CorruptMessage {
            position: 0,
            reason: "unterminated batch walk",
        }),
    }
}

fn check_batch(
    h: &BatchHeader,
    batch: &[u8],
    position: usize,
    max_bytes: usize,
) -> Result<(), RecordError> {
    let invalid = |reason| Err(RecordError::InvalidRecord { position, reason });
    if h.base_offset != 0 {
        return invalid("the baseOffset of a produced batch must be 0");
    }
    if batch.len() > max_bytes {
        return Err(RecordError::MessageTooLarge {
            size_bytes: batch.len(),
            max_bytes,
        });
    }
    if !super::batch::crc_matches(batch) {
        return Err(RecordError::CorruptMessage {
            position,
            reason: "CRC32C mismatch",
        });
    }
    if h.last_offset_delta < 0 {
        return invalid("batch has an invalid offset range");
    }
    if h.records_count <= 0 {
        return invalid("invalid reported count for record batch");
    }
    if i64::from(h.records_count) != i64::from(h.last_offset_delta) + 1 {
        return invalid("inconsistent batch offset range and record count");
    }
    if h.has_producer_id() && h.base_sequence < 0 {
        return invalid("invalid sequence number in a batch with a producer id");
    }
    if h.is_control() {
        return invalid("clients are not allowed to write control records");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::batch::MAGIC_AT;
    use crate::record::builder::BatchBuilder;

    const MAX: usize = 1_048_588;

    #[test]
    fn summarises_a_valid_set() {
        let mut buf = BatchBuilder::new(0)
            .producer(9, 0, 0)
            .timestamps(50)
            .records(3, 4)
            .build();
        buf.extend(
            BatchBuilder::new(0)
                .producer(9, 0, 3)
                .timestamps(10)
                .records(2, 4)
                .build(),
        );
        let s = validate_batches(&buf, MAX).unwrap();
        assert_eq!(s.batches.len(), 2);
        assert_eq!(s.record_count, 5);
        assert_eq!(s.max_timestamp, 52);
        assert!(s.single_producer);
        assert_eq!(s.last().unwrap().base_sequence, 3);
    }

    #[test]
    fn maps_each_defect_to_its_kafka_error() {
        let good = BatchBuilder::new(0).records(2, 10).build();
        assert!(matches!(
            validate_batches(&[], MAX),
            Err(RecordError::InvalidRecord { .. })
        ));

        let mut flipped = good.clone();
        flipped[good.len() - 1] ^= 0xff;
        assert!(matches!(
            validate_batches(&flipped, MAX),
            Err(RecordError::CorruptMessage { .. })
        ));

        assert!(matches!(
            validate_batches(&good[..good.len() - 1], MAX),
            Err(RecordError::CorruptMessage { .. })
        ));
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(
            validate_batches(&trailing, MAX),
            Err(RecordError::CorruptMessage { .. })
        ));

        let mut old = good.clone();
        old[MAGIC_AT] = 1;
        assert!(matches!(
            validate_batches(&old, MAX),
            Err(RecordError::UnsupportedMagic { magic: 1, .. })
        ));

        assert!(matches!(
            validate_batches(&good, good.len() - 1),
            Err(RecordError::MessageTooLarge { .. })
        ));
        let nonzero_base = BatchBuilder::new(5).records(1, 1).build();
        assert!(matches!(
            validate_batches(&nonzero_base, MAX),
            Err(RecordError::InvalidRecord { .. })
        ));
        let empty = BatchBuilder::new(0).build();
        assert!(matches!(
            validate_batches(&empty, MAX),
            Err(RecordError::InvalidRecord { .. })
        ));
        let control = BatchBuilder::new(0).attributes(0x20).records(1, 1).build();
        assert!(matches!(
            validate_batches(&control, MAX),
            Err(RecordError::InvalidRecord { .. })
        ));
        // recordsCount disagreeing with lastOffsetDelta, correctly signed: INVALID_RECORD.
        let mut miscounted = BatchBuilder::new(0).records(3, 1).build();
        miscounted[57..61].copy_from_slice(&2i32.to_be_bytes());
        let crc = crate::record::batch::compute_crc(&miscounted);
        miscounted[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batches(&miscounted, MAX),
            Err(RecordError::InvalidRecord {
                reason: "inconsistent batch offset range and record count",
                ..
            })
        ));
        let bad_seq = BatchBuilder::new(0)
            .producer(1, 0, -1)
            .records(1, 1)
            .build();
        assert!(matches!(
            validate_batches(&bad_seq, MAX),
            Err(RecordError::InvalidRecord { .. })
        ));
    }
}
