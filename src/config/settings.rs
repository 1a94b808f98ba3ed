//! Typed broker settings: every broker key the code acts on, parsed once from the validated
//! text of a [`BrokerConfig`](super::BrokerConfig).
//!
//! The text layers stay the source of DescribeConfigs (values, synonyms, sources); everything
//! else reads these fields. They are derived when the configuration is loaded and again when a
//! dynamic key changes, so a key without a value is an error at start-up naming it (never a
//! silent 0), and a misspelt key exists only here, where any load reports it.
//!
//! Bounds the call sites used to apply (`max(1)` on intervals and the like) are applied here,
//! so a field is ready to use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::topic;
use super::{ConfigError, Kind, key_def, parse_listener};
use crate::log::LogConfig;
use crate::types::NodeId;

/// `process.roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// The listeners of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// `listeners` as (name, address), every name mapped to PLAINTEXT by
    /// `listener.security.protocol.map` (the only protocol served).
    pub named: Vec<(String, SocketAddr)>,
    /// `controller.listener.names`, upper-cased; `CONTROLLER` when unset.
    pub controller_names: Vec<String>,
    /// The first of `advertised.listeners` as host and port.
    pub advertised: Option<(String, i32)>,
}

/// The metadata quorum and this node's membership in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSettings {
    /// `controller.quorum.voters` as (id, host:port).
    pub voters: Vec<(NodeId, String)>,
    /// `controller.quorum.election.timeout.ms`, at least 1.
    pub election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`, at least 1.
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.election.backoff.max.ms`, at least 1.
    pub election_backoff_max_ms: u64,
    /// `controller.quorum.request.timeout.ms`, at least 1.
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms`, at least 1.
    pub retry_backoff_ms: u64,
    /// `broker.heartbeat.interval.ms`, at least 1.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`, at least 1.
    pub broker_session_timeout_ms: i64,
    /// `metadata.log.max.record.bytes.between.snapshots`, at least 1.
    pub snapshot_record_bytes_max: u64,
    /// `metadata.snapshot.max.interval.ms`, at least 1.
    pub snapshot_interval_ms_max: i64,
    /// `metadata.log.segment.bytes`, at least 4096.
    pub log_segment_bytes: u64,
}

/// Connections and request sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSettings {
    /// `socket.request.max.bytes`.
    pub request_bytes_max: usize,
    /// `max.connections`, at least 1.
    pub connections_max: usize,
    /// `connections.max.idle.ms`, at least 1 ms.
    pub connections_idle_max: Duration,
    /// `fetch.max.bytes`.
    pub fetch_bytes_max: usize,
    /// `max.incremental.fetch.session.cache.slots`.
    pub fetch_session_slots_max: usize,
}

/// Topic creation and deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSettings {
    /// `num.partitions`: partitions of a topic created without a count.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create: bool,
    /// `delete.topic.enable`.
    pub delete_enable: bool,
}

/// Logs: the topic-level defaults and the background tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The log configuration of a topic without overrides: every topic-level key at its
    /// broker-level synonym, plus the broker-only settings the log needs.
    pub defaults: LogConfig,
    /// `log.cleaner.enable`.
    pub cleaner_enable: bool,
    /// `log.cleaner.backoff.ms`.
    pub cleaner_backoff_ms: i64,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: i64,
    /// `log.initial.task.delay.ms`.
    pub initial_task_delay_ms: i64,
    /// `log.flush.scheduler.interval.ms` (`i64::MAX`: no periodic flusher).
    pub flush_scheduler_interval_ms: i64,
}

/// The group coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`, at least 1.
    pub max_size: usize,
    /// `group.consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`, at least 1.
    pub consumer_max_size: usize,
    /// `offsets.topic.num.partitions`, at least 1.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`, at least 1 (capped at creation by the brokers).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.commit.timeout.ms`: how long a coordinator write waits for replication.
    pub offsets_commit_timeout_ms: u64,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
}

