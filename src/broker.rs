//! The replica manager: the partitions this broker hosts, kept in step with the metadata image.
//!
//! Every metadata change goes through [`Broker::apply_metadata`]: the controller computes
//! records, the store makes them durable, then [`Broker::apply_local_changes`] acts on what
//! the delta changed for this node: opens partitions it now hosts, closes and deletes those it
//! no longer does. At startup [`Broker::reconcile`] scans the whole image once. Appends wake waiting fetches through
//! one [`tokio::sync::Notify`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock, Weak};

use thiserror::Error;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::BrokerConfig;
use crate::coordinator::LeadershipListener;
use crate::log::{LogConfig, RecoveryMode, hw_checkpoint};
use crate::metadata::controller::{self, ControllerError};
use crate::metadata::features::{self, InvalidUpdate, UpgradeType};
use crate::metadata::store::StoreError;
use crate::metadata::registration::PartitionRegistration;
use crate::metadata::{LocalChanges, MetadataImage, MetadataRecord, MetadataStore, TopicImage};
use crate::metrics::{Metrics, MetricsConfig};
use crate::partition::{Partition, PartitionError};
use crate::replication::{AlterIsrRequest, LeaderRegistration, ReplicationConfig};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionId, TopicPartition};
use crate::sync::{lock, read_lock, write_lock};

/// Producer ids are taken from the metadata log in blocks of this size, so handing one out
/// does not cost an fsync.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("data directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        BrokerError::Controller(ControllerError::Store(e))
    }
}

/// Where clients are told to connect.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub host: String,
    pub port: i32,
}

pub struct Broker {
    /// The static configuration: file, `--override`, defaults. Keys Kafka lets change at run
    /// time are read from [`Broker::effective_config`] instead.
    pub config: BrokerConfig,
    /// `config` with the image's dynamic broker configs over it (see `effective_config`).
    effective: RwLock<Arc<EffectiveConfig>>,
    pub node_id: i32,
    pub clock: Arc<dyn Clock>,
    data_dir: PathBuf,
    metadata: Arc<MetadataStore>,
    /// Set at start-up on a node of a multi-node cluster.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Held by `reconcile`, which opens partitions outside the `partitions` lock.
    reconciling: Mutex<()>,
    /// How logs left unclean by the previous run are recovered (see `recovery_mode`).
    recovery_mode: RecoveryMode,
    advertised: RwLock<Advertised>,
    /// The next producer id and the end of the block reserved in the metadata log.
    producer_ids: Mutex<(i64, i64)>,
    pub started_at_ms: AtomicI64,
    pub metrics: Arc<Metrics>,
    /// ISR changes the hosted leaders want, for the AlterPartition sender (`cluster::replica`).
    isr_changes: IsrChanges,
    /// The coordinators, told when this node starts or stops leading a partition of their
    /// internal topic. Weak: the coordinators hold the broker.
    leadership_listeners: RwLock<Vec<Weak<dyn LeadershipListener>>>,
    /// High watermarks read from `replication-offset-checkpoint` at start (in a cluster), each
    /// handed to its partition when it opens.
    checkpointed_high_watermarks: Mutex<std::collections::BTreeMap<TopicPartition, Offset>>,
    /// Held while `replication-offset-checkpoint` is written: one writer at a time.
    hw_checkpoint_writing: Mutex<()>,
}

/// The configuration in force and the dynamic layers it was built from (the default broker
/// entity's and this broker's configs in the image), to tell when it must be built again.
struct EffectiveConfig {
    config: Arc<BrokerConfig>,
    layers: (BTreeMap<String, String>, BTreeMap<String, String>),
}

/// An internal topic as its coordinator wants it; [`Broker::create_internal_topic`] fits it
/// to the cluster.
#[derive(Debug, Clone)]
pub struct InternalTopic {
    pub name: String,
    pub partitions: i32,
    /// The configured factor (`offsets.topic.replication.factor`, ...).
    pub replication_factor: i16,
    pub configs: std::collections::BTreeMap<String, String>,
}

impl InternalTopic {
    /// The topic to create on a cluster whose image is `image`.
    fn spec(&self, image: &MetadataImage) -> controller::TopicSpec {
        let unfenced = image.brokers.values().filter(|b| !b.fenced && !b.in_controlled_shutdown).count();
        // A single node's image may register no broker: it is the one.
        let available = i16::try_from(unfenced.max(1)).unwrap_or(i16::MAX);
        let replication_factor = self.replication_factor.clamp(1, available);
        let mut configs = self.configs.clone();
        if let Some(v) = configs.get_mut("min.insync.replicas")
            && let Ok(min_isr) = v.parse::<i16>()
            && min_isr > replication_factor
        {
            *v = replication_factor.to_string();
        }
        controller::TopicSpec { name: self.name.clone(), partitions: self.partitions, replication_factor, configs, assignment: None }
    }
}

/// A partition leader's ISR change waiting to go to the controller.
#[derive(Debug, Clone)]
pub struct IsrChange {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub request: AlterIsrRequest,
}

/// The queue of [`IsrChange`]s: leaders push, one sender drains.
#[derive(Default)]
struct IsrChanges {
    pending: Mutex<Vec<IsrChange>>,
    ready: tokio::sync::Notify,
}

