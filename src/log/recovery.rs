//! Opening a log (Kafka's `LogLoader`): after a clean shutdown, trust the files; after a
//! crash, recover the active segment.
//!
//! Clean (the `clean-shutdown` marker is present and agrees with the files): segments are
//! opened from their index files, the log end offset comes from the marker and producer
//! state from the snapshot `close` wrote at the log end offset, so no segment data is read
//! and startup costs a few small files per segment. The marker is deleted before the log is
//! used, so a crash from then on is seen as one.
//!
//! Crash: sealed segments (all but the last, see `mod.rs`) are still opened from their
//! indexes; the last one is validated batch by batch and cut at the first torn or corrupt
//! batch, and its indexes are rebuilt. If only the process died and the machine did not
//! (`RecoveryMode::PageCacheIntact`, decided by the broker), the bytes in the page cache
//! are exactly those written, so the walk reads batch headers only and checks the CRC of
//! the last batch, the one a kill may have cut short. Producer state is loaded from the newest snapshot
//! at or below the log end and the batch headers after it are replayed.
//!
//! Leftovers of interrupted work are handled first: a cleaned segment committed as
//! `*.log.swap` replaces the segments it covers (`cleaner/swap.rs`); then `*.tmp` (atomic
//! writes), `*.deleted`, `*.cleaned` (a cleaned segment not yet committed: the old segments
//! are intact) and any other `*.swap` are removed, and index files without a log.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use super::checkpoint::{TMP_SUFFIX, parse_ints, read_checkpoint, sync_dir, write_checkpoint};
use super::epoch_cache::LeaderEpochCache;
use crate::types::{LeaderEpoch, Offset};
use super::producer_state::{
    ProducerStateManager, delete_snapshots_outside, list_snapshots, snapshot_path,
};
use super::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, RecoveryMode, Segment, TIME_INDEX_SUFFIX, remove_if_exists, segment_file,
};
use super::{
    CLEAN_SHUTDOWN_MARKER, LOG_START_OFFSET_CHECKPOINT, Log, LogConfig, LogError, index_limits,
};

const STRAY_SUFFIXES: [&str; 4] = [TMP_SUFFIX, ".deleted", ".cleaned", ".swap"];
/// Stands for "no first batch" in the marker (-1 is a legal, if odd, timestamp).
const NO_TIMESTAMP: i64 = i64::MIN;

/// How a log was found at open, for the start-up log line: a partition that had no segment
/// yet has nothing to recover and must not read as one that survived a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpenedAs {
    /// No segment on disk: a new partition (or one whose directory held no data).
    Created,
    /// The clean-shutdown marker vouched for the files.
    Clean,
    /// Segments without a valid marker: the active one was recovered.
    Recovered,
}

impl OpenedAs {
    pub fn decide(segments_on_disk: usize, marker_present: bool) -> Self {
        match (segments_on_disk, marker_present) {
            (0, _) => OpenedAs::Created,
            (_, true) => OpenedAs::Clean,
            (_, false) => OpenedAs::Recovered,
        }
    }
}

/// What `close` vouches for in the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CleanShutdown {
    pub log_end_offset: i64,
    pub active_base_offset: i64,
    pub active_size_bytes: u64,
    pub first_batch_timestamp: Option<i64>,
}

impl CleanShutdown {
    pub fn write(&self, dir: &Path) -> Result<(), LogError> {
        let entry = format!(
            "{} {} {} {}",
            self.log_end_offset,
            self.active_base_offset,
            self.active_size_bytes,
            self.first_batch_timestamp.unwrap_or(NO_TIMESTAMP)
        );
        write_checkpoint(&dir.join(CLEAN_SHUTDOWN_MARKER), 0, &[entry])
    }

    /// The marker if present and readable; a damaged marker counts as a crash.
    fn read(dir: &Path) -> Option<CleanShutdown> {
        let path = dir.join(CLEAN_SHUTDOWN_MARKER);
        let entries = read_checkpoint(&path, 0).ok()??;
        let [leo, base, size, first_ts] = parse_ints::<4>(entries.first()?, &path).ok()?;
        Some(CleanShutdown {
            log_end_offset: leo,
            active_base_offset: base,
            active_size_bytes: u64::try_from(size).ok()?,
            first_batch_timestamp: (first_ts != NO_TIMESTAMP).then_some(first_ts),
        })
    }
}