/// The transaction coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnSettings {
    /// `transaction.state.log.num.partitions`, at least 1.
    pub num_partitions: i32,
    /// `transaction.state.log.replication.factor`, at least 1 (capped at creation).
    pub replication_factor: i16,
    /// `transaction.state.log.min.isr`, at least 1: `min.insync.replicas` of the topic.
    pub min_isr: i32,
    /// `transaction.state.log.segment.bytes`, at least 1.
    pub segment_bytes: i32,
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`, at least 1.
    pub abort_check_interval_ms: i64,
    /// `transactional.id.expiration.ms`, at least 1.
    pub expiration_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`, at least 1.
    pub expiration_check_interval_ms: i64,
    /// `transaction.partition.verification.enable`.
    pub partition_verification: bool,
    /// `add.partitions.to.txn.retry.backoff.ms`, at least 1.
    pub add_partitions_retry_backoff_ms: u64,
    /// `add.partitions.to.txn.retry.backoff.max.ms`, at least 0.
    pub add_partitions_retry_backoff_max_ms: u64,
}

/// Partition replication (followers' fetchers, the leaders' ISR checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// `replica.lag.time.max.ms`, at least 1.
    pub lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`.
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `replica.fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`.
    pub fetch_backoff: Duration,
    /// `replica.socket.timeout.ms`, at least the fetch wait plus a second.
    pub socket_timeout: Duration,
    /// `replica.selector.class` is Kafka's `RackAwareReplicaSelector` (KIP-392).
    pub rack_aware_selector: bool,
    /// `replica.high.watermark.checkpoint.interval.ms`, at least 1.
    pub hw_checkpoint_interval_ms: i64,
}

/// The active controller's leader elections of its own (see `metadata::election`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionSettings {
    /// `auto.leader.rebalance.enable`.
    pub auto_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, at least 1 s.
    pub imbalance_check_interval_ms: i64,
    /// `unclean.leader.election.enable`: the default of topics without an override.
    pub unclean_default: bool,
    /// `unclean.leader.election.interval.ms`, at least 1.
    pub unclean_check_interval_ms: i64,
}

/// Every broker setting the code acts on; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `node.id`.
    pub node_id: NodeId,
    /// Set by [`crate::config::BrokerConfig::single_node_quorum`] (not a key): this single
    /// node runs as the only voter of its own quorum.
    pub single_node_quorum: bool,
    pub roles: Roles,
    /// The first of `log.dirs`, else `log.dir`.
    pub data_dir: PathBuf,
    /// `cluster.id`.
    pub cluster_id: Option<String>,
    /// `broker.rack`.
    pub rack: Option<String>,
    pub listeners: Listeners,
    /// `request.timeout.ms`, within [1 s, 5 min]: how long a request forwarded to the active
    /// controller may wait.
    pub request_timeout: Duration,
    pub quorum: QuorumSettings,
    pub socket: SocketSettings,
    pub topics: TopicSettings,
    pub log: LogSettings,
    pub group: GroupSettings,
    pub txn: TxnSettings,
    pub replica: ReplicaSettings,
    pub elections: ElectionSettings,
    /// `metrics.partition.detail`.
    pub metrics_partition_detail: bool,
    /// `telemetry.max.bytes`, at least 1: the largest client telemetry push (KIP-714).
    pub telemetry_max_bytes: i32,
}

/// Reads typed values from the effective text values; errors name the key and where its
/// value came from.
pub(super) struct Source<'a> {
    pub values: &'a BTreeMap<String, String>,
    pub origins: &'a BTreeMap<String, String>,
}

impl Source<'_> {
    fn origin(&self, key: &str) -> String {
        self.origins.get(key).cloned().unwrap_or_else(|| "default".into())
    }

    fn invalid(&self, key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue { key: key.into(), value: value.into(), reason: reason.into(), origin: self.origin(key) }
    }

    /// The value of `key`, `None` if it has none. A key the table does not know is an error:
    /// it can only be a misspelling here.
    fn optional(&self, key: &str, kind: Kind) -> Result<Option<&str>, ConfigError> {
        let def = key_def(key).ok_or_else(|| ConfigError::UnknownKey { key: key.into(), origin: "settings".into() })?;
        if std::mem::discriminant(&def.kind) != std::mem::discriminant(&kind) {
            return Err(self.invalid(key, "", format!("defined as {:?}, read as {kind:?}", def.kind)));
        }
        Ok(self.values.get(key).map(String::as_str))
    }

    fn required(&self, key: &str, kind: Kind) -> Result<&str, ConfigError> {
        self.optional(key, kind)?.ok_or_else(|| {
            let origin = self.origins.get(key).cloned().unwrap_or_else(|| "configuration".into());
            ConfigError::Missing { key: key.into(), origin }
        })
    }

    fn number<T: std::str::FromStr>(&self, key: &str, kind: Kind, text: &str) -> Result<T, ConfigError> {
        text.trim().parse().map_err(|_| self.invalid(key, text, format!("expected {kind:?}")))
    }

    /// A 16-bit value of at least `min` (smaller values are raised to it).
    fn short_at_least(&self, key: &str, min: i16) -> Result<i16, ConfigError> {
        let v: i16 = self.number(key, Kind::Short, self.required(key, Kind::Short)?)?;
        Ok(v.max(min))
    }

    fn int(&self, key: &str) -> Result<i32, ConfigError> {
        self.number(key, Kind::Int, self.required(key, Kind::Int)?)
    }

    fn long(&self, key: &str) -> Result<i64, ConfigError> {
        self.number(key, Kind::Long, self.required(key, Kind::Long)?)
    }

    fn optional_long(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        self.optional(key, Kind::Long)?.map(|v| self.number(key, Kind::Long, v)).transpose()
    }

    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self.required(key, Kind::Bool)? {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(self.invalid(key, other, "expected true or false")),
        }
    }

    fn text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.optional(key, Kind::Str)?.map(str::to_string))
    }

    /// A list key's items; no value is the empty list.
    fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let text = self.optional(key, Kind::List)?.unwrap_or("");
        Ok(text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    }

    /// An int key at least `min`, as a positive unsigned count.
    fn positive_u64(&self, key: &str, min: i64) -> Result<u64, ConfigError> {
        Ok(self.long_of_int(key)?.max(min).unsigned_abs())
    }

    /// An int key read as a long (Kafka's INT keys that the code keeps in 64 bits).
    fn long_of_int(&self, key: &str) -> Result<i64, ConfigError> {
        self.int(key).map(i64::from)
    }

    fn usize_at_least(&self, key: &str, min: i32) -> Result<usize, ConfigError> {
        let n = self.int(key)?.max(min);
        usize::try_from(n).map_err(|_| self.invalid(key, &n.to_string(), "must not be negative"))
    }
}

impl Settings {
    pub(super) fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        let node_id = NodeId(s.int("node.id")?);
        let roles = s.list("process.roles")?;
        let has = |role: &str| roles.iter().any(|r| r.eq_ignore_ascii_case(role));
        let data_dir = s.list("log.dirs")?.into_iter().next().or(s.text("log.dir")?).map(PathBuf::from);
        let request_timeout_ms = s.long_of_int("request.timeout.ms")?.clamp(1000, 300_000).unsigned_abs();
        let roles = Roles { broker: has("broker"), controller: has("controller") };
        let listeners = Listeners::parse(s)?;
        let mut quorum = QuorumSettings::parse(s)?;
        if quorum.voters.is_empty() {
            quorum.voters = standalone_voter(s, node_id, roles, &listeners)?;
        }
        Ok(Settings {
            node_id,
            roles,
            data_dir: data_dir.unwrap_or_else(|| PathBuf::from("./blumfeld-data")),
            cluster_id: s.text("cluster.id")?,
            rack: s.text("broker.rack")?,
            listeners,
            request_timeout: Duration::from_millis(request_timeout_ms),
            quorum,
            socket: SocketSettings::parse(s)?,
            topics: TopicSettings::parse(s)?,
            log: LogSettings::parse(s)?,
            group: GroupSettings::parse(s)?,
            txn: TxnSettings::parse(s)?,
            replica: ReplicaSettings::parse(s)?,
            elections: ElectionSettings {
                auto_rebalance: s.bool("auto.leader.rebalance.enable")?,
                imbalance_check_interval_ms: s.long("leader.imbalance.check.interval.seconds")?.max(1).saturating_mul(1000),
                unclean_default: s.bool("unclean.leader.election.enable")?,
                unclean_check_interval_ms: s.long("unclean.leader.election.interval.ms")?.max(1),
            },
            metrics_partition_detail: s.bool("metrics.partition.detail")?,
            single_node_quorum: false,
            telemetry_max_bytes: s.int("telemetry.max.bytes")?.max(1),
        })
    }

    /// Whether this node runs the metadata quorum: `controller.quorum.voters` names a node
    /// other than this one, or this node is a controller only (the sole voter of a quorum
    /// that brokers on other nodes observe), or it is a single node made the only voter of its
    /// own quorum ([`crate::config::BrokerConfig::single_node_quorum`], what `blumfeld` does
    /// with a single node). Otherwise it is a single node with its metadata in a local file
    /// (the unit tests, and `BLUMFELD_SINGLE_NODE_QUORUM=0`).
    pub fn runs_quorum(&self) -> bool {
        self.quorum.voters.iter().any(|(id, _)| *id != self.node_id) || !self.roles.broker || self.single_node_quorum
    }

    /// Whether this node is its quorum's only voter.
    pub fn is_sole_voter(&self) -> bool {
        matches!(self.quorum.voters.as_slice(), [(id, _)] if *id == self.node_id)
    }

    /// The client listener: the first one not named in `controller.listener.names` (the
    /// first listener of a controller-only node).
    pub fn listener(&self) -> Result<SocketAddr, ConfigError> {
        let l = &self.listeners;
        l.named
            .iter()
            .find(|(name, _)| !l.controller_names.contains(name))
            .or(l.named.first())
            .map(|(_, addr)| *addr)
            .ok_or_else(|| ConfigError::InvalidValue {
                key: "listeners".into(),
                value: String::new(),
                reason: "no listener".into(),
                origin: "configuration".into(),
            })
    }

    /// The controller listener, when `controller.listener.names` names one of `listeners` other
    /// than the client listener.
    pub fn controller_listener(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let l = &self.listeners;
        let controller = |(name, addr): &(String, SocketAddr)| l.controller_names.contains(name).then_some(*addr);
        if self.runs_quorum() && !self.roles.broker {
            // A controller-only node: its controller listener is all it has.
            return Ok(l.named.iter().find_map(controller));
        }
        let client = self.listener()?;
        Ok(l.named.iter().filter_map(controller).find(|a| *a != client))
    }
}

/// The voter set that `controller.quorum.bootstrap.servers` stands for, when
/// `controller.quorum.voters` is not set: Kafka's dynamic quorum keeps its voters in the
/// metadata log (KIP-853), which Blumfeld does not implement yet, so the one case it accepts is
/// Kafka's default `server.properties` — a controller whose bootstrap servers are its own
/// controller listener, the standalone voter `kafka-storage format --standalone` makes. Any
/// other list stops start-up with a message that says to list the voters instead.
fn standalone_voter(s: &Source<'_>, node_id: NodeId, roles: Roles, listeners: &Listeners) -> Result<Vec<(NodeId, String)>, ConfigError> {
    let key = "controller.quorum.bootstrap.servers";
    let servers = s.list(key)?;
    if servers.is_empty() {
        return Ok(Vec::new());
    }
    let own: Vec<SocketAddr> = listeners
        .named
        .iter()
        .filter(|(name, _)| listeners.controller_names.contains(name))
        .map(|(_, addr)| *addr)
        .collect();
    let is_own = |server: &str| {
        parse_listener(server).is_ok_and(|a| own.iter().any(|o| o.port() == a.port() && (o.ip().is_unspecified() || o.ip() == a.ip())))
    };
    if roles.controller && servers.iter().all(|server| is_own(server)) {
        let first = servers.first().cloned().unwrap_or_default();
        return Ok(vec![(node_id, first)]);
    }
    Err(s.invalid(
        key,
        &servers.join(","),
        "a dynamic quorum (KIP-853) with controllers other than this node is not supported yet; \
         list the voters in controller.quorum.voters (id@host:port,...)"
            .to_string(),
    ))
}

impl Listeners {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        let mut names: Vec<String> = s.list("controller.listener.names")?.iter().map(|n| n.to_ascii_uppercase()).collect();
        if names.is_empty() {
            names.push("CONTROLLER".into());
        }
        let advertised = s.list("advertised.listeners")?.into_iter().next().and_then(|l| {
            let hostport = l.split_once("://").map(|(_, r)| r).unwrap_or(&l);
            let (host, port) = hostport.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        });
        Ok(Listeners { named: named_listeners(s)?, controller_names: names, advertised })
    }
}

/// Every listener as (name, address): `NAME://host:port`, the name mapped to a protocol by
/// `listener.security.protocol.map` (only PLAINTEXT is served).
fn named_listeners(s: &Source<'_>) -> Result<Vec<(String, SocketAddr)>, ConfigError> {
    let map: Vec<(String, String)> = s
        .text("listener.security.protocol.map")?
        .map(|m| {
            m.split(',')
                .filter_map(|kv| kv.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_uppercase(), v.trim().to_ascii_uppercase()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for l in s.list("listeners")? {
        let (name, rest) = l.split_once("://").unwrap_or(("PLAINTEXT", l.as_str()));
        let name = name.to_ascii_uppercase();
        let protocol = map.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).unwrap_or(name.as_str());
        if protocol != "PLAINTEXT" {
            return Err(s.invalid("listeners", &l, format!("listener {name} uses {protocol}; only PLAINTEXT is supported")));
        }
        let addr = parse_listener(rest).map_err(|reason| s.invalid("listeners", &l, reason))?;
        out.push((name, addr));
    }
    Ok(out)
}

impl QuorumSettings {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        let key = "controller.quorum.voters";
        let voters = s
            .list(key)?
            .into_iter()
            .map(|v| {
                let parsed = v.split_once('@').and_then(|(id, addr)| Some((id.trim().parse::<i32>().ok()?, addr.trim().to_string())));
                parsed
                    .filter(|(id, addr)| *id >= 0 && addr.contains(':'))
                    .map(|(id, addr)| (NodeId(id), addr))
                    .ok_or_else(|| s.invalid(key, &v, "expected id@host:port"))
            })
            .collect::<Result<_, _>>()?;
        Ok(QuorumSettings {
            voters,
            election_timeout_ms: s.positive_u64("controller.quorum.election.timeout.ms", 1)?,
            fetch_timeout_ms: s.positive_u64("controller.quorum.fetch.timeout.ms", 1)?,
            election_backoff_max_ms: s.positive_u64("controller.quorum.election.backoff.max.ms", 1)?,
            request_timeout_ms: s.positive_u64("controller.quorum.request.timeout.ms", 1)?,
            retry_backoff_ms: s.positive_u64("controller.quorum.retry.backoff.ms", 1)?,
            broker_heartbeat_interval_ms: s.positive_u64("broker.heartbeat.interval.ms", 1)?,
            broker_session_timeout_ms: s.long_of_int("broker.session.timeout.ms")?.max(1),
            snapshot_record_bytes_max: s.long("metadata.log.max.record.bytes.between.snapshots")?.max(1).unsigned_abs(),
            snapshot_interval_ms_max: s.long("metadata.snapshot.max.interval.ms")?.max(1),
            log_segment_bytes: s.positive_u64("metadata.log.segment.bytes", 4096)?,
        })
    }
}

impl SocketSettings {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        Ok(SocketSettings {
            request_bytes_max: s.usize_at_least("socket.request.max.bytes", 0)?,
            connections_max: s.usize_at_least("max.connections", 1)?,
            connections_idle_max: Duration::from_millis(s.long("connections.max.idle.ms")?.max(1).unsigned_abs()),
            fetch_bytes_max: s.usize_at_least("fetch.max.bytes", 0)?,
            fetch_session_slots_max: s.usize_at_least("max.incremental.fetch.session.cache.slots", 0)?,
        })
    }
}

