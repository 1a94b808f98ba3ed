//! Log compaction (Kafka's `LogCleaner`): keep only the latest record per key.
//!
//! [`Log::clean`] runs one cleaning pass over a log whose `cleanup.policy` includes `compact`:
//!
//! 1. **Plan.** Cleanable segments are the sealed ones, oldest first, up to the first that
//!    ends above the high watermark or holds a batch younger than `min.compaction.lag.ms`
//!    (segment granularity, by its largest batch timestamp, as Kafka). The cleaner checkpoint
//!    (`cleaner-offset-checkpoint`) says where the dirty part starts; a pass runs when the
//!    dirty bytes are at least `min.cleanable.dirty.ratio` of the cleanable bytes, when a
//!    dirty segment's first batch is older than `max.compaction.lag.ms`, or when a retained
//!    tombstone's delete horizon has passed.
//! 2. **Map.** Every keyed record in the dirty part (compressed batches are decompressed) goes
//!    into a key → latest offset map ([`offset_map`]), bounded by
//!    `log.cleaner.dedupe.buffer.size`; if it fills, the pass stops at that segment boundary.
//! 3. **Rewrite.** All segments below the mapped end, grouped so a group fits one segment
//!    (`segment.bytes`, index size, offset span), are rewritten keeping a record only if no
//!    later offset holds its key ([`records`] rewrites batches in place of offsets), then
//!    swapped in crash-safely ([`swap`]).
//!
//! What a rewrite keeps, per batch (Kafka's `Cleaner.shouldRetainRecord` and
//! `MemoryRecords.filterTo`):
//! - offsets never change: a batch keeps its base offset and `lastOffsetDelta` whatever it
//!   loses, so the log end offset, every surviving offset and each producer's sequences stay;
//! - a tombstone (null value) that is the latest for its key stays until its batch's delete
//!   horizon. The first pass that retains it stamps the batch with `hasDeleteHorizon`
//!   (attribute bit 6) and base timestamp `now + delete.retention.ms` (KIP-534); a later pass
//!   at or after that time drops it;
//! - records without a key are dropped (Kafka refuses them on produce to compacted topics
//!   and its cleaner discards them as invalid);
//! - a batch left empty disappears, unless it is the last batch of a live producer (one
//!   producer state knows) below the cleaned end, kept as an empty header so producer state
//!   rebuilt from the log keeps the sequence (Kafka's `RETAIN_EMPTY` keeps the producer's
//!   last batch in the whole log; taking the last one in the cleaned range instead also
//!   survives a truncation of the unreplicated tail), or the last batch of the group (kept
//!   so a cleaned segment covers exactly the offsets of the segments it replaces and is
//!   never empty);
//! - transactions (Kafka's rules, [`txn`]): the cleaner stays below the last stable offset, so
//!   every transaction it meets is decided. Batches of aborted transactions (as the
//!   aborted-transaction indexes list them) lose all their records and their keys are not
//!   mapped; committed transactional data is treated like any other. A marker stays while
//!   the pass still met data of its transaction (an abort's index entry then stays with it);
//!   once none is left the marker is stamped with a delete horizon like a tombstone and a
//!   pass after `delete.retention.ms` removes it.
//!
//! The read path, indexes and producer state need nothing special afterwards: cleaned
//! segments are rebuilt like recovered ones. The leader-epoch cache is not changed (as in
//! Kafka); if it ever has to be rebuilt from batch headers, an epoch whose first batches were
//! cleaned away starts at its first surviving batch.

mod offset_map;
mod record_checks;
mod records;
mod swap;
mod txn;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;

use crate::types::{Offset, ProducerId};
use crate::record::{BatchHeader, BatchIter, IterStop};

