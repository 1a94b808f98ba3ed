//! Replacing segments with their cleaned version so that a crash at any point leaves either
//! the old segments or the new one (Kafka's `replaceSegments` with `.cleaned` and `.swap`).
//!
//! The protocol, for a group of segments `b0 < b1 < ... < bn` cleaned into one segment `b0`:
//!
//! 1. write `b0.log.cleaned` and fsync it, and the group's aborted transactions as
//!    `b0.txnindex.cleaned` (a crash leaves stray `.cleaned` files: deleted at open, the old
//!    segments are untouched);
//! 2. rename it to `b0.log.swap` and fsync the directory: the commit point. From here on the
//!    cleaned data is complete and durable;
//! 3. delete the old segments' index files and the `.log` files of `b1..bn`;
//! 4. rename `b0.txnindex.cleaned` (if any) to `b0.txnindex`, then `b0.log.swap` over
//!    `b0.log`, fsync the directory;
//! 5. (the caller) rebuild and write the new segment's indexes.
//!
//! At open, [`complete_interrupted_swaps`] finishes any swap found after step 2: it reads the
//! swap file's last offset, deletes every segment file whose base lies in
//! `[b0, last offset]` (exactly the replaced group: the cleaned segment always keeps the
//! group's last batch, so its last offset is the group's), and does step 4. Index files of
//! the new segment are missing after a crash before step 5, so the segment is opened by
//! rebuilding them from the data, never from stale indexes of the old segment `b0`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::record::{BATCH_HEADER_LEN, BatchHeader};

use super::super::LogError;
use super::super::checkpoint::sync_dir;
use super::super::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, remove_if_exists, segment_file,
};
use super::super::txn_index::{TXN_INDEX_SUFFIX, TxnIndex};

pub const CLEANED_SUFFIX: &str = ".log.cleaned";
/// The cleaned group's aborted-transaction index, committed with the swap.
pub const CLEANED_TXN_INDEX_SUFFIX: &str = ".txnindex.cleaned";

/// Writes the aborted transactions of a cleaned group (step 1); none writes nothing.
pub fn write_cleaned_txn_index(dir: &Path, base_offset: i64, index: &TxnIndex) -> Result<(), LogError> {
    let path = segment_file(dir, base_offset, CLEANED_TXN_INDEX_SUFFIX);
    remove_if_exists(&path)?;
    if index.is_empty() {
        return Ok(());
    }
    super::super::checkpoint::write_file_atomically(&path, &index.to_bytes())
}
pub const SWAP_SUFFIX: &str = ".log.swap";

/// A `.cleaned` file being written (step 1).
#[derive(Debug)]
pub struct CleanedWriter {
    path: PathBuf,
    out: BufWriter<File>,
    size_bytes: u64,
}

impl CleanedWriter {
    /// Starts `dir/<base>.log.cleaned`, replacing a leftover of an earlier attempt.
    pub fn create(dir: &Path, base_offset: i64) -> Result<CleanedWriter, LogError> {
        let path = segment_file(dir, base_offset, CLEANED_SUFFIX);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(CleanedWriter {
            path,
            out: BufWriter::new(file),
            size_bytes: 0,
        })
    }

    pub fn append(&mut self, batch: &[u8]) -> Result<(), LogError> {
        self.out.write_all(batch)?;
        self.size_bytes += batch.len() as u64;
        Ok(())
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Flushes and fsyncs the data: the end of step 1.
    pub fn finish(self) -> Result<(), LogError> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }

    /// Gives up: removes the partial file.
    pub fn abandon(self) -> Result<(), LogError> {
        let path = self.path.clone();
        drop(self);
        remove_if_exists(&path)
    }
}

/// Steps 2 to 4 for the group `bases` (ascending; the cleaned file is named by `bases[0]`).
pub fn swap_in(dir: &Path, bases: &[i64]) -> Result<(), LogError> {
    let Some(&base) = bases.first() else {
        return Ok(());
    };
    crash_point::check(1)?;
    let cleaned = segment_file(dir, base, CLEANED_SUFFIX);
    let swap = segment_file(dir, base, SWAP_SUFFIX);
    std::fs::rename(&cleaned, &swap)?;
    sync_dir(&swap)?;
    crash_point::check(2)?;
    // Newest first, so a crash part-way leaves the group's first `.log` (and the swap).
    let (older, newer) = bases.split_at(bases.len() / 2);
    remove_replaced(dir, base, newer.iter().copied())?;
    crash_point::check(3)?;
    remove_replaced(dir, base, older.iter().copied())?;
    finish_swap(dir, base)?;
    crash_point::check(4)
}

