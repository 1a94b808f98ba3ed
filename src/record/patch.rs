//! In-place edits the leader makes to produced batches before writing them.
//!
//! `baseOffset` and `partitionLeaderEpoch` sit before the CRC'd range, so assigning them is a
//! plain overwrite. Setting `LogAppendTime` touches attributes and `maxTimestamp`, which the CRC
//! covers, so the CRC is recomputed (Kafka's `DefaultRecordBatch.setMaxTimestamp` does the
//! same). Both walk the buffer with [`BatchIter`] and stop at the first malformed byte rather
//! than panic; callers pass buffers that `validate_batches` accepted.

use std::io::IoSlice;
use std::ops::Range;

use super::batch::{
    ATTRIBUTES_AT, BASE_OFFSET_AT, BATCH_HEADER_LEN, BatchHeader, CRC_AT, CRC_COVERS_FROM, LEADER_EPOCH_AT,
    MAX_TIMESTAMP_AT, TIMESTAMP_TYPE_BIT, compute_crc, read_i16, write_bytes,
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

/// Batches as received (a slice of the request frame, never copied or changed) with each
/// batch's 61-byte header copied out, so the leader's edits (offsets, leader epoch,
/// `LogAppendTime` and its CRC) touch only the copies. Written as `[header, rest]` pairs with
/// one vectored write: the record bytes go from the request buffer to the file untouched.
#[derive(Debug)]
pub struct PatchedBatches<'a> {
    bytes: &'a [u8],
    batches: Vec<(Range<usize>, [u8; BATCH_HEADER_LEN])>,
}

impl<'a> PatchedBatches<'a> {
    /// The batches [`BatchIter`] finds in `bytes` (callers check they are whole first).
    pub fn new(bytes: &'a [u8]) -> Self {
        let batches = BatchIter::new(bytes)
            .filter_map(|(_, range)| {
                let head: [u8; BATCH_HEADER_LEN] = bytes.get(range.start..range.start + BATCH_HEADER_LEN)?.try_into().ok()?;
                Some((range, head))
            })
            .collect();
        Self { bytes, batches }
    }

    /// The headers as patched so far.
    pub fn headers(&self) -> Vec<BatchHeader> {
        self.batches.iter().filter_map(|(_, head)| BatchHeader::parse(head).ok()).collect()
    }

    /// Bytes the batches span.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|(range, _)| range.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// [`assign_offsets`] on the header copies.
    pub fn assign_offsets(&mut self, first_offset: i64, partition_leader_epoch: i32) -> i64 {
        let mut next = first_offset;
        for (_, head) in &mut self.batches {
            let last_offset_delta = BatchHeader::parse(head.as_slice()).map_or(0, |h| h.last_offset_delta);
            write_bytes(head, BASE_OFFSET_AT, &next.to_be_bytes());
            write_bytes(head, LEADER_EPOCH_AT, &partition_leader_epoch.to_be_bytes());
            next = next.saturating_add(i64::from(last_offset_delta) + 1);
        }
        next
    }

    /// [`set_log_append_time`] on the header copies; the CRC runs over the copy's covered
    /// part, then the untouched rest of the batch.
    pub fn set_log_append_time(&mut self, now_ms: i64) {
        let bytes = self.bytes;
        for (range, head) in &mut self.batches {
            let attributes = read_i16(head.as_slice(), ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
            write_bytes(head, ATTRIBUTES_AT, &attributes.to_be_bytes());
            write_bytes(head, MAX_TIMESTAMP_AT, &now_ms.to_be_bytes());
            let rest = bytes.get(range.start + BATCH_HEADER_LEN..range.end).unwrap_or_default();
            let crc = crc32c::crc32c_append(crc32c::crc32c(&head[CRC_COVERS_FROM..]), rest);
            write_bytes(head, CRC_AT, &crc.to_be_bytes());
        }
    }

    /// The pieces to write, in order: each batch's patched header, then the rest of it.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices = Vec::with_capacity(self.batches.len() * 2);
        for (range, head) in &self.batches {
            slices.push(IoSlice::new(head));
            slices.push(IoSlice::new(self.bytes.get(range.start + BATCH_HEADER_LEN..range.end).unwrap_or_default()));
        }
        slices
    }

    /// Each batch's patched header with its position relative to the first batch.
    pub fn positions(&self) -> impl Iterator<Item = (usize, &[u8; BATCH_HEADER_LEN])> {
        let first = self.batches.first().map_or(0, |(r, _)| r.start);
        self.batches.iter().map(move |(range, head)| (range.start - first, head))
    }

    /// The patched batches as one buffer (tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.io_slices().iter().flat_map(|s| s.iter().copied()).collect()
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

    /// Patching header copies gives exactly the bytes the in-place edits give, and leaves
    /// the received bytes alone.
    #[test]
    fn patched_batches_equal_in_place_edits() {
        let mut received = BatchBuilder::new(0).timestamps(5).records(3, 50).build();
        let first_len = received.len();
        received.extend(BatchBuilder::new(0).timestamps(6).records(2, 70).build());
        let original = received.clone();
        for log_append_time in [false, true] {
            let mut in_place = received.clone();
            if log_append_time {
                set_log_append_time(&mut in_place, 42_000);
            }
            assert_eq!(assign_offsets(&mut in_place, 500, 3), 505);
            let mut patched = PatchedBatches::new(&received);
            if log_append_time {
                patched.set_log_append_time(42_000);
            }
            assert_eq!(patched.assign_offsets(500, 3), 505);
            assert_eq!(patched.to_vec(), in_place);
            assert_eq!(patched.len(), in_place.len());
            assert_eq!(patched.positions().map(|(at, _)| at).collect::<Vec<_>>(), vec![0, first_len]);
            assert_eq!(patched.headers().iter().map(|h| h.base_offset).collect::<Vec<_>>(), vec![500, 503]);
            assert_eq!(BatchIter::with_crc_check(&patched.to_vec()).count(), 2);
        }
        assert_eq!(received, original);
    }
}
