//! Walks the batches of a byte slice, stopping cleanly at a partial or corrupt tail.
//!
//! Used by log recovery (with CRC checks: where the iterator stops is where the log gets
//! truncated) and by reads (without: stored bytes were checked on the way in). The iterator
//! never yields a batch it has not fully bounds-checked, and it never panics.

use std::ops::Range;

use super::RecordError;
use super::batch::{
    BATCH_LENGTH_AT, BatchHeader, LOG_OVERHEAD_LEN, MAGIC_AT, MAGIC_V2, crc_matches, read_i32,
};

/// Why iteration ended; `valid_end` is where the last whole (and, if checked, intact) batch
/// ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IterStop {
    /// The slice ended exactly after a batch.
    End,
    /// The last batch is cut short (a torn write, or a read that stopped mid-batch).
    PartialTail { position: usize },
    /// The bytes at `position` are not a valid batch.
    Corrupt { position: usize, error: RecordError },
}

/// Iterator over `(header, byte range)` of each whole batch; see the module docs.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    verify_crc: bool,
    stop: Option<IterStop>,
}

impl<'a> BatchIter<'a> {
    /// Header-level walk: lengths and magic are checked, CRCs are not.
    pub fn new(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter {
            buf,
            position: 0,
            verify_crc: false,
            stop: None,
        }
    }

    /// Also verifies each batch's CRC32C; a mismatch stops the walk as `Corrupt`.
    pub fn with_crc_check(buf: &'a [u8]) -> BatchIter<'a> {
        BatchIter {
            buf,
            position: 0,
            verify_crc: true,
            stop: None,
        }
    }

    /// Byte position just after the last batch yielded so far.
    pub fn valid_end(&self) -> usize {
        self.position
    }

    /// `None` until the iterator has returned `None`.
    pub fn stop(&self) -> Option<&IterStop> {
        self.stop.as_ref()
    }

    fn next_batch(&self) -> Result<Option<(BatchHeader, Range<usize>)>, IterStop> {
        let at = self.position;
        let rest = &self.buf[at.min(self.buf.len())..];
        if rest.is_empty() {
            return Ok(None);
        }
        let partial = IterStop::PartialTail { position: at };
        if rest.len() <= MAGIC_AT {
            return Err(partial);
        }
        let corrupt = |error: RecordError| IterStop::Corrupt {
            position: at,
            error: relocate(error, at),
        };
        let magic = rest[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(corrupt(RecordError::UnsupportedMagic {
                position: 0,
                magic,
            }));
        }
        let batch_length = read_i32(rest, BATCH_LENGTH_AT);
        let total = LOG_OVERHEAD_LEN as i64 + i64::from(batch_length);
        if total < super::BATCH_HEADER_LEN as i64 {
            let reason = "batch length smaller than the header";
            return Err(corrupt(RecordError::CorruptMessage {
                position: 0,
                reason,
            }));
        }
        if total > rest.len() as i64 {
            return Err(partial);
        }
        let total = total as usize;
        let header = BatchHeader::parse(rest).map_err(corrupt)?;
        if self.verify_crc && !crc_matches(&rest[..total]) {
            let reason = "CRC32C mismatch";
            return Err(corrupt(RecordError::CorruptMessage {
                position: 0,
                reason,
            }));
        }
        Ok(Some((header, at..at + total)))
    }
}

/// Errors from `BatchHeader::parse` say position 0; make them point into the whole slice.
fn relocate(error: RecordError, at: usize) -> RecordError {
    match error {
        RecordError::CorruptMessage { position, reason } => RecordError::CorruptMessage {
            position: position + at,
            reason,
        },
        RecordError::InvalidRecord { position, reason } => RecordError::InvalidRecord {
            position: position + at,
            reason,
        },
        RecordError::UnsupportedMagic { position, magic } => RecordError::UnsupportedMagic {
            position: position + at,
            magic,
        },
        other @ RecordError::MessageTooLarge { .. } => other,
    }
}

impl Iterator for BatchIter<'_> {
    type Item = (BatchHeader, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.stop.is_some() {
            return None;
        }
        match self.next_batch() {
            Ok(Some((header, range))) => {
                self.position = range.end;
                Some((header, range))
            }
            Ok(None) => {
                self.stop = Some(IterStop::End);
                None
            }
            Err(stop) => {
                self.stop = Some(stop);
                None
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::builder::BatchBuilder;

    fn three_batches() -> Vec<u8> {
        let mut buf = BatchBuilder::new(0).records(2, 5).build();
        buf.extend(BatchBuilder::new(2).records(3, 7).build());
        buf.extend(BatchBuilder::new(5).records(1, 100).build());
        buf
    }

    #[test]
    fn walks_whole_batches_and_ends_cleanly() {
        let buf = three_batches();
        let mut it = BatchIter::with_crc_check(&buf);
        let offsets: Vec<i64> = it.by_ref().map(|(h, _)| h.base_offset).collect();
        assert_eq!(offsets, vec![0, 2, 5]);
        assert_eq!(it.stop(), Some(&IterStop::End));
        assert_eq!(it.valid_end(), buf.len());
    }

    #[test]
    fn stops_at_a_partial_tail() {
        let buf = three_batches();
        for cut in 0..buf.len() {
            let mut it = BatchIter::new(&buf[..cut]);
            let n = it.by_ref().count();
            let end = it.valid_end();
            assert!(end <= cut);
            if end < cut {
                assert_eq!(
                    it.stop(),
                    Some(&IterStop::PartialTail { position: end }),
                    "cut {cut}"
                );
            }
            assert!(n <= 3);
        }
    }

    #[test]
    fn crc_check_stops_at_a_flipped_byte() {
        let mut buf = three_batches();
        let second = BatchIter::new(&buf).nth(1).unwrap().1;
        buf[second.start + 70] ^= 0x01;
        let mut it = BatchIter::with_crc_check(&buf);
        assert_eq!(it.by_ref().count(), 1);
        assert!(
            matches!(it.stop(), Some(IterStop::Corrupt { position, .. }) if *position == second.start)
        );
        // Without the CRC check the walk goes on: the header still parses.
        assert_eq!(BatchIter::new(&buf).count(), 3);
    }
}
