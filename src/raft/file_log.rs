//! The metadata log on disk: `__cluster_metadata-0/` holds the same segment log the
//! partitions use (KRaft keeps it in Kafka's partition log too), entries stored as the record
//! batches the Fetch carries ([`wire::encode_entries`](super::wire::encode_entries)), with
//! leader epochs in the batch headers and the epoch cache beside them; snapshots are
//! `<end offset, 20 digits>-<epoch, 10 digits>.checkpoint` files in the same directory.
//!
//! The [`RaftLog`] trait is infallible: the core's rules cannot act on a half-done write. A
//! failed write or read here is what Kafka treats as a log directory failure of the metadata
//! log, which halts the node: the first error is kept ([`FileRaftLog::failure`]), later calls
//! do nothing, and the driver stops the node as soon as it sees one. Nothing acknowledged can
//! depend on a failed write, since `Flushed` is reported only by [`FileRaftLog::flush`]'s
//! success.
//!
//! Durability: `append` writes (page cache), [`FileRaftLog::flush`] fsyncs; `truncate_to`,
//! snapshot installation and prefix deletion are durable when they return.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::log::RaftLog;
use super::message::{Entry, OffsetAndEpoch, SnapshotId};
use super::wire;
use crate::clock::Clock;
use crate::log::{Log, LogConfig};
use crate::record::BatchHeader;
use crate::types::{LeaderEpoch, Offset};

/// The metadata log's directory name, as Kafka's.
pub const DIR_NAME: &str = "__cluster_metadata-0";
const SNAPSHOT_SUFFIX: &str = ".checkpoint";
/// Bytes one read asks the segment log for at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

pub struct FileRaftLog {
    dir: PathBuf,
    log: Log,
    clock: Arc<dyn Clock>,
    snapshot: Option<(SnapshotId, PathBuf)>,
    failure: Option<String>,
}

fn snapshot_name(id: SnapshotId) -> String {
    format!("{:020}-{:010}{SNAPSHOT_SUFFIX}", id.offset.0, id.epoch.0)
}

fn parse_snapshot_name(name: &str) -> Option<SnapshotId> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (offset, epoch) = stem.split_once('-')?;
    Some(OffsetAndEpoch::new(Offset(offset.parse().ok()?), LeaderEpoch(epoch.parse().ok()?)))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FileRaftLog {
    /// Opens (or creates) the metadata log under `data_dir`, recovering it like any partition
    /// log, and finds the newest snapshot.
    pub fn open(data_dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let dir = data_dir.join(DIR_NAME);
        let log = Log::open(&dir, config, clock.now_ms()).map_err(|e| format!("metadata log {}: {e}", dir.display()))?;
        let mut snapshots: Vec<SnapshotId> = fs::read_dir(&dir)
            .map_err(|e| format!("metadata log {}: {e}", dir.display()))?
            .flatten()
            .filter_map(|e| parse_snapshot_name(&e.file_name().to_string_lossy()))
            .collect();
        snapshots.sort();
        let snapshot = snapshots.last().map(|id| (*id, dir.join(snapshot_name(*id))));
        let mut me = Self { dir, log, clock, snapshot, failure: None };
        // A snapshot newer than the log (installed, then a crash before the log was reset)
        // wins: the log restarts at its end.
        if let Some((id, _)) = me.snapshot
            && id.offset > me.log.log_end_offset()
        {
            let now = me.clock.now_ms();
            me.log.truncate_fully_and_start_at(id.offset, now).map_err(|e| format!("metadata log: {e}"))?;
        }
        for old in snapshots.iter().rev().skip(1) {
            let _ = fs::remove_file(me.dir.join(snapshot_name(*old)));
        }
        Ok(me)
    }

    /// The first I/O failure, if any: the node must stop.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    fn fail(&mut self, what: &str, e: impl std::fmt::Display) {
        if self.failure.is_none() {
            tracing::error!(dir = %self.dir.display(), error = %e, "metadata log {what} failed");
            self.failure = Some(format!("metadata log {what} in {}: {e}", self.dir.display()));
        }
    }

    /// Makes everything written durable; returns the durable end.
    pub fn flush(&mut self) -> Result<Offset, String> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let now = self.clock.now_ms();
        if let Err(e) = self.log.flush(now) {
            self.fail("flush", &e);
            return Err(e.to_string());
        }
        Ok(self.log.log_end_offset())
    }

    /// Writes a snapshot file atomically (temporary file, fsync, rename, directory fsync).
    fn write_snapshot(&mut self, id: SnapshotId, data: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.dir.join(snapshot_name(id));
        let tmp = path.with_extension("checkpoint.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        Ok(path)
    }

    fn replace_snapshot(&mut self, id: SnapshotId, path: PathBuf) {
        if let Some((_, old)) = self.snapshot.replace((id, path.clone()))
            && old != path
        {
            let _ = fs::remove_file(old);
        }
    }

    fn epoch_starts(&self) -> Vec<(LeaderEpoch, Offset)> {
        self.log.epoch_cache().entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }
}

