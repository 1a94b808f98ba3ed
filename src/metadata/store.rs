//! The metadata log on a single node: one JSON record per line in `__cluster_metadata/`,
//! fsynced before the image that includes it is published.
//!
//! Invariant: the published image is exactly the replay of the records on disk. A torn last
//! line (crash mid-write) is cut off on open; it was never acknowledged.
//!
//! Migration. Data directories written before partition registrations existed hold `Topic`
//! and `PartitionCount` records with a count and no replicas; the image replays those
//! partitions as *unknown* registrations. On open, once replay is done, the store appends for
//! every unknown partition the registration it always had in fact — replicas = ISR = [this
//! node], led by this node at leader epoch 0 — and registers and unfences this node if no
//! registration of it exists. The records are durable before the image is published, so the
//! migration runs once; records are only appended, so nothing of the old log is rewritten.
//! (Code from before this change cannot read the new record types: no downgrade.)

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use thiserror::Error;

use uuid::Uuid;

use super::delta::{LocalChanges, MetadataDelta};
use super::image::MetadataImage;
use super::records::MetadataRecord;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, PartitionId};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("metadata log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("metadata record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct MetadataStore {
    path: PathBuf,
    /// This node: the broker whose local changes [`MetadataStore::update_local`] reports.
    node_id: NodeId,
    /// Held while a change is computed and appended, so changes apply one at a time.
    writer: Mutex<File>,
    image: RwLock<Arc<MetadataImage>>,
}

impl MetadataStore {
    /// Opens (or creates) the metadata log under `data_dir`, replays it and migrates a legacy
    /// log for node `node_id` (see the module doc).
    pub fn open(data_dir: &Path, node_id: NodeId) -> Result<Self, StoreError> {
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
        let store = Self { path, node_id, writer: Mutex::new(file), image: RwLock::new(Arc::new(image)) };
        store.update(|image| Ok::<_, StoreError>((migration_records(image, node_id), ())))?;
        Ok(store)
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
        self.update_local(f).map(|(image, _, out)| (image, out))
    }

    /// As [`MetadataStore::update`], also returning what the records changed for this node.
    pub fn update_local<T, E>(
        &self,
        f: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), E>,
    ) -> Result<(Arc<MetadataImage>, LocalChanges, T), E>
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
            return Ok((current, LocalChanges::default(), out));
        }
        let mut buf = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut buf, r).map_err(StoreError::from)?;
            buf.push(b'\n');
        }
        let io = |source| StoreError::Io { path: self.path.clone(), source };
        file.write_all(&buf).map_err(io)?;
        file.sync_data().map_err(io)?;
        let mut delta = MetadataDelta::new(current);
        for r in &records {
            delta.replay(r);
        }
        let changes = delta.local_changes(self.node_id);
        let next = Arc::new(delta.apply());
        match self.image.write() {
            Ok(mut g) => *g = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        Ok((next, changes, out))
    }
}

/// The records that give a legacy image registrations (see the module doc); none for an
/// image that has them.
fn migration_records(image: &MetadataImage, node: NodeId) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if !image.brokers.contains_key(&node) {
        // Kafka's broker epoch is the offset of the registration record.
        let epoch = BrokerEpoch(image.offset);
        records.push(MetadataRecord::RegisterBroker {
            id: node,
            incarnation_id: Uuid::new_v4(),
            epoch,
            endpoints: vec![],
            rack: None,
            fenced: true,
            in_controlled_shutdown: false,
        });
        records.push(MetadataRecord::UnfenceBroker { id: node, epoch });
    }
    for t in image.topics.values() {
        for (i, r) in &t.partitions {
            if r.is_unknown() {
                records.push(local_partition_record(t.id, *i, node));
            }
        }
    }
    records
}