impl TopicSettings {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        let key = "default.replication.factor";
        let rf = s.int(key)?;
        Ok(TopicSettings {
            num_partitions: s.int("num.partitions")?,
            default_replication_factor: i16::try_from(rf).map_err(|_| s.invalid(key, &rf.to_string(), "expected a 16-bit integer"))?,
            auto_create: s.bool("auto.create.topics.enable")?,
            delete_enable: s.bool("delete.topic.enable")?,
        })
    }
}

impl LogSettings {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        Ok(LogSettings {
            defaults: log_defaults(s)?,
            cleaner_enable: s.bool("log.cleaner.enable")?,
            cleaner_backoff_ms: s.long("log.cleaner.backoff.ms")?,
            retention_check_interval_ms: s.long("log.retention.check.interval.ms")?,
            initial_task_delay_ms: s.long("log.initial.task.delay.ms")?,
            flush_scheduler_interval_ms: s.long("log.flush.scheduler.interval.ms")?,
        })
    }
}

/// `log.retention.ms` over `.minutes` over `.hours` (Kafka's synonyms, first set wins).
fn retention_ms(s: &Source<'_>) -> Result<i64, ConfigError> {
    if let Some(ms) = s.optional_long("log.retention.ms")? {
        return Ok(ms);
    }
    if let Some(m) = s.optional("log.retention.minutes", Kind::Int)? {
        return Ok(s.number::<i64>("log.retention.minutes", Kind::Int, m)? * 60_000);
    }
    Ok(s.long_of_int("log.retention.hours")? * 3_600_000)
}

