//! In-place edits the leader makes to produced batches before writing them.
//!
//! `baseOffset` and `partitionLeaderEpoch` sit before the CRC'd range, so assigning them is a
//! plain overwrite. Setting `LogAppendTime` touches attributes and `maxTimestamp`, which the CRC
//! covers, so the CRC is recomputed (Kafka's `DefaultRecordBatch.setMaxTimestamp` does the
//! same). Both walk the buffer with [`BatchIter`] and stop at the first malformed byte rather
//! than panic; callers pass buffers that `validate_batches` accepted.

use super::batch::{
    ATTRIBUTES_AT, BASE_OFFSET_AT, CRC_AT, LEADER_EPOCH_AT, MAX_TIMESTAMP_AT, TIMESTAMP_TYPE_BIT,
    compute_crc, read_i16, write_bytes,
};
use super::iter::BatchIter;

/// Gives the batches consecutive offsets from `first_offset` and stamps the leader epoch.
/// Returns the offset after the last batch (`first_offset` if there was none).
pub fn assign_offsets(buf: &mut [u8], first_offset: i64, partition_leader_epoch: i32) -> i64 {
    let ranges: Vec<_> = BatchIter::new(buf)
        .map(|(h, r)| (h.last_offset_delta, r))
        .collect();
    let mut next = first_offset;
    for (last_offset_delta, range) in ranges {
        write_bytes(buf, range.start + BASE_OFFSET_AT, &next.to_be_bytes());
        write_bytes(
            buf,
            range.start + LEADER_EPOCH_AT,
            &partition_leader_epoch.to_be_bytes(),
        );
        next = next.saturating_add(i64::from(last_offset_delta) + 1);
    }
    next
}

/// Marks every batch as `LogAppendTime` with `maxTimestamp = now_ms` and re-signs it.
/// Records keep their own deltas; readers take the batch's timestamp for every record.
pub fn set_log_append_time(buf: &mut [u8], now_ms: i64) {
    let ranges: Vec<_> = BatchIter::new(buf).map(|(_, r)| r).collect();
    for range in ranges {
        let attributes = read_i16(buf, range.start + ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
        write_bytes(buf, range.start + ATTRIBUTES_AT, &attributes.to_be_bytes());
        write_bytes(buf, range.start + MAX_TIMESTAMP_AT, &now_ms.to_be_bytes());
        let crc = compute_crc(&buf[range.clone()]);
        write_bytes(buf, range.start + CRC_AT, &crc.to_be_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::batch::crc_matches;
    use crate::record::builder::BatchBuilder;
    use crate::record::{TimestampType, validate_batches};

    #[test]
    fn assigns_consecutive_offsets_without_breaking_crcs() {
        let mut buf = BatchBuilder::new(0).records(3, 2).build();
        buf.extend(BatchBuilder::new(0).records(2, 2).build());
        let next = assign_offsets(&mut buf, 1000, 7);
        assert_eq!(next, 1005);
        let batches: Vec<_> = BatchIter::with_crc_check(&buf).map(|(h, _)| h).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(
            (batches[0].base_offset, batches[0].partition_leader_epoch),
            (1000, 7)
        );
        assert_eq!(batches[1].base_offset, 1003);
    }

    #[test]
    fn log_append_time_rewrites_and_resigns() {
        let mut buf = BatchBuilder::new(0).timestamps(5).records(2, 2).build();
        set_log_append_time(&mut buf, 99_000);
        assert!(crc_matches(&buf));
        let s = validate_batches(&buf, usize::MAX).unwrap();
        assert_eq!(s.batches[0].timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(s.max_timestamp, 99_000);
        assert_eq!(s.batches[0].base_timestamp, 5);
    }
}