use super::checkpoint::{parse_ints, read_checkpoint, write_checkpoint};
use super::segment::{LOG_SUFFIX, Segment, segment_file};
use super::{Log, LogError};
use offset_map::OffsetMap;
pub use record_checks::{FaultyRecord, RecordChecks, RecordFault, TimestampBounds, check_records};
use records::{RawRecord, Rewrite, decompressed_payload, parse_records, rewrite_batch};
use txn::TxnTracker;

pub(super) use swap::complete_interrupted_swaps;

/// Name of the file holding the first dirty offset and the earliest pending delete horizon.
pub const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// Bytes read from a segment at a time while mapping or rewriting (whole batches; a larger
/// batch is read alone).
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Stands for "no tombstone waiting for its horizon" in the checkpoint.
const NO_HORIZON: i64 = i64::MAX;

/// What one cleaning pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanStats {
    /// Where the dirty part started, and the first offset the pass left dirty: the cleaned
    /// range is `[first segment base, end_offset)`.
    pub first_dirty_offset: i64,
    pub end_offset: i64,
    /// Dirty bytes over cleanable bytes when the pass was planned.
    pub dirty_ratio: f64,
    /// The pass ran because of `max.compaction.lag.ms` or an expired delete horizon, not the
    /// ratio.
    pub forced: bool,
    pub keys_mapped: usize,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_read: u64,
    pub records_retained: u64,
    pub tombstones_removed: u64,
    /// Records of aborted transactions removed.
    pub aborted_records_removed: u64,
    /// Markers removed after their delete horizon.
    pub markers_removed: u64,
}

/// The persisted cleaner state of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CleanerCheckpoint {
    first_dirty_offset: i64,
    /// The earliest delete horizon of a tombstone kept by a pass ([`NO_HORIZON`] if none).
    next_delete_horizon_ms: i64,
}

/// A pass worth running (step 1 of the module docs).
#[derive(Debug, Clone, Copy)]
struct Plan {
    first_dirty_offset: i64,
    /// Base of the first segment not cleanable.
    cleanable_end: i64,
    dirty_ratio: f64,
    forced: bool,
}

/// What filtering one batch needs to know.
struct FilterContext<'a> {
    map: &'a OffsetMap,
    /// Producer id → last offset of its last batch, from producer state.
    producer_last_offsets: &'a HashMap<i64, i64>,
    now_ms: i64,
    delete_retention_ms: i64,
}

impl Log {
    /// One cleaning pass (see the module docs) if the policy includes `compact` and one is
    /// due. Never touches the active segment or data at or above `high_watermark`. Returns
    /// `None` when nothing was due.
    pub fn clean(
        &mut self,
        now_ms: i64,
        high_watermark: Offset,
    ) -> Result<Option<CleanStats>, LogError> {
        let Offset(high_watermark) = high_watermark;
        let Some(plan) = self.plan_clean(now_ms, high_watermark)? else {
            return Ok(None);
        };
        let mut stats = CleanStats {
            first_dirty_offset: plan.first_dirty_offset,
            dirty_ratio: plan.dirty_ratio,
            forced: plan.forced,
            segments_before: self.segments.len(),
            bytes_before: self.size_bytes(),
            ..CleanStats::default()
        };
        let (map, map_end) = self.build_offset_map(&plan)?;
        stats.keys_mapped = map.len();
        stats.end_offset = map_end;
        let producer_last_offsets = self.last_producer_batches_below(map_end)?;
        let mut next_horizon = NO_HORIZON;
        for group in self.group_segments(map_end) {
            let context = FilterContext {
                map: &map,
                producer_last_offsets: &producer_last_offsets,
                now_ms,
                delete_retention_ms: self.config.delete_retention_ms,
            };
            let horizon = self.clean_group(&group, &context, &mut stats, now_ms)?;
            next_horizon = next_horizon.min(horizon);
        }
        let checkpoint = CleanerCheckpoint {
            first_dirty_offset: plan.first_dirty_offset.max(map_end),
            next_delete_horizon_ms: next_horizon,
        };
        self.write_cleaner_checkpoint(checkpoint)?;
        stats.segments_after = self.segments.len();
        stats.bytes_after = self.size_bytes();
        tracing::info!(dir = %self.dir.display(), ?stats, "cleaned log");
        Ok(Some(stats))
    }

