//! Sparse time index of one segment: (max timestamp so far, offset of the batch that set it).
//!
//! As in Kafka, an entry is considered at each offset-index entry and when the segment becomes
//! inactive, and is added only when the segment's max timestamp has grown. So along the entries
//! both timestamps and offsets strictly increase, and every batch before an entry's offset has
//! a max timestamp below the entry's. A search for the first batch with `maxTimestamp >= t`
//! can therefore start at the batch of the last entry with timestamp `<= t`. The last entry of
//! an inactive (or cleanly closed) segment is the segment's largest timestamp, which retention
//! and ListOffsets(MAX_TIMESTAMP) use. On disk: Kafka's `.timeindex` format, big-endian
//! (i64 timestamp, u32 relative offset), written on roll and close like the offset index.

use std::path::Path;

use super::LogError;
use super::checkpoint::write_file_atomically;

/// Bytes per entry on disk.
pub const TIME_ENTRY_LEN: usize = 12;

/// A timestamp and the base offset of the batch that first reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: i64,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<(i64, u32)>,
    max_entries: usize,
}

impl TimeIndex {
    pub fn new(base_offset: i64, max_index_bytes: u64) -> TimeIndex {
        let max_entries = (max_index_bytes as usize / TIME_ENTRY_LEN).max(1);
        TimeIndex {
            base_offset,
            entries: Vec::new(),
            max_entries,
        }
    }

    /// Reads a time index file, refusing one that is not a whole number of ordered entries.
    pub fn load(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
    ) -> Result<TimeIndex, LogError> {
        let bytes = std::fs::read(path)?;
        let corrupt = |reason| LogError::CorruptIndex {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() % TIME_ENTRY_LEN != 0 {
            return Err(corrupt("size is not a multiple of the entry size"));
        }
        let mut index = TimeIndex::new(base_offset, max_index_bytes);
        for chunk in bytes.chunks_exact(TIME_ENTRY_LEN) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[..8]);
            let timestamp = i64::from_be_bytes(ts);
            let relative = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if let Some(&(last_ts, last_relative)) = index.entries.last() {
                if timestamp <= last_ts || relative <= last_relative {
                    return Err(corrupt("entries are not increasing"));
                }
            }
            index.entries.push((timestamp, relative));
        }
        index.max_entries = index.max_entries.max(index.entries.len());
        Ok(index)
    }

    /// Writes all entries to `path` (temp file + rename, fsynced).
    pub fn write(&self, path: &Path) -> Result<(), LogError> {
        let mut bytes = Vec::with_capacity(self.entries.len() * TIME_ENTRY_LEN);
        for &(timestamp, relative) in &self.entries {
            bytes.extend_from_slice(&timestamp.to_be_bytes());
            bytes.extend_from_slice(&relative.to_be_bytes());
        }
        write_file_atomically(path, &bytes)
    }

    /// Adds an entry if `timestamp` is larger than the last one (and the offset moved on).
    pub fn maybe_append(&mut self, entry: TimestampOffset) {
        let relative = entry.offset - self.base_offset;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&relative),
            "offset outside segment"
        );
        let relative = relative as u32;
        match self.entries.last() {
            Some(&(last_ts, last_relative))
                if entry.timestamp <= last_ts || relative <= last_relative => {}
            _ => self.entries.push((entry.timestamp, relative)),
        }
    }

    /// The last entry with timestamp `<= timestamp`; `None` if every entry is later (search
    /// from the segment start then).
    pub fn lookup(&self, timestamp: i64) -> Option<TimestampOffset> {
        let i = self.entries.partition_point(|&(ts, _)| ts <= timestamp);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|&(ts, r)| self.entry(ts, r))
    }

    /// Drops entries for batches at or after `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let relative = offset - self.base_offset;
        let keep = self
            .entries
            .partition_point(|&(_, r)| i64::from(r) < relative);
        self.entries.truncate(keep);
    }

    pub fn last_entry(&self) -> Option<TimestampOffset> {
        self.entries.last().map(|&(ts, r)| self.entry(ts, r))
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    #[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn entry(&self, timestamp: i64, relative: u32) -> TimestampOffset {
        TimestampOffset {
            timestamp,
            offset: self.base_offset + i64::from(relative),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(timestamp: i64, offset: i64) -> TimestampOffset {
        TimestampOffset { timestamp, offset }
    }

    #[test]
    fn keeps_only_growing_timestamps_and_finds_the_floor() {
        let mut index = TimeIndex::new(10, 1200);
        index.maybe_append(at(100, 10));
        index.maybe_append(at(90, 12)); // older: ignored
        index.maybe_append(at(200, 15));
        index.maybe_append(at(200, 18)); // not larger: ignored
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(50), None);
        assert_eq!(index.lookup(150), Some(at(100, 10)));
        assert_eq!(index.lookup(200), Some(at(200, 15)));
        assert_eq!(index.last_entry(), Some(at(200, 15)));
        index.truncate_to(15);
        assert_eq!(index.last_entry(), Some(at(100, 10)));
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut index = TimeIndex::new(0, 1200);
        index.maybe_append(at(5, 0));
        index.maybe_append(at(9, 3));
        index.write(&path).unwrap();
        let loaded = TimeIndex::load(&path, 0, 1200).unwrap();
        assert_eq!(loaded.last_entry(), Some(at(9, 3)));
        std::fs::write(&path, [1u8; 13]).unwrap();
        assert!(TimeIndex::load(&path, 0, 1200).is_err());
    }
}
