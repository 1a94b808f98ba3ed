//! Reads: fetch by offset (whole stored batches), ListOffsets by timestamp and max timestamp.
//!
//! A fetch finds the segment by base offset (a map lookup), the batch by the segment's offset
//! index plus a bounded scan, and the last whole batch that fits the same way near the end;
//! the result is one file region per segment, sent from the page cache or read with one
//! positioned read per segment. Batches are returned only if they lie wholly below `max_offset` (the high
//! watermark): like Kafka, which reads up to the file position of the high watermark's batch.

use bytes::Bytes;

use super::segment::FileRegion;
use super::{Log, LogError, ReadResult};
use crate::types::{LeaderEpoch, Offset, TimestampedOffset};

/// Whole batches located by [`Log::read_regions`], in log order.
#[derive(Debug, Clone)]
pub struct RegionRead {
    pub regions: Vec<FileRegion>,
    /// Total bytes of the regions.
    pub len: u64,
    /// Offset after the last batch (the start offset when nothing was found).
    pub next_offset: Offset,
    pub log_end_offset: Offset,
}

impl Log {
    /// Whole batches from the one containing `start_offset`, at most `max_bytes` of them
    /// unless `min_one_batch` and the first batch alone is larger (KIP-74: then exactly that
    /// batch), none with an offset `>= max_offset`. Continues into later segments while room
    /// is left. `start_offset` outside `[log_start_offset, log_end_offset]` is
    /// `OffsetOutOfRange`; `start_offset == log_end_offset` reads nothing.
    pub fn read(
        &self,
        start_offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let located = self.read_regions(start_offset, max_bytes, max_offset, min_one_batch)?;
        let out = match located.regions.as_slice() {
            [one] => one.read_to_vec()?,
            many => {
                let mut out = Vec::with_capacity(located.len as usize);
                for region in many {
                    out.extend_from_slice(&region.read_to_vec()?);
                }
                out
            }
        };
        Ok(ReadResult {
            bytes: Bytes::from(out),
            next_offset: located.next_offset,
            log_start_offset: self.log_start_offset(),
            log_end_offset: located.log_end_offset,
        })
    }

    /// What [`Log::read`] returns, as file regions (one per segment touched) instead of
    /// bytes, so a fetch can send them from the page cache.
    pub fn read_regions(
        &self,
        start_offset: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<RegionRead, LogError> {
        let (Offset(start_offset), Offset(max_offset)) = (start_offset, max_offset);
        let log_end_offset = self.leo();
        if start_offset < self.log_start_offset || start_offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                requested: Offset(start_offset),
                log_start: self.log_start_offset(),
                log_end: Offset(log_end_offset),
            });
        }
        let mut regions: Vec<FileRegion> = Vec::new();
        let mut len = 0u64;
        let mut next_offset = start_offset;
        let first_base = self
            .segments
            .range(..=start_offset)
            .next_back()
            .map_or(start_offset, |(b, _)| *b);
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            if next_offset >= log_end_offset || next_offset >= max_offset {
                break;
            }
            let room = max_bytes.saturating_sub(len as usize);
            let part = segment.read_region(next_offset, room, max_offset, min_one_batch && len == 0)?;
            if part.region.len > 0 {
                len += part.region.len;
                regions.push(part.region);
            }
            next_offset = part.next_offset.max(next_offset);
            if !part.reached_end || len as usize >= max_bytes {
                break;
            }
            next_offset = next_offset.max(segment.next_offset());
        }
        Ok(RegionRead { regions, len, next_offset: Offset(next_offset), log_end_offset: Offset(log_end_offset) })
    }

    /// ListOffsets by timestamp: the first record at or above the log start whose timestamp
    /// is `>= timestamp` (Kafka's `fetchOffsetByTimestamp`). Exact
    /// for uncompressed batches; for a compressed batch the answer is its base offset and
    /// max timestamp (batch granularity: a consumer seeking there may see a few earlier
    /// records of that batch). `None` if no record is that new.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampedOffset>, LogError> {
        for segment in self.segments.values() {
            if segment.next_offset() <= self.log_start_offset {
                continue;
            }
            if let Some((offset, timestamp_ms)) = segment.find_by_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(TimestampedOffset { timestamp_ms, offset: Offset(offset) }));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: the largest batch timestamp and the base offset of its
    /// batch (Kafka answers with the record's own offset inside the batch), or `None` for an
    /// empty log.
    pub fn max_timestamp(&self) -> Option<TimestampedOffset> {
        let mut best: Option<TimestampedOffset> = None;
        for segment in self.segments.values() {
            if let Some(max) = segment.max_timestamp() {
                if best.is_none_or(|b| max.timestamp > b.timestamp_ms) {
                    best = Some(TimestampedOffset {
                        timestamp_ms: max.timestamp,
                        offset: Offset(max.offset.max(self.log_start_offset)),
                    });
                }
            }
        }
        best
    }

    /// ListOffsets MAX_TIMESTAMP at record granularity, as Kafka 4 answers it: the first
    /// record carrying the largest timestamp. Reads one batch; batch granularity for a
    /// compressed batch.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<TimestampedOffset>, LogError> {
        match self.max_timestamp() {
            Some(max) => self.offset_for_timestamp(max.timestamp_ms),
            None => Ok(None),
        }
    }

    /// OffsetForLeaderEpoch against this log: see `LeaderEpochCache::end_offset_for_epoch`.
    pub fn end_offset_for_epoch(&self, requested_epoch: LeaderEpoch) -> (LeaderEpoch, Offset) {
        self.epoch_cache.end_offset_for_epoch(requested_epoch, self.log_end_offset())
    }
}