    /// The first dirty offset the cleaner checkpoint holds (the log start if none); for
    /// tests and metrics.
    pub fn first_dirty_offset(&self) -> Offset {
        Offset(self.read_cleaner_checkpoint().first_dirty_offset)
    }

    fn plan_clean(&self, now_ms: i64, high_watermark: i64) -> Result<Option<Plan>, LogError> {
        if !self.config.cleanup_policy.compacts() {
            return Ok(None);
        }
        let Some(cleanable_end) = self.cleanable_end(now_ms, high_watermark) else {
            return Ok(None);
        };
        let checkpoint = self.read_cleaner_checkpoint();
        let first_dirty = checkpoint.first_dirty_offset;
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut forced_by_lag = false;
        for segment in self.segments.range(..cleanable_end).map(|(_, s)| s) {
            if segment.next_offset() <= first_dirty {
                clean_bytes += segment.size_bytes();
                continue;
            }
            dirty_bytes += segment.size_bytes();
            forced_by_lag |= self.exceeds_max_compaction_lag(segment, now_ms)?;
        }
        let horizon_due = checkpoint.next_delete_horizon_ms <= now_ms;
        let total = clean_bytes + dirty_bytes;
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        let ratio_due = dirty_bytes > 0 && dirty_ratio >= self.config.min_cleanable_dirty_ratio.0;
        let forced = (forced_by_lag || horizon_due) && !ratio_due;
        if !(ratio_due || forced) || total == 0 {
            return Ok(None);
        }
        Ok(Some(Plan {
            first_dirty_offset: first_dirty,
            cleanable_end,
            dirty_ratio,
            forced,
        }))
    }

    /// Base of the segment after the last cleanable one, or `None` if none is cleanable.
    fn cleanable_end(&self, now_ms: i64, high_watermark: i64) -> Option<i64> {
        let lag_ms = self.config.min_compaction_lag_ms;
        let youngest_allowed = now_ms.saturating_sub(lag_ms);
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut end = None;
        for (segment, next_base) in self.segments.values().zip(bases.iter().skip(1)) {
            let too_young = lag_ms > 0 && segment.largest_timestamp_ms() > youngest_allowed;
            if segment.next_offset() > high_watermark || too_young {
                break;
            }
            end = Some(*next_base);
        }
        end
    }

    /// Whether `segment`'s first batch waited longer than `max.compaction.lag.ms` (Kafka's
    /// `maxCompactionDelay`, by the first batch's max timestamp).
    fn exceeds_max_compaction_lag(&self, segment: &Segment, now_ms: i64) -> Result<bool, LogError> {
        let max_lag_ms = self.config.max_compaction_lag_ms;
        if max_lag_ms == i64::MAX {
            return Ok(false);
        }
        let first_timestamp = match segment.first_batch_timestamp() {
            Some(ts) => Some(ts),
            None => segment
                .find_batch(segment.base_offset())?
                .map(|location| location.header.max_timestamp),
        };
        Ok(first_timestamp.is_some_and(|ts| ts >= 0 && now_ms.saturating_sub(ts) > max_lag_ms))
    }

