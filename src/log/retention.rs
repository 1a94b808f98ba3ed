//! Moving the log start forward: retention by time and size, and DeleteRecords.
//!
//! As Kafka's `UnifiedLog.deleteOldSegments`, whole segments are deleted oldest first while a
//! rule holds:
//! - time: the segment's newest timestamp is more than `retention.ms` before `now_ms`;
//! - size: the log minus this segment is still at least `retention.bytes`;
//! - log start: the whole segment lies below the log start offset (after DeleteRecords).
//!
//! When the active segment itself has expired by time (and lies below the high watermark) it
//! is rolled first and then deleted, as Kafka does, leaving an empty log whose start is the
//! old end. Differences from Kafka, on purpose: files are deleted at once rather than renamed to
//! `.deleted` and removed after `file.delete.delay.ms` (reads copy bytes out, so no reader
//! holds a deleted file). Segments at or above the high watermark are kept when the caller
//! passes one. After deleting, the log start moves to the first remaining segment's base,
//! and the epoch cache and producer snapshots below it are trimmed. Producer state itself is
//! kept (Kafka 4 keeps it too); idle producers expire after `producer.id.expiration.ms`.
//!
//! Time and size rules apply only when `cleanup.policy` includes `delete`; a `compact`-only
//! log keeps its data until the cleaner supersedes it, and an empty policy (Kafka 4.x's
//! "neither") keeps everything; DeleteRecords still moves the start of either.

use super::checkpoint::sync_dir;
use super::producer_state::delete_snapshots_outside;
use super::{Log, LogError};
use crate::types::Offset;

impl Log {
    /// Applies retention by time and by size; returns the bytes deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<u64, LogError> {
        self.enforce_retention_below(now_ms, Offset(i64::MAX))
    }

    /// As [`Log::enforce_retention`], but never deletes a segment that ends above
    /// `high_watermark` (data not yet replicated everywhere).
    pub fn enforce_retention_below(
        &mut self,
        now_ms: i64,
        high_watermark: Offset,
    ) -> Result<u64, LogError> {
        let Offset(high_watermark) = high_watermark;
        self.producers
            .remove_expired(now_ms, self.config.producer_id_expiration_ms);
        if !self.config.cleanup_policy.deletes() {
            return Ok(0);
        }
        let active = self.active();
        let active_expired = self.config.retention_ms >= 0
            && active.size_bytes() > 0
            && active.next_offset() <= high_watermark
            && now_ms.saturating_sub(active.largest_timestamp_ms()) > self.config.retention_ms;
        if active_expired {
            self.roll(now_ms)?;
        }
        let by_time = self.count_deletable(high_watermark, |log, segment| {
            log.config.retention_ms >= 0
                && now_ms.saturating_sub(segment.largest_timestamp_ms()) > log.config.retention_ms
        });
        let mut deleted = self.delete_oldest_segments(by_time)?;
        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            let by_size = self.count_deletable(high_watermark, |_, segment| {
                let fits = excess - segment.size_bytes() as i64 >= 0;
                if fits {
                    excess -= segment.size_bytes() as i64;
                }
                fits
            });
            deleted += self.delete_oldest_segments(by_size)?;
        }
        Ok(deleted)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (the caller ensures it is
    /// not above the high watermark), deleting segments wholly below it. Returns the new log
    /// start offset; an offset at or below the current one changes nothing.
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset, LogError> {
        let Offset(offset) = offset;
        let log_end = self.leo();
        if offset > log_end || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                requested: Offset(offset),
                log_start: self.log_start_offset(),
                log_end: Offset(log_end),
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset());
        }
        self.log_start_offset = offset;
        self.write_log_start_offset()?;
        self.epoch_cache.truncate_from_start(Offset(offset))?;
        let below_start = self.count_deletable(i64::MAX, |log, segment| {
            segment.next_offset() <= log.log_start_offset
        });
        self.delete_oldest_segments(below_start)?;
        Ok(self.log_start_offset())
    }

    /// How many of the oldest non-active segments satisfy `deletable`, stopping at the first
    /// that does not or that ends above `high_watermark`.
    fn count_deletable(
        &self,
        high_watermark: i64,
        mut deletable: impl FnMut(&Log, &super::segment::Segment) -> bool,
    ) -> usize {
        let sealed = self.segments.len() - 1;
        self.segments
            .values()
            .take(sealed)
            .take_while(|segment| {
                segment.next_offset() <= high_watermark && deletable(self, segment)
            })
            .count()
    }

    fn delete_oldest_segments(&mut self, count: usize) -> Result<u64, LogError> {
        if count == 0 {
            return Ok(0);
        }
        assert!(
            count < self.segments.len(),
            "the active segment is never deleted"
        );
        let mut deleted = 0;
        for _ in 0..count {
            if let Some((_, segment)) = self.segments.pop_first() {
                deleted += segment.size_bytes();
                segment.delete()?;
            }
        }
        let first_base = self.active_first_base();
        if first_base > self.log_start_offset {
            self.log_start_offset = first_base;
            self.write_log_start_offset()?;
            self.epoch_cache.truncate_from_start(Offset(first_base))?;
        }
        delete_snapshots_outside(&self.dir, first_base..=i64::MAX)?;
        sync_dir(&self.dir.join(super::LOG_START_OFFSET_CHECKPOINT))?;
        tracing::info!(dir = %self.dir.display(), count, deleted, log_start = self.log_start_offset, "deleted old segments");
        Ok(deleted)
    }

    fn active_first_base(&self) -> i64 {
        self.segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.log_start_offset)
    }
}