/// `log.roll.ms` over `log.roll.hours`.
fn roll_ms(s: &Source<'_>) -> Result<i64, ConfigError> {
    match s.optional_long("log.roll.ms")? {
        Some(ms) => Ok(ms),
        None => Ok(s.long_of_int("log.roll.hours")? * 3_600_000),
    }
}

/// The log configuration of a topic without overrides. Every topic-level key takes its
/// broker-level synonym, bounded as the log needs it (the bounds are those
/// [`topic::apply`] applies to a topic's own value).
fn log_defaults(s: &Source<'_>) -> Result<LogConfig, ConfigError> {
    let mut c = LogConfig {
        producer_id_expiration_ms: s.long_of_int("producer.id.expiration.ms")?.max(1),
        cleaner_dedupe_buffer_bytes: s.long("log.cleaner.dedupe.buffer.size")?.clamp(1 << 20, i64::from(i32::MAX)).unsigned_abs() as usize,
        ..LogConfig::default()
    };
    let mut set = |key: &str, broker_key: &str, text: &str| match topic::apply(&mut c, key, text) {
        topic::Applied::Set | topic::Applied::NotLogged => Ok(()),
        topic::Applied::Unknown => Err(ConfigError::UnknownKey { key: key.into(), origin: "topic settings".into() }),
        topic::Applied::Invalid => Err(s.invalid(broker_key, text, format!("not a valid {key}"))),
    };
    set("retention.ms", "log.retention.ms", &retention_ms(s)?.to_string())?;
    set("segment.ms", "log.roll.ms", &roll_ms(s)?.to_string())?;
    // Kafka's default is null: flushing is left to the OS.
    set("flush.ms", "log.flush.interval.ms", &s.optional_long("log.flush.interval.ms")?.unwrap_or(i64::MAX).to_string())?;
    for k in super::TOPIC_KEYS {
        let Some(broker_key) = k.broker_key else { continue };
        if matches!(k.name, "retention.ms" | "segment.ms" | "flush.ms") {
            continue;
        }
        let kind = key_def(broker_key).map_or(k.kind, |d| d.kind);
        if let Some(text) = s.optional(broker_key, kind)? {
            set(k.name, broker_key, text)?;
        }
    }
    Ok(c)
}