/// A partition hosted on `node` alone, as every partition was before registrations.
fn local_partition_record(topic_id: Uuid, partition: PartitionId, node: NodeId) -> MetadataRecord {
    MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: vec![node],
        isr: vec![node],
        elr: vec![],
        last_known_elr: vec![],
        leader: Some(node),
        leader_epoch: LeaderEpoch(0),
        partition_epoch: PartitionEpoch(0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path(), NodeId(1)).unwrap();
        let rec = MetadataRecord::Cluster { cluster_id: "abc".into() };
        store.update(|_| Ok::<_, StoreError>((vec![rec.clone()], ()))).unwrap();
        drop(store);
        let p = dir.path().join("__cluster_metadata/records.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"type\":\"Clu").unwrap();
        let store = MetadataStore::open(dir.path(), NodeId(1)).unwrap();
        assert_eq!(store.image().cluster_id, "abc");
        assert_eq!(store.image().offset, 3, "the registration, the unfencing, the cluster id");
        store.update(|_| Ok::<_, StoreError>((vec![MetadataRecord::ProducerIds { next: 7 }], ()))).unwrap();
        drop(store);
        let store = MetadataStore::open(dir.path(), NodeId(1)).unwrap();
        assert_eq!(store.image().next_producer_id, 7);
    }

    #[test]
    fn group_configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path(), NodeId(1)).unwrap();
        let set = |key: &str, value: Option<&str>| MetadataRecord::GroupConfig { group: "g".into(), key: key.into(), value: value.map(str::to_string) };
        let records = vec![set("consumer.session.timeout.ms", Some("50000")), set("consumer.heartbeat.interval.ms", Some("6000")), set("consumer.heartbeat.interval.ms", None)];
        store.update(|_| Ok::<_, StoreError>((records, ()))).unwrap();
        drop(store);
        let store = MetadataStore::open(dir.path(), NodeId(1)).unwrap();
        let configs = store.image().group_configs.get("g").cloned().unwrap();
        assert_eq!(configs.into_iter().collect::<Vec<_>>(), [("consumer.session.timeout.ms".to_string(), "50000".to_string())]);
    }

    /// A records.jsonl as the code before registrations wrote it: topics with counts only.
    const LEGACY_LOG: &str = concat!(
        r#"{"type":"Cluster","cluster_id":"legacy-cluster"}"#, "\n",
        r#"{"type":"FeatureLevel","name":"metadata.version","level":27}"#, "\n",
        r#"{"type":"Topic","name":"a","id":"6f1f5c3e-0a4b-4c8e-9d7a-1b2c3d4e5f60","partitions":2,"replication_factor":1,"configs":{"retention.ms":"1000"}}"#, "\n",
        r#"{"type":"Topic","name":"gone","id":"00000000-0000-4000-8000-000000000001","partitions":1,"replication_factor":1,"configs":{}}"#, "\n",
        r#"{"type":"PartitionCount","id":"6f1f5c3e-0a4b-4c8e-9d7a-1b2c3d4e5f60","partitions":3}"#, "\n",
        r#"{"type":"TopicConfig","id":"6f1f5c3e-0a4b-4c8e-9d7a-1b2c3d4e5f60","key":"cleanup.policy","value":"compact"}"#, "\n",
        r#"{"type":"RemoveTopic","id":"00000000-0000-4000-8000-000000000001"}"#, "\n",
        r#"{"type":"Topic","name":"b","id":"00000000-0000-4000-8000-000000000002","partitions":1,"replication_factor":1,"configs":{}}"#, "\n",
        r#"{"type":"ProducerIds","next":2000}"#, "\n",
        r#"{"type":"GroupConfig","group":"g","key":"consumer.session.timeout.ms","value":"50000"}"#, "\n",
    );

    #[test]
    fn a_legacy_log_opens_unchanged_and_gains_registrations_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("__cluster_metadata");
        fs::create_dir_all(&meta).unwrap();
        fs::write(meta.join("records.jsonl"), LEGACY_LOG).unwrap();
        let node = NodeId(7);
        let store = MetadataStore::open(dir.path(), node).unwrap();
        let image = store.image();
        assert_eq!(image.cluster_id, "legacy-cluster");
        assert_eq!(image.feature_level("metadata.version"), 27);
        assert_eq!(image.topics.keys().collect::<Vec<_>>(), ["a", "b"]);
        let a = image.topic("a").unwrap();
        assert_eq!(a.id, Uuid::parse_str("6f1f5c3e-0a4b-4c8e-9d7a-1b2c3d4e5f60").unwrap());
        assert_eq!(a.partition_count(), 3);
        assert_eq!(a.configs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(), ["cleanup.policy=compact", "retention.ms=1000"]);
        assert_eq!(image.topic("b").unwrap().partition_count(), 1);
        assert!(image.topic_by_id(&Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001)).is_none());
        assert_eq!(image.next_producer_id, 2000);
        assert_eq!(image.group_configs.len(), 1);
        for t in image.topics.values() {
            for r in t.partitions.values() {
                assert_eq!((r.replicas.as_slice(), r.isr.as_slice(), r.leader), ([node].as_slice(), [node].as_slice(), Some(node)), "{}", t.name);
                assert_eq!(r.leader_epoch, LeaderEpoch(0));
            }
        }
        let me = image.brokers.get(&node).unwrap();
        assert!(!me.fenced);
        let offset = image.offset;
        assert_eq!(offset, 10 + 2 + 4, "the old records, the registration and unfencing, a partition record per partition");
        drop(store);

        // The migration is durable and happens once.
        let store = MetadataStore::open(dir.path(), node).unwrap();
        assert_eq!(store.image().offset, offset);
        assert_eq!(store.image().topic("a").unwrap().partitions, image.topic("a").unwrap().partitions);
        assert_eq!(store.image().brokers, image.brokers);
    }
}
