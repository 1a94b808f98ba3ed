//! The metadata log on a single node: one JSON record per line in `__cluster_metadata/`,
//! fsynced before the image that includes it is published.
//!
//! Invariant: the published image is exactly the replay of the records on disk. A torn last
//! line (crash mid-write) is cut off on open; it was never acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;

use super::image::MetadataImage;
use super::records::MetadataRecord;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("metadata log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("metadata record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct MetadataStore {
    path: PathBuf,
    /// Held while a change is computed and appended, so changes apply one at a time.
    writer: Mutex<File>,
    image: RwLock<Arc<MetadataImage>>,
}

impl MetadataStore {
    /// Opens (or creates) the metadata log under `data_dir` and replays it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join("__cluster_metadata");
        let path = dir.join("records.jsonl");
        let io = |source| StoreError::Io { path: path.clone(), source };
        fs::create_dir_all(&dir).map_err(io)?;
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path).map_err(io)?;
        let mut image = MetadataImage::default();
        let mut valid_len = 0u64;
        {
            let mut reader = BufReader::new(&mut file);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                match serde_json::from_str::<MetadataRecord>(line.trim_end()) {
                    Ok(r) => image.replay(&r),
                    Err(_) => break,
                }
                valid_len += n as u64;
            }
        }
        let len = file.metadata().map_err(io)?.len();
        if len != valid_len {
            tracing::warn!(path = %path.display(), valid_len, len, "cutting torn metadata log tail");
            file.set_len(valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self { path, writer: Mutex::new(file), image: RwLock::new(Arc::new(image)) })
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self.image.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Computes records from the current image with `f`, appends them durably and publishes
    /// the new image. Changes are serialised: `f` always sees the latest image.
    pub fn update<T, E>(
        &self,
        f: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), E>,
    ) -> Result<(Arc<MetadataImage>, T), E>
    where
        E: From<StoreError>,
    {
        let mut file = match self.writer.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let current = self.image();
        let (records, out) = f(&current)?;
        if records.is_empty() {
            return Ok((current, out));
        }
        let mut buf = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut buf, r).map_err(StoreError::from)?;
            buf.push(b'\n');
        }
        let io = |source| StoreError::Io { path: self.path.clone(), source };
        file.write_all(&buf).map_err(io)?;
        file.sync_data().map_err(io)?;
        let mut next = (*current).clone();
        for r in &records {
            next.replay(r);
        }
        let next = Arc::new(next);
        match self.image.write() {
            Ok(mut g) => *g = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        Ok((next, out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        let rec = MetadataRecord::Cluster { cluster_id: "abc".into() };
        store.update(|_| Ok::<_, StoreError>((vec![rec.clone()], ()))).unwrap();
        drop(store);
        let p = dir.path().join("__cluster_metadata/records.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"type\":\"Clu").unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.image().cluster_id, "abc");
        assert_eq!(store.image().offset, 1);
        store.update(|_| Ok::<_, StoreError>((vec![MetadataRecord::ProducerIds { next: 7 }], ()))).unwrap();
        drop(store);
        let store = MetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.image().next_producer_id, 7);
    }

    #[test]
    fn group_configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        let set = |key: &str, value: Option<&str>| MetadataRecord::GroupConfig { group: "g".into(), key: key.into(), value: value.map(str::to_string) };
        let records = vec![set("consumer.session.timeout.ms", Some("50000")), set("consumer.heartbeat.interval.ms", Some("6000")), set("consumer.heartbeat.interval.ms", None)];
        store.update(|_| Ok::<_, StoreError>((records, ()))).unwrap();
        drop(store);
        let store = MetadataStore::open(dir.path()).unwrap();
        let configs = store.image().group_configs.get("g").cloned().unwrap();
        assert_eq!(configs.into_iter().collect::<Vec<_>>(), [("consumer.session.timeout.ms".to_string(), "50000".to_string())]);
    }
}