impl Log {
    /// Opens (creating if missing) the log in `dir`; see the module docs.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, LogError> {
        Self::open_with(dir, config, now_ms, RecoveryMode::Full)
    }

    /// [`Log::open`], recovering an unclean active segment as `mode` says.
    pub fn open_with(dir: &Path, config: LogConfig, now_ms: i64, mode: RecoveryMode) -> Result<Log, LogError> {
        config.validate()?;
        std::fs::create_dir_all(dir)?;
        super::cleaner::complete_interrupted_swaps(dir)?;
        let bases = scan_directory(dir)?;
        let marker = CleanShutdown::read(dir);
        let saved_start = read_log_start_offset(dir).unwrap_or_else(|e| {
            // Written atomically, so damage means outside interference: fall back to the
            // first segment's base, as Kafka does without a checkpoint entry.
            tracing::warn!(error = %e, "ignoring unreadable log start offset checkpoint");
            None
        });
        let segments = open_segments(
            dir,
            &config,
            &bases,
            marker,
            saved_start.unwrap_or(0),
            now_ms,
            mode,
        )?;
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let mut log = Log {
            dir: dir.to_path_buf(),
            epoch_cache: load_epoch_cache(dir, &segments)?,
            producers: ProducerStateManager::new(),
            log_start_offset: saved_start.unwrap_or(first_base).max(first_base),
            segments,
            recovery_point: 0,
            last_flush_ms: now_ms,
            config,
        };
        if log.log_start_offset > log.leo() {
            // Only unflushed data at or above the log start was lost: start over there.
            log.truncate_fully_and_start_at(log.log_start_offset(), now_ms)?;
        }
        let (start, end) = (log.log_start_offset, log.leo());
        log.epoch_cache.truncate_from_end(Offset(end))?;
        log.epoch_cache.truncate_from_start(Offset(start))?;
        log.load_producer_state()?;
        log.lower_cleaner_checkpoint(end)?;
        if marker.is_some() || mode == RecoveryMode::Full {
            log.active().flush()?;
            log.recovery_point = end;
        } else {
            // Not known to be on disk, and an fsync here would wait for the kernel to write
            // back everything the killed process left dirty: the active segment counts as
            // unflushed (sealed ones were fsynced when they rolled).
            log.recovery_point = log.active().base_offset();
        }
        remove_if_exists(&dir.join(CLEAN_SHUTDOWN_MARKER))?;
        sync_dir(&dir.join(CLEAN_SHUTDOWN_MARKER))?;
        match OpenedAs::decide(bases.len(), marker.is_some()) {
            OpenedAs::Created => tracing::info!(dir = %dir.display(), start, end, "created log"),
            opened => {
                tracing::info!(dir = %dir.display(), clean = opened == OpenedAs::Clean, start, end, "opened log")
            }
        }
        Ok(log)
    }

    /// Rebuilds producer state: the newest readable snapshot at or below the log end, then
    /// the headers of every later batch still on disk. Unlike Kafka, which replays from
    /// `max(snapshot, log start)`, batches below the log start that are still in the first
    /// segment are replayed too, so a producer whose last batch sits just below the log start
    /// keeps its sequence. Snapshots beyond the log end describe truncated data: deleted.
    pub(super) fn load_producer_state(&mut self) -> Result<(), LogError> {
        let end = self.leo();
        delete_snapshots_outside(&self.dir, i64::MIN..=end)?;
        self.producers = ProducerStateManager::new();
        let mut replay_from = self
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.log_start_offset);
        for offset in list_snapshots(&self.dir)?.into_iter().rev() {
            match ProducerStateManager::read_snapshot(&snapshot_path(&self.dir, offset)) {
                Ok(state) => {
                    self.producers = state;
                    replay_from = offset;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable producer snapshot");
                    remove_if_exists(&snapshot_path(&self.dir, offset))?;
                }
            }
        }
        self.replay_producers_from(replay_from)
    }

    /// Replays every batch holding an offset `>= from_offset`, including one straddling it
    /// (the log start may sit mid-batch). Snapshots sit at batch boundaries, so a batch a
    /// snapshot already covers is never replayed twice. Markers close transactions again, and
    /// the transaction indexes of the replayed range are rebuilt from them: entries at or above
    /// `from_offset` are dropped and every abort met is indexed in its marker's segment (a
    /// sealed segment whose index changed is rewritten).
    fn replay_producers_from(&mut self, from_offset: i64) -> Result<(), LogError> {
        let bases: Vec<i64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.next_offset() > from_offset)
            .map(|(b, _)| *b)
            .collect();
        let active_base = self.active().base_offset();
        for base in bases {
            let Some(segment) = self.segments.get(&base) else { continue };
            let Some(first) = segment.find_batch(from_offset)? else {
                continue;
            };
            let before = segment.txn_index().clone();
            let mut aborts = Vec::new();
            let producers = &mut self.producers;
            let mut read_error = None;
            segment.scan_headers(first.position, |location| {
                let header = location.header;
                if header.last_offset() < from_offset {
                    return ControlFlow::Continue(());
                }
                if !header.is_control() {
                    producers.replay(&header);
                    return ControlFlow::Continue(());
                }
                match segment.read_batch_at(location.position, header.total_len()) {
                    Ok(batch) => {
                        if let Some(marker) = crate::record::control::parse_marker(&batch) {
                            if let Some(completed) = producers.replay_marker(&header, marker).filter(|c| c.aborted) {
                                let last_stable_offset = producers.last_stable_offset_after(&completed);
                                aborts.push(super::AbortedTxn {
                                    producer_id: completed.producer_id.0,
                                    first_offset: completed.first_offset.0,
                                    last_offset: completed.last_offset.0,
                                    last_stable_offset: last_stable_offset.0,
                                });
                            }
                        }
                        ControlFlow::Continue(())
                    }
                    Err(e) => {
                        read_error = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })?;
            if let Some(e) = read_error {
                return Err(e);
            }
            let Some(segment) = self.segments.get_mut(&base) else { continue };
            let index = segment.txn_index_mut();
            index.truncate_to(from_offset);
            for abort in aborts {
                index.append(abort);
            }
            if base != active_base && *segment.txn_index() != before {
                segment.write_txn_index()?;
            }
        }
        Ok(())
    }
}

