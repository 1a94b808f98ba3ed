//! Moves a single node's metadata from the file of earlier versions into its Raft log, once,
//! without loss.
//!
//! Before the single node ran as the one voter of its own quorum it kept its metadata as
//! JSON lines in `__cluster_metadata/records.jsonl` ([`MetadataStore::open`]). On the first
//! start of this version, before the quorum opens its log, [`single_node_log`] replays that
//! file (with the migrations [`MetadataStore::open`] itself makes), writes every record into
//! a new Raft log as entries of epoch 0 — the epoch before any election, so the node's first
//! election as the only voter commits them with its own first entry — fsyncs it, and only
//! then moves it into place as `__cluster_metadata-0` (a rename, atomic). The old directory
//! is then renamed `__cluster_metadata.migrated` and kept, so nothing is deleted.
//!
//! A crash at any point is safe: before the Raft log's rename the next start redoes the
//! migration from the untouched file (a half-built copy is removed first); after it, the
//! Raft log is what counts and the old directory is only set aside.

use std::fs;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use super::records::MetadataRecord;
use super::store::{MetadataStore, StoreError, encode_change};
use crate::clock::Clock;
use crate::log::LogConfig;
use crate::raft::file_log::{self, FileRaftLog};
use crate::raft::log::RaftLog;
use crate::raft::message::{Entry, EntryData};
use crate::types::{LeaderEpoch, NodeId};

/// The directory of the single-node file, and what it becomes once migrated.
pub const LEGACY_DIR: &str = "__cluster_metadata";
pub const MIGRATED_DIR: &str = "__cluster_metadata.migrated";
/// Where the Raft log is built before it is moved into place.
const BUILDING_DIR: &str = "__cluster_metadata.migrating";
/// Records per Raft entry: entries stay well under the fetch and snapshot chunk sizes.
const RECORDS_PER_ENTRY: usize = 1000;

