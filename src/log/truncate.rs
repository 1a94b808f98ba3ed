//! Cutting the log's tail: a follower truncating to the leader's log (Kafka's
//! `UnifiedLog.truncateTo`), or dropping everything and restarting at an offset
//! (`truncateFullyAndStartAt`).
//!
//! After a truncation the log end offset is the base of the first removed batch: a batch
//! straddling the target offset is removed whole, since batches are never split (Kafka keeps
//! the target as the end offset, leaving a gap; we keep the end at a batch boundary so it
//! is the same before and after a restart). If that would put the end below the log start,
//! the log restarts empty at the log start instead. The epoch
//! cache forgets epochs that started at or after the new end (also when the target is at or
//! past the end, so nothing else is cut), producer state is rebuilt from
//! the newest snapshot at or below the new end, and the recovery point moves down.

use std::collections::BTreeMap;

use super::segment::{LOG_SUFFIX, Segment, segment_file};
use super::{Log, LogError};
use crate::types::Offset;

impl Log {
    /// Removes every batch holding an offset `>= offset`. A target below the log start
    /// empties the log and restarts it at `offset`.
    pub fn truncate_to(&mut self, offset: Offset, now_ms: i64) -> Result<(), LogError> {
        let Offset(offset) = offset;
        let log_end = self.leo();
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                requested: Offset(offset),
                log_start: self.log_start_offset(),
                log_end: Offset(log_end),
            });
        }
        if offset >= log_end {
            // Nothing to cut from the log, but a leader that recorded its epoch at the log end
            // and was deposed before appending keeps an entry its new leader never had: it
            // goes, as in Kafka's `truncateTo`, or the follower's fetches name that epoch and
            // are told the same divergence forever.
            return self.epoch_cache.truncate_from_end(Offset(log_end));
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(Offset(offset), now_ms);
        }
        // Newest first, so a crash part-way leaves a prefix of the log, never a hole.
        let doomed: Vec<i64> = self
            .segments
            .range(offset + 1..)
            .map(|(b, _)| *b)
            .rev()
            .collect();
        for base in doomed {
            // The first segment has base <= log start <= offset, so one segment always stays.
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete()?;
            }
        }
        super::checkpoint::sync_dir(&segment_file(&self.dir, offset, LOG_SUFFIX))?;
        let removed = self.active_mut().truncate_to(offset)?;
        let end = self.leo();
        if end < self.log_start_offset {
            // The cut batch straddled the log start (DeleteRecords can start mid-batch):
            // nothing readable is left, and the log start never moves back.
            return self.truncate_fully_and_start_at(self.log_start_offset(), now_ms);
        }
        tracing::info!(dir = %self.dir.display(), offset, end, removed, "truncated log");
        self.after_tail_removed(end)
    }

    /// Deletes every segment and starts an empty one at `offset`, which becomes both the
    /// log start and end offset.
    pub fn truncate_fully_and_start_at(
        &mut self,
        offset: Offset,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let Offset(offset) = offset;
        // Crash-safe order: the new log start, the new segment (replacing a file with the same
        // base), then the old segments newest first. A crash part-way leaves the new empty
        // segment plus a prefix of the old log, which reopens as a consistent (longer) log.
        self.log_start_offset = offset;
        self.write_log_start_offset()?;
        let segment = Segment::create(&self.dir, offset, self.index_limits(), now_ms)?;
        let old = std::mem::replace(&mut self.segments, BTreeMap::from([(offset, segment)]));
        for (base, old_segment) in old.into_iter().rev() {
            if base != offset {
                old_segment.delete()?;
            }
        }
        self.epoch_cache.clear()?;
        super::producer_state::delete_snapshots_outside(&self.dir, i64::MAX..=i64::MAX)?;
        self.producers.clear();
        self.recovery_point = offset;
        self.lower_cleaner_checkpoint(offset)
    }

    fn after_tail_removed(&mut self, end: i64) -> Result<(), LogError> {
        self.recovery_point = self.recovery_point.min(end);
        self.epoch_cache.truncate_from_end(Offset(end))?;
        self.lower_cleaner_checkpoint(end)?;
        self.load_producer_state()
    }
}
