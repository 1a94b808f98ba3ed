//! `replication-offset-checkpoint`: the high watermark of every partition a node hosts, in
//! Kafka's text checkpoint layout (version 0, a count, then `topic partition offset` lines).
//!
//! A replica taking a replicated role after a restart starts its high watermark here instead
//! of at its log start, so committed records stay readable while the ISR reports in. A mark is
//! written only once known committed, so starting from one never exposes an uncommitted tail.

use std::collections::BTreeMap;
use std::path::Path;

use super::LogError;
use super::checkpoint::{read_checkpoint, write_checkpoint};
use crate::types::{Offset, TopicPartition};

/// The file's name in the data directory, as Kafka's.
pub const FILE_NAME: &str = "replication-offset-checkpoint";
const VERSION: u32 = 0;

/// Writes `marks` atomically to `path`.
pub fn write(path: &Path, marks: &BTreeMap<TopicPartition, Offset>) -> Result<(), LogError> {
    let entries: Vec<String> = marks.iter().map(|(tp, hw)| format!("{} {} {}", tp.topic, tp.partition.0, hw.0)).collect();
    write_checkpoint(path, VERSION, &entries)
}

/// Reads the marks at `path`; empty if there is no file. A line that does not parse makes
/// the whole file corrupt (`LogError::CorruptCheckpoint`), as Kafka treats it.
pub fn read(path: &Path) -> Result<BTreeMap<TopicPartition, Offset>, LogError> {
    let Some(entries) = read_checkpoint(path, VERSION)? else { return Ok(BTreeMap::new()) };
    let corrupt = || LogError::CorruptCheckpoint { path: path.to_path_buf(), reason: "bad entry" };
    let mut marks = BTreeMap::new();
    for entry in entries {
        let mut fields = entry.split_whitespace();
        let (Some(topic), Some(partition), Some(offset), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
            return Err(corrupt());
        };
        let partition: i32 = partition.parse().map_err(|_| corrupt())?;
        let offset: i64 = offset.parse().map_err(|_| corrupt())?;
        if partition < 0 || offset < 0 {
            return Err(corrupt());
        }
        marks.insert(TopicPartition::new(topic, partition), Offset(offset));
    }
    Ok(marks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_in_kafkas_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert!(read(&path).unwrap().is_empty(), "no file: no marks");
        let marks: BTreeMap<_, _> =
            [(TopicPartition::new("orders", 0), Offset(42)), (TopicPartition::new("__consumer_offsets", 17), Offset(0))].into();
        write(&path, &marks).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n2\n__consumer_offsets 17 0\norders 0 42\n");
        assert_eq!(read(&path).unwrap(), marks);
    }

    #[test]
    fn a_bad_line_is_a_corrupt_checkpoint_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for text in ["0\n1\norders 0\n", "0\n1\norders x 3\n", "0\n1\norders 0 -5\n", "0\n1\norders 0 3 9\n", "1\n0\n", "0\n2\na 0 1\n"] {
            std::fs::write(&path, text).unwrap();
            assert!(matches!(read(&path), Err(LogError::CorruptCheckpoint { .. })), "{text:?}");
        }
    }
}
