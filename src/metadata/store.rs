//! The metadata log and the image it produces, in one of two modes.
//!
//! **Local file** ([`MetadataStore::open`]): one JSON record per line in
//! `__cluster_metadata/records.jsonl`, fsynced before the image that includes it is published.
//! The published image is exactly the replay of the records on disk. A torn last line (crash
//! mid-write) is cut off on open; it was never acknowledged. This is how the single node kept
//! its metadata before it ran as the only voter of its own quorum; `blumfeld` now moves such a
//! file into the quorum's log on first start ([`super::migrate`]), and the unit tests, which
//! open a broker without a quorum, still use it.
//!
//! **Quorum** ([`MetadataStore::open_quorum`], then [`MetadataStore::attach_quorum`]): the
//! records are entries of the Raft log `__cluster_metadata-0`. The image is built only from
//! *committed* entries, which the quorum driver hands to [`MetadataStore::applier`] in log
//! order on every node (voters and observers alike); the applier replays them, publishes the
//! image and tells the broker what changed for it. On the active controller (the quorum
//! leader), [`MetadataStore::update`] first waits until everything in its log is applied, so
//! the image it computes from is the latest, then proposes the records and returns once they
//! are committed and applied here. A change is one entry (its records as a JSON array), so
//! it commits whole or not at all. Changes are serialised, so the broker epoch of a
//! registration can be the offset of the entry that carries it. In quorum mode `image.offset`
//! is the offset of the next entry (the quorum's own leader-change entries count too); on a
//! single node, the number of records. In both it is the metadata log end the image reflects.
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
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::watch;

use uuid::Uuid;

use super::delta::{LocalChanges, MetadataDelta};
use super::image::MetadataImage;
use super::records::MetadataRecord;
pub use super::write_rule::{decode_entry, encode_change};
use super::write_rule::{Gate, LeaderView, Outcome, WriteRule, replay_entry};
use crate::raft::driver::{Committed, QuorumStatus, RaftHandle};
use crate::raft::RoleKind;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch, PartitionId};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("metadata log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("metadata record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// This node is not the active controller (quorum mode); `leader` is the one it knows.
    #[error("This is not the correct controller for this cluster.")]
    NotController { leader: Option<NodeId> },
    #[error("The metadata change was not committed within {0} ms.")]
    Timeout(u64),
}

/// Told about every image the store publishes: `Some(changes)` after a delta, `None` after a
/// snapshot (the broker then rescans the whole image).
pub type ImageListener = Box<dyn Fn(&Arc<MetadataImage>, Option<&LocalChanges>) + Send + Sync>;

/// The single-node log file.
struct LocalLog {
    path: PathBuf,
    /// Held while a change is computed and appended, so changes apply one at a time.
    writer: Mutex<File>,
}

struct QuorumLink {
    raft: RaftHandle,
    /// How long a controller change may wait to be committed.
    timeout: Duration,
}

pub struct MetadataStore {
    /// This node: the broker whose local changes are reported.
    node_id: NodeId,
    local: Option<LocalLog>,
    quorum: OnceLock<QuorumLink>,
    /// Serialises the active controller's changes (quorum mode).
    controller: tokio::sync::Mutex<()>,
    image: RwLock<Arc<MetadataImage>>,
    /// `image.offset` of the published image (quorum mode: what is applied).
    applied: watch::Sender<i64>,
    listener: OnceLock<ImageListener>,
    /// Bytes of records applied since the last snapshot (quorum mode).
    since_snapshot: std::sync::atomic::AtomicU64,
    /// The active controller's write rule (quorum mode).
    rule: WriteRule,
}