impl GroupSettings {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        Ok(GroupSettings {
            min_session_timeout_ms: s.int("group.min.session.timeout.ms")?,
            max_session_timeout_ms: s.int("group.max.session.timeout.ms")?,
            initial_rebalance_delay_ms: s.int("group.initial.rebalance.delay.ms")?,
            max_size: s.usize_at_least("group.max.size", 1)?,
            consumer_session_timeout_ms: s.int("group.consumer.session.timeout.ms")?,
            consumer_heartbeat_interval_ms: s.int("group.consumer.heartbeat.interval.ms")?,
            consumer_max_size: s.usize_at_least("group.consumer.max.size", 1)?,
            offsets_topic_num_partitions: s.int("offsets.topic.num.partitions")?.max(1),
            offsets_topic_replication_factor: s.short_at_least("offsets.topic.replication.factor", 1)?,
            offsets_commit_timeout_ms: s.int("offsets.commit.timeout.ms")?.max(1).unsigned_abs().into(),
            offsets_retention_ms: s.long_of_int("offsets.retention.minutes")? * 60_000,
        })
    }
}

impl ReplicaSettings {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        let fetch_wait_max_ms = s.int("replica.fetch.wait.max.ms")?.max(0);
        let socket_timeout_ms = s.int("replica.socket.timeout.ms")?.max(fetch_wait_max_ms.saturating_add(1000));
        Ok(ReplicaSettings {
            lag_time_max_ms: s.long("replica.lag.time.max.ms")?.max(1).unsigned_abs(),
            fetch_wait_max_ms,
            fetch_min_bytes: s.int("replica.fetch.min.bytes")?.max(1),
            fetch_max_bytes: s.int("replica.fetch.max.bytes")?.max(1),
            fetch_response_max_bytes: s.int("replica.fetch.response.max.bytes")?.max(1),
            fetch_backoff: Duration::from_millis(s.int("replica.fetch.backoff.ms")?.max(0).unsigned_abs().into()),
            socket_timeout: Duration::from_millis(socket_timeout_ms.unsigned_abs().into()),
            hw_checkpoint_interval_ms: s.long("replica.high.watermark.checkpoint.interval.ms")?.max(1),
            rack_aware_selector: match s.text("replica.selector.class")?.as_deref().map(str::trim) {
                None | Some("") => false,
                Some(RACK_AWARE_SELECTOR) => true,
                Some(other) => {
                    return Err(s.invalid("replica.selector.class", other, format!("the only replica selector is {RACK_AWARE_SELECTOR}")));
                }
            },
        })
    }
}

