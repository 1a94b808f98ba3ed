//! The metadata log as the quorum sees it: a small trait, and `MemoryLog`, its in-memory twin
//! used by the unit tests and the simulator.
//!
//! The core writes through the trait (`append`, `truncate_to`) because every write is decided
//! by a Raft rule and reads right after it must see it. Writing is not durability: the driver
//! flushes in the background and reports `Event::Flushed`. The trait keeps no notion of what is
//! flushed; the core does, from those events, because only flushed entries may count towards
//! the high watermark or be advertised in a Fetch.
//!
//! Offsets are Kafka's: entry `n` sits at offset `n`; `end_offset` is exclusive (the offset of
//! the next append); `start_offset` is the first entry held, which is the latest snapshot's end
//! offset once the prefix behind a snapshot is deleted.

use bytes::Bytes;

use super::message::{Entry, OffsetAndEpoch, SnapshotId};
use crate::types::{LeaderEpoch, Offset};

/// Storage for the metadata log and its snapshots. Implementations must keep entries, in
/// order, with the epoch each was written in; truncation must be durable when it returns
/// (the core never truncates below what it reported as flushed without knowing it).
pub trait RaftLog {
    /// The first offset held: 0, or the end offset of the snapshot the prefix was deleted to.
    fn start_offset(&self) -> Offset;
    /// The written end (exclusive).
    fn end_offset(&self) -> Offset;
    /// The epoch of the entry at `offset`; for `start_offset - 1` the snapshot's epoch.
    fn entry_epoch(&self, offset: Offset) -> Option<LeaderEpoch>;
    /// Kafka's `endOffsetForEpoch`: the largest epoch held that is `<= epoch`, and the end
    /// offset (exclusive) of that epoch in this log. `None` if every epoch held is newer.
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<OffsetAndEpoch>;
    /// Up to `max_entries` entries from `from` (which must be within the log).
    fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry>;
    /// Writes entries at the end (not yet durable).
    fn append(&mut self, entries: Vec<Entry>);
    /// Removes every entry at or after `end`.
    fn truncate_to(&mut self, end: Offset);

    /// The newest snapshot, if any.
    fn latest_snapshot(&self) -> Option<SnapshotId>;
    /// A chunk of the latest snapshot's bytes and the snapshot's total size, if `id` is held.
    fn read_snapshot(&self, id: SnapshotId, position: u64, max_bytes: u32) -> Option<(Bytes, u64)>;
    /// Replaces the whole log with a snapshot fetched from the leader: afterwards the log is
    /// empty, starts at `id.offset`, and the snapshot is durable.
    fn install_snapshot(&mut self, id: SnapshotId, data: Bytes);
    /// The driver's hook after taking a snapshot of committed state: records it and deletes the
    /// entries below `id.offset`.
    fn save_snapshot_and_truncate_prefix(&mut self, id: SnapshotId, data: Bytes);

    /// The epoch of the last entry (or of the snapshot when the log is empty), 0 for nothing.
    fn last_epoch(&self) -> LeaderEpoch {
        let end = self.end_offset();
        if end.0 == 0 {
            return LeaderEpoch(0);
        }
        self.entry_epoch(Offset(end.0 - 1)).unwrap_or(LeaderEpoch(0))
    }

    /// The log end as the vote rule compares it.
    fn end_offset_and_epoch(&self) -> OffsetAndEpoch {
        OffsetAndEpoch::new(self.end_offset(), self.last_epoch())
    }
}

/// The log in memory, with what a crash would keep: `flushed` is set by `flush`, and `crash`
/// drops everything after it. Snapshots are kept as bytes.
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    start: Offset,
    entries: Vec<Entry>,
    /// Where each epoch starts, ascending: `(epoch, first offset)`.
    epoch_starts: Vec<(LeaderEpoch, Offset)>,
    snapshot: Option<(SnapshotId, Bytes)>,
    flushed: Offset,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes everything written so far durable; returns the durable end.
    pub fn flush(&mut self) -> Offset {
        self.flushed = self.end_offset();
        self.flushed
    }

    pub fn flushed_offset(&self) -> Offset {
        self.flushed
    }

    /// The entry at `offset`, borrowed (the simulator's checks read every committed entry).
    pub fn entry_at(&self, offset: Offset) -> Option<&Entry> {
        self.index(offset).map(|i| &self.entries[i])
    }

    /// The latest snapshot's bytes.
    pub fn snapshot_data(&self) -> Option<&Bytes> {
        self.snapshot.as_ref().map(|(_, data)| data)
    }

    /// A power cut: what was written but not flushed is gone.
    pub fn crash(&mut self) {
        let flushed = self.flushed;
        self.truncate_to(flushed);
    }

    fn index(&self, offset: Offset) -> Option<usize> {
        if offset < self.start || offset >= self.end_offset() {
            return None;
        }
        usize::try_from(offset.0 - self.start.0).ok()
    }

    fn rebuild_epoch_starts(&mut self) {
        self.epoch_starts.clear();
        for (i, entry) in self.entries.iter().enumerate() {
            if self.epoch_starts.last().is_none_or(|(e, _)| *e != entry.epoch) {
                self.epoch_starts.push((entry.epoch, Offset(self.start.0 + i as i64)));
            }
        }
    }
}

impl RaftLog for MemoryLog {
    fn start_offset(&self) -> Offset {
        self.start
    }

    fn end_offset(&self) -> Offset {
        Offset(self.start.0 + self.entries.len() as i64)
    }