impl RaftLog for FileRaftLog {
    fn start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    fn end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    fn entry_epoch(&self, offset: Offset) -> Option<LeaderEpoch> {
        let start = self.start_offset();
        if offset >= start && offset < self.end_offset() {
            return self.log.epoch_cache().epoch_for_offset(offset);
        }
        match &self.snapshot {
            Some((id, _)) if offset.0 + 1 == id.offset.0 && id.offset == start => Some(id.epoch),
            _ => None,
        }
    }

    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<OffsetAndEpoch> {
        let starts = self.epoch_starts();
        let newer = starts.partition_point(|(e, _)| *e <= epoch);
        let end = starts.get(newer).map_or(self.end_offset(), |(_, start)| *start);
        if newer > 0 {
            return Some(OffsetAndEpoch::new(end, starts[newer - 1].0));
        }
        let start = self.start_offset();
        match &self.snapshot {
            Some((id, _)) if id.epoch <= epoch && id.offset == start => Some(OffsetAndEpoch::new(end, id.epoch)),
            _ if start.0 == 0 => Some(OffsetAndEpoch::new(end, LeaderEpoch(0))),
            _ => None,
        }
    }

    fn read(&self, from: Offset, max_entries: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut next = from;
        let end = self.end_offset();
        while out.len() < max_entries && next < end {
            let Ok(read) = self.log.read(next, READ_CHUNK_BYTES, end, true) else { break };
            if read.bytes.is_empty() {
                break;
            }
            let Ok(first) = BatchHeader::parse(&read.bytes) else { break };
            let Ok(entries) = wire::decode_entries(Offset(first.base_offset), &read.bytes) else { break };
            let skip = usize::try_from(next.0 - first.base_offset).unwrap_or(0);
            let before = out.len();
            out.extend(entries.into_iter().skip(skip).take(max_entries - before));
            if out.len() == before {
                break;
            }
            next = Offset(from.0 + out.len() as i64);
        }
        out
    }

    fn append(&mut self, entries: Vec<Entry>) {
        if self.failure.is_some() || entries.is_empty() {
            return;
        }
        let base = self.end_offset();
        let bytes = match wire::encode_entries(base, &entries) {
            Ok(b) => b,
            Err(e) => return self.fail("encode", e),
        };
        let now = self.clock.now_ms();
        if let Err(e) = self.log.append_as_follower(&bytes, now) {
            self.fail("append", e);
        }
    }

    fn truncate_to(&mut self, end: Offset) {
        if self.failure.is_some() {
            return;
        }
        let now = self.clock.now_ms();
        if let Err(e) = self.log.truncate_to(end, now) {
            self.fail("truncate", e);
        }
    }

    fn latest_snapshot(&self) -> Option<SnapshotId> {
        self.snapshot.as_ref().map(|(id, _)| *id)
    }

    fn read_snapshot(&self, id: SnapshotId, position: u64, max_bytes: u32) -> Option<(Bytes, u64)> {
        let (held, path) = self.snapshot.as_ref()?;
        if *held != id {
            return None;
        }
        let mut f = File::open(path).ok()?;
        let size = f.metadata().ok()?.len();
        let from = position.min(size);
        f.seek(SeekFrom::Start(from)).ok()?;
        let mut buf = Vec::with_capacity((max_bytes as u64).min(size - from) as usize);
        f.take(u64::from(max_bytes)).read_to_end(&mut buf).ok()?;
        Some((Bytes::from(buf), size))
    }

    fn install_snapshot(&mut self, id: SnapshotId, data: Bytes) {
        if self.failure.is_some() {
            return;
        }
        // The snapshot first: a crash before the log is reset reopens with the snapshot ahead
        // of the log, which `open` resolves in the snapshot's favour.
        let path = match self.write_snapshot(id, &data) {
            Ok(p) => p,
            Err(e) => return self.fail("snapshot write", e),
        };
        self.replace_snapshot(id, path);
        let now = self.clock.now_ms();
        if let Err(e) = self.log.truncate_fully_and_start_at(id.offset, now) {
            self.fail("reset to snapshot", e);
        }
    }

