//! Idempotent- and transactional-producer state: per producer id, its epoch, its last five
//! batches, the coordinator epoch of its last marker and the first offset of its open
//! transaction, with Kafka 4's `ProducerStateManager` rules for a client append (batches with
//! producerId >= 0):
//!
//! 1. a batch equal (same epoch, same first and last sequence) to one of the five cached ones
//!    is a duplicate retry: answer with the original offsets, write nothing;
//! 2. an epoch below the producer's current one: `InvalidProducerEpoch`;
//! 3. a new epoch must start at sequence 0, and the same epoch must continue at last + 1
//!    (wrapping from `i32::MAX` to 0), else `OutOfOrderSequence`;
//! 4. an unknown producer id may start at any sequence: Kafka 4 no longer answers
//!    `UNKNOWN_PRODUCER_ID`, it accepts, since the state may have been removed by retention,
//!    DeleteRecords or expiry;
//! 5. a transactional batch opens a transaction if none is open (its first offset is the
//!    transaction's); a non-transactional batch while one is open is `InvalidTxnState`.
//!
//! Coordinator appends (offsets written by the group coordinator inside a transaction) skip
//! rules 1, 3 and 4, as Kafka skips sequence checks for non-client origins. A marker (a
//! control batch, [`ProducerStateManager::stage_marker`]) needs an epoch at least the current
//! one and a coordinator epoch at least the last marker's (else
//! `TransactionCoordinatorFenced`); it closes the open transaction and, if the epoch is new,
//! forgets the cached batches. The open transactions, by first offset, give the log's first
//! unstable offset, from which the partition's last stable offset follows.
//!
//! The state is rebuilt from batch headers and markers ([`ProducerStateManager::replay`],
//! [`ProducerStateManager::replay_marker`]), so the log can always regenerate it. To bound
//! that work a snapshot `<offset, 20 digits>.snapshot` holds the state as of `offset` (all
//! batches below it); one is taken at every roll and at close, and loading starts from the
//! newest snapshot not beyond the log end. Our own format: `b"BFPS"`, version u16 (2; version
//! 1, without the transaction fields, is still read), CRC32C u32 of the rest, producer count
//! u32, then per producer id i64, epoch i16, last timestamp i64, [v2: coordinator epoch i32,
//! open transaction's first offset i64 or -1,] batch count u8 and per batch first/last
//! sequence (i32, i32), first/last offset (i64, i64), timestamp i64; all big-endian.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::record::BatchHeader;
use crate::record::control::Marker;

use super::LogError;
use super::checkpoint::write_file_atomically;
use crate::types::{Offset, ProducerId};

/// How many recent batches per producer are kept for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`, matching `max.in.flight.requests.per.connection` 5).
pub const BATCHES_TO_RETAIN: usize = 5;
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"BFPS";
const SNAPSHOT_VERSION: u16 = 2;
/// Snapshots written before transactions: no coordinator epoch or open transaction.
const SNAPSHOT_VERSION_V1: u16 = 1;
/// Kafka's `NO_PRODUCER_EPOCH`: the state knows the id but no epoch.
const NO_PRODUCER_EPOCH: i16 = -1;

/// One appended batch as remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: Offset,
    pub last_offset: Offset,
    /// The batch's max timestamp (the append time under `LogAppendTime`).
    pub timestamp: i64,
}

/// What the log knows about one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    pub last_timestamp: i64,
    /// Coordinator epoch of the last marker (-1 before any).
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction.
    pub current_txn_first_offset: Option<Offset>,
}

/// Who is appending: a client's batches get every check, the broker's own (coordinator)
/// batches only the epoch check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
}

/// A transaction a marker closed (Kafka's `CompletedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    /// The marker's offset.
    pub last_offset: Offset,
    pub aborted: bool,
}

/// A checked marker, applied with [`ProducerStateManager::commit_marker`] once written.
#[derive(Debug, Clone)]
pub struct StagedMarker {
    producer_id: ProducerId,
    entry: ProducerEntry,
    pub completed: Option<CompletedTxn>,
}