/// Kafka's rack-aware replica selector, the one `replica.selector.class` Blumfeld implements.
pub const RACK_AWARE_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

impl TxnSettings {
    fn parse(s: &Source<'_>) -> Result<Self, ConfigError> {
        Ok(TxnSettings {
            num_partitions: s.int("transaction.state.log.num.partitions")?.max(1),
            replication_factor: s.short_at_least("transaction.state.log.replication.factor", 1)?,
            min_isr: s.int("transaction.state.log.min.isr")?.max(1),
            segment_bytes: s.int("transaction.state.log.segment.bytes")?.max(1),
            max_timeout_ms: s.int("transaction.max.timeout.ms")?,
            abort_check_interval_ms: s.long_of_int("transaction.abort.timed.out.transaction.cleanup.interval.ms")?.max(1),
            expiration_ms: s.long_of_int("transactional.id.expiration.ms")?.max(1),
            expiration_check_interval_ms: s.long_of_int("transaction.remove.expired.transaction.cleanup.interval.ms")?.max(1),
            partition_verification: s.bool("transaction.partition.verification.enable")?,
            add_partitions_retry_backoff_ms: s.int("add.partitions.to.txn.retry.backoff.ms")?.max(1) as u64,
            add_partitions_retry_backoff_max_ms: s.int("add.partitions.to.txn.retry.backoff.max.ms")?.max(0) as u64,
        })
    }
}
