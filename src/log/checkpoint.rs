//! Small durable files: atomic replace, and Kafka's text checkpoint format.
//!
//! Every metadata file (leader-epoch cache, log start offset, clean-shutdown marker, indexes,
//! producer snapshots) is replaced atomically: write `<name>.tmp`, fsync it, rename over the
//! old file, fsync the directory. A crash therefore leaves either the old or the new file,
//! never a mix; a leftover `.tmp` is deleted when the log opens.
//!
//! Text checkpoints follow Kafka's `CheckpointFile` layout: a version line, a count line, then
//! one entry per line.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LogError;

/// Suffix of files being written; any found at open are leftovers of a crash.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically and durably (see the module docs).
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = tmp_path(path);
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory holding `path`, so a create, rename or delete in it is durable.
pub fn sync_dir(path: &Path) -> Result<(), LogError> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Writes a Kafka-style text checkpoint: `version`, the entry count, then the entries.
pub fn write_checkpoint(path: &Path, version: u32, entries: &[String]) -> Result<(), LogError> {
    let mut text = format!("{version}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(entry);
        text.push('\n');
    }
    write_file_atomically(path, text.as_bytes())
}

/// Reads a checkpoint written by [`write_checkpoint`]. `Ok(None)` if the file does not exist;
/// a wrong version, a wrong count or unreadable text is `LogError::CorruptCheckpoint`.
pub fn read_checkpoint(path: &Path, version: u32) -> Result<Option<Vec<String>>, LogError> {
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let corrupt = |reason| LogError::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let text = String::from_utf8(text).map_err(|_| corrupt("not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next().and_then(|l| l.trim().parse::<u32>().ok()) != Some(version) {
        return Err(corrupt("unknown version"));
    }
    let count = lines
        .next()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .ok_or(corrupt("bad count"))?;
    let entries: Vec<String> = lines.map(str::to_owned).collect();
    if entries.len() != count {
        return Err(corrupt("entry count does not match"));
    }
    Ok(Some(entries))
}

/// Parses a whitespace-separated entry of `N` integers.
pub fn parse_ints<const N: usize>(entry: &str, path: &Path) -> Result<[i64; N], LogError> {
    let corrupt = || LogError::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason: "bad entry",
    };
    let mut out = [0i64; N];
    let mut fields = entry.split_whitespace();
    for slot in out.iter_mut() {
        *slot = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(corrupt)?;
    }
    if fields.next().is_some() {
        return Err(corrupt());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp");
        assert_eq!(read_checkpoint(&path, 0).unwrap(), None);
        write_checkpoint(&path, 0, &["1 10".into(), "3 40".into()]).unwrap();
        let entries = read_checkpoint(&path, 0).unwrap().unwrap();
        assert_eq!(parse_ints::<2>(&entries[1], &path).unwrap(), [3, 40]);
        assert!(parse_ints::<3>(&entries[1], &path).is_err());
        assert!(read_checkpoint(&path, 1).is_err());
        fs::write(&path, "0\n3\n1 10\n").unwrap();
        assert!(read_checkpoint(&path, 0).is_err());
        assert!(!tmp_path(&path).exists());
    }
}