impl ProducerEntry {
    fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    fn find_duplicate(&self, header: &BatchHeader) -> Option<BatchMetadata> {
        if header.producer_epoch != self.epoch {
            return None;
        }
        let (first, last) = (header.base_sequence, header.last_sequence());
        self.batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
            .copied()
    }
}

/// Pending changes of one append, applied with [`ProducerStateManager::commit`] only after
/// the bytes are written, so a failed write leaves the state untouched.
#[derive(Debug, Default)]
pub struct StagedProducers {
    entries: HashMap<ProducerId, ProducerEntry>,
}

/// See the module docs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<ProducerId, ProducerEntry>,
    /// Open transactions: first offset → producer id (derived from `producers`).
    ongoing: BTreeMap<Offset, ProducerId>,
}

impl ProducerStateManager {
    pub fn new() -> ProducerStateManager {
        ProducerStateManager::default()
    }

    pub fn entry(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a client batch that would take offsets `first_offset..` against the state plus
    /// what `staged` already holds, and stages its effect. `Ok(Some(original))` is a duplicate.
    pub fn check_and_stage(
        &self,
        staged: &mut StagedProducers,
        header: &BatchHeader,
        first_offset: i64,
        origin: AppendOrigin,
    ) -> Result<Option<BatchMetadata>, LogError> {
        if !header.has_producer_id() || header.is_control() {
            return Ok(None);
        }
        let pid = ProducerId(header.producer_id);
        let current = staged
            .entries
            .get(&pid)
            .or_else(|| self.producers.get(&pid));
        if let Some(entry) = current {
            match origin {
                AppendOrigin::Client => {
                    if let Some(original) = entry.find_duplicate(header) {
                        return Ok(Some(original));
                    }
                    check_epoch_and_sequence(entry, header)?;
                }
                AppendOrigin::Coordinator => check_epoch(pid, entry, header.producer_epoch)?,
            }
            if entry.current_txn_first_offset.is_some() && !header.is_transactional() {
                return Err(LogError::InvalidTxnState { producer_id: pid });
            }
        }
        let updated = apply(current.cloned(), header, first_offset);
        staged.entries.insert(pid, updated);
        Ok(None)
    }

    pub fn commit(&mut self, staged: StagedProducers) {
        for (pid, entry) in staged.entries {
            self.insert(pid, entry);
        }
    }

    /// Replaces `pid`'s entry, keeping the index of open transactions in step.
    fn insert(&mut self, pid: ProducerId, entry: ProducerEntry) {
        let before = self.producers.get(&pid).and_then(|e| e.current_txn_first_offset);
        if before != entry.current_txn_first_offset {
            if let Some(first) = before {
                self.ongoing.remove(&first);
            }
            if let Some(first) = entry.current_txn_first_offset {
                self.ongoing.insert(first, pid);
            }
        }
        self.producers.insert(pid, entry);
    }

    /// Applies a stored data batch without checks (loading, follower appends), as Kafka does
    /// for non-client origins.
    pub fn replay(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let pid = ProducerId(header.producer_id);
        let current = self.producers.get(&pid).cloned();
        let updated = apply(current, header, header.base_offset);
        self.insert(pid, updated);
    }

    /// Checks a marker of `producer_id` at `offset` (see the module docs) without applying it.
    pub fn stage_marker(
        &self,
        producer_id: ProducerId,
        producer_epoch: i16,
        marker: Marker,
        offset: i64,
        timestamp: i64,
    ) -> Result<StagedMarker, LogError> {
        let current = self.producers.get(&producer_id);
        if let Some(entry) = current {
            check_epoch(producer_id, entry, producer_epoch)?;
            if entry.coordinator_epoch > marker.coordinator_epoch {
                return Err(LogError::CoordinatorFenced {
                    producer_id,
                    coordinator_epoch: marker.coordinator_epoch,
                    current_coordinator_epoch: entry.coordinator_epoch,
                });
            }
        }
        Ok(close_transaction(producer_id, current.cloned(), producer_epoch, marker, offset, timestamp))
    }

    pub fn commit_marker(&mut self, staged: StagedMarker) {
        self.insert(staged.producer_id, staged.entry);
    }

    /// Applies a stored marker without checks; returns the transaction it closed.
    pub fn replay_marker(&mut self, header: &BatchHeader, marker: Marker) -> Option<CompletedTxn> {
        if !header.has_producer_id() {
            return None;
        }
        let pid = ProducerId(header.producer_id);
        let current = self.producers.get(&pid).cloned();
        let staged = close_transaction(pid, current, header.producer_epoch, marker, header.base_offset, header.max_timestamp);
        let completed = staged.completed;
        self.commit_marker(staged);
        completed
    }

    /// First offset of the oldest open transaction: nothing at or above it is stable.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.ongoing.keys().next().copied()
    }