impl Broker {
    /// Opens the data directory: replays metadata, then opens every partition's log.
    pub fn open(config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<Arc<Self>, BrokerError> {
        let settings = config.settings();
        let data_dir = settings.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| BrokerError::Io { path: data_dir.clone(), source })?;
        let quorum = settings.runs_quorum();
        let metadata = if quorum {
            // The image comes from the quorum once it runs; the active controller writes the
            // cluster id and feature levels of a new cluster.
            Arc::new(MetadataStore::open_quorum(settings.node_id))
        } else {
            // A directory whose metadata lives in the quorum's log: opening it on a local
            // file would find no topics and set every partition aside. Refused instead.
            let quorum_log = data_dir.join(crate::raft::file_log::DIR_NAME);
            if quorum_log.exists() {
                return Err(BrokerError::Io {
                    path: quorum_log,
                    source: std::io::Error::other(
                        "this data directory keeps its metadata in the quorum's log; start it as a quorum node \
                         (controller.quorum.voters, or a single node without BLUMFELD_SINGLE_NODE_QUORUM=0)",
                    ),
                });
            }
            let metadata = MetadataStore::open(&data_dir, settings.node_id)?;
            if metadata.image().cluster_id.is_empty() {
                let cluster_id = settings.cluster_id.clone().unwrap_or_else(new_cluster_id);
                metadata.update(|_| Ok::<_, StoreError>((vec![MetadataRecord::Cluster { cluster_id }], ())))?;
            }
            // A data directory from before feature flags gets the levels a new one starts at.
            if !metadata.image().features.contains_key(features::METADATA_VERSION) {
                metadata.update(|_| Ok::<_, StoreError>((features::bootstrap_records(), ())))?;
            }
            Arc::new(metadata)
        };
        let listener = settings.listener().ok();
        let advertised = Advertised {
            host: listener.map(|l| l.ip().to_string()).unwrap_or_else(|| "127.0.0.1".into()),
            port: listener.map(|l| l.port() as i32).unwrap_or(9092),
        };
        let metrics_config = MetricsConfig { partition_detail: settings.metrics_partition_detail };
        let metrics = Arc::new(Metrics::new(metrics_config).map_err(|e| BrokerError::Io { path: data_dir.clone(), source: std::io::Error::other(e.to_string()) })?);
        let now = clock.now_ms();
        let recovery_mode = recovery_mode(&data_dir);
        let checkpointed_high_watermarks = if quorum { read_high_watermarks(&data_dir) } else { Default::default() };
        let effective = RwLock::new(Arc::new(EffectiveConfig { config: Arc::new(config.clone()), layers: Default::default() }));
        let broker = Arc::new(Self {
            node_id: settings.node_id.0,
            config,
            effective,
            clock,
            data_dir,
            metadata,
            cluster: std::sync::OnceLock::new(),
            partitions: RwLock::new(HashMap::new()),
            reconciling: Mutex::new(()),
            recovery_mode,
            advertised: RwLock::new(advertised),
            producer_ids: Mutex::new((0, 0)),
            started_at_ms: AtomicI64::new(now),
            metrics,
            isr_changes: IsrChanges::default(),
            leadership_listeners: RwLock::new(Vec::new()),
            checkpointed_high_watermarks: Mutex::new(checkpointed_high_watermarks),
            hw_checkpoint_writing: Mutex::new(()),
        });
        if quorum {
            // Directories are kept until the image says otherwise: it is empty until the
            // quorum has replayed the log; then main sets strays aside (`set_aside_stray_dirs`).
            let weak = Arc::downgrade(&broker);
            broker.metadata.set_listener(Box::new(move |image, changes| {
                let Some(b) = weak.upgrade() else { return };
                if !b.config.settings().roles.broker {
                    // A controller decides with the configuration in force too.
                    b.refresh_effective_config(image);
                    return;
                }
                let out = match changes {
                    Some(c) => b.apply_local_changes(image, c),
                    None => b.reconcile(image),
                };
                b.refresh_isr_eligible(image);
                if let Err(e) = out {
                    tracing::error!(error = %e, "applying metadata to the hosted partitions failed");
                }
            }));
        } else {
            broker.remove_stray_dirs();
            broker.reconcile(&broker.metadata.image())?;
        }
        Ok(broker)
    }

    pub fn metadata_store(&self) -> &Arc<MetadataStore> {
        &self.metadata
    }

    /// The offset of the next metadata entry to apply: everything before it is in the image.
    pub fn metadata_applied_offset(&self) -> i64 {
        self.metadata.applied_offset()
    }

    /// Joins this node to its cluster (once, at start-up).
    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// The cluster this node is part of; `None` on a single node.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// Whether this node leads the partition, so may take its produce and consumer fetches:
    /// always on a single node; in a cluster when the image names it the leader (a follower's
    /// copy is not served to clients: NOT_LEADER_OR_FOLLOWER sends them to the leader).
    pub fn leads(&self, topic: &str, partition: i32) -> bool {
        if self.cluster().is_none() {
            return true;
        }
        let me = NodeId(self.node_id);
        self.image().topic(topic).and_then(|t| t.partition(partition)).is_some_and(|r| r.leader == Some(me))
    }

