//! The cleaner's key → latest offset map over the dirty section (Kafka's `OffsetMap`).
//!
//! Kafka stores a 16-byte MD5 of each key in a fixed buffer (`log.cleaner.dedupe.buffer.size`)
//! and accepts the tiny chance of a hash collision dropping a live record. We keep the whole
//! key instead, so a collision cannot lose data, and bound memory by counting each entry as
//! its key length plus [`ENTRY_OVERHEAD_BYTES`] against the same budget. When the budget is
//! spent the caller stops adding segments, as Kafka does, and cleans only up to there.

use std::collections::HashMap;

/// Rough per-entry cost beyond the key bytes: the boxed slice, the offset and the hash
/// table's slot and control bytes.
pub const ENTRY_OVERHEAD_BYTES: usize = 48;

/// See the module docs.
#[derive(Debug)]
pub struct OffsetMap {
    latest: HashMap<Box<[u8]>, i64>,
    bytes_used: usize,
    bytes_max: usize,
}

impl OffsetMap {
    pub fn new(bytes_max: usize) -> OffsetMap {
        OffsetMap {
            latest: HashMap::new(),
            bytes_used: 0,
            bytes_max,
        }
    }

    /// Records that `key` was written at `offset`; a lower offset never replaces a higher one.
    pub fn put(&mut self, key: &[u8], offset: i64) {
        match self.latest.get_mut(key) {
            Some(latest) => *latest = (*latest).max(offset),
            None => {
                self.bytes_used += key.len() + ENTRY_OVERHEAD_BYTES;
                self.latest.insert(key.into(), offset);
            }
        }
    }

    /// The latest offset seen for `key`, if it occurs in the mapped range.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    /// The budget is spent: map no further segments.
    pub fn is_full(&self) -> bool {
        self.bytes_used >= self.bytes_max
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key_and_counts_bytes() {
        let mut map = OffsetMap::new(3 * (ENTRY_OVERHEAD_BYTES + 1));
        map.put(b"a", 5);
        map.put(b"a", 3);
        map.put(b"b", 4);
        map.put(b"a", 9);
        assert_eq!(map.latest(b"a"), Some(9));
        assert_eq!(map.latest(b"b"), Some(4));
        assert_eq!(map.latest(b"c"), None);
        assert_eq!(map.len(), 2);
        assert!(!map.is_full());
        map.put(b"c", 10);
        assert!(map.is_full());
        // Empty keys are keys too (Kafka only refuses a null key).
        map.put(b"", 11);
        assert_eq!(map.latest(b""), Some(11));
    }
}