    fn save_snapshot_and_truncate_prefix(&mut self, id: SnapshotId, data: Bytes) {
        if self.failure.is_some() {
            return;
        }
        let path = match self.write_snapshot(id, &data) {
            Ok(p) => p,
            Err(e) => return self.fail("snapshot write", e),
        };
        self.replace_snapshot(id, path);
        if let Err(e) = self.log.delete_records_before(id.offset) {
            self.fail("prefix deletion", e);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::raft::log::MemoryLog;
    use crate::raft::message::EntryData;
    use crate::raft::state::SplitMix64;
    use crate::types::NodeId;

    fn open(dir: &Path) -> FileRaftLog {
        let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
        FileRaftLog::open(dir, config, Arc::new(SystemClock)).unwrap()
    }

    fn entry(epoch: i32, i: u64) -> Entry {
        let data = if i % 7 == 0 {
            EntryData::LeaderChange { leader: NodeId(1), voters: vec![NodeId(1), NodeId(2), NodeId(3)] }
        } else {
            EntryData::Records(Bytes::from(format!("record {i}").repeat((i % 5) as usize + 1)))
        };
        Entry { epoch: LeaderEpoch(epoch), data }
    }

    /// Everything the core can ask of a log, compared between the two implementations.
    fn same(file: &FileRaftLog, memory: &MemoryLog, ctx: &str) {
        assert_eq!(file.start_offset(), memory.start_offset(), "{ctx}: start");
        assert_eq!(file.end_offset(), memory.end_offset(), "{ctx}: end");
        assert_eq!(file.last_epoch(), memory.last_epoch(), "{ctx}: last epoch");
        assert_eq!(file.latest_snapshot(), memory.latest_snapshot(), "{ctx}: snapshot");
        for e in 0..12 {
            assert_eq!(file.end_offset_for_epoch(LeaderEpoch(e)), memory.end_offset_for_epoch(LeaderEpoch(e)), "{ctx}: epoch {e}");
        }
        let (start, end) = (memory.start_offset().0, memory.end_offset().0);
        for o in (start - 1).max(0)..end {
            assert_eq!(file.entry_epoch(Offset(o)), memory.entry_epoch(Offset(o)), "{ctx}: entry epoch {o}");
        }
        for from in [start, (start + end) / 2, end.max(1) - 1] {
            if from >= start && from < end {
                assert_eq!(file.read(Offset(from), 7), memory.read(Offset(from), 7), "{ctx}: read {from}");
            }
        }
    }

    /// A seeded run of appends, truncations, snapshots, installs and reopenings: the file log
    /// answers exactly as the in-memory one the simulator uses.
    #[test]
    fn answers_as_the_memory_log_does_across_reopens() {
        for seed in 0..20u64 {
            let dir = tempfile::tempdir().unwrap();
            let mut rng = SplitMix64::new(seed);
            let mut file = open(dir.path());
            let mut memory = MemoryLog::new();
            let mut epoch = 1;
            let mut n = 0u64;
            for step in 0..200 {
                let ctx = format!("seed {seed} step {step}");
                match rng.below(100) {
                    0..=59 => {
                        if rng.below(4) == 0 {
                            epoch += 1;
                        }
                        let entries: Vec<Entry> = (0..1 + rng.below(5)).map(|_| {
                            n += 1;
                            entry(epoch, n)
                        }).collect();
                        file.append(entries.clone());
                        memory.append(entries);
                    }
                    60..=74 => {
                        let (s, e) = (memory.start_offset().0, memory.end_offset().0);
                        let to = Offset(s + rng.below((e - s + 1) as u64) as i64);
                        file.truncate_to(to);
                        memory.truncate_to(to);
                    }
                    75..=82 => {
                        let (s, e) = (memory.start_offset().0, memory.end_offset().0);
                        if e > s {
                            let at = Offset(s + 1 + rng.below((e - s) as u64) as i64);
                            let id = OffsetAndEpoch::new(at, memory.entry_epoch(Offset(at.0 - 1)).unwrap());
                            let data = Bytes::from(format!("snapshot at {}", at.0));
                            file.save_snapshot_and_truncate_prefix(id, data.clone());
                            memory.save_snapshot_and_truncate_prefix(id, data);
                        }
                    }
                    83..=86 => {
                        epoch += 1;
                        let at = Offset(memory.end_offset().0 + rng.below(20) as i64);
                        let id = OffsetAndEpoch::new(at, LeaderEpoch(epoch));
                        let data = Bytes::from(format!("installed at {}", at.0));
                        file.install_snapshot(id, data.clone());
                        memory.install_snapshot(id, data);
                    }
                    _ => {
                        file.flush().unwrap();
                        memory.flush();
                        drop(file);
                        file = open(dir.path());
                    }
                }
                assert!(file.failure().is_none(), "{ctx}: {:?}", file.failure());
                same(&file, &memory, &ctx);
                if let Some(id) = memory.latest_snapshot() {
                    let want = memory.snapshot_data().unwrap();
                    assert_eq!(file.read_snapshot(id, 0, 1 << 20).unwrap(), (want.clone(), want.len() as u64), "{ctx}");
                    assert_eq!(file.read_snapshot(id, 3, 4).unwrap().0, want.slice(3.min(want.len())..7.min(want.len())), "{ctx}");
                }
            }
        }
    }
}