    /// Whether metadata changes are made here: on a single node always, in a cluster only on
    /// the active controller (other nodes forward them).
    pub fn is_metadata_writer(&self) -> bool {
        match self.cluster() {
            Some(c) => c.is_active_controller(),
            None => !self.metadata.is_quorum(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    pub fn advertised(&self) -> Advertised {
        read_lock(&self.advertised).clone()
    }

    /// Called once the listener is bound: the real port replaces port 0, and an explicit
    /// `advertised.listeners` wins over both.
    pub fn set_advertised(&self, host: String, port: i32) {
        let a = match &self.config.settings().listeners.advertised {
            Some((h, p)) => Advertised { host: h.clone(), port: *p },
            None => Advertised { host, port },
        };
        match self.advertised.write() {
            Ok(mut g) => *g = a,
            Err(p) => *p.into_inner() = a,
        }
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        read_lock(&self.partitions).get(tp).cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        read_lock(&self.partitions).values().cloned().collect()
    }

    /// Queues a leader's ISR change for the controller.
    pub fn submit_isr_change(&self, partition: &Partition, request: AlterIsrRequest) {
        let change = IsrChange { tp: partition.tp.clone(), topic_id: partition.topic_id, request };
        lock(&self.isr_changes.pending).push(change);
        self.isr_changes.ready.notify_one();
    }

    /// Puts back changes whose AlterPartition went unanswered, ahead of anything queued since
    /// (a newer change for the same partition still wins).
    pub fn requeue_isr_changes(&self, changes: Vec<IsrChange>) {
        if changes.is_empty() {
            return;
        }
        let mut pending = lock(&self.isr_changes.pending);
        let newer = std::mem::replace(&mut *pending, changes);
        pending.extend(newer);
        drop(pending);
        self.isr_changes.ready.notify_one();
    }

    /// Waits for queued ISR changes and takes them all (a partition's latest wins).
    pub async fn next_isr_changes(&self) -> Vec<IsrChange> {
        loop {
            let taken = std::mem::take(&mut *lock(&self.isr_changes.pending));
            if !taken.is_empty() {
                let mut latest: HashMap<TopicPartition, IsrChange> = HashMap::new();
                for c in taken {
                    latest.insert(c.tp.clone(), c);
                }
                return latest.into_values().collect();
            }
            self.isr_changes.ready.notified().await;
        }
    }

    /// Registers a coordinator for leadership changes of its topic's partitions, then tells
    /// it of every partition of that topic this node leads now (registering first, so that a
    /// change in between is told twice rather than missed; elections are idempotent).
    pub fn add_leadership_listener(&self, listener: Weak<dyn LeadershipListener>) {
        let Some(l) = listener.upgrade() else { return };
        match self.leadership_listeners.write() {
            Ok(mut g) => g.push(listener),
            Err(p) => p.into_inner().push(listener),
        }
        let led: Vec<(PartitionId, LeaderEpoch)> = self
            .partitions()
            .into_iter()
            .filter(|p| p.tp.topic == l.topic() && p.is_leader())
            .map(|p| (p.tp.partition, p.leader_epoch()))
            .collect();
        for (partition, epoch) in led {
            l.on_election(partition, epoch);
        }
    }

    fn listeners_of(&self, topic: &str) -> Vec<Arc<dyn LeadershipListener>> {
        read_lock(&self.leadership_listeners).iter().filter_map(Weak::upgrade).filter(|l| l.topic() == topic).collect()
    }

    fn tell_election(&self, tp: &TopicPartition, epoch: LeaderEpoch) {
        for l in self.listeners_of(&tp.topic) {
            l.on_election(tp.partition, epoch);
        }
    }

    fn tell_resignation(&self, tp: &TopicPartition) {
        for l in self.listeners_of(&tp.topic) {
            l.on_resignation(tp.partition);
        }
    }

    /// The replication settings a partition's leader runs with.
    fn replication_config(&self, partition: &Partition) -> ReplicationConfig {
        ReplicationConfig {
            replica_lag_time_max_ms: self.config.settings().replica.lag_time_max_ms,
            min_insync_replicas: usize::try_from(partition.config().min_insync_replicas.max(1)).unwrap_or(1),
        }
    }

    /// Gives each of `tps` (hosted partitions) the role its registration names (see
    /// [`assign_role`]) and queues the ISR changes that causes.
    fn assign_roles<'a>(&self, image: &MetadataImage, tps: impl Iterator<Item = &'a TopicPartition>) {
        let me = NodeId(self.node_id);
        let now = self.clock.now_ms().max(0) as u64;
        let eligible = isr_eligible(image);
        // A single node (no quorum) registers itself in its own image and always leads; a
        // quorum member leads once registered (its cluster may not even be attached yet while
        // the local metadata log is replayed at start-up).
        let registered = self.cluster().map(|c| BrokerEpoch(c.broker_epoch())).filter(|e| e.0 >= 0);
        let may_lead = !self.metadata.is_quorum() || may_lead(image, me, registered);
        for tp in tps {
            let Some(partition) = self.partition(tp) else { continue };
            let Some(reg) = image.topic(&tp.topic).and_then(|t| t.partition(tp.partition.0)) else { continue };
            if reg.is_unknown() {
                continue;
            }
            let config = self.replication_config(&partition);
            for change in assign_role(&partition, reg, me, may_lead, config, eligible.as_ref(), now) {
                self.submit_isr_change(&partition, change);
            }
            // The coordinators follow the role the partition took (a broker that may not lead
            // yet leads nothing).
            if partition.is_leader() && reg.leader == Some(me) {
                self.tell_election(tp, reg.leader_epoch);
            } else {
                self.tell_resignation(tp);
            }
        }
    }

    /// Broker registrations changed: every hosted leader learns who may join its ISR.
    pub fn refresh_isr_eligible(&self, image: &MetadataImage) {
        let Some(eligible) = isr_eligible(image) else { return };
        let now = self.clock.now_ms().max(0) as u64;
        for partition in self.partitions() {
            if let Some(change) = partition.set_isr_eligible(eligible.clone(), now) {
                self.submit_isr_change(&partition, change);
            }
        }
    }

    /// Computes metadata records with `f`, makes them durable, then opens or removes
    /// partitions to match the new image.
    pub fn apply_metadata<T>(
        &self,
        f: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<T, BrokerError> {
        let (image, changes, out) = self.metadata.update_local(f)?;
        self.apply_local_changes(&image, &changes)?;
        Ok(out)
    }

    /// Validates feature-level changes and, unless `validate_only`, finalizes them durably
    /// (all or nothing). The outer error is a storage failure, the inner one a refusal.
    pub fn update_features(
        &self,
        updates: &[(String, i16, UpgradeType)],
        validate_only: bool,
    ) -> Result<Result<(), InvalidUpdate>, BrokerError> {
        let (_, out) = self.metadata.update(|image| {
            let out = features::update(image, self.node_id, updates).map(|records| if validate_only { vec![] } else { records });
            match out {
                Ok(records) => Ok::<_, StoreError>((records, Ok(()))),
                Err(e) => Ok((vec![], Err(e))),
            }
        })?;
        Ok(out)
    }

    /// Creates a topic with broker defaults (auto-creation on Metadata or Produce). Losing a
    /// race with another creator is fine.
    pub fn auto_create_topic(&self, name: &str) -> Result<(), BrokerError> {
        let spec = controller::TopicSpec {
            name: name.to_string(),
            partitions: -1,
            replication_factor: -1,
            configs: Default::default(),
            assignment: None,
        };
        self.create_topic_if_absent(&spec)
    }

    /// Creates `spec` unless a topic of that name exists: here when this node writes metadata,
    /// else through a CreateTopics request to the active controller (as Kafka's brokers
    /// auto-create topics). Returns once the topic is in this node's image, or with the
    /// controller's refusal.
    pub fn create_topic_if_absent(&self, spec: &controller::TopicSpec) -> Result<(), BrokerError> {
        if self.image().topic(&spec.name).is_some() {
            return Ok(());
        }
        match self.cluster() {
            Some(cluster) if !cluster.is_active_controller() => {
                crate::runtime::block_on(crate::cluster::forward_create_topic(self, cluster, spec))
            }
            _ => self.apply_metadata(|image| {
                if image.topic(&spec.name).is_some() {
                    return Ok((vec![], ()));
                }
                Ok((controller::create_topic(image, &self.effective_config(), spec)?, ()))
            }),
        }
    }

    /// Creates an internal topic (`__consumer_offsets`, `__transaction_state`) unless it
    /// exists: the one creation path for both, on the active controller (another node
    /// forwards it, as Kafka's `AutoTopicCreationManager` does). The replication factor is
    /// the configured one capped by the unfenced brokers registered at creation (at least 1),
    /// and a `min.insync.replicas` among `topic.configs` is capped by that factor, so a
    /// smaller cluster still gets a topic whose writes can commit.
    pub fn create_internal_topic(&self, topic: &InternalTopic) -> Result<(), BrokerError> {
        if self.image().topic(&topic.name).is_some() {
            return Ok(());
        }
        match self.cluster() {
            Some(cluster) if !cluster.is_active_controller() => {
                let spec = topic.spec(&self.image());
                crate::runtime::block_on(crate::cluster::forward_create_topic(self, cluster, &spec))
            }
            _ => self.apply_metadata(|image| {
                if image.topic(&topic.name).is_some() {
                    return Ok((vec![], ()));
                }
                Ok((controller::create_topic(image, &self.effective_config(), &topic.spec(image))?, ()))
            }),
        }
    }

    /// The log configuration of a topic: its overrides over the broker defaults. Computed
    /// when the topic's configs change, once per topic; its partitions keep the result.
    pub fn log_config(&self, topic: &TopicImage) -> LogConfig {
        crate::config::topic::log_config(&self.effective_config().settings().log.defaults, &topic.configs)
    }

    /// The configuration in force: the static [`Broker::config`] with the dynamic broker
    /// configs of the metadata image over it (the default broker entity's, then this
    /// broker's), as Kafka's `DynamicBrokerConfig` layers them. Read it for every key in
    /// [`crate::config::DYNAMIC_BROKER_KEYS`].
    pub fn effective_config(&self) -> Arc<BrokerConfig> {
        read_lock(&self.effective).config.clone()
    }

    /// Builds the configuration in force again when the image's dynamic broker configs for
    /// this broker changed. Returns whether the topic log defaults changed with it: the
    /// hosted partitions' log configs must then be derived again.
    fn refresh_effective_config(&self, image: &MetadataImage) -> bool {
        let empty = BTreeMap::new();
        let own_name = self.node_id.to_string();
        let layer = |name: &str| image.broker_configs.get(name).unwrap_or(&empty);
        let previous = read_lock(&self.effective).clone();
        if previous.layers.0 == *layer("") && previous.layers.1 == *layer(&own_name) {
            return false;
        }
        let layers = (layer("").clone(), layer(&own_name).clone());
        let (config, errors) = self.config.with_dynamic(&layers.0, &layers.1);
        for e in errors {
            tracing::warn!(error = %e, "a dynamic broker config in the metadata log does not apply; the value below it stays in force");
        }
        let log_defaults_changed = config.settings().log.defaults != previous.config.settings().log.defaults;
        tracing::info!(cluster_default = ?layers.0, broker = ?layers.1, "dynamic broker configs applied");
        *write_lock(&self.effective) = Arc::new(EffectiveConfig { config: Arc::new(config), layers });
        log_defaults_changed
    }

    /// Makes the hosted partitions match `image`: this node hosts a partition iff it is one
    /// of the partition's replicas. A full scan, for startup; changes after that go through
    /// [`Broker::apply_local_changes`].
    pub fn reconcile(&self, image: &MetadataImage) -> Result<(), BrokerError> {
        let _one_at_a_time = lock(&self.reconciling);
        // Every hosted partition's log config is set below, from the configuration in force.
        self.refresh_effective_config(image);
        let node = NodeId(self.node_id);
        let mut removed = Vec::new();
        let mut to_open = Vec::new();
        {
            let mut parts = write_lock(&self.partitions);
            let stale: Vec<TopicPartition> = parts
                .iter()
                .filter(|(tp, p)| match image.topic(&tp.topic) {
                    Some(t) => t.id != p.topic_id || !t.partitions.get(&tp.partition).is_some_and(|r| r.has_replica(node)),
                    None => true,
                })
                .map(|(tp, _)| tp.clone())
                .collect();
            for tp in stale {
                if let Some(p) = parts.remove(&tp) {
                    removed.push(p);
                }
            }
            for topic in image.topics.values() {
                let config = Arc::new(self.log_config(topic));
                for (i, r) in &topic.partitions {
                    if !r.has_replica(node) {
                        continue;
                    }
                    let tp = TopicPartition::new(topic.name.clone(), i.0);
                    if let Some(p) = parts.get(&tp) {
                        p.set_config(config.clone(), self.clock.now_ms());
                        continue;
                    }
                    to_open.push((tp, topic.id, config.clone()));
                }
            }
        }
        self.open_and_remove(image, to_open, removed)?;
        let hosted: Vec<TopicPartition> = read_lock(&self.partitions).keys().cloned().collect();
        self.assign_roles(image, hosted.iter());
        Ok(())
    }

    /// Acts on what a metadata delta changed for this node: opens the partitions it now leads
    /// or follows, deletes those it no longer hosts, reloads the log config of topics whose
    /// configs changed. Nothing else is looked at.
    ///
    /// Followers are opened like leaders: until replication lands, a partition's replicas
    /// are this node alone, and leading and following differ only in the partition layer.
    pub fn apply_local_changes(&self, image: &MetadataImage, changes: &LocalChanges) -> Result<(), BrokerError> {
        let _one_at_a_time = lock(&self.reconciling);
        if self.refresh_effective_config(image) {
            // New broker-level log defaults: every hosted topic without an override of the
            // changed keys takes them at once (retention, segment size, message size, ...).
            let parts: Vec<Arc<Partition>> = read_lock(&self.partitions).values().cloned().collect();
            let mut configs: HashMap<Uuid, Arc<LogConfig>> = HashMap::new();
            for p in parts {
                let Some(topic) = image.topic_by_id(&p.topic_id) else { continue };
                let config = configs.entry(topic.id).or_insert_with(|| Arc::new(self.log_config(topic))).clone();
                p.set_config(config, self.clock.now_ms());
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let mut removed = Vec::new();
        let mut to_open = Vec::new();
        // One log config per topic, however many of its partitions the delta names.
        let mut configs: HashMap<Uuid, Arc<LogConfig>> = HashMap::new();
        let mut config_of = |topic: &TopicImage| configs.entry(topic.id).or_insert_with(|| Arc::new(self.log_config(topic))).clone();
        {
            let mut parts = write_lock(&self.partitions);
            for (tp, topic_id) in &changes.deletes {
                if parts.get(tp).is_some_and(|p| p.topic_id == *topic_id)
                    && let Some(p) = parts.remove(tp)
                {
                    removed.push(p);
                }
            }
            for local in changes.leaders.iter().chain(&changes.followers) {
                let Some(topic) = image.topic_by_id(&local.topic_id) else { continue };
                match parts.get(&local.tp) {
                    Some(p) if p.topic_id == local.topic_id => {}
                    Some(_) => {
                        // A partition of an older topic of the same name whose deletion this
                        // delta did not carry: replaced.
                        if let Some(p) = parts.remove(&local.tp) {
                            removed.push(p);
                        }
                        to_open.push((local.tp.clone(), local.topic_id, config_of(topic)));
                    }
                    None => to_open.push((local.tp.clone(), local.topic_id, config_of(topic))),
                }
            }
            for topic in &changes.config_changed {
                let config = config_of(topic);
                for p in parts.values().filter(|p| p.topic_id == topic.id) {
                    p.set_config(config.clone(), self.clock.now_ms());
                }
            }
        }
        self.open_and_remove(image, to_open, removed)?;
        self.assign_roles(image, changes.leaders.iter().chain(&changes.followers).map(|l| &l.tp));
        Ok(())
    }

    /// Deletes the directories of `removed`, then opens `to_open` (in parallel, outside the
    /// partitions lock: opening is fsync-bound and recovery read-bound). Removal goes first so
    /// that a partition replacing one of the same name never opens the old one's directory.
    fn open_and_remove(
        &self,
        image: &MetadataImage,
        to_open: Vec<(TopicPartition, Uuid, Arc<LogConfig>)>,
        removed: Vec<Arc<Partition>>,
    ) -> Result<(), BrokerError> {
        for p in removed {
            self.tell_resignation(&p.tp);
            if image.topic(&p.tp.topic).is_none_or(|t| t.id != p.topic_id) {
                self.metrics.remove_topic(&p.tp.topic);
            }
            self.delete_partition_dir(p);
        }
        let now = self.clock.now_ms();
        let opened = parallel_map(to_open, |(tp, topic_id, config)| {
            let dir = self.data_dir.join(tp.to_string());
            let metrics = self.metrics.topic(&tp.topic);
            Partition::open(tp.clone(), topic_id, &dir, config, now, metrics, self.recovery_mode).map(|p| (tp, p))
        });
        let mut first_error = None;
        {
            let mut checkpointed = lock(&self.checkpointed_high_watermarks);
            let mut parts = write_lock(&self.partitions);
            for result in opened {
                match result {
                    Ok((tp, p)) => {
                        if let Some(hw) = checkpointed.remove(&tp) {
                            p.set_checkpointed_high_watermark(hw);
                        }
                        parts.insert(tp, Arc::new(p));
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// A removed partition's directory is renamed out of the way at once (so a topic of the
    /// same name can be created right after) and deleted in the background.
    fn delete_partition_dir(&self, p: Arc<Partition>) {
        let dir = p.dir().to_path_buf();
        let doomed = dir.with_file_name(format!(
            "{}.{}-delete",
            dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
            p.topic_id.simple()
        ));
        drop(p);
        if let Err(e) = std::fs::rename(&dir, &doomed) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot rename deleted partition");
            return;
        }
        let _ = std::thread::Builder::new().name("delete-partition".into()).spawn(move || {
            if let Err(e) = std::fs::remove_dir_all(&doomed) {
                tracing::warn!(dir = %doomed.display(), error = %e, "cannot delete partition directory");
            }
        });
    }

    /// Removes leftovers of deletions a crash interrupted, and directories of topics that no
    /// longer exist.
    fn remove_stray_dirs(&self) {
        let image = self.metadata.image();
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !e.path().is_dir() || name.starts_with("__cluster_metadata") {
                continue;
            }
            let keep = !name.ends_with("-delete")
                && partition_dir(&name).is_some_and(|(topic, i)| {
                    image.topic(topic).and_then(|t| t.partition(i)).is_some_and(|r| r.has_replica(NodeId(self.node_id)))
                });
            if !keep {
                tracing::info!(dir = name, "removing directory of a deleted topic");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// In a cluster, once the image has caught up with the metadata log at start-up: the
    /// partition directories whose partition the image does not place on this node (its topic
    /// was deleted, or the replica moved, while this node was away) are renamed aside as stray
    /// and kept, as Kafka's `LogManager` treats them; an operator may delete them. (A directory
    /// of an earlier topic of the same name is set aside when the partition opens.)
    pub fn set_aside_stray_dirs(&self) {
        let _one_at_a_time = lock(&self.reconciling);
        let image = self.metadata.image();
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !e.path().is_dir()
                || name.starts_with("__cluster_metadata")
                || name.ends_with("-delete")
                || name.ends_with(crate::log::partition_metadata::STRAY_SUFFIX)
            {
                continue;
            }
            let Some((topic, partition)) = partition_dir(&name) else { continue };
            let placed_here = image
                .topic(topic)
                .and_then(|t| t.partition(partition))
                .is_some_and(|r| r.has_replica(NodeId(self.node_id)));
            if placed_here {
                continue;
            }
            let aside = e.path().with_file_name(crate::log::partition_metadata::stray_dir_name(&name));
            match std::fs::rename(e.path(), &aside) {
                Ok(()) => tracing::warn!(dir = name, stray = %aside.display(), "partition directory not placed on this node by the metadata; set aside as stray"),
                Err(err) => tracing::warn!(dir = name, error = %err, "cannot set aside a stray partition directory"),
            }
        }
    }

    /// Hands out a producer id; reserves a new block in the metadata log when needed (in a
    /// cluster, from the active controller with AllocateProducerIds).
    pub fn allocate_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = match self.producer_ids.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if ids.0 >= ids.1 {
            let (start, end) = match self.cluster() {
                Some(cluster) if !cluster.is_active_controller() => {
                    crate::runtime::block_on(crate::cluster::allocate_producer_ids(self, cluster))?
                }
                _ => self.apply_metadata(|image| {
                    let start = image.next_producer_id;
                    let end = start + PRODUCER_ID_BLOCK_SIZE;
                    Ok((vec![MetadataRecord::ProducerIds { next: end }], (start, end)))
                })?,
            };
            *ids = (start, end);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Deletes data past retention in every partition.
    pub fn enforce_retention(&self) {
        let now = self.clock.now_ms();
        for p in self.partitions() {
            match p.enforce_retention(now) {
                Ok(0) => {}
                Ok(bytes) => tracing::info!(partition = %p.tp, bytes, "retention deleted segments"),
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "retention failed"),
            }
        }
    }

    /// Compacts the partitions of compacted topics that are due (dirty ratio, lags, delete
    /// horizons); `log.cleaner.enable=false` turns it off.
    pub fn clean_logs(&self) {
        if !self.config.settings().log.cleaner_enable {
            return;
        }
        let now = self.clock.now_ms();
        for p in self.partitions() {
            match p.clean(now) {
                Ok(Some(stats)) => tracing::info!(partition = %p.tp, ?stats, "cleaned log"),
                Ok(None) => {}
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "log cleaning failed"),
            }
        }
    }

    /// Flushes partitions whose `flush.ms` has passed since their last flush.
    pub fn flush_due(&self) {
        let now = self.clock.now_ms();
        for p in self.partitions() {
            if let Err(e) = p.maybe_flush(now) {
                tracing::warn!(partition = %p.tp, error = %e, "flush failed");
            }
        }
    }

    /// Writes every hosted partition's high watermark to `replication-offset-checkpoint`
    /// (in a cluster: a single node's mark is its log end, nothing to keep). Kafka does it
    /// every `replica.high.watermark.checkpoint.interval.ms` and at shutdown.
    pub fn checkpoint_high_watermarks(&self) {
        if !self.metadata.is_quorum() {
            return;
        }
        let _writing = lock(&self.hw_checkpoint_writing);
        let mut marks: std::collections::BTreeMap<TopicPartition, Offset> =
            self.partitions().iter().filter_map(|p| p.high_watermark_to_checkpoint().map(|hw| (p.tp.clone(), hw))).collect();
        // Partitions read from the file but not opened (yet) keep their marks.
        for (tp, hw) in lock(&self.checkpointed_high_watermarks).iter() {
            marks.entry(tp.clone()).or_insert(*hw);
        }
        let path = self.data_dir.join(hw_checkpoint::FILE_NAME);
        if let Err(e) = hw_checkpoint::write(&path, &marks) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the high-watermark checkpoint");
        }
    }

    /// Flushes and closes every partition, writing clean-shutdown markers.
    /// Closes every hosted partition; whether all of them are durable: closed cleanly, or (one
    /// a request still holds) flushed. That is what a broker's clean-shutdown file vouches for
    /// (see [`crate::cluster::clean_shutdown`]): no acknowledged record lost with an
    /// unflushed tail.
    pub fn shutdown(&self) -> bool {
        self.checkpoint_high_watermarks();
        let now = self.clock.now_ms();
        let parts: Vec<Arc<Partition>> = write_lock(&self.partitions).drain().map(|(_, p)| p).collect();
        // Closing is a handful of fsyncs per partition: in parallel.
        let closed = parallel_map(parts, |p| {
            let tp = p.tp.clone();
            match Arc::try_unwrap(p) {
                Ok(p) => match p.close(now) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "unclean close");
                        false
                    }
                },
                Err(p) => {
                    // A request still holds it: flush what we can; recovery handles the rest.
                    let flushed = p.flush(now);
                    tracing::warn!(partition = %tp, flushed = flushed.is_ok(), "partition busy at shutdown; flushed only");
                    flushed.is_ok()
                }
            }
        });
        closed.into_iter().all(|c| c)
    }

    pub fn topic_id(&self, name: &str) -> Option<Uuid> {
        self.image().topic(name).map(|t| t.id)
    }
}

/// A new cluster id in Kafka's form: a random UUID's 16 bytes, URL-safe base64 without
/// padding (22 characters), as Kafka prints topic ids.
pub fn new_cluster_id() -> String {
    crate::log::partition_metadata::encode_topic_id(Uuid::new_v4())
}

/// The topic and partition a data directory is named for (`<topic>-<partition>`), if its
/// name has that form.
fn partition_dir(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    partition.parse().ok().map(|p| (topic, p))
}




/// Threads for opening and closing partitions: that work waits on fsyncs and reads, so it
/// overlaps well beyond the core count.
const PARTITION_IO_THREADS: usize = 16;

/// `f` over `items` on up to [`PARTITION_IO_THREADS`] threads, results in input order.
fn parallel_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let threads = PARTITION_IO_THREADS.min(items.len());
    let mut queues: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    let count = items.len();
    for (i, item) in items.into_iter().enumerate() {
        queues[i % threads].push((i, item));
    }
    let f = &f;
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = queues
            .into_iter()
            .map(|queue| scope.spawn(move || queue.into_iter().map(|(i, item)| (i, f(item))).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    debug_assert_eq!(results.len(), count);
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The marks of `replication-offset-checkpoint` in `data_dir`; none if it is missing or
/// unreadable (replicas then start their marks at their log starts, which is safe).
fn read_high_watermarks(data_dir: &Path) -> std::collections::BTreeMap<TopicPartition, Offset> {
    let path = data_dir.join(hw_checkpoint::FILE_NAME);
    match hw_checkpoint::read(&path) {
        Ok(marks) => marks,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable high-watermark checkpoint");
            Default::default()
        }
    }
}

/// The kernel's id of this boot: it changes whenever the machine restarts.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// Records the boot id the last broker process on this data directory ran under.
const BOOT_ID_FILE: &str = "boot-id";

/// [`RecoveryMode::PageCacheIntact`] if the previous process on this data directory ran
/// since the machine last booted (so anything it wrote is in the page cache, whatever
/// reached the disk), else a full check. Records this boot for the next start. Any doubt
/// (no boot id, unreadable file) means a full check.
fn recovery_mode(data_dir: &Path) -> RecoveryMode {
    let Ok(current) = std::fs::read_to_string(BOOT_ID_PATH) else {
        return RecoveryMode::Full;
    };
    let current = current.trim();
    let path = data_dir.join(BOOT_ID_FILE);
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, current) {
        tracing::warn!(path = %path.display(), error = %e, "cannot record the boot id; next recovery checks every batch");
    }
    if !current.is_empty() && previous.trim() == current {
        RecoveryMode::PageCacheIntact
    } else {
        RecoveryMode::Full
    }
}

/// Reserved for tests of the producer-id allocator and friends.
/// Gives `partition` the role its registration names: leader (the ISR rules start; the ISR
/// changes that causes are returned, for the controller) or follower (the fetchers pick it
/// up). A registration without replicas (a legacy topic before migration) leaves it leading
/// alone. Unless `may_lead` (see [`may_lead`]), a registration naming this node leader is
/// not acted on: the partition waits without a leader. `eligible` is `None` on a single node
/// (see [`isr_eligible`]). The seeded replication simulation (`replication::sim`) drives
/// this same function.
pub(crate) fn assign_role(
    partition: &Partition,
    reg: &PartitionRegistration,
    me: NodeId,
    may_lead: bool,
    config: ReplicationConfig,
    eligible: Option<&BTreeSet<NodeId>>,
    now_ms: u64,
) -> Vec<AlterIsrRequest> {
    let mut changes = Vec::new();
    if reg.is_unknown() {
        return changes;
    }
    if reg.leader != Some(me) {
        partition.become_follower(reg.leader, reg.leader_epoch);
        return changes;
    }
    if !may_lead {
        partition.become_follower(None, reg.leader_epoch);
        return changes;
    }
    let registration = LeaderRegistration {
        replicas: reg.replicas.clone(),
        isr: reg.isr.clone(),
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
    };
    match partition.become_leader(me, config, &registration, now_ms) {
        Ok(Some(change)) => changes.push(change),
        Ok(None) => {}
        Err(e) => tracing::error!(partition = %partition.tp, error = %e, "cannot become leader"),
    }
    if let Some(eligible) = eligible
        && let Some(change) = partition.set_isr_eligible(eligible.clone(), now_ms)
    {
        changes.push(change);
    }
    changes
}

/// Whether this process, a member of a cluster, may act on leaderships `image` gives it:
/// once the image holds the registration of this process (`registered`, its broker epoch;
/// an image without registrations has no cluster to wait for). Before that the image is what a previous process applied (replayed from
/// the local metadata log at start-up): it may name this node leader with an ISR the
/// controller has since changed through an AlterPartition the previous process never saw
/// answered, and leading by it would advance the high watermark past an ISR member. The
/// registration itself moves the old process's leaderships away (`cluster_control::register`),
/// so an image holding it names this node leader only by a later election. Kafka's broker
/// applies no metadata before it has caught up with the log for the same reason. Found by
/// `replication::sim`.
pub(crate) fn may_lead(image: &MetadataImage, me: NodeId, registered: Option<BrokerEpoch>) -> bool {
    if image.brokers.is_empty() {
        return true;
    }
    registered.is_some_and(|epoch| image.brokers.get(&me).is_some_and(|b| b.epoch == epoch))
}

/// The brokers that may join an ISR: registered, unfenced, not shutting down. `None` on a
/// single node, whose image registers no brokers.
pub(crate) fn isr_eligible(image: &MetadataImage) -> Option<BTreeSet<NodeId>> {
    if image.brokers.is_empty() {
        return None;
    }
    Some(image.brokers.values().filter(|b| !b.fenced && !b.in_controlled_shutdown).map(|b| b.id).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A data directory that runs the quorum is never opened on a local metadata file (which
    /// would find no topics): refused, and its partition directories are left alone.
    #[test]
    fn a_quorum_directory_is_not_opened_as_a_local_single_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(crate::raft::file_log::DIR_NAME)).unwrap();
        std::fs::create_dir_all(dir.path().join("t-0")).unwrap();
        let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display())]).unwrap();
        let err = Broker::open(config, Arc::new(crate::clock::SystemClock)).err().expect("opened");
        assert!(err.to_string().contains("quorum"), "{err}");
        assert!(dir.path().join("t-0").exists());
        assert!(!dir.path().join("__cluster_metadata").exists(), "no local file was started");
    }

    /// Found by `replication::sim`: a broker restarted within its session timeout led by the
    /// image it replayed, whose ISR lacked a member an AlterPartition of the previous process
    /// had added; its high watermark passed that member, which the controller could elect.
    #[test]
    fn a_restarted_broker_leads_only_once_its_image_holds_its_new_registration() {
        let me = NodeId(2);
        let mut image = MetadataImage::default();
        assert!(may_lead(&image, me, None), "a single node registers no brokers");
        let registration = |epoch: i64| crate::metadata::registration::BrokerRegistration {
            id: me,
            incarnation_id: Uuid::nil(),
            epoch: BrokerEpoch(epoch),
            endpoints: vec![],
            rack: None,
            fenced: false,
            in_controlled_shutdown: false,
        };
        image.brokers.insert(me, registration(5));
        assert!(!may_lead(&image, me, None), "not registered yet: the image is the previous process's");
        assert!(!may_lead(&image, me, Some(BrokerEpoch(9))), "registered, but the image predates it");
        assert!(may_lead(&image, me, Some(BrokerEpoch(5))));
    }

    fn hosted(broker: &Broker) -> Vec<String> {
        let mut v: Vec<String> = broker.partitions().iter().map(|p| p.tp.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn local_changes_open_and_delete_only_what_this_node_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display()), "node.id=1".into()]).unwrap();
        let broker = Broker::open(config, Arc::new(crate::clock::SystemClock)).unwrap();
        let spec = |name: &str, partitions| controller::TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: Default::default(),
            assignment: None,
        };
        broker.apply_metadata(|image| Ok((controller::create_topic(image, &broker.config, &spec("a", 2))?, ()))).unwrap();
        broker.apply_metadata(|image| Ok((controller::create_partitions(image, "a", 3)?, ()))).unwrap();
        assert_eq!(hosted(&broker), ["a-0", "a-1", "a-2"]);

