//! Sparse offset index of one segment: (relative offset, file position) of some batch starts.
//!
//! An entry is added every `index.interval.bytes` of appended data, so a lookup is a binary
//! search here followed by a scan of at most about that many bytes of the log file. Entries
//! live in memory (8 bytes per interval, 2 MiB for a full 1 GiB segment at the defaults) and
//! are written to the `.index` file, Kafka's format (big-endian u32 pairs), when the segment
//! is rolled or the log is closed. The active segment's file may therefore be stale after a
//! crash, which is why recovery rebuilds the active segment's indexes from its data.
//!
//! Invariants: offsets strictly increase and positions strictly increase along the entries;
//! every entry names the first byte of a batch whose base offset is the entry's offset.

use std::path::Path;

use super::LogError;
use super::checkpoint::write_file_atomically;

/// Bytes per entry on disk.
pub const OFFSET_ENTRY_LEN: usize = 8;

/// Where a batch starts: its base offset and its byte position in the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub offset: i64,
    pub position: u32,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<(u32, u32)>,
    max_entries: usize,
}

impl OffsetIndex {
    pub fn new(base_offset: i64, max_index_bytes: u64) -> OffsetIndex {
        let max_entries = (max_index_bytes as usize / OFFSET_ENTRY_LEN).max(1);
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
            max_entries,
        }
    }

    /// Reads an index file, refusing one that is not a whole number of ordered entries.
    pub fn load(
        path: &Path,
        base_offset: i64,
        max_index_bytes: u64,
    ) -> Result<OffsetIndex, LogError> {
        let bytes = std::fs::read(path)?;
        let corrupt = |reason| LogError::CorruptIndex {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() % OFFSET_ENTRY_LEN != 0 {
            return Err(corrupt("size is not a multiple of the entry size"));
        }
        let mut index = OffsetIndex::new(base_offset, max_index_bytes);
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_LEN) {
            let relative = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if let Some(&(last_relative, last_position)) = index.entries.last() {
                if relative <= last_relative || position <= last_position {
                    return Err(corrupt("entries are not increasing"));
                }
            }
            index.entries.push((relative, position));
        }
        // A shrunken segment.index.bytes must not make a loaded index look over-full forever.
        index.max_entries = index.max_entries.max(index.entries.len());
        Ok(index)
    }

    /// Writes all entries to `path` (temp file + rename, fsynced).
    pub fn write(&self, path: &Path) -> Result<(), LogError> {
        let mut bytes = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_LEN);
        for &(relative, position) in &self.entries {
            bytes.extend_from_slice(&relative.to_be_bytes());
            bytes.extend_from_slice(&position.to_be_bytes());
        }
        write_file_atomically(path, &bytes)
    }

    /// Records that the batch with base `offset` starts at `position`.
    pub fn append(&mut self, offset: i64, position: u32) {
        let relative = offset - self.base_offset;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&relative),
            "offset {offset} outside segment"
        );
        let relative = relative as u32;
        if let Some(&(last_relative, last_position)) = self.entries.last() {
            assert!(
                relative > last_relative && position > last_position,
                "index must grow"
            );
        }
        self.entries.push((relative, position));
    }

    /// The last indexed batch start at or before `offset`, or the segment start.
    pub fn lookup(&self, offset: i64) -> OffsetPosition {
        let relative = offset - self.base_offset;
        let i = self
            .entries
            .partition_point(|&(r, _)| i64::from(r) <= relative);
        match i.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(&(r, position)) => OffsetPosition {
                offset: self.base_offset + i64::from(r),
                position,
            },
            None => OffsetPosition {
                offset: self.base_offset,
                position: 0,
            },
        }
    }

    /// The last indexed batch starting at or before file `position`, or the segment start.
    pub fn lookup_position(&self, position: u64) -> OffsetPosition {
        let i = self.entries.partition_point(|&(_, p)| u64::from(p) <= position);
        match i.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(&(r, position)) => OffsetPosition { offset: self.base_offset + i64::from(r), position },
            None => OffsetPosition { offset: self.base_offset, position: 0 },
        }
    }

    /// Drops entries whose position is at or beyond `position` (used when the file shrinks).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(keep);
    }

    pub fn last_entry(&self) -> Option<OffsetPosition> {
        self.entries.last().map(|&(r, position)| OffsetPosition {
            offset: self.base_offset + i64::from(r),
            position,
        })
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_floor_entry() {
        let mut index = OffsetIndex::new(100, 1024);
        index.append(100, 0);
        index.append(110, 4000);
        index.append(125, 9000);
        assert_eq!(
            index.lookup(99),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        assert_eq!(index.lookup(109).position, 0);
        assert_eq!(index.lookup(110).position, 4000);
        assert_eq!(index.lookup(1_000).position, 9000);
        index.truncate_to_position(9000);
        assert_eq!(
            index.last_entry(),
            Some(OffsetPosition {
                offset: 110,
                position: 4000
            })
        );
    }

    #[test]
    fn round_trips_through_a_file_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::new(7, 16);
        index.append(8, 10);
        index.append(9, 20);
        assert!(index.is_full());
        index.write(&path).unwrap();
        let loaded = OffsetIndex::load(&path, 7, 16).unwrap();
        assert_eq!(loaded.lookup(9).position, 20);
        std::fs::write(&path, [0u8; 9]).unwrap();
        assert!(OffsetIndex::load(&path, 7, 16).is_err());
        std::fs::write(&path, [0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 9]).unwrap();
        assert!(OffsetIndex::load(&path, 7, 16).is_err());
    }
}
