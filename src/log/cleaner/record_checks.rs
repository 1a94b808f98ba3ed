//! Produce-time checks that need each record's fields, as Kafka's `LogValidator.validateRecord`:
//! a compacted topic refuses keyless records, a `CreateTime` topic refuses timestamps outside
//! `message.timestamp.before/after.max.ms`. Every record is checked, not only up to the first
//! fault, because Kafka answers the index of each bad record (`record_errors`) and clients fail
//! exactly those and retry the others.
//!
//! Batches are decompressed and walked with the cleaner's record parser, so the caller decides
//! when this is worth it (the produce hot path keeps batches as raw bytes otherwise). Control
//! batches are exempt, as in Kafka. A record gets at most one fault; the key check comes first.

use crate::record::BatchIter;

use super::records::{decompressed_payload, parse_records};

/// Kafka's `RecordBatch.NO_TIMESTAMP`: a record without a timestamp is not range-checked.
const NO_TIMESTAMP: i64 = -1;

/// The accepted range of record timestamps at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    pub now_ms: i64,
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

impl TimestampBounds {
    /// Kafka's `recordHasInvalidTimestamp`.
    pub fn rejects(&self, timestamp: i64) -> bool {
        let diff = self.now_ms.saturating_sub(timestamp);
        diff > self.before_max_ms || diff.saturating_neg() > self.after_max_ms
    }
}

/// Which per-record checks apply to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordChecks {
    /// The topic compacts: every record needs a key.
    pub require_key: bool,
    /// `CreateTime` topic: the timestamp range to enforce.
    pub timestamps: Option<TimestampBounds>,
}

/// Why one record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFault {
    /// A keyless record for a compacted topic (INVALID_RECORD).
    NoKey,
    /// A timestamp out of range (INVALID_TIMESTAMP); `offset` is the record's offset in the
    /// request (`baseOffset + offsetDelta`), as Kafka's message shows it.
    Timestamp { timestamp: i64, offset: i64 },
}

/// A refused record: its index inside its batch, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultyRecord {
    pub batch_index: i32,
    pub fault: RecordFault,
}

/// Every refused record of a produce request's batches. `Err` carries the reason a batch
/// cannot be read at all (INVALID_RECORD for the whole set).
pub fn check_records(records: &[u8], checks: &RecordChecks) -> Result<Vec<FaultyRecord>, &'static str> {
    let mut faults = Vec::new();
    if !checks.require_key && checks.timestamps.is_none() {
        return Ok(faults);
    }
    for (header, range) in BatchIter::new(records) {
        if header.is_control() {
            continue;
        }
        let batch = records.get(range).ok_or("batch outside the request")?;
        let Some(payload) = decompressed_payload(batch, &header).map_err(|_| "cannot decompress the batch")? else {
            return Err("unknown compression codec");
        };
        let parsed = parse_records(&payload, &header).map_err(|_| "malformed records in the batch")?;
        for (index, record) in parsed.iter().enumerate() {
            let timestamp = header.base_timestamp.saturating_add(record.timestamp_delta);
            let fault = if checks.require_key && record.key.is_none() {
                Some(RecordFault::NoKey)
            } else {
                checks
                    .timestamps
                    .filter(|b| timestamp != NO_TIMESTAMP && b.rejects(timestamp))
                    .map(|_| RecordFault::Timestamp { timestamp, offset: header.base_offset.saturating_add(record.offset_delta) })
            };
            if let Some(fault) = fault {
                // parse_records holds at most recordsCount (an i32) records.
                let batch_index = i32::try_from(index).unwrap_or(i32::MAX);
                faults.push(FaultyRecord { batch_index, fault });
            }
        }
    }
    Ok(faults)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::builder::{BatchBuilder, Record};

    const BOUNDS: TimestampBounds = TimestampBounds { now_ms: 10_000, before_max_ms: 1_000, after_max_ms: 500 };

    fn record(timestamp_delta_ms: i64, key: bool) -> Record {
        Record { timestamp_delta_ms, key: key.then(|| b"k".to_vec()), value: Some(b"v".to_vec()) }
    }

    #[test]
    fn bounds_are_inclusive_as_in_kafka() {
        assert!(!BOUNDS.rejects(9_000) && !BOUNDS.rejects(10_500));
        assert!(BOUNDS.rejects(8_999) && BOUNDS.rejects(10_501));
        let open = TimestampBounds { now_ms: 10_000, before_max_ms: i64::MAX, after_max_ms: i64::MAX };
        assert!(!open.rejects(i64::MIN) && !open.rejects(i64::MAX));
    }

    /// Every faulty record is listed; a keyless one counts as such even if its timestamp is
    /// also wrong; a record without timestamp is not range-checked.
    #[test]
    fn every_fault_is_listed_key_first() {
        let batch = BatchBuilder::new(0)
            .timestamps(9_500)
            .record(record(0, true))
            .record(record(-600, true))
            .record(record(2_000, false))
            .record(record(100, false))
            .record(record(1_001, true))
            .build();
        let checks = RecordChecks { require_key: true, timestamps: Some(BOUNDS) };
        let faults = check_records(&batch, &checks).unwrap();
        let fault = |batch_index, fault| FaultyRecord { batch_index, fault };
        assert_eq!(
            faults,
            vec![
                fault(1, RecordFault::Timestamp { timestamp: 8_900, offset: 1 }),
                fault(2, RecordFault::NoKey),
                fault(3, RecordFault::NoKey),
                fault(4, RecordFault::Timestamp { timestamp: 10_501, offset: 4 }),
            ]
        );
        let untimed = BatchBuilder::new(0).timestamps(-1).record(record(0, true)).build();
        assert_eq!(check_records(&untimed, &checks), Ok(vec![]));
        let none = RecordChecks { require_key: false, timestamps: None };
        assert_eq!(check_records(&batch, &none), Ok(vec![]));
    }
}