/// Simulated crashes for tests: `arm(group, step)` makes the `group`-th swap from now on
/// (0-based) fail after `step` of the protocol (1: cleaned file written, 2: committed,
/// 3: the newer half of the old files deleted, 4: renamed, indexes not yet rebuilt). The
/// caller then drops the log without closing it, as a crash would. A no-op outside tests.
pub mod crash_point {
    use super::LogError;

    #[cfg(test)]
    thread_local! {
        static ARMED: std::cell::Cell<Option<(usize, u8)>> = const { std::cell::Cell::new(None) };
    }

    #[cfg(test)]
    pub fn arm(group: usize, step: u8) {
        ARMED.with(|a| a.set(Some((group, step))));
    }

    #[cfg(test)]
    pub fn disarm() {
        ARMED.with(|a| a.set(None));
    }

    #[cfg(test)]
    pub(super) fn check(step: u8) -> Result<(), LogError> {
        let fire = ARMED.with(|a| match a.get() {
            Some((0, armed_step)) if armed_step == step => {
                a.set(None);
                true
            }
            Some((group, armed_step)) if step == 4 => {
                a.set(Some((group.saturating_sub(1), armed_step)));
                false
            }
            _ => false,
        });
        if fire {
            return Err(std::io::Error::other("simulated crash").into());
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[inline]
    pub(super) fn check(_step: u8) -> Result<(), LogError> {
        Ok(())
    }
}

/// Step 3: index files of every replaced segment, `.log` files of all but `base`.
fn remove_replaced(
    dir: &Path,
    base: i64,
    replaced: impl Iterator<Item = i64>,
) -> Result<(), LogError> {
    for b in replaced {
        remove_if_exists(&segment_file(dir, b, INDEX_SUFFIX))?;
        remove_if_exists(&segment_file(dir, b, TIME_INDEX_SUFFIX))?;
        remove_if_exists(&segment_file(dir, b, TXN_INDEX_SUFFIX))?;
        if b != base {
            remove_if_exists(&segment_file(dir, b, LOG_SUFFIX))?;
        }
    }
    Ok(())
}

/// Step 4.
fn finish_swap(dir: &Path, base: i64) -> Result<(), LogError> {
    let txn_index = segment_file(dir, base, CLEANED_TXN_INDEX_SUFFIX);
    if txn_index.exists() {
        std::fs::rename(&txn_index, segment_file(dir, base, TXN_INDEX_SUFFIX))?;
    }
    let swap = segment_file(dir, base, SWAP_SUFFIX);
    let log = segment_file(dir, base, LOG_SUFFIX);
    std::fs::rename(&swap, &log)?;
    sync_dir(&log)
}

/// Finishes every swap a crash interrupted after its commit point (see the module docs).
/// Runs at open, before the directory is scanned for segments.
pub fn complete_interrupted_swaps(dir: &Path) -> Result<(), LogError> {
    let mut swaps = Vec::new();
    let mut log_bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(base) = name
            .strip_suffix(SWAP_SUFFIX)
            .and_then(|s| s.parse::<i64>().ok())
        {
            swaps.push(base);
        } else if let Some(base) = name.strip_suffix(LOG_SUFFIX).and_then(|s| s.parse().ok()) {
            log_bases.push(base);
        }
    }
    swaps.sort_unstable();
    for base in swaps {
        let path = segment_file(dir, base, SWAP_SUFFIX);
        let last_offset = last_offset_of(&path)?;
        tracing::warn!(path = %path.display(), last_offset, "completing an interrupted segment swap");
        let replaced = log_bases
            .iter()
            .copied()
            .filter(|b| (base..=last_offset).contains(b));
        remove_replaced(dir, base, replaced.chain(std::iter::once(base)))?;
        finish_swap(dir, base)?;
    }
    Ok(())
}

/// The last offset of the batches in a swap file, walking headers only. The file was fsynced
/// before it was renamed, so anything but whole batches means outside damage: an error.
fn last_offset_of(path: &Path) -> Result<i64, LogError> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let corrupt = |position| LogError::CorruptSegment {
        path: path.to_path_buf(),
        position,
    };
    let mut position = 0u64;
    let mut last = None;
    let mut head = [0u8; BATCH_HEADER_LEN];
    while position < len {
        if len - position < BATCH_HEADER_LEN as u64 {
            return Err(corrupt(position));
        }
        file.read_exact_at(&mut head, position)?;
        let header = BatchHeader::parse(&head).map_err(|_| corrupt(position))?;
        position += header.total_len() as u64;
        if position > len {
            return Err(corrupt(position));
        }
        last = Some(header.last_offset());
    }
    last.ok_or(corrupt(0))
}