        // A second broker registers and a-1 moves to it: this node deletes its copy.
        let other = NodeId(2);
        let id = broker.topic_id("a").unwrap();
        broker
            .apply_metadata(|image| {
                let epoch = crate::types::BrokerEpoch(image.offset);
                Ok((
                    vec![
                        MetadataRecord::RegisterBroker { id: other, incarnation_id: Uuid::new_v4(), epoch, endpoints: vec![], rack: None, fenced: false, in_controlled_shutdown: false },
                        MetadataRecord::PartitionChange {
                            topic_id: id,
                            partition: crate::types::PartitionId(1),
                            isr: Some(vec![other]),
                            leader: Some(crate::metadata::records::LeaderChange::Elected(other)),
                            replicas: Some(vec![other]),
                            elr: None,
                            last_known_elr: None,
                            adding_replicas: None,
                            removing_replicas: None,
                        },
                    ],
                    (),
                ))
            })
            .unwrap();
        assert_eq!(hosted(&broker), ["a-0", "a-2"]);
        assert!(!dir.path().join("a-1").exists());
        let led = broker.image().topic("a").unwrap().partition(1).unwrap().clone();
        assert_eq!((led.leader, led.leader_epoch.0, led.partition_epoch.0), (Some(other), 1, 1));

        // A config-only delta names the hosted topic; a deletion removes its partitions.
        broker.apply_metadata(|image| Ok((controller::set_topic_configs(image, "a", &[("retention.ms".to_string(), "1234".to_string())].into())?, ()))).unwrap();
        broker.apply_metadata(|image| Ok((vec![controller::delete_topic(image, &broker.config, "a")?], ()))).unwrap();
        assert!(hosted(&broker).is_empty());
        broker.shutdown();
    }

    /// A data directory from before registrations: its records.jsonl holds no registration
    /// records. It must reopen with every partition and every record in it.
    #[test]
    fn a_legacy_data_directory_reopens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let config = || BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display()), "num.partitions=2".into()]).unwrap();
        let broker = Broker::open(config(), Arc::new(crate::clock::SystemClock)).unwrap();
        broker.auto_create_topic("a").unwrap();
        let batch = crate::record::BatchBuilder::new(0).timestamps(1).records(3, 8).build();
        broker.partition(&TopicPartition::new("a", 1)).unwrap().append(&batch, 1).unwrap();
        let id = broker.topic_id("a").unwrap();
        broker.shutdown();
        drop(broker);
        // Strip what this change writes, leaving the log as the code before it wrote it.
        let log = dir.path().join("__cluster_metadata/records.jsonl");
        let legacy: String = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| !["\"Partition\"", "\"RegisterBroker\"", "\"UnfenceBroker\""].iter().any(|t| l.contains(&format!("\"type\":{t}"))))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!legacy.contains("Partition\"") && legacy.contains("\"type\":\"Topic\""), "{legacy}");
        std::fs::write(&log, legacy).unwrap();

        let broker = Broker::open(config(), Arc::new(crate::clock::SystemClock)).unwrap();
        assert_eq!(broker.topic_id("a"), Some(id));
        assert_eq!(hosted(&broker), ["a-0", "a-1"]);
        assert_eq!(broker.partition(&TopicPartition::new("a", 1)).unwrap().log_end_offset(), Offset(3));
        let node = NodeId(broker.node_id);
        let t = broker.image().topic("a").unwrap().clone();
        assert!(t.partitions.values().all(|r| r.replicas == [node] && r.leader == Some(node)));
        assert!(broker.image().brokers.get(&node).is_some_and(|b| !b.fenced));
        broker.shutdown();
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
}

