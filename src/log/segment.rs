//! One segment: a `.log` file of whole batches, its offset and time indexes and its
//! aborted-transaction index.
//!
//! Files are named by the segment's base offset, 20 digits, as Kafka does
//! (`00000000000000000000.log`, `.index`, `.timeindex`, `.txnindex`). Writes go to the end of the `.log`
//! file in one `write_all_at` per append; reads use positioned reads, so `&self` suffices.
//!
//! Invariants:
//! - `size_bytes` is the length of the file and ends at a batch boundary; batches are whole
//!   and their offsets increase; `next_offset` is one past the last batch (`base_offset` when
//!   empty).
//! - Index entries only name batches inside the file (see `offset_index`, `time_index`).
//! - A lookup reads the index, then scans headers from the indexed position: about
//!   `index.interval.bytes` of log, never the whole segment.

use std::fs::{File, OpenOptions};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::record::patch::PatchedBatches;
use crate::record::{BATCH_HEADER_LEN, BatchHeader, BatchIter, IterStop, LOG_OVERHEAD_LEN};

use super::LogError;
use super::offset_index::OffsetIndex;
use super::time_index::{TimeIndex, TimestampOffset};
use super::txn_index::{TXN_INDEX_SUFFIX, TxnIndex};

pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Bytes read at a time when walking headers or recovering.
const SCAN_CHUNK_BYTES: usize = 64 * 1024;

/// `dir/<base offset, 20 digits><suffix>`.
pub fn segment_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// The index settings a segment needs from `LogConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLimits {
    pub index_interval_bytes: u64,
    pub max_index_bytes: u64,
}

/// Where a batch sits in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLocation {
    pub position: u64,
    pub header: BatchHeader,
}

/// A byte range of a segment's data file holding whole batches, for sending without reading
/// it into memory. The range lay below the file's end when it was taken; files only shrink
/// by truncation, which replication must not do under a reader's range (a short file then
/// surfaces as an early end of file to whoever sends the region, never as wrong bytes).
#[derive(Debug, Clone)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub position: u64,
    pub len: u64,
}

impl FileRegion {
    /// Reads the region into memory (for small sets and tests).
    pub fn read_to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.len as usize];
        self.file.read_exact_at(&mut bytes, self.position)?;
        Ok(bytes)
    }
}

/// How much of an unclean segment tail to verify on recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Check every batch's CRC: after a machine crash, data past the last fsync may be
    /// anything.
    Full,
    /// The machine kept running since the data was written (only the process died), so the
    /// page cache holds exactly the bytes written: only a write cut short by the kill can be
    /// wrong, and only at the end. Batch headers are walked and the last batch is checked.
    PageCacheIntact,
}

/// Reads batch headers in small windows: one read serves several small batches, and large
/// batches cost one small read each instead of their whole length.
#[derive(Default)]
struct HeaderReader {
    window: Vec<u8>,
    window_start: u64,
}

/// Bytes read per header window.
const HEADER_WINDOW_BYTES: usize = 4096;

impl HeaderReader {
    /// The batch header at `position`, or `None` if it does not parse (a torn tail).
    fn header_at(&mut self, file: &File, position: u64, file_len: u64) -> Result<Option<BatchHeader>, LogError> {
        let in_window = position >= self.window_start
            && position + BATCH_HEADER_LEN as u64 <= self.window_start + self.window.len() as u64;
        if !in_window {
            let len = (file_len - position).min(HEADER_WINDOW_BYTES as u64) as usize;
            self.window.resize(len, 0);
            file.read_exact_at(&mut self.window, position)?;
            self.window_start = position;
        }
        let at = (position - self.window_start) as usize;
        Ok(self.window.get(at..).and_then(|b| BatchHeader::parse(b).ok()))
    }
}

/// Whole batches located in one segment, not read.
#[derive(Debug, Clone)]
pub struct SegmentRegion {
    pub region: FileRegion,
    /// Offset after the last batch in the region.
    pub next_offset: i64,
    /// True if the region ends at the end of this segment's data.
    pub reached_end: bool,
}

