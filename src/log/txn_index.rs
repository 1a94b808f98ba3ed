//! The aborted-transaction index of one segment (`.txnindex`, Kafka's `TransactionIndex`):
//! every transaction whose ABORT marker lies in the segment, so a read_committed fetch can
//! tell its consumer which producer's batches to drop without the broker reading them.
//!
//! An entry (Kafka's `AbortedTxn`, 34 bytes big-endian): version i16 (0), producer id i64,
//! first offset i64 (the transaction's first batch), last offset i64 (the marker), last
//! stable offset i64 (the partition's LSO once this abort completed). Entries are in marker
//! order, so last offsets increase.
//!
//! Like the offset indexes, entries live in memory and the file is written when the segment
//! is sealed or the log closes; after a crash the active segment's entries are rebuilt from
//! the producer-state replay (see `recovery.rs`), which re-derives each aborted transaction
//! from the batch headers and markers.

use std::path::Path;

use super::LogError;
use super::checkpoint::write_file_atomically;

pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
const ENTRY_LEN: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnIndex {
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    /// Reads `path`; a missing file is an empty index (Kafka creates it lazily). A file that
    /// is not whole entries of version 0 with increasing last offsets is `CorruptIndex`.
    pub fn load(path: &Path) -> Result<TxnIndex, LogError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(&bytes).map_err(|reason| LogError::CorruptIndex { path: path.to_path_buf(), reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TxnIndex::default()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<TxnIndex, &'static str> {
        if bytes.len() % ENTRY_LEN != 0 {
            return Err("size is not a multiple of the entry size");
        }
        let mut index = TxnIndex::default();
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let long = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&chunk[at..at + 8]);
                i64::from_be_bytes(b)
            };
            if i16::from_be_bytes([chunk[0], chunk[1]]) != ENTRY_VERSION {
                return Err("unknown entry version");
            }
            let entry = AbortedTxn { producer_id: long(2), first_offset: long(10), last_offset: long(18), last_stable_offset: long(26) };
            if entry.first_offset > entry.last_offset || index.entries.last().is_some_and(|l| l.last_offset >= entry.last_offset) {
                return Err("entries are not in marker order");
            }
            index.entries.push(entry);
        }
        Ok(index)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            out.extend_from_slice(&ENTRY_VERSION.to_be_bytes());
            for v in [e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out
    }

    /// Writes the file (temp file + rename, fsynced); an empty index removes it.
    pub fn write(&self, path: &Path) -> Result<(), LogError> {
        if self.entries.is_empty() {
            return super::segment::remove_if_exists(path);
        }
        write_file_atomically(path, &self.to_bytes())
    }

    /// Adds an abort whose marker follows every entry so far.
    pub fn append(&mut self, entry: AbortedTxn) {
        assert!(
            self.entries.last().is_none_or(|l| l.last_offset < entry.last_offset),
            "aborted transactions are indexed in marker order"
        );
        self.entries.push(entry);
    }

    /// Forgets the aborts whose marker is at or above `offset` (a truncation or a replay
    /// from `offset`).
    pub fn truncate_to(&mut self, offset: i64) {
        self.entries.retain(|e| e.last_offset < offset);
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Kafka's `collectAbortedTxns`: the aborts that overlap `[fetch_offset, upper_bound)`,
    /// and whether the search is complete (an entry's LSO reaches the bound, so no later
    /// segment can hold a transaction that started below it).
    pub fn collect(&self, fetch_offset: i64, upper_bound: i64, out: &mut Vec<AbortedTxn>) -> bool {
        for e in &self.entries {
            if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
                out.push(*e);
            }
            if e.last_stable_offset >= upper_bound {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn { producer_id: pid, first_offset: first, last_offset: last, last_stable_offset: lso }
    }

    #[test]
    fn round_trips_in_kafkas_layout_and_collects_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndex::default();
        // 8 was still open when 7 aborted, so 7 left the LSO at 8's first offset.
        index.append(entry(7, 0, 10, 5));
        index.append(entry(8, 5, 20, 21));
        index.append(entry(9, 21, 30, 31));
        index.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 3 * 34);
        assert_eq!(&bytes[..10], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        let loaded = TxnIndex::load(&path).unwrap();
        assert_eq!(loaded, index);
        let mut out = Vec::new();
        assert!(!loaded.collect(12, 40, &mut out), "no entry's LSO reaches 40");
        assert_eq!(out, vec![entry(8, 5, 20, 21), entry(9, 21, 30, 31)]);
        out.clear();
        assert!(loaded.collect(12, 21, &mut out), "entry 8's LSO 21 reaches 21");
        assert_eq!(out, vec![entry(8, 5, 20, 21)]);
        out.clear();
        assert!(loaded.collect(0, 11, &mut out));
        assert_eq!(out, vec![entry(7, 0, 10, 5), entry(8, 5, 20, 21)], "the search stops at the first complete entry");
        index.truncate_to(20);
        assert_eq!(index.entries().len(), 1);
        TxnIndex::default().write(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(TxnIndex::load(&path).unwrap(), TxnIndex::default());
    }

    proptest! {
        /// Arbitrary bytes give an index or an error, never a panic; what parses re-encodes
        /// to the same bytes.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(index) = TxnIndex::parse(&bytes) {
                prop_assert_eq!(index.to_bytes(), bytes);
            }
        }
    }
}