impl MetadataStore {
    /// Opens (or creates) the single-node metadata log under `data_dir`, replays it and
    /// migrates a legacy log for node `node_id` (see the module doc).
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
        let offset = image.offset;
        let store = Self {
            node_id,
            local: Some(LocalLog { path, writer: Mutex::new(file) }),
            quorum: OnceLock::new(),
            controller: tokio::sync::Mutex::new(()),
            image: RwLock::new(Arc::new(image)),
            applied: watch::channel(offset).0,
            listener: OnceLock::new(),
            since_snapshot: Default::default(),
            rule: WriteRule::default(),
        };
        store.update(|image| Ok::<_, StoreError>((migration_records(image, node_id), ())))?;
        Ok(store)
    }

    /// A store whose records come from the metadata quorum: empty until the quorum is
    /// attached and hands it committed entries.
    pub fn open_quorum(node_id: NodeId) -> Self {
        Self {
            node_id,
            local: None,
            quorum: OnceLock::new(),
            controller: tokio::sync::Mutex::new(()),
            image: RwLock::new(Arc::new(MetadataImage::default())),
            applied: watch::channel(0).0,
            listener: OnceLock::new(),
            since_snapshot: Default::default(),
            rule: WriteRule::default(),
        }
    }

    pub fn is_quorum(&self) -> bool {
        self.local.is_none()
    }

    /// Connects a quorum-mode store to the quorum it proposes through.
    pub fn attach_quorum(&self, raft: RaftHandle, timeout: Duration) {
        let _ = self.quorum.set(QuorumLink { raft, timeout });
    }

    /// Sets the one listener of published images (the broker).
    pub fn set_listener(&self, listener: ImageListener) {
        let _ = self.listener.set(listener);
    }

    /// The offset of the next entry to apply (quorum mode: everything before it is applied).
    pub fn applied_offset(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Bytes of records applied since the last snapshot.
    pub fn bytes_since_snapshot(&self) -> u64 {
        self.since_snapshot.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A snapshot covering `bytes` of the records counted so far was written.
    pub fn snapshot_taken(&self, bytes: u64) {
        let _ = self.since_snapshot.fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |b| Some(b.saturating_sub(bytes)));
    }

    /// Changes of [`MetadataStore::applied_offset`].
    pub fn watch_applied(&self) -> watch::Receiver<i64> {
        self.applied.subscribe()
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self.image.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_image(&self, next: &Arc<MetadataImage>) {
        match self.image.write() {
            Ok(mut g) => *g = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
    }

    /// Quorum mode: the image, then the listener (the broker opens and closes partitions),
    /// then the applied offset, so that a change's waiter returns only once it took effect.
    fn publish(&self, next: Arc<MetadataImage>, changes: Option<&LocalChanges>) {
        self.set_image(&next);
        if let Some(l) = self.listener.get() {
            l(&next, changes);
        }
        self.applied.send_replace(next.offset);
    }

    /// Computes records from the current image with `f`, makes them durable (single node) or
    /// committed (quorum) and publishes the new image. Changes are serialised: `f` always sees
    /// the latest image.
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
    /// In quorum mode the listener has already been told (the applier tells it about every
    /// delta, this node's own included), and the changes returned are empty.
    pub fn update_local<T, E>(
        &self,
        f: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), E>,
    ) -> Result<(Arc<MetadataImage>, LocalChanges, T), E>
    where
        E: From<StoreError>,
    {
        let Some(local) = &self.local else {
            let Some(q) = self.quorum.get() else { return Err(StoreError::NotController { leader: None }.into()) };
            let (image, out) = crate::runtime::block_on(self.propose(q, f))?;
            return Ok((image, LocalChanges::default(), out));
        };
        let mut file = match local.writer.lock() {
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
        let io = |source| StoreError::Io { path: local.path.clone(), source };
        file.write_all(&buf).map_err(io)?;
        file.sync_data().map_err(io)?;
        let mut delta = MetadataDelta::new(current);
        for r in &records {
            delta.replay(r);
        }
        let changes = delta.local_changes(self.node_id);
        let next = Arc::new(delta.apply());
        self.set_image(&next);
        self.applied.send_replace(next.offset);
        Ok((next, changes, out))
    }

    /// The active controller's change (see the module doc): wait until this leader has applied
    /// its whole log, compute, propose, wait until committed and applied.
    async fn propose<T, E>(
        &self,
        q: &QuorumLink,
        f: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), E>,
    ) -> Result<(Arc<MetadataImage>, T), E>
    where
        E: From<StoreError>,
    {
        let deadline = tokio::time::Instant::now() + q.timeout;
        let timeout = || StoreError::Timeout(q.timeout.as_millis() as u64);
        let _one_at_a_time = match tokio::time::timeout_at(deadline, self.controller.lock()).await {
            Ok(g) => g,
            Err(_) => return Err(timeout().into()),
        };
        let mut status_rx = q.raft.watch();
        let mut applied_rx = self.applied.subscribe();
        let not_controller = |leader: Option<NodeId>| StoreError::NotController { leader: leader.filter(|l| *l != self.node_id) };
        let epoch = loop {
            let view = leader_view(&status_rx.borrow_and_update());
            match self.rule.may_compute(&view, Offset(*applied_rx.borrow_and_update())) {
                Gate::Compute(epoch) => break epoch,
                Gate::NotController(leader) => return Err(not_controller(leader).into()),
                Gate::Wait => {}
            }
            tokio::select! {
                _ = status_rx.changed() => {}
                _ = applied_rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(timeout().into()),
            }
        };
        let current = self.image();
        let (records, out) = f(&current)?;
        if records.is_empty() {
            return Ok((current, out));
        }
        // One entry per change: the quorum commits entries, so a change commits whole or not
        // at all (a failover cannot leave, say, a topic without its partitions).
        let entry = encode_change(&records).map_err(StoreError::from)?;
        let first = q.raft.propose(vec![entry]).await.map_err(|_| StoreError::NotController { leader: None })?;
        let change = self.rule.proposed(first, epoch);
        loop {
            let view = leader_view(&status_rx.borrow_and_update());
            match change.poll(&view, Offset(*applied_rx.borrow_and_update())) {
                Outcome::Applied => return Ok((self.image(), out)),
                Outcome::NotController(leader) => return Err(not_controller(leader).into()),
                Outcome::Wait => {}
            }
            tokio::select! {
                _ = status_rx.changed() => {}
                _ = applied_rx.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(timeout().into()),
            }
        }
    }

    /// Applies what the quorum committed (quorum mode), in order; runs on the applier thread.
    pub fn apply_committed(&self, committed: Committed) {
        match committed {
            Committed::Entries { base, entries } => {
                let current = self.image();
                if base.0 != current.offset {
                    // Entries already applied (or a gap, which the driver never produces).
                    tracing::warn!(base = base.0, applied = current.offset, "metadata entries out of order; skipped");
                    return;
                }
                let mut delta = MetadataDelta::new(current);
                let mut bytes = 0u64;
                for e in &entries {
                    match replay_entry(&mut delta, e) {
                        Ok(n) => bytes += n,
                        // Written by a newer version: skipped, its offset kept.
                        Err(err) => tracing::error!(error = %err.0, "unreadable metadata record skipped"),
                    }
                }
                let changes = delta.local_changes(self.node_id);
                let next = Arc::new(delta.apply());
                self.since_snapshot.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                self.publish(next, Some(&changes));
            }
            Committed::Snapshot { end, data } => match image_from_snapshot(&data) {
                Ok(mut image) => {
                    image.offset = end.0;
                    self.since_snapshot.store(0, std::sync::atomic::Ordering::Relaxed);
                    self.publish(Arc::new(image), None);
                }
                Err(e) => tracing::error!(error = %e, end = end.0, "the metadata snapshot cannot be decoded"),
            },
        }
    }

    /// A thread that applies what the quorum commits; the returned sink feeds it.
    pub fn applier(self: &Arc<Self>) -> std::io::Result<crate::raft::driver::CommitSink> {
        let (tx, rx) = std::sync::mpsc::channel::<Committed>();
        let weak = Arc::downgrade(self);
        std::thread::Builder::new().name("metadata-apply".into()).spawn(move || {
            while let Ok(c) = rx.recv() {
                let Some(store) = weak.upgrade() else { return };
                store.apply_committed(c);
            }
        })?;
        let tx = Mutex::new(tx);
        Ok(Box::new(move |c| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(c);
            }
        }))
    }
}

/// What the write rule reads of the quorum driver's status.
fn leader_view(s: &QuorumStatus) -> LeaderView {
    LeaderView { is_leader: s.role == RoleKind::Leader && !s.failed, epoch: s.epoch, leader: s.leader, log_end: s.log_end_offset }
}

/// A snapshot's bytes: the image as records, one JSON record per line.
pub fn snapshot_bytes(image: &MetadataImage) -> Result<Bytes, StoreError> {
    let mut buf = Vec::new();
    for r in image.to_records() {
        serde_json::to_writer(&mut buf, &r)?;
        buf.push(b'\n');
    }
    Ok(Bytes::from(buf))
}

pub fn image_from_snapshot(data: &[u8]) -> Result<MetadataImage, serde_json::Error> {
    let mut image = MetadataImage::default();
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        image.replay(&serde_json::from_slice::<MetadataRecord>(line)?);
    }
    Ok(image)
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
        adding_replicas: vec![],
        removing_replicas: vec![],
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