    /// Step 2: maps the dirty segments below `plan.cleanable_end`, stopping at a segment
    /// boundary once the map is full (after at least one segment). Returns the map and the
    /// offset where the mapped part ends.
    fn build_offset_map(&self, plan: &Plan) -> Result<(OffsetMap, i64), LogError> {
        let mut map = OffsetMap::new(self.config.cleaner_dedupe_buffer_bytes);
        let first_dirty = plan.first_dirty_offset;
        let mut mapped_any = false;
        let mut txns = TxnTracker::new(self.aborted_overlapping(first_dirty, plan.cleanable_end));
        for (&base, segment) in self.segments.range(..plan.cleanable_end) {
            if segment.next_offset() <= first_dirty {
                continue;
            }
            if mapped_any && map.is_full() {
                return Ok((map, base));
            }
            for_each_batch(&self.dir, segment, |header, batch| {
                if header.is_control() || txns.on_batch(header) {
                    return Ok(());
                }
                map_batch(&mut map, header, batch, first_dirty)
                    .map_err(|_| corrupt(&self.dir, base, header.base_offset))
            })?;
            mapped_any = true;
        }
        Ok((map, plan.cleanable_end))
    }

    /// Aborted transactions overlapping `[start, end)`, from every segment's index (a marker
    /// may lie beyond the range its data is in).
    fn aborted_overlapping(&self, start: i64, end: i64) -> Vec<super::AbortedTxn> {
        self.segments
            .values()
            .flat_map(|s| s.txn_index().entries().iter().copied())
            .filter(|a| a.first_offset < end && a.last_offset >= start)
            .collect()
    }

    /// For each producer that producer state knows, the last offset of its last batch below
    /// `end` (a header scan of the range): that batch is kept even when emptied.
    fn last_producer_batches_below(&self, end: i64) -> Result<HashMap<i64, i64>, LogError> {
        let mut last = HashMap::new();
        for segment in self.segments.range(..end).map(|(_, s)| s) {
            segment.scan_headers(0, |location| {
                let h = location.header;
                if h.has_producer_id() && self.producers.entry(ProducerId(h.producer_id)).is_some() {
                    last.insert(h.producer_id, h.last_offset());
                }
                std::ops::ControlFlow::Continue(())
            })?;
        }
        Ok(last)
    }