/// Deletes leftovers (see the module docs) and returns the base offsets of the `.log` files.
fn scan_directory(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if STRAY_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            tracing::info!(path = %path.display(), "removing leftover file");
            remove_if_exists(&path)?;
        } else if let Some(stem) = name.strip_suffix(LOG_SUFFIX) {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(base);
            }
        } else if let Some(stem) = name
            .strip_suffix(INDEX_SUFFIX)
            .or_else(|| name.strip_suffix(TIME_INDEX_SUFFIX))
        {
            if let Ok(base) = stem.parse::<i64>() {
                index_files.push((base, path));
            }
        }
    }
    bases.sort_unstable();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            remove_if_exists(&path)?;
        }
    }
    Ok(bases)
}

/// The leader-epoch cache, or if its checkpoint is unreadable, one rebuilt from the
/// `partitionLeaderEpoch` of every batch header (a full header scan; only after damage).
fn load_epoch_cache(
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
) -> Result<LeaderEpochCache, LogError> {
    match LeaderEpochCache::load(dir) {
        Ok(cache) => Ok(cache),
        Err(e) => {
            tracing::warn!(error = %e, "rebuilding the leader-epoch cache from the log");
            let mut cache = LeaderEpochCache::empty(dir);
            for segment in segments.values() {
                segment.scan_headers(0, |location| {
                    let h = location.header;
                    cache.assign_in_memory(LeaderEpoch(h.partition_leader_epoch), Offset(h.base_offset));
                    ControlFlow::Continue(())
                })?;
            }
            cache.persist()?;
            Ok(cache)
        }
    }
}

fn read_log_start_offset(dir: &Path) -> Result<Option<i64>, LogError> {
    let path = dir.join(LOG_START_OFFSET_CHECKPOINT);
    match read_checkpoint(&path, 0)? {
        Some(entries) => match entries.first() {
            Some(entry) => Ok(Some(parse_ints::<1>(entry, &path)?[0])),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

fn open_segments(
    dir: &Path,
    config: &LogConfig,
    bases: &[i64],
    marker: Option<CleanShutdown>,
    empty_log_start: i64,
    now_ms: i64,
    mode: RecoveryMode,
) -> Result<BTreeMap<i64, Segment>, LogError> {
    let limits = index_limits(config);
    let mut segments = BTreeMap::new();
    let Some((&last_base, sealed)) = bases.split_last() else {
        let segment = Segment::create(dir, empty_log_start, limits, now_ms)?;
        segments.insert(empty_log_start, segment);
        return Ok(segments);
    };
    for (i, &base) in sealed.iter().enumerate() {
        let next_base = bases[i + 1];
        let segment = match Segment::open_trusted(dir, base, limits, next_base, None, now_ms) {
            Ok(segment) => segment,
            Err(e) => {
                tracing::warn!(base, error = %e, "sealed segment's indexes unusable; rebuilding");
                Segment::recover(dir, base, limits, now_ms)?.0
            }
        };
        segments.insert(base, segment);
    }
    let trusted_last = marker
        .filter(|m| m.active_base_offset == last_base)
        .filter(|m| {
            file_len(&segment_file(dir, last_base, LOG_SUFFIX)) == Some(m.active_size_bytes)
        })
        .and_then(|m| {
            Segment::open_trusted(
                dir,
                last_base,
                limits,
                m.log_end_offset,
                m.first_batch_timestamp,
                now_ms,
            )
            .ok()
        });
    let last = match trusted_last {
        Some(segment) => segment,
        None => Segment::recover_with(dir, last_base, limits, now_ms, mode)?.0,
    };
    segments.insert(last_base, last);
    Ok(segments)
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::OpenedAs;

    #[test]
    fn a_log_without_segments_is_created_not_recovered() {
        assert_eq!(OpenedAs::decide(0, false), OpenedAs::Created);
        assert_eq!(OpenedAs::decide(0, true), OpenedAs::Created);
        assert_eq!(OpenedAs::decide(1, true), OpenedAs::Clean);
        assert_eq!(OpenedAs::decide(3, false), OpenedAs::Recovered);
    }
}
