//! `partition.metadata`: the topic id a partition directory belongs to, in Kafka's layout
//! (`version: 0`, then `topic_id: <id>` with the id in Kafka's URL-safe base64 form).
//!
//! A directory is named after the topic, not its id, so after a topic was deleted and
//! created again while a broker was down, that broker's directory of the same name holds the
//! old topic's records. The file tells the two apart: a broker opening a partition whose
//! directory names another topic id moves that directory aside as stray (see
//! [`stray_dir_name`]) and starts the partition empty, as Kafka's `LogManager` does, instead
//! of serving the old records as the new topic's.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::LogError;
use super::checkpoint::write_file_atomically;

/// The file's name in a partition directory, as Kafka's.
pub const FILE_NAME: &str = "partition.metadata";
const VERSION: u32 = 0;
/// Kafka's suffix for a partition directory set aside as not belonging to this broker.
pub const STRAY_SUFFIX: &str = "-stray";

/// A topic id as Kafka prints it: its 16 bytes in URL-safe base64 without padding.
pub fn encode_topic_id(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// The topic id of Kafka's printed form, if it is one.
pub fn decode_topic_id(text: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// Writes the file for `topic_id` into `dir`, atomically.
pub fn write(dir: &Path, topic_id: Uuid) -> Result<(), LogError> {
    let text = format!("version: {VERSION}\ntopic_id: {}", encode_topic_id(topic_id));
    write_file_atomically(&dir.join(FILE_NAME), text.as_bytes())
}

/// The topic id recorded in `dir`: `None` if there is no file (a directory written before
/// Blumfeld kept one); a file that does not parse, names another version or the zero id is
/// corrupt, as Kafka reads it.
pub fn read(dir: &Path) -> Result<Option<Uuid>, LogError> {
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::Io(e)),
    };
    let corrupt = |reason| LogError::CorruptCheckpoint { path: path.clone(), reason };
    let mut lines = text.lines();
    let field = |line: Option<&str>, key: &str| -> Option<String> {
        let mut parts = line?.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(k), Some(v), None) if k == format!("{key}:") => Some(v.to_string()),
            _ => None,
        }
    };
    let version = field(lines.next(), "version").ok_or_else(|| corrupt("malformed version line"))?;
    if version.parse::<u32>().ok() != Some(VERSION) {
        return Err(corrupt("unrecognized version"));
    }
    let id = field(lines.next(), "topic_id").ok_or_else(|| corrupt("malformed topic_id line"))?;
    match decode_topic_id(&id) {
        Some(id) if !id.is_nil() => Ok(Some(id)),
        _ => Err(corrupt("invalid topic id")),
    }
}

/// The name a stray partition directory is renamed to: `<topic>-<partition>.<unique>-stray`
/// (Kafka's `logStrayDirName`), unique so that several can be set aside for one partition.
pub fn stray_dir_name(partition_dir_name: &str) -> String {
    format!("{partition_dir_name}.{}{STRAY_SUFFIX}", Uuid::new_v4().simple())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_in_kafkas_layout() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None, "no file: no id");
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        write(dir.path(), id).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, "version: 0\ntopic_id: ASNFZ4mrze8BI0VniavN7w");
        assert_eq!(read(dir.path()).unwrap(), Some(id));
        assert_eq!(decode_topic_id(&encode_topic_id(id)), Some(id));
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "version: 1\ntopic_id: ASNFZ4mrze8BI0VniavN7w", "version: 0\n", "version: 0\ntopic_id: !!",
            "version: 0\ntopic_id: AAAAAAAAAAAAAAAAAAAAAA", "version 0\ntopic_id: ASNFZ4mrze8BI0VniavN7w", "\u{fffd}\u{0}"]
        {
            std::fs::write(dir.path().join(FILE_NAME), bad).unwrap();
            assert!(read(dir.path()).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the file holds, reading it answers (an id, none or an error), never panics.
        #[test]
        fn any_content_is_read_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
                                             prefix in 0usize..3) {
            let dir = tempfile::tempdir().unwrap();
            let mut content = ["", "version: 0\n", "version: 0\ntopic_id: "][prefix].as_bytes().to_vec();
            content.extend(bytes);
            std::fs::write(dir.path().join(FILE_NAME), &content).unwrap();
            let _ = read(dir.path());
        }
    }

    #[test]
    fn stray_names_are_kafkas_and_unique() {
        let a = stray_dir_name("orders-3");
        assert!(a.starts_with("orders-3.") && a.ends_with("-stray") && a.len() == "orders-3.".len() + 32 + 6, "{a}");
        assert_ne!(a, stray_dir_name("orders-3"));
    }
}