/// Bytes of whole batches read from one segment.
#[derive(Debug, Clone, Default)]
pub struct SegmentRead {
    pub bytes: Vec<u8>,
    /// Offset after the last batch returned.
    pub next_offset: i64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    /// Shared with fetch responses that send from it (`FileRegion`); see `read_region`.
    file: Arc<File>,
    size_bytes: u64,
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// Transactions whose ABORT marker is in this segment.
    txn_index: TxnIndex,
    limits: IndexLimits,
    bytes_since_last_index_entry: u64,
    max_timestamp_so_far: Option<TimestampOffset>,
    /// Max timestamp of the first batch: Kafka's `rollingBasedTimestamp` for `segment.ms`.
    first_batch_timestamp: Option<i64>,
    /// When this process created or opened the segment; the roll clock if no timestamp.
    created_ms: i64,
}

impl Segment {
    /// Creates an empty segment, replacing any leftover file with the same base offset.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        limits: IndexLimits,
        now_ms: i64,
    ) -> Result<Segment, LogError> {
        let path = segment_file(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
            remove_if_exists(&segment_file(dir, base_offset, suffix))?;
        }
        super::checkpoint::sync_dir(&path)?;
        Ok(Segment::assemble(dir, base_offset, file, limits, now_ms))
    }

    fn assemble(
        dir: &Path,
        base_offset: i64,
        file: File,
        limits: IndexLimits,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            size_bytes: 0,
            next_offset: base_offset,
            offset_index: OffsetIndex::new(base_offset, limits.max_index_bytes),
            time_index: TimeIndex::new(base_offset, limits.max_index_bytes),
            txn_index: TxnIndex::default(),
            limits,
            bytes_since_last_index_entry: 0,
            max_timestamp_so_far: None,
            first_batch_timestamp: None,
            created_ms: now_ms,
        }
    }

    /// Opens a segment after a clean shutdown, trusting its index files and reading no log
    /// data. `next_offset` comes from the caller (the next segment's base, or the shutdown
    /// marker for the last one). Fails if an index is missing or inconsistent; the caller
    /// then recovers the segment instead.
    pub fn open_trusted(
        dir: &Path,
        base_offset: i64,
        limits: IndexLimits,
        next_offset: i64,
        first_batch_timestamp: Option<i64>,
        now_ms: i64,
    ) -> Result<Segment, LogError> {
        let path = segment_file(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size_bytes = file.metadata()?.len();
        let mut segment = Segment::assemble(dir, base_offset, file, limits, now_ms);
        let index_path = segment_file(dir, base_offset, INDEX_SUFFIX);
        let time_path = segment_file(dir, base_offset, TIME_INDEX_SUFFIX);
        segment.offset_index = OffsetIndex::load(&index_path, base_offset, limits.max_index_bytes)?;
        segment.time_index = TimeIndex::load(&time_path, base_offset, limits.max_index_bytes)?;
        segment.txn_index = TxnIndex::load(&segment_file(dir, base_offset, TXN_INDEX_SUFFIX))?;
        segment.size_bytes = size_bytes;
        segment.next_offset = next_offset;
        segment.max_timestamp_so_far = segment.time_index.last_entry();
        segment.first_batch_timestamp = first_batch_timestamp;
        let last_position = segment
            .offset_index
            .last_entry()
            .map_or(0, |e| u64::from(e.position));
        segment.bytes_since_last_index_entry = size_bytes.saturating_sub(last_position);
        segment.check_trusted_state(&index_path)?;
        Ok(segment)
    }

    fn check_trusted_state(&self, index_path: &Path) -> Result<(), LogError> {
        let corrupt = |reason| LogError::CorruptIndex {
            path: index_path.to_path_buf(),
            reason,
        };
        if self.next_offset < self.base_offset
            || (self.size_bytes == 0) != (self.next_offset == self.base_offset)
        {
            return Err(corrupt("segment end offset disagrees with its size"));
        }
        if let Some(last) = self.offset_index.last_entry() {
            if u64::from(last.position) >= self.size_bytes || last.offset >= self.next_offset {
                return Err(corrupt("index entry beyond the end of the segment"));
            }
        }
        if self
            .time_index
            .last_entry()
            .is_some_and(|e| e.offset >= self.next_offset)
        {
            return Err(corrupt("time index entry beyond the end of the segment"));
        }
        Ok(())
    }

    /// Opens a segment whose tail may be torn: validates every batch (framing, CRC32C,
    /// increasing offsets), cuts the file at the first bad byte, rebuilds both indexes.
    /// Returns the segment and how many bytes were cut.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        limits: IndexLimits,
        now_ms: i64,
    ) -> Result<(Segment, u64), LogError> {
        Self::recover_with(dir, base_offset, limits, now_ms, RecoveryMode::Full)
    }

    /// [`Segment::recover`], checking CRCs as `mode` says.
    pub fn recover_with(
        dir: &Path,
        base_offset: i64,
        limits: IndexLimits,
        now_ms: i64,
        mode: RecoveryMode,
    ) -> Result<(Segment, u64), LogError> {
        let path = segment_file(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let mut segment = Segment::assemble(dir, base_offset, file, limits, now_ms);
        // Aborts are not in the batch data alone (they need producer state): the file is kept
        // and the log's producer-state replay corrects the entries of the part it replays.
        segment.txn_index = TxnIndex::load(&segment_file(dir, base_offset, TXN_INDEX_SUFFIX)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ignoring unreadable transaction index");
            TxnIndex::default()
        });
        let valid_end = match mode {
            RecoveryMode::Full => segment.recover_batches(file_len)?,
            RecoveryMode::PageCacheIntact => segment.recover_headers(file_len)?,
        };
        let cut_bytes = file_len - valid_end;
        if cut_bytes > 0 {
            tracing::warn!(path = %path.display(), cut_bytes, "truncating torn or corrupt segment tail");
            segment.file.set_len(valid_end)?;
            segment.file.sync_all()?;
        }
        segment.size_bytes = valid_end;
        Ok((segment, cut_bytes))
    }

    /// Walks the file in chunks, indexing every intact batch; returns where they end.
    fn recover_batches(&mut self, file_len: u64) -> Result<u64, LogError> {
        let mut position = 0u64;
        let mut buf = Vec::new();
        loop {
            let want = SCAN_CHUNK_BYTES.max(self.pending_batch_len(position, file_len)?);
            let len = (file_len - position).min(want as u64) as usize;
            if len == 0 {
                return Ok(position);
            }
            buf.resize(len, 0);
            self.file.read_exact_at(&mut buf, position)?;
            let mut iter = BatchIter::with_crc_check(&buf);
            for (header, range) in iter.by_ref() {
                if !self.recoverable(&header) {
                    return Ok(position + range.start as u64);
                }
                self.track_batch(&header, position + range.start as u64);
            }
            let consumed = iter.valid_end() as u64;
            let chunk_ended_file = position + len as u64 == file_len;
            match iter.stop() {
                // The chunk ended before the file did (inside a batch or just after one): read
                // on; the next chunk is sized to hold the next batch whole. With nothing
                // consumed, the batch cannot fit in the file: a torn tail.
                Some(IterStop::PartialTail { .. } | IterStop::End)
                    if !chunk_ended_file && consumed > 0 =>
                {
                    position += consumed
                }
                _ => return Ok(position + consumed),
            }
        }
    }

    /// Recovery when the page cache survived (see [`RecoveryMode::PageCacheIntact`]): walks
    /// the batch headers, indexing each batch; only the last batch in the file, the one a
    /// killed write may have left short, has its CRC checked. Returns where the batches end.
    fn recover_headers(&mut self, file_len: u64) -> Result<u64, LogError> {
        let mut reader = HeaderReader::default();
        let mut position = 0u64;
        while position + BATCH_HEADER_LEN as u64 <= file_len {
            let Some(header) = reader.header_at(&self.file, position, file_len)? else {
                return Ok(position);
            };
            let end = position + header.total_len() as u64;
            if end > file_len || !self.recoverable(&header) {
                return Ok(position);
            }
            if end == file_len {
                let mut last = vec![0u8; header.total_len()];
                self.file.read_exact_at(&mut last, position)?;
                let mut iter = BatchIter::with_crc_check(&last);
                if iter.next().is_none() {
                    return Ok(position);
                }
            }
            self.track_batch(&header, position);
            position = end;
        }
        Ok(position)
    }

    /// Whether recovery may keep `header` as the next batch: offsets must go on increasing
    /// and stay within what one segment can index (a batch failing this ends the valid data,
    /// as a torn one does; keeping it would break the indexes at the next roll).
    fn recoverable(&self, header: &BatchHeader) -> bool {
        header.base_offset >= self.next_offset
            && header.last_offset_delta >= 0
            && header.last_offset() - self.base_offset <= i64::from(i32::MAX)
    }

    /// Length of the batch starting at `position` if it fits in the file, else 0.
    fn pending_batch_len(&self, position: u64, file_len: u64) -> Result<usize, LogError> {
        if file_len - position < LOG_OVERHEAD_LEN as u64 {
            return Ok(0);
        }
        let mut head = [0u8; LOG_OVERHEAD_LEN];
        self.file.read_exact_at(&mut head, position)?;
        let batch_length = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let total = LOG_OVERHEAD_LEN as i64 + i64::from(batch_length);
        if total < BATCH_HEADER_LEN as i64 || total as u64 > file_len - position {
            return Ok(0);
        }
        Ok(total as usize)
    }

    /// Index bookkeeping for a batch now stored at `position` (Kafka's per-batch rule: an
    /// index entry once more than `index.interval.bytes` were written since the last one).
    fn track_batch(&mut self, header: &BatchHeader, position: u64) {
        assert!(
            header.base_offset >= self.next_offset,
            "offsets must increase in a segment"
        );
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if self
            .max_timestamp_so_far
            .is_none_or(|m| header.max_timestamp > m.timestamp)
        {
            let entry = TimestampOffset {
                timestamp: header.max_timestamp,
                offset: header.base_offset,
            };
            self.max_timestamp_so_far = Some(entry);
        }
        if self.bytes_since_last_index_entry > self.limits.index_interval_bytes {
            self.offset_index
                .append(header.base_offset, position as u32);
            if let Some(max) = self.max_timestamp_so_far {
                self.time_index.maybe_append(max);
            }
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.total_len() as u64;
        self.next_offset = header.next_offset();
    }

    /// Appends whole batches (already checked and offset-assigned) with vectored writes of
    /// their patched headers and untouched bodies. On a write error the file is cut back so
    /// no partial batch stays behind.
    pub fn append(&mut self, batches: &PatchedBatches<'_>) -> Result<(), LogError> {
        let start = self.size_bytes;
        let len = batches.len() as u64;
        if start + len > u64::from(u32::MAX) {
            return Err(LogError::SegmentFull {
                base_offset: self.base_offset,
            });
        }
        if let Err(e) = write_all_vectored_at(&self.file, &mut batches.io_slices(), start) {
            let _ = self.file.set_len(start);
            return Err(e.into());
        }
        for (relative, head) in batches.positions() {
            if let Ok(header) = BatchHeader::parse(head) {
                self.track_batch(&header, start + relative as u64);
            }
        }
        self.size_bytes = start + len;
        Ok(())
    }

    /// Calls `visit` with each batch header from `position` on, until it breaks or the data
    /// ends. Reads in chunks: one syscall covers many small batches.
    pub fn scan_headers(
        &self,
        position: u64,
        mut visit: impl FnMut(BatchLocation) -> ControlFlow<()>,
    ) -> Result<(), LogError> {
        let mut reader = HeaderReader::default();
        let mut at = position;
        while at + BATCH_HEADER_LEN as u64 <= self.size_bytes {
            let header = reader.header_at(&self.file, at, self.size_bytes)?.ok_or_else(|| self.corrupt_at(at))?;
            if visit(BatchLocation { position: at, header }).is_break() {
                break;
            }
            at += header.total_len() as u64;
        }
        Ok(())
    }

    fn corrupt_at(&self, position: u64) -> LogError {
        LogError::CorruptSegment {
            path: segment_file(&self.dir, self.base_offset, LOG_SUFFIX),
            position,
        }
    }

    /// The batch containing `offset` or, if `offset` falls in a gap, the first batch after it.
    pub fn find_batch(&self, offset: i64) -> Result<Option<BatchLocation>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let start = self.offset_index.lookup(offset);
        let mut found = None;
        self.scan_headers(u64::from(start.position), |location| {
            if location.header.last_offset() >= offset {
                found = Some(location);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found)
    }

    /// Whole batches from the one holding `start_offset`, with `last offset < max_offset`,
    /// within `max_bytes` unless `min_one_batch` lets the first batch exceed it (KIP-74),
    /// read into memory (see [`Segment::read_region`]).
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<SegmentRead, LogError> {
        let located = self.read_region(start_offset, max_bytes, max_offset, min_one_batch)?;
        Ok(SegmentRead { bytes: located.region.read_to_vec()?, next_offset: located.next_offset })
    }

    /// Whole batches as [`Segment::read`] describes them, as a file region: boundaries come from
    /// the offset index and a few header reads near the end, not from reading the data.
    pub fn read_region(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<SegmentRegion, LogError> {
        let region = |position: u64, end: u64, next_offset: i64, reached_end: bool| SegmentRegion {
            region: FileRegion { file: Arc::clone(&self.file), position, len: end - position },
            next_offset,
            reached_end,
        };
        let Some(first) = self.find_batch(start_offset)? else {
            return Ok(region(0, 0, start_offset, true));
        };
        if first.header.last_offset() >= max_offset {
            return Ok(region(0, 0, start_offset, false));
        }
        // The end no batch may cross: the batch holding `max_offset`, or the data's end.
        let (hard_end, hard_next, at_data_end) = match self.find_batch(max_offset)? {
            Some(cut) => (cut.position, cut.header.base_offset, false),
            None => (self.size_bytes, self.next_offset, true),
        };
        let first_len = first.header.total_len() as u64;
        let room = if min_one_batch { (max_bytes as u64).max(first_len) } else { max_bytes as u64 };
        let limit = first.position.saturating_add(room);
        if limit >= hard_end {
            return Ok(region(first.position, hard_end, hard_next, at_data_end));
        }
        // Walk the headers from the last indexed batch at or before the limit.
        let from = self.offset_index.lookup_position(limit);
        let (mut end, mut next) = if u64::from(from.position) > first.position {
            (u64::from(from.position), from.offset)
        } else {
            (first.position, start_offset)
        };
        self.scan_headers(end, |location| {
            let batch_end = location.position + location.header.total_len() as u64;
            if batch_end > limit || location.header.last_offset() >= max_offset {
                return ControlFlow::Break(());
            }
            end = batch_end;
            next = location.header.next_offset();
            ControlFlow::Continue(())
        })?;
        Ok(region(first.position, end, next, false))
    }

    /// ListOffsets by timestamp within this segment: the first record with a timestamp
    /// `>= timestamp` and an offset `>= min_offset`, as (offset, timestamp), like Kafka. The
    /// time index narrows the start; headers then find the first batch whose max timestamp
    /// qualifies; its records are read to pick the exact one. A compressed batch is not
    /// opened: its base offset (at least `min_offset`) and max timestamp answer instead.
    pub fn find_by_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        if self
            .max_timestamp_so_far
            .is_none_or(|m| m.timestamp < timestamp)
        {
            return Ok(None);
        }
        let indexed = self
            .time_index
            .lookup(timestamp)
            .map_or(self.base_offset, |e| e.offset);
        let position = self.offset_index.lookup(indexed.max(min_offset)).position;
        let mut answer = Ok(None);
        self.scan_headers(u64::from(position), |location| {
            let h = location.header;
            if h.last_offset() < min_offset || h.max_timestamp < timestamp {
                return ControlFlow::Continue(());
            }
            answer = self.first_record_at_or_after(location, timestamp, min_offset);
            match answer {
                Ok(None) => ControlFlow::Continue(()),
                _ => ControlFlow::Break(()),
            }
        })?;
        answer
    }

    fn first_record_at_or_after(
        &self,
        location: BatchLocation,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let header = location.header;
        let mut batch = vec![0u8; header.total_len()];
        self.file.read_exact_at(&mut batch, location.position)?;
        let Some(records) = crate::record::record_positions(&batch) else {
            return Ok(Some((
                header.base_offset.max(min_offset),
                header.max_timestamp,
            )));
        };
        Ok(records
            .iter()
            .find(|r| r.timestamp >= timestamp && r.offset >= min_offset)
            .map(|r| (r.offset, r.timestamp)))
    }

    /// Removes every batch holding an offset `>= offset` (a batch straddling `offset` goes
    /// whole). Returns the bytes removed; `next_offset()` is then the first removed base.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64, LogError> {
        let Some(cut) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size_bytes - cut.position;
        self.file.set_len(cut.position)?;
        // Durable at once: a cut that an OS crash undid would resurrect divergent batches
        // with valid CRCs, which recovery could not tell apart.
        self.file.sync_all()?;
        self.size_bytes = cut.position;
        self.next_offset = cut.header.base_offset;
        self.offset_index.truncate_to_position(cut.position as u32);
        self.time_index.truncate_to(cut.header.base_offset);
        self.txn_index.truncate_to(cut.header.base_offset);
        self.rederive_tail_state()?;
        Ok(removed)
    }

    /// After a truncation: recompute the max timestamp and index spacing from the last index
    /// entry on (at most about one index interval of headers).
    fn rederive_tail_state(&mut self) -> Result<(), LogError> {
        let from = self
            .offset_index
            .last_entry()
            .map_or(0, |e| u64::from(e.position));
        let mut max = self.time_index.last_entry();
        self.scan_headers(from, |location| {
            let h = location.header;
            if max.is_none_or(|m| h.max_timestamp > m.timestamp) {
                max = Some(TimestampOffset {
                    timestamp: h.max_timestamp,
                    offset: h.base_offset,
                });
            }
            ControlFlow::Continue(())
        })?;
        self.max_timestamp_so_far = max;
        self.bytes_since_last_index_entry = self.size_bytes - from;
        if self.size_bytes == 0 {
            self.first_batch_timestamp = None;
            self.offset_index.clear();
            self.time_index.clear();
        }
        Ok(())
    }

    /// Whether an append of `incoming_bytes` ending at `last_offset` must go to a new segment:
    /// size, age (`segment.ms` measured from the first batch's timestamp, as Kafka does), full
    /// indexes, or an offset too far from the base for a relative index entry.
    pub fn should_roll(
        &self,
        segment_bytes: u64,
        segment_ms: i64,
        incoming_bytes: usize,
        last_offset: i64,
        now_ms: i64,
    ) -> bool {
        let has_data = self.size_bytes > 0;
        let too_big = has_data && self.size_bytes + incoming_bytes as u64 > segment_bytes;
        let roll_base = match self.first_batch_timestamp {
            Some(ts) if ts >= 0 => ts,
            _ => self.created_ms,
        };
        let too_old = has_data && now_ms.saturating_sub(roll_base) > segment_ms;
        let indexes_full = self.offset_index.is_full() || self.time_index.is_full();
        let offset_too_far = last_offset - self.base_offset > i64::from(i32::MAX);
        too_big || too_old || indexes_full || offset_too_far
    }

    /// Seals the segment when a newer one takes over: final time-index entry, index files
    /// written, everything fsynced (so crash recovery only ever needs the last segment).
    pub fn seal(&mut self) -> Result<(), LogError> {
        if let Some(max) = self.max_timestamp_so_far {
            self.time_index.maybe_append(max);
        }
        self.write_indexes()?;
        self.file.sync_all()?;
        Ok(())
    }

    /// Writes the index files as they are in memory.
    pub fn write_indexes(&self) -> Result<(), LogError> {
        self.offset_index
            .write(&segment_file(&self.dir, self.base_offset, INDEX_SUFFIX))?;
        self.time_index.write(&segment_file(
            &self.dir,
            self.base_offset,
            TIME_INDEX_SUFFIX,
        ))?;
        self.write_txn_index()
    }

    pub fn write_txn_index(&self) -> Result<(), LogError> {
        self.txn_index.write(&segment_file(&self.dir, self.base_offset, TXN_INDEX_SUFFIX))
    }

    pub fn txn_index(&self) -> &TxnIndex {
        &self.txn_index
    }

    pub fn txn_index_mut(&mut self) -> &mut TxnIndex {
        &mut self.txn_index
    }

    /// The whole batch of `len` bytes at `position` (a control batch to read its marker).
    pub fn read_batch_at(&self, position: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut bytes = vec![0u8; len];
        self.file.read_exact_at(&mut bytes, position)?;
        Ok(bytes)
    }

    /// The data file, to fsync it without holding the log.
    pub fn shared_file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// fsyncs the log data.
    pub fn flush(&self) -> Result<(), LogError> {
        self.file.sync_data()?;
        Ok(())
    }

    /// Deletes the segment's files (Kafka renames to `.deleted` and waits
    /// `file.delete.delay.ms`; reads here copy bytes out, so deleting at once is safe).
    pub fn delete(self) -> Result<(), LogError> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
            remove_if_exists(&segment_file(&self.dir, self.base_offset, suffix))?;
        }
        Ok(())
    }

    /// Newest timestamp for retention: the max batch timestamp, or (for a segment without
    /// timestamps) the file's modification time, as Kafka's `LogSegment.largestTimestamp`.
    pub fn largest_timestamp_ms(&self) -> i64 {
        match self.max_timestamp_so_far {
            Some(max) if max.timestamp >= 0 => max.timestamp,
            _ => self
                .file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64),
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn max_timestamp(&self) -> Option<TimestampOffset> {
        self.max_timestamp_so_far
    }

    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.first_batch_timestamp
    }

    /// For tests: the largest distance a lookup scans from its index entry to a batch start,
    /// and the largest batch. Index density means the first is at most the interval plus
    /// the second.
    #[cfg(test)]
    pub fn lookup_scan_bounds(&self) -> (u64, u64) {
        let (mut worst_scan, mut largest) = (0, 0);
        let _ = self.scan_headers(0, |location| {
            let from = u64::from(
                self.offset_index
                    .lookup(location.header.base_offset)
                    .position,
            );
            worst_scan = worst_scan.max(location.position - from);
            largest = largest.max(location.header.total_len() as u64);
            ControlFlow::Continue(())
        });
        (worst_scan, largest)
    }
}

pub fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// `pwritev` until every slice is written.
fn write_all_vectored_at(file: &File, mut slices: &mut [std::io::IoSlice<'_>], mut position: u64) -> std::io::Result<()> {
    while !slices.is_empty() {
        let n = rustix::io::pwritev(file, slices, position)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        position += n as u64;
        std::io::IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}