    /// Open transactions as (producer id, first offset), oldest first.
    pub fn open_transactions(&self) -> impl Iterator<Item = (ProducerId, Offset)> + '_ {
        self.ongoing.iter().map(|(&first, &pid)| (pid, first))
    }

    /// Every producer with its entry, by id (DescribeProducers).
    pub fn entries(&self) -> impl Iterator<Item = (ProducerId, &ProducerEntry)> + '_ {
        self.producers.iter().map(|(&pid, e)| (pid, e))
    }

    /// The last stable offset right after `completed` was applied: the first offset of the
    /// oldest transaction still open, or the offset after its marker (Kafka's
    /// `lastStableOffset(completedTxn)`, stored in the aborted-transaction index).
    pub fn last_stable_offset_after(&self, completed: &CompletedTxn) -> Offset {
        self.first_unstable_offset().unwrap_or(Offset(completed.last_offset.0 + 1))
    }

    /// Forgets producers idle for `expiration_ms` (`producer.id.expiration.ms`), except those
    /// with an open transaction, as Kafka keeps them.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
    }

    pub fn clear(&mut self) {
        self.producers.clear();
        self.ongoing.clear();
    }

    /// Writes `dir/<offset>.snapshot` (atomically) holding the current state.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), LogError> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, entry) in &self.producers {
            body.extend_from_slice(&pid.0.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&entry.current_txn_first_offset.map_or(-1, |o| o.0).to_be_bytes());
            body.push(entry.batches.len() as u8);
            for b in &entry.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.0.to_be_bytes());
                body.extend_from_slice(&b.last_offset.0.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut bytes = Vec::with_capacity(body.len() + 10);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        write_file_atomically(&snapshot_path(dir, offset), &bytes)
    }

    /// Reads a snapshot; any damage is `CorruptSnapshot` (the caller falls back to an older
    /// snapshot or to the log).
    pub fn read_snapshot(path: &Path) -> Result<ProducerStateManager, LogError> {
        let bytes = std::fs::read(path)?;
        let corrupt = |reason| LogError::CorruptSnapshot {
            path: path.to_path_buf(),
            reason,
        };
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        if r.take(4) != Some(SNAPSHOT_MAGIC.as_slice()) {
            return Err(corrupt("bad magic or version"));
        }
        let version = r.u16();
        if version != Some(SNAPSHOT_VERSION) && version != Some(SNAPSHOT_VERSION_V1) {
            return Err(corrupt("bad magic or version"));
        }
        let crc = r.u32().ok_or(corrupt("truncated"))?;
        if crc32c::crc32c(&bytes[r.at..]) != crc {
            return Err(corrupt("CRC32C mismatch"));
        }
        read_producers(&mut r, version == Some(SNAPSHOT_VERSION)).ok_or(corrupt("truncated or malformed"))
    }
}

fn read_producers(r: &mut Reader<'_>, with_txn: bool) -> Option<ProducerStateManager> {
    let count = r.u32()?;
    let mut state = ProducerStateManager::default();
    for _ in 0..count {
        let pid = ProducerId(r.i64()?);
        let epoch = r.u16()? as i16;
        let last_timestamp = r.i64()?;
        let (coordinator_epoch, current_txn_first_offset) = if with_txn {
            let coordinator_epoch = r.u32()? as i32;
            let first = r.i64()?;
            (coordinator_epoch, (first >= 0).then_some(Offset(first)))
        } else {
            (-1, None)
        };
        let n = *r.take(1)?.first()?;
        let mut batches = VecDeque::with_capacity(usize::from(n));
        for _ in 0..n {
            let (first_seq, last_seq) = (r.u32()? as i32, r.u32()? as i32);
            let (first_offset, last_offset, timestamp) = (r.i64()?, r.i64()?, r.i64()?);
            batches.push_back(BatchMetadata {
                first_seq,
                last_seq,
                first_offset: Offset(first_offset),
                last_offset: Offset(last_offset),
                timestamp,
            });
        }
        state.insert(
            pid,
            ProducerEntry {
                epoch,
                batches,
                last_timestamp,
                coordinator_epoch,
                current_txn_first_offset,
            },
        );
    }
    (r.at == r.bytes.len()).then_some(state)
}