    fn entry_epoch(&self, offset: Offset) -> Option<LeaderEpoch> {
        if let Some(i) = self.index(offset) {
            return Some(self.entries[i].epoch);
        }
        match &self.snapshot {
            Some((id, _)) if offset.0 + 1 == id.offset.0 && id.offset == self.start => Some(id.epoch),
            _ => None,
        }
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<OffsetAndEpoch> {
        // The first epoch start newer than `epoch` ends the answer.
        let newer = self.epoch_starts.partition_point(|(e, _)| *e <= epoch);
        let end = self.epoch_starts.get(newer).map_or(self.end_offset(), |(_, start)| *start);
        if newer > 0 {
            return Some(OffsetAndEpoch::new(end, self.epoch_starts[newer - 1].0));
        }
        match &self.snapshot {
            Some((id, _)) if id.epoch <= epoch && id.offset == self.start => {
                Some(OffsetAndEpoch::new(end, id.epoch))
            }
            _ if self.start.0 == 0 => Some(OffsetAndEpoch::new(end, LeaderEpoch(0))),
            _ => None,
        }
    }

    fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry> {
        match self.index(from) {
            Some(i) => self.entries[i..].iter().take(max_entries).cloned().collect(),
            None => Vec::new(),
        }
    }

    fn append(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            assert!(
                self.last_epoch() <= entry.epoch,
                "epochs in the log never go down: {:?} after {:?}",
                entry.epoch,
                self.last_epoch()
            );
            if self.epoch_starts.last().is_none_or(|(e, _)| *e != entry.epoch) {
                self.epoch_starts.push((entry.epoch, self.end_offset()));
            }
            self.entries.push(entry);
        }
    }

    fn truncate_to(&mut self, end: Offset) {
        if end >= self.end_offset() {
            return;
        }
        let keep = usize::try_from(end.0 - self.start.0).unwrap_or(0);
        self.entries.truncate(keep);
        while self.epoch_starts.last().is_some_and(|(_, start)| *start >= end) {
            self.epoch_starts.pop();
        }
        self.flushed = self.flushed.min(self.end_offset());
    }

    fn latest_snapshot(&self) -> Option<SnapshotId> {
        self.snapshot.as_ref().map(|(id, _)| *id)
    }

    fn read_snapshot(&self, id: SnapshotId, position: u64, max_bytes: u32) -> Option<(Bytes, u64)> {
        let (held, data) = self.snapshot.as_ref()?;
        if *held != id {
            return None;
        }
        let size = data.len() as u64;
        let from = usize::try_from(position.min(size)).ok()?;
        let to = from.saturating_add(max_bytes as usize).min(data.len());
        Some((data.slice(from..to), size))
    }

    fn install_snapshot(&mut self, id: SnapshotId, data: Bytes) {
        self.entries.clear();
        self.epoch_starts.clear();
        self.start = id.offset;
        self.snapshot = Some((id, data));
        self.flushed = id.offset;
    }

    fn save_snapshot_and_truncate_prefix(&mut self, id: SnapshotId, data: Bytes) {
        assert!(id.offset >= self.start && id.offset <= self.end_offset(), "snapshot {id:?} outside the log");
        let drop = usize::try_from(id.offset.0 - self.start.0).unwrap_or(0);
        self.entries.drain(..drop);
        self.start = id.offset;
        self.snapshot = Some((id, data));
        self.rebuild_epoch_starts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::EntryData;

    fn entry(epoch: i32) -> Entry {
        Entry { epoch: LeaderEpoch(epoch), data: EntryData::Records(Bytes::from_static(b"x")) }
    }

    #[test]
    fn end_offset_for_epoch_answers_like_kafka() {
        let mut log = MemoryLog::new();
        log.append(vec![entry(1), entry(1), entry(3), entry(3), entry(5)]);
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(1)), Some(OffsetAndEpoch::new(Offset(2), LeaderEpoch(1))));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(2)), Some(OffsetAndEpoch::new(Offset(2), LeaderEpoch(1))));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(3)), Some(OffsetAndEpoch::new(Offset(4), LeaderEpoch(3))));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(9)), Some(OffsetAndEpoch::new(Offset(5), LeaderEpoch(5))));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(0)), Some(OffsetAndEpoch::new(Offset(0), LeaderEpoch(0))));
        log.truncate_to(Offset(3));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(9)), Some(OffsetAndEpoch::new(Offset(3), LeaderEpoch(3))));
        assert_eq!(log.last_epoch(), LeaderEpoch(3));
    }

    #[test]
    fn crash_keeps_only_the_flushed_prefix() {
        let mut log = MemoryLog::new();
        log.append(vec![entry(1), entry(1)]);
        log.flush();
        log.append(vec![entry(2)]);
        log.crash();
        assert_eq!(log.end_offset(), Offset(2));
        assert_eq!(log.last_epoch(), LeaderEpoch(1));
    }

    #[test]
    fn snapshot_prefix_truncation_and_install() {
        let mut log = MemoryLog::new();
        log.append(vec![entry(1), entry(1), entry(2), entry(2)]);
        let id = OffsetAndEpoch::new(Offset(3), LeaderEpoch(2));
        log.save_snapshot_and_truncate_prefix(id, Bytes::from_static(b"state"));
        assert_eq!(log.start_offset(), Offset(3));
        assert_eq!(log.entry_epoch(Offset(2)), Some(LeaderEpoch(2)));
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(1)), None);
        assert_eq!(log.end_offset_for_epoch(LeaderEpoch(2)), Some(OffsetAndEpoch::new(Offset(4), LeaderEpoch(2))));
        assert_eq!(log.read_snapshot(id, 2, 10), Some((Bytes::from_static(b"ate"), 5)));

        let mut other = MemoryLog::new();
        other.append(vec![entry(1)]);
        other.install_snapshot(id, Bytes::from_static(b"state"));
        assert_eq!(other.end_offset_and_epoch(), id);
        assert_eq!(other.flushed_offset(), Offset(3));
    }
}
