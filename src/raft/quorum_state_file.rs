//! The `quorum-state` file: the Raft epoch, the vote cast in it and the leader known for it,
//! in the metadata log directory, as Kafka keeps it (`__cluster_metadata-0/quorum-state`, JSON
//! with Kafka's field names, `data_version` 1).
//!
//! The core emits [`Action::PersistQuorumState`](super::Action) before any message that
//! depends on it; [`QuorumStateFile::store`] makes it durable before it returns: write a
//! temporary file, fsync it, rename it over the old one, fsync the directory. A crash leaves
//! either the old state or the new one, never a torn file. A missing file is the initial
//! state (epoch 0, no vote, no leader); a file that does not parse stops the node, since
//! guessing could vote twice in one epoch.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::QuorumState;
use crate::types::{LeaderEpoch, NodeId};

pub const FILE_NAME: &str = "quorum-state";

#[derive(Debug, Error)]
pub enum QuorumStateError {
    #[error("quorum state {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("quorum state {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The file's JSON, with Kafka's names (`-1` for "none").
#[derive(Debug, Serialize, Deserialize)]
struct Json {
    #[serde(rename = "clusterId", default)]
    cluster_id: String,
    #[serde(rename = "leaderId")]
    leader_id: i32,
    #[serde(rename = "leaderEpoch")]
    leader_epoch: i32,
    #[serde(rename = "votedId")]
    voted_id: i32,
    data_version: i32,
}

pub struct QuorumStateFile {
    path: PathBuf,
}

impl QuorumStateFile {
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state, or the initial one when there is no file yet.
    pub fn load(&self) -> Result<QuorumState, QuorumStateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(QuorumState::default()),
            Err(source) => return Err(QuorumStateError::Io { path: self.path.clone(), source }),
        };
        let invalid = |reason: String| QuorumStateError::Invalid { path: self.path.clone(), reason };
        let json: Json = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if json.leader_epoch < 0 {
            return Err(invalid(format!("negative epoch {}", json.leader_epoch)));
        }
        let node = |id: i32| (id >= 0).then_some(NodeId(id));
        Ok(QuorumState { epoch: LeaderEpoch(json.leader_epoch), voted_for: node(json.voted_id), leader: node(json.leader_id) })
    }

    /// Makes `state` durable (see the module doc).
    pub fn store(&self, state: &QuorumState) -> Result<(), QuorumStateError> {
        let io = |source| QuorumStateError::Io { path: self.path.clone(), source };
        let json = Json {
            cluster_id: String::new(),
            leader_id: state.leader.map_or(-1, |n| n.0),
            leader_epoch: state.epoch.0,
            voted_id: state.voted_for.map_or(-1, |n| n.0),
            data_version: 1,
        };
        let text = serde_json::to_string(&json).map_err(|e| QuorumStateError::Invalid { path: self.path.clone(), reason: e.to_string() })?;
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_initial_and_a_stored_state_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = QuorumStateFile::new(dir.path());
        assert_eq!(f.load().unwrap(), QuorumState::default());
        let s = QuorumState { epoch: LeaderEpoch(7), voted_for: Some(NodeId(2)), leader: None };
        f.store(&s).unwrap();
        assert_eq!(f.load().unwrap(), s);
        let s2 = QuorumState { epoch: LeaderEpoch(8), voted_for: None, leader: Some(NodeId(3)) };
        f.store(&s2).unwrap();
        assert_eq!(QuorumStateFile::new(dir.path()).load().unwrap(), s2);
        assert!(!f.path().with_extension("tmp").exists());
    }

    #[test]
    fn reads_kafkas_own_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"clusterId":"","leaderId":1,"leaderEpoch":3,"votedId":-1,"votedDirectoryId":"AAAAAAAAAAAAAAAAAAAAAA","data_version":1}"#,
        )
        .unwrap();
        let s = QuorumStateFile::new(dir.path()).load().unwrap();
        assert_eq!(s, QuorumState { epoch: LeaderEpoch(3), voted_for: None, leader: Some(NodeId(1)) });
    }

    #[test]
    fn a_garbled_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{\"leaderEpoch\": 3").unwrap();
        assert!(matches!(QuorumStateFile::new(dir.path()).load(), Err(QuorumStateError::Invalid { .. })));
    }
}