/// Bounds-checked big-endian reader for snapshot bytes (a file is input, never trusted).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(i64::from_be_bytes(a))
    }
}

fn check_epoch(producer_id: ProducerId, entry: &ProducerEntry, epoch: i16) -> Result<(), LogError> {
    if epoch < entry.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current_epoch: entry.epoch,
        });
    }
    Ok(())
}

fn check_epoch_and_sequence(entry: &ProducerEntry, header: &BatchHeader) -> Result<(), LogError> {
    let pid = ProducerId(header.producer_id);
    if header.producer_epoch < entry.epoch {
        return Err(LogError::InvalidProducerEpoch {
            producer_id: pid,
            epoch: header.producer_epoch,
            current_epoch: entry.epoch,
        });
    }
    let out_of_order = |expected| LogError::OutOfOrderSequence {
        producer_id: pid,
        expected,
        received: header.base_sequence,
    };
    if header.producer_epoch != entry.epoch {
        if header.base_sequence != 0 && entry.epoch != NO_PRODUCER_EPOCH {
            return Err(out_of_order(0));
        }
        return Ok(());
    }
    let last = entry.last_seq();
    let in_sequence = i64::from(header.base_sequence) == i64::from(last) + 1
        || (header.base_sequence == 0 && last == i32::MAX);
    if !in_sequence {
        return Err(out_of_order(crate::record::batch::increment_sequence(
            last.max(-1),
            1,
        )));
    }
    Ok(())
}

/// The entry after a batch at `first_offset`: a new epoch forgets the old epoch's batches;
/// a transactional batch opens a transaction if none is open.
fn apply(current: Option<ProducerEntry>, header: &BatchHeader, first_offset: i64) -> ProducerEntry {
    let mut entry = current.unwrap_or_else(|| new_entry(header.producer_epoch));
    if header.is_transactional() && entry.current_txn_first_offset.is_none() {
        entry.current_txn_first_offset = Some(Offset(first_offset));
    }
    if entry.epoch != header.producer_epoch {
        entry.epoch = header.producer_epoch;
        entry.batches.clear();
    }
    if entry.batches.len() == BATCHES_TO_RETAIN {
        entry.batches.pop_front();
    }
    entry.batches.push_back(BatchMetadata {
        first_seq: header.base_sequence,
        last_seq: header.last_sequence(),
        first_offset: Offset(first_offset),
        last_offset: Offset(first_offset + i64::from(header.last_offset_delta)),
        timestamp: header.max_timestamp,
    });
    entry.last_timestamp = header.max_timestamp;
    entry
}

fn new_entry(epoch: i16) -> ProducerEntry {
    ProducerEntry {
        epoch,
        batches: VecDeque::new(),
        last_timestamp: -1,
        coordinator_epoch: -1,
        current_txn_first_offset: None,
    }
}