    /// Consecutive segments below `end`, grouped so each group's cleaned output fits one
    /// segment (Kafka's `groupSegmentsBySize`: `segment.bytes`, index size, and an offset span
    /// a relative index entry can hold). Sizes are the current, pre-clean ones, so groups
    /// are conservative and keep merging as later passes shrink them.
    fn group_segments(&self, end: i64) -> Vec<Vec<i64>> {
        let config = &self.config;
        let index_bytes_of = |bytes: u64| (bytes / config.index_interval_bytes + 1) * 12;
        let mut groups: Vec<Vec<i64>> = Vec::new();
        let mut current: Vec<i64> = Vec::new();
        let mut current_bytes = 0u64;
        for (&base, segment) in self.segments.range(..end) {
            let bytes = current_bytes + segment.size_bytes();
            let fits = current.first().is_some_and(|&first| {
                bytes <= config.segment_bytes
                    && index_bytes_of(bytes) <= config.segment_index_bytes
                    && segment.next_offset() - 1 - first <= i64::from(i32::MAX)
            });
            if !fits && !current.is_empty() {
                groups.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current.push(base);
            current_bytes += segment.size_bytes();
        }
        if !current.is_empty() {
            groups.push(current);
        }
        groups
    }

    /// Step 3 for one group: filter into a `.cleaned` file, swap it in, reopen it with
    /// rebuilt indexes. Returns the earliest delete horizon of a tombstone it kept.
    fn clean_group(
        &mut self,
        bases: &[i64],
        context: &FilterContext<'_>,
        stats: &mut CleanStats,
        now_ms: i64,
    ) -> Result<i64, LogError> {
        let (Some(&base), Some(&last_base)) = (bases.first(), bases.last()) else {
            return Ok(NO_HORIZON);
        };
        assert!(
            last_base < self.active().base_offset(),
            "the active segment is never cleaned"
        );
        let mut writer = swap::CleanedWriter::create(&self.dir, base)?;
        let mut horizon = NO_HORIZON;
        let group_end = self
            .segments
            .range(last_base + 1..)
            .next()
            .map_or_else(|| self.leo(), |(b, _)| *b);
        let mut txns = TxnTracker::new(self.aborted_overlapping(base, group_end));
        let written = self.write_cleaned(bases, context, stats, &mut writer, &mut horizon, &mut txns);
        if let Err(e) = written {
            writer.abandon()?;
            return Err(e);
        }
        if writer.size_bytes() > u64::from(u32::MAX) {
            // Positions in index entries are u32: leave this group as it is.
            writer.abandon()?;
            tracing::warn!(base, "cleaned group too large for one segment; skipped");
            return Ok(horizon);
        }
        writer.finish()?;
        // The aborts whose markers stay with data behind them.
        swap::write_cleaned_txn_index(&self.dir, base, &txns.into_index())?;
        swap::swap_in(&self.dir, bases)?;
        for b in bases {
            self.segments.remove(b);
        }
        let (mut segment, cut_bytes) =
            Segment::recover(&self.dir, base, self.index_limits(), now_ms)?;
        if cut_bytes > 0 {
            return Err(corrupt(&self.dir, base, segment.next_offset()));
        }
        segment.seal()?;
        self.segments.insert(base, segment);
        Ok(horizon)
    }

    fn write_cleaned(
        &self,
        bases: &[i64],
        context: &FilterContext<'_>,
        stats: &mut CleanStats,
        writer: &mut swap::CleanedWriter,
        horizon: &mut i64,
        txns: &mut TxnTracker,
    ) -> Result<(), LogError> {
        let last_base = bases.last().copied();
        for &base in bases {
            let Some(segment) = self.segments.get(&base) else {
                continue;
            };
            let segment_end = segment.next_offset();
            for_each_batch(&self.dir, segment, |header, batch| {
                let group_last = Some(base) == last_base && header.next_offset() == segment_end;
                let filtered = filter_batch(header, batch, context, group_last, stats, horizon, txns)
                    .map_err(|_| corrupt(&self.dir, base, header.base_offset))?;
                match filtered {
                    Some(bytes) => writer.append(&bytes),
                    None => Ok(()),
                }
            })?;
        }
        Ok(())
    }

    /// The checkpoint, with a first dirty offset outside the log (after DeleteRecords,
    /// retention or a truncation) replaced by the log start, as Kafka does.
    fn read_cleaner_checkpoint(&self) -> CleanerCheckpoint {
        let log_start = self.log_start_offset;
        match self.read_raw_cleaner_checkpoint() {
            Some(checkpoint) => {
                let in_log =
                    (log_start..=self.leo()).contains(&checkpoint.first_dirty_offset);
                CleanerCheckpoint {
                    first_dirty_offset: if in_log {
                        checkpoint.first_dirty_offset
                    } else {
                        log_start
                    },
                    ..checkpoint
                }
            }
            None => CleanerCheckpoint {
                first_dirty_offset: log_start,
                next_delete_horizon_ms: NO_HORIZON,
            },
        }
    }

    /// The checkpoint as written, if there is a readable one. Losing it only costs a full
    /// pass: everything counts as dirty again.
    fn read_raw_cleaner_checkpoint(&self) -> Option<CleanerCheckpoint> {
        let path = self.dir.join(CLEANER_CHECKPOINT);
        let read = read_checkpoint(&path, 0).and_then(|entries| match entries {
            Some(entries) => match entries.first() {
                Some(entry) => parse_ints::<2>(entry, &path).map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        });
        match read {
            Ok(Some([first_dirty_offset, next_delete_horizon_ms])) => Some(CleanerCheckpoint {
                first_dirty_offset,
                next_delete_horizon_ms,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable cleaner checkpoint");
                None
            }
        }
    }

    fn write_cleaner_checkpoint(&self, checkpoint: CleanerCheckpoint) -> Result<(), LogError> {
        let entry = format!(
            "{} {}",
            checkpoint.first_dirty_offset, checkpoint.next_delete_horizon_ms
        );
        write_checkpoint(&self.dir.join(CLEANER_CHECKPOINT), 0, &[entry])
    }

    /// After the tail was cut at `end` (a truncation, or a crash that lost unflushed data,
    /// checked at open): offsets at or above it will be new data, so the dirty part may
    /// start no later than `end` (Kafka's `maybeTruncateCheckpoint`).
    pub(super) fn lower_cleaner_checkpoint(&self, end: i64) -> Result<(), LogError> {
        let Some(checkpoint) = self.read_raw_cleaner_checkpoint() else {
            return Ok(());
        };
        if checkpoint.first_dirty_offset > end {
            self.write_cleaner_checkpoint(CleanerCheckpoint {
                first_dirty_offset: end,
                ..checkpoint
            })?;
        }
        Ok(())
    }
}

/// Calls `visit` with every batch of `segment`, CRC-checked, in order.
fn for_each_batch(
    dir: &std::path::Path,
    segment: &Segment,
    mut visit: impl FnMut(&BatchHeader, &[u8]) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut next = segment.base_offset();
    while next < segment.next_offset() {
        let part = segment.read(next, READ_CHUNK_BYTES, i64::MAX, true)?;
        if part.bytes.is_empty() {
            break;
        }
        let mut iter = BatchIter::with_crc_check(&part.bytes);
        for (header, range) in iter.by_ref() {
            visit(&header, &part.bytes[range])?;
        }
        if iter.stop() != Some(&IterStop::End) || part.next_offset <= next {
            return Err(corrupt(dir, segment.base_offset(), next));
        }
        next = part.next_offset;
    }
    Ok(())
}

fn corrupt(dir: &std::path::Path, base: i64, offset: i64) -> LogError {
    tracing::warn!(base, offset, "cleaner found a batch it cannot read");
    LogError::CorruptSegment {
        path: segment_file(dir, base, LOG_SUFFIX),
        position: 0,
    }
}

/// Adds the keyed records of one batch at or above `first_dirty` to the map.
fn map_batch(
    map: &mut OffsetMap,
    header: &BatchHeader,
    batch: &[u8],
    first_dirty: i64,
) -> Result<(), records::RecordsError> {
    if header.last_offset() < first_dirty || header.is_control() {
        return Ok(());
    }
    let Some(payload) = decompressed_payload(batch, header)? else {
        return Ok(());
    };
    for record in parse_records(&payload, header)? {
        let offset = header.base_offset.saturating_add(record.offset_delta);
        if let (Some(key), true) = (record.key, offset >= first_dirty) {
            map.put(key, offset);
        }
    }
    Ok(())
}

/// The batch as it goes into the cleaned segment, or `None` if it disappears (see the module
/// docs for the rules). Lowers `horizon` to the delete horizon of any tombstone kept.
#[allow(clippy::too_many_arguments)]
fn filter_batch<'b>(
    header: &BatchHeader,
    batch: &'b [u8],
    context: &FilterContext<'_>,
    group_last: bool,
    stats: &mut CleanStats,
    horizon: &mut i64,
    txns: &mut TxnTracker,
) -> Result<Option<Cow<'b, [u8]>>, records::RecordsError> {
    let count = u64::try_from(header.records_count).unwrap_or(0);
    stats.records_read += count;
    if header.is_control() {
        let commit = crate::record::control::parse_marker(batch).map(|m| m.commit);
        let orphaned = txns.on_marker(header, commit);
        return filter_marker(header, batch, orphaned, context, group_last, stats, horizon);
    }
    let aborted = txns.on_batch(header);
    let payload = if aborted { Some(Vec::new()) } else { decompressed_payload(batch, header)? };
    let Some(payload) = payload else {
        stats.records_retained += count;
        return Ok(Some(Cow::Borrowed(batch)));
    };
    let records = if aborted { Vec::new() } else { parse_records(&payload, header)? };
    if aborted {
        stats.aborted_records_removed += count;
    }
    let kept: Vec<RawRecord<'_>> = records
        .iter()
        .filter(|r| retain_record(header, r, context, stats))
        .copied()
        .collect();
    stats.records_retained += kept.len() as u64;
    let keeps_tombstone = kept.iter().any(|r| r.is_tombstone);
    let new_horizon = (keeps_tombstone && !header.has_delete_horizon())
        .then(|| context.now_ms.saturating_add(context.delete_retention_ms));
    if keeps_tombstone {
        *horizon = (*horizon).min(new_horizon.unwrap_or(header.base_timestamp));
    }
    let last_of_producer = header.has_producer_id()
        && context.producer_last_offsets.get(&header.producer_id) == Some(&header.last_offset());
    // Before the unchanged check, so an empty header kept by an earlier pass goes once it
    // is no longer needed.
    if kept.is_empty() && !group_last && !last_of_producer {
        return Ok(None);
    }
    if !aborted && kept.len() == records.len() && new_horizon.is_none() {
        return Ok(Some(Cow::Borrowed(batch)));
    }
    let rewrite = Rewrite {
        delete_horizon_ms: new_horizon,
    };
    Ok(Some(Cow::Owned(rewrite_batch(header, &kept, rewrite)?)))
}

/// A marker: kept whole while its transaction still has data in the log; without data it
/// is stamped with a delete horizon and removed by a pass after it (only an empty header stays
/// when it ends the group), as Kafka treats transaction markers like tombstones.
fn filter_marker<'b>(
    header: &BatchHeader,
    batch: &'b [u8],
    orphaned: bool,
    context: &FilterContext<'_>,
    group_last: bool,
    stats: &mut CleanStats,
    horizon: &mut i64,
) -> Result<Option<Cow<'b, [u8]>>, records::RecordsError> {
    let count = u64::try_from(header.records_count).unwrap_or(0);
    if !orphaned {
        stats.records_retained += count;
        return Ok(Some(Cow::Borrowed(batch)));
    }
    if header.has_delete_horizon() && context.now_ms >= header.base_timestamp {
        stats.markers_removed += 1;
        if group_last {
            return Ok(Some(Cow::Owned(rewrite_batch(header, &[], Rewrite { delete_horizon_ms: None })?)));
        }
        return Ok(None);
    }
    stats.records_retained += count;
    if header.has_delete_horizon() {
        *horizon = (*horizon).min(header.base_timestamp);
        return Ok(Some(Cow::Borrowed(batch)));
    }
    let Some(payload) = decompressed_payload(batch, header)? else {
        return Ok(Some(Cow::Borrowed(batch)));
    };
    let records = parse_records(&payload, header)?;
    let delete_horizon_ms = context.now_ms.saturating_add(context.delete_retention_ms);
    *horizon = (*horizon).min(delete_horizon_ms);
    Ok(Some(Cow::Owned(rewrite_batch(header, &records, Rewrite { delete_horizon_ms: Some(delete_horizon_ms) })?)))
}

/// Kafka's `shouldRetainRecord`: keyed, not superseded by a later offset of the same key, and
/// not a tombstone past its batch's delete horizon.
fn retain_record(
    header: &BatchHeader,
    record: &RawRecord<'_>,
    context: &FilterContext<'_>,
    stats: &mut CleanStats,
) -> bool {
    let Some(key) = record.key else {
        return false;
    };
    let offset = header.base_offset.saturating_add(record.offset_delta);
    if context
        .map
        .latest(key)
        .is_some_and(|latest| latest > offset)
    {
        return false;
    }
    let horizon_passed = header.has_delete_horizon() && context.now_ms >= header.base_timestamp;
    if record.is_tombstone && horizon_passed {
        stats.tombstones_removed += 1;
        return false;
    }
    true
}