/// Migrates `data_dir`'s single-node metadata file into the Raft log if there is one to
/// migrate; returns the number of records moved (`None`: nothing to do).
pub fn single_node_log(data_dir: &Path, node_id: NodeId, log_config: LogConfig, clock: Arc<dyn Clock>) -> Result<Option<usize>, StoreError> {
    let legacy = data_dir.join(LEGACY_DIR);
    let raft_dir = data_dir.join(file_log::DIR_NAME);
    let building = data_dir.join(BUILDING_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    if !legacy.join("records.jsonl").exists() {
        return Ok(None);
    }
    if raft_dir.exists() {
        // Migrated before, and stopped before the old directory was set aside.
        set_aside(data_dir)?;
        return Ok(None);
    }
    // Replays the file, cutting a torn tail and writing the registrations a file from
    // before them lacks, exactly as the single node did on every start.
    drop(MetadataStore::open(data_dir, node_id)?);
    let records = read_records(&legacy.join("records.jsonl"))?;
    if building.exists() {
        fs::remove_dir_all(&building).map_err(io(&building))?;
    }
    fs::create_dir_all(&building).map_err(io(&building))?;
    {
        let mut log = FileRaftLog::open(&building, log_config, clock).map_err(|e| StoreError::Io {
            path: building.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut entries = Vec::new();
        for chunk in records.chunks(RECORDS_PER_ENTRY) {
            entries.push(Entry { epoch: LeaderEpoch(0), data: EntryData::Records(encode_change(chunk)?) });
        }
        log.append(entries);
        log.flush().map_err(|e| StoreError::Io { path: building.clone(), source: std::io::Error::other(e) })?;
    }
    fs::rename(building.join(file_log::DIR_NAME), &raft_dir).map_err(io(&raft_dir))?;
    sync_dir(data_dir).map_err(io(data_dir))?;
    fs::remove_dir_all(&building).map_err(io(&building))?;
    set_aside(data_dir)?;
    tracing::info!(records = records.len(), dir = %raft_dir.display(), "single-node metadata moved into the metadata quorum's log");
    Ok(Some(records.len()))
}

/// Renames the old directory out of the way, durably.
fn set_aside(data_dir: &Path) -> Result<(), StoreError> {
    let from = data_dir.join(LEGACY_DIR);
    let mut to = data_dir.join(MIGRATED_DIR);
    let mut n = 1;
    while to.exists() {
        to = data_dir.join(format!("{MIGRATED_DIR}.{n}"));
        n += 1;
    }
    fs::rename(&from, &to).map_err(|source| StoreError::Io { path: from.clone(), source })?;
    sync_dir(data_dir).map_err(|source| StoreError::Io { path: data_dir.to_path_buf(), source })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Every record of the file, in order. [`MetadataStore::open`] has just cut any torn tail, so
/// a line that does not parse is an error, not an end.
fn read_records(path: &Path) -> Result<Vec<MetadataRecord>, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let file = fs::File::open(path).map_err(io)?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line)?);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::metadata::write_rule::decode_entry;
    use crate::types::Offset;

    fn raft_log_config() -> LogConfig {
        LogConfig { retention_ms: -1, retention_bytes: -1, ..Default::default() }
    }

    /// The records of the file arrive whole and in order as entries of epoch 0; the old
    /// directory is kept aside; a second run does nothing.
    #[test]
    fn the_file_becomes_the_raft_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path(), NodeId(1)).unwrap();
        for i in 0..2500 {
            store
                .update(|_| Ok::<_, StoreError>((vec![MetadataRecord::GroupConfig { group: format!("g{i}"), key: "k".into(), value: Some(i.to_string()) }], ())))
                .unwrap();
        }
        let before = store.image();
        drop(store);
        let expected = read_records(&dir.path().join(LEGACY_DIR).join("records.jsonl")).unwrap();

        let moved = single_node_log(dir.path(), NodeId(1), raft_log_config(), Arc::new(SystemClock)).unwrap();
        assert_eq!(moved, Some(expected.len()));
        assert!(!dir.path().join(LEGACY_DIR).exists());
        assert!(dir.path().join(MIGRATED_DIR).join("records.jsonl").exists(), "the old file is kept");
        assert!(!dir.path().join(BUILDING_DIR).exists());

        let log = FileRaftLog::open(dir.path(), raft_log_config(), Arc::new(SystemClock)).unwrap();
        let entries = log.read(Offset(0), usize::MAX);
        assert_eq!(entries.len(), expected.len().div_ceil(RECORDS_PER_ENTRY));
        let mut replayed = Vec::new();
        for e in &entries {
            assert_eq!(e.epoch, LeaderEpoch(0));
            let EntryData::Records(b) = &e.data else { panic!("not records") };
            replayed.extend(decode_entry(b).unwrap());
        }
        assert_eq!(serde_json::to_string(&replayed).unwrap(), serde_json::to_string(&expected).unwrap());
        let mut image = crate::metadata::MetadataImage::default();
        for r in &replayed {
            image.replay(r);
        }
        assert_eq!(image.group_configs, before.group_configs);
        drop(log);
        assert_eq!(single_node_log(dir.path(), NodeId(1), raft_log_config(), Arc::new(SystemClock)).unwrap(), None);
    }

    /// A crash after the Raft log was moved into place but before the old directory was set
    /// aside: the next start only sets it aside. A crash while building: redone from the file.
    #[test]
    fn a_crash_mid_migration_is_finished_or_redone() {
        let dir = tempfile::tempdir().unwrap();
        drop(MetadataStore::open(dir.path(), NodeId(1)).unwrap());
        fs::create_dir_all(dir.path().join(BUILDING_DIR).join(file_log::DIR_NAME)).unwrap();
        fs::write(dir.path().join(BUILDING_DIR).join(file_log::DIR_NAME).join("junk"), b"half").unwrap();
        let moved = single_node_log(dir.path(), NodeId(1), raft_log_config(), Arc::new(SystemClock)).unwrap();
        assert!(moved.is_some_and(|n| n > 0));
        assert!(!dir.path().join(file_log::DIR_NAME).join("junk").exists());

        // The old directory came back (as if the rename had not happened).
        fs::rename(dir.path().join(MIGRATED_DIR), dir.path().join(LEGACY_DIR)).unwrap();
        assert_eq!(single_node_log(dir.path(), NodeId(1), raft_log_config(), Arc::new(SystemClock)).unwrap(), None);
        assert!(!dir.path().join(LEGACY_DIR).exists());
        assert!(dir.path().join(MIGRATED_DIR).exists());
    }
}