/// The entry after a marker at `offset` (Kafka's `appendEndTxnMarker`): the open transaction
/// closes (an empty one completes nothing), a new epoch forgets the old epoch's batches.
fn close_transaction(
    producer_id: ProducerId,
    current: Option<ProducerEntry>,
    producer_epoch: i16,
    marker: Marker,
    offset: i64,
    timestamp: i64,
) -> StagedMarker {
    let mut entry = current.unwrap_or_else(|| new_entry(producer_epoch));
    let completed = entry.current_txn_first_offset.take().map(|first_offset| CompletedTxn {
        producer_id,
        first_offset,
        last_offset: Offset(offset),
        aborted: !marker.commit,
    });
    if entry.epoch != producer_epoch {
        entry.epoch = producer_epoch;
        entry.batches.clear();
    }
    entry.coordinator_epoch = marker.coordinator_epoch;
    entry.last_timestamp = timestamp;
    StagedMarker { producer_id, entry, completed }
}

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(SNAPSHOT_SUFFIX) {
            if let Ok(offset) = stem.parse::<i64>() {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Deletes snapshots whose offset falls outside `keep`.
pub fn delete_snapshots_outside(
    dir: &Path,
    keep: std::ops::RangeInclusive<i64>,
) -> Result<(), LogError> {
    for offset in list_snapshots(dir)? {
        if !keep.contains(&offset) {
            super::segment::remove_if_exists(&snapshot_path(dir, offset))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    fn batch(pid: i64, epoch: i16, seq: i32, count: usize, offset: i64) -> BatchHeader {
        let bytes = BatchBuilder::new(offset)
            .producer(pid, epoch, seq)
            .timestamps(1000)
            .records(count, 1)
            .build();
        BatchHeader::parse(&bytes).unwrap()
    }

    fn append(
        m: &mut ProducerStateManager,
        h: &BatchHeader,
    ) -> Result<Option<BatchMetadata>, LogError> {
        let mut staged = StagedProducers::default();
        let dup = m.check_and_stage(&mut staged, h, h.base_offset, AppendOrigin::Client)?;
        if dup.is_none() {
            m.commit(staged);
        }
        Ok(dup)
    }

    #[test]
    fn applies_kafka_sequence_rules() {
        let mut m = ProducerStateManager::new();
        assert_eq!(append(&mut m, &batch(1, 0, 0, 3, 0)).unwrap(), None);
        assert_eq!(append(&mut m, &batch(1, 0, 3, 2, 3)).unwrap(), None);
        // A retry of either cached batch is a duplicate with the original offsets.
        let dup = append(&mut m, &batch(1, 0, 0, 3, 99)).unwrap().unwrap();
        assert_eq!((dup.first_offset, dup.last_offset), (Offset(0), Offset(2)));
        assert!(matches!(
            append(&mut m, &batch(1, 0, 7, 1, 5)),
            Err(LogError::OutOfOrderSequence { expected: 5, .. })
        ));
        assert!(matches!(
            append(&mut m, &batch(1, 1, 4, 1, 5)),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(append(&mut m, &batch(1, 1, 0, 1, 5)).unwrap(), None);
        assert!(matches!(
            append(&mut m, &batch(1, 0, 5, 1, 6)),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        // Unknown producers may start anywhere (Kafka 4).
        assert_eq!(append(&mut m, &batch(2, 0, 500, 1, 6)).unwrap(), None);
    }

    #[test]
    fn keeps_five_batches_and_wraps_sequences() {
        let mut m = ProducerStateManager::new();
        for i in 0..7 {
            append(&mut m, &batch(1, 0, i * 2, 2, i64::from(i) * 2)).unwrap();
        }
        assert_eq!(m.entry(ProducerId(1)).unwrap().batches.len(), BATCHES_TO_RETAIN);
        // The oldest two fell out: a retry of them is no longer recognised, just out of order.
        assert!(append(&mut m, &batch(1, 0, 0, 2, 50)).is_err());
        let mut w = ProducerStateManager::new();
        append(&mut w, &batch(3, 0, i32::MAX - 1, 2, 0)).unwrap();
        assert_eq!(append(&mut w, &batch(3, 0, 0, 1, 2)).unwrap(), None);
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ProducerStateManager::new();
        for pid in 0..4 {
            m.replay(&batch(pid, 2, 10, 3, pid * 10));
        }
        m.write_snapshot(dir.path(), 40).unwrap();
        let path = snapshot_path(dir.path(), 40);
        assert_eq!(ProducerStateManager::read_snapshot(&path).unwrap(), m);
        assert_eq!(list_snapshots(dir.path()).unwrap(), vec![40]);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(ProducerStateManager::read_snapshot(&path).is_err());
        delete_snapshots_outside(dir.path(), 0..=39).unwrap();
        assert!(list_snapshots(dir.path()).unwrap().is_empty());
    }
}
