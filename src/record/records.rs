//! Reading the offset and timestamp of each record in an uncompressed batch.
//!
//! The broker does not decode records on the produce or fetch path; this exists for the few
//! places that answer per record, like ListOffsets by timestamp. Each v2 record starts with
//! its length (zig-zag varint), an attributes byte, a timestamp delta (varlong) and an offset
//! delta (varint); the rest is skipped using the length. Compressed batches are not opened
//! (`None`), and malformed bytes give `None` rather than a panic.

use super::varint::read_varlong;
use super::batch::{BATCH_HEADER_LEN, BatchHeader, Compression, TimestampType};

/// Absolute offset and timestamp of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    pub offset: i64,
    pub timestamp: i64,
}

/// Offsets and timestamps of every record in `batch` (one whole batch), or `None` if it is
/// compressed or malformed. Under `LogAppendTime` every record carries the batch's max
/// timestamp, as Kafka's readers do.
pub fn record_positions(batch: &[u8]) -> Option<Vec<RecordPosition>> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() != Compression::None || batch.len() != header.total_len() {
        return None;
    }
    let mut out = Vec::new();
    let mut at = BATCH_HEADER_LEN;
    while at < batch.len() {
        let (length, body_at) = read_varlong(batch, at)?;
        let end = body_at.checked_add(usize::try_from(length).ok()?)?;
        let body = batch.get(body_at..end)?;
        let (timestamp_delta, next) = read_varlong(body, 1)?;
        let (offset_delta, _) = read_varlong(body, next)?;
        let timestamp = match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.checked_add(timestamp_delta)?,
        };
        let offset = header.base_offset.checked_add(offset_delta)?;
        out.push(RecordPosition { offset, timestamp });
        at = end;
    }
    (out.len() == usize::try_from(header.records_count).ok()?).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::builder::{BatchBuilder, Record};
    use crate::record::patch::set_log_append_time;
    use proptest::prelude::*;

    #[test]
    fn reads_offsets_and_timestamps_of_built_records() {
        let mut builder = BatchBuilder::new(100).timestamps(1_000);
        for (delta, key) in [(5i64, None), (-3, Some(vec![1u8; 200])), (70_000, None)] {
            builder = builder.record(Record {
                timestamp_delta_ms: delta,
                key,
                value: Some(vec![2; 3]),
            });
        }
        let mut bytes = builder.build();
        let positions = record_positions(&bytes).unwrap();
        let got: Vec<(i64, i64)> = positions.iter().map(|p| (p.offset, p.timestamp)).collect();
        assert_eq!(got, vec![(100, 1_005), (101, 997), (102, 71_000)]);
        set_log_append_time(&mut bytes, 9);
        assert!(
            record_positions(&bytes)
                .unwrap()
                .iter()
                .all(|p| p.timestamp == 9)
        );
        let compressed = BatchBuilder::new(0).attributes(1).records(2, 2).build();
        assert_eq!(record_positions(&compressed), None);
    }

    proptest! {
        #[test]
        fn never_panics(mut bytes in prop::collection::vec(any::<u8>(), 61..300)) {
            bytes[16] = 2;
            bytes[21] = 0;
            bytes[22] &= 0xf8;
            let len = (bytes.len() - 12) as i32;
            bytes[8..12].copy_from_slice(&len.to_be_bytes());
            let _ = record_positions(&bytes);
        }
    }
}
