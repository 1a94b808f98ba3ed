//! The broker configuration: Kafka's own property names and defaults, read from YAML or from a
//! Kafka `server.properties`.
//!
//! A YAML file is a flat mapping `key: value` using Kafka's property names, so every Kafka
//! document applies; a Java properties file (`key=value`, Kafka's own format, chosen by the
//! `.properties` extension or by its first setting) is read as Kafka reads it, so an existing
//! Kafka configuration starts Blumfeld unchanged. `--override key=value` replaces one key after
//! the file is read. A key Kafka defines that Blumfeld does not use ([`kafka_keys`]) is accepted
//! with one warning naming it; an unknown key or a value of the wrong type stops start-up with
//! a message naming the key (and the file line when it came from a file). Once read, the values are parsed into typed
//! [`Settings`] (`BrokerConfig::settings`), which is what the code acts on; the text layers
//! stay for DescribeConfigs. Topic-level configs default to their broker-level counterparts;
//! [`topic::log_config`] turns a topic's overrides into its typed `LogConfig`.

pub mod kafka_keys;
mod settings;
pub mod topic;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use settings::{ElectionSettings, GroupSettings, Listeners, LogSettings, QuorumSettings, ReplicaSettings, Roles, Settings, SocketSettings, TopicSettings, TxnSettings};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{origin}: unknown configuration key `{key}`")]
    UnknownKey { key: String, origin: String },
    #[error("{origin}: invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue { key: String, value: String, reason: String, origin: String },
    #[error("cannot read config file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not a YAML mapping of keys to values: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("config file {path} is not a Java properties file: {reason}")]
    PropertiesSyntax { path: PathBuf, reason: String },
    #[error("override `{0}` is not of the form key=value")]
    BadOverride(String),
    #[error("{origin}: `{key}` has no value and no default")]
    Missing { key: String, origin: String },
    #[error("`{0}` cannot be changed at run time")]
    NotDynamic(String),
}

/// The type a key's value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    /// A 16-bit integer (Kafka's SHORT, used for replication factors).
    Short,
    Long,
    Bool,
    Str,
    List,
    Double,
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// A comma-separated list of words from a fixed set; the empty list is allowed.
    ListOf(&'static [&'static str]),
}

/// A broker-level key: name, type, Kafka's default (None = null) and what it means.
pub struct KeyDef {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

/// Security protocols a listener named after them would use (not served yet).
const SECURE_PROTOCOLS: &[&str] = &["SSL", "SASL_SSL", "SASL_PLAINTEXT"];
const LONG_MAX: &str = "9223372036854775807";
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
/// `cleanup.policy` items. Kafka 4.x accepts any subset, the empty list included.
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const COMPRESSION_TYPES: &[&str] = &["producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd"];

macro_rules! key {
    ($name:literal, $kind:expr, $default:expr, $doc:literal) => {
        KeyDef { name: $name, kind: $kind, default: $default, doc: $doc }
    };
}

/// Every broker key Blumfeld knows, with Kafka 4.x defaults.
pub const BROKER_KEYS: &[KeyDef] = &[
    key!("node.id", Kind::Int, Some("1"), "This node's id"),
    key!("process.roles", Kind::List, Some("broker,controller"), "Roles of this node"),
    key!("listeners", Kind::List, Some("PLAINTEXT://127.0.0.1:9092"), "Where clients connect; port 0 picks a free port"),
    key!("advertised.listeners", Kind::List, None, "Addresses given to clients in Metadata (default: the bound listeners)"),
    key!("log.dirs", Kind::List, Some("./blumfeld-data"), "Data directory (only the first is used)"),
    key!("log.dir", Kind::Str, None, "Data directory when log.dirs is not set"),
    key!("num.partitions", Kind::Int, Some("1"), "Partitions of an auto-created topic"),
    key!("default.replication.factor", Kind::Int, Some("1"), "Replication factor of an auto-created topic"),
    key!("auto.create.topics.enable", Kind::Bool, Some("true"), "Create a topic on Metadata or Produce to an unknown name"),
    key!("delete.topic.enable", Kind::Bool, Some("true"), "Allow DeleteTopics"),
    key!("log.segment.bytes", Kind::Int, Some("1073741824"), "Segment size before a roll"),
    key!("log.roll.ms", Kind::Long, None, "Segment age before a roll"),
    key!("log.roll.hours", Kind::Int, Some("168"), "Segment age before a roll, in hours"),
    key!("log.retention.ms", Kind::Long, None, "Keep data this long (-1: forever)"),
    key!("log.retention.minutes", Kind::Int, None, "Keep data this long, in minutes"),
    key!("log.retention.hours", Kind::Int, Some("168"), "Keep data this long, in hours"),
    key!("log.retention.bytes", Kind::Long, Some("-1"), "Keep at most this many bytes per partition (-1: no limit)"),
    key!("log.retention.check.interval.ms", Kind::Long, Some("300000"), "How often retention runs"),
    key!("log.initial.task.delay.ms", Kind::Long, Some("30000"), "Delay after start-up before retention and flushing tasks first run"),
    key!("log.index.interval.bytes", Kind::Int, Some("4096"), "Bytes between offset index entries"),
    key!("log.index.size.max.bytes", Kind::Int, Some("10485760"), "Maximum size of one offset index"),
    key!("log.flush.interval.messages", Kind::Long, Some(LONG_MAX), "Fsync after this many messages"),
    key!("log.flush.interval.ms", Kind::Long, None, "Fsync when the oldest unflushed message is this old"),
    key!("log.flush.scheduler.interval.ms", Kind::Long, Some(LONG_MAX), "How often the flusher checks"),
    key!("log.message.timestamp.type", Kind::Enum(TIMESTAMP_TYPES), Some("CreateTime"), "CreateTime or LogAppendTime"),
    key!("log.message.timestamp.before.max.ms", Kind::Long, Some(LONG_MAX), "Oldest accepted record timestamp, relative to now"),
    key!("log.message.timestamp.after.max.ms", Kind::Long, Some("3600000"), "Newest accepted record timestamp, relative to now"),
    key!("log.cleanup.policy", Kind::ListOf(CLEANUP_POLICIES), Some("delete"), "delete and/or compact"),
    key!("log.cleaner.enable", Kind::Bool, Some("true"), "Run the log cleaner for compacted topics"),
    key!("log.cleaner.backoff.ms", Kind::Long, Some("15000"), "Pause between cleaner passes"),
    key!("log.cleaner.dedupe.buffer.size", Kind::Long, Some("134217728"), "Memory for the cleaner's key map"),
    key!("log.cleaner.delete.retention.ms", Kind::Long, Some("86400000"), "How long tombstones stay"),
    key!("log.cleaner.min.cleanable.ratio", Kind::Double, Some("0.5"), "Dirty ratio that triggers cleaning"),
    key!("log.cleaner.min.compaction.lag.ms", Kind::Long, Some("0"), "Minimum age before compaction"),
    key!("log.cleaner.max.compaction.lag.ms", Kind::Long, Some(LONG_MAX), "Maximum age before compaction"),
    key!("log.segment.delete.delay.ms", Kind::Long, Some("60000"), "Delay before a deleted segment's file goes"),
    key!("log.preallocate", Kind::Bool, Some("false"), "Preallocate segment files"),
    key!("compression.type", Kind::Enum(COMPRESSION_TYPES), Some("producer"), "Only `producer` (keep the producer's codec) is supported"),
    key!("min.insync.replicas", Kind::Int, Some("1"), "Replicas that must acknowledge an acks=all write"),
    key!("unclean.leader.election.enable", Kind::Bool, Some("false"), "Allow an out-of-sync replica to lead"),
    key!("unclean.leader.election.interval.ms", Kind::Long, Some("300000"), "How often the active controller looks for leaderless partitions whose topic allows an unclean election (it also looks after every metadata change)"),
    key!("auto.leader.rebalance.enable", Kind::Bool, Some("true"), "Move leadership back to preferred replicas every leader.imbalance.check.interval.seconds"),
    key!("leader.imbalance.check.interval.seconds", Kind::Long, Some("300"), "How often the active controller moves leadership back to preferred replicas"),
    key!("leader.imbalance.per.broker.percentage", Kind::Int, Some("10"), "Accepted for Kafka's documents; as Kafka's KRaft controller, every imbalanced partition is rebalanced"),
    key!("message.max.bytes", Kind::Int, Some("1048588"), "Largest record batch accepted"),
    key!("socket.request.max.bytes", Kind::Int, Some("104857600"), "Largest request frame accepted"),
    key!("socket.send.buffer.bytes", Kind::Int, Some("102400"), "SO_SNDBUF (-1: OS default)"),
    key!("socket.receive.buffer.bytes", Kind::Int, Some("102400"), "SO_RCVBUF (-1: OS default)"),
    key!("max.connections", Kind::Int, Some("2147483647"), "Open client connections at most"),
    key!("queued.max.requests", Kind::Int, Some("500"), "Requests read ahead per connection at most"),
    key!("connections.max.idle.ms", Kind::Long, Some("600000"), "Close connections idle this long"),
    key!("fetch.max.bytes", Kind::Int, Some("57671680"), "Largest Fetch response"),
    key!("telemetry.max.bytes", Kind::Int, Some("1048576"), "Largest client metrics push (KIP-714) accepted, before and after decompression"),
    key!("max.incremental.fetch.session.cache.slots", Kind::Int, Some("1000"), "Fetch sessions kept at most"),
    key!("offsets.topic.num.partitions", Kind::Int, Some("50"), "Partitions of __consumer_offsets"),
    key!("offsets.commit.timeout.ms", Kind::Int, Some("5000"), "How long an offset commit (any group coordinator write) waits for replication"),
    key!("offsets.topic.replication.factor", Kind::Short, Some("3"), "Replication factor of __consumer_offsets (capped at the number of brokers)"),
    key!("transaction.state.log.replication.factor", Kind::Short, Some("3"), "Replication factor of __transaction_state (capped at the number of brokers)"),
    key!("transaction.state.log.min.isr", Kind::Int, Some("2"), "min.insync.replicas of __transaction_state"),
    key!("transaction.state.log.num.partitions", Kind::Int, Some("50"), "Partitions of __transaction_state"),
    key!("transaction.state.log.segment.bytes", Kind::Int, Some("104857600"), "Segment size of __transaction_state"),
    key!("transaction.state.log.load.buffer.size", Kind::Int, Some("5242880"), "Bytes read at a time while loading __transaction_state"),
    key!("transaction.max.timeout.ms", Kind::Int, Some("900000"), "Longest transaction.timeout.ms a producer may ask for"),
    key!("transactional.id.expiration.ms", Kind::Int, Some("604800000"), "Forget a transactional id unused this long"),
    key!("transaction.abort.timed.out.transaction.cleanup.interval.ms", Kind::Int, Some("10000"), "How often transactions past their timeout are aborted"),
    key!("transaction.remove.expired.transaction.cleanup.interval.ms", Kind::Int, Some("3600000"), "How often expired transactional ids are removed"),
    key!("transaction.partition.verification.enable", Kind::Bool, Some("true"), "Check with the coordinator that a partition is in the transaction before its first transactional write"),
    key!("add.partitions.to.txn.retry.backoff.ms", Kind::Int, Some("20"), "Wait before a partition added by Produce v12+ (transactions version 2) is retried after CONCURRENT_TRANSACTIONS"),
    key!("add.partitions.to.txn.retry.backoff.max.ms", Kind::Int, Some("100"), "How long Produce v12+ retries adding its partitions on CONCURRENT_TRANSACTIONS (at most request.timeout.ms)"),
    key!("replica.lag.time.max.ms", Kind::Long, Some("30000"), "A follower that has not caught up for this long leaves the ISR"),
    key!("replica.high.watermark.checkpoint.interval.ms", Kind::Long, Some("5000"), "How often every partition's high watermark is written to replication-offset-checkpoint"),
    key!("replica.fetch.wait.max.ms", Kind::Int, Some("500"), "Longest wait of a follower's fetch for new records"),
    key!("replica.fetch.min.bytes", Kind::Int, Some("1"), "Bytes a follower's fetch waits for"),
    key!("replica.fetch.max.bytes", Kind::Int, Some("1048576"), "Bytes a follower fetches per partition"),
    key!("replica.fetch.response.max.bytes", Kind::Int, Some("10485760"), "Bytes a follower fetches per request"),
    key!("replica.fetch.backoff.ms", Kind::Int, Some("1000"), "Pause of a follower's fetcher after a failed fetch"),
    key!("replica.selector.class", Kind::Str, None, "org.apache.kafka.common.replica.RackAwareReplicaSelector lets consumers fetch from a replica in their rack (KIP-392); unset, they fetch from leaders"),
    key!("replica.socket.timeout.ms", Kind::Int, Some("30000"), "Timeout of a follower's fetch requests"),
    key!("num.replica.fetchers", Kind::Int, Some("1"), "Fetcher connections per source broker"),
    key!("producer.id.expiration.ms", Kind::Int, Some("86400000"), "Forget an idle producer's state in a partition after this long"),
    key!("group.initial.rebalance.delay.ms", Kind::Int, Some("3000"), "Delay before the first rebalance of a new group"),
    key!("group.min.session.timeout.ms", Kind::Int, Some("6000"), "Shortest session timeout a member may ask for"),
    key!("group.max.session.timeout.ms", Kind::Int, Some("1800000"), "Longest session timeout a member may ask for"),
    key!("group.max.size", Kind::Int, Some("2147483647"), "Members per group at most"),
    key!("group.consumer.session.timeout.ms", Kind::Int, Some("45000"), "Session timeout of KIP-848 consumer group members"),
    key!("group.consumer.heartbeat.interval.ms", Kind::Int, Some("5000"), "Heartbeat interval given to KIP-848 consumer group members"),
    key!("group.consumer.max.size", Kind::Int, Some("2147483647"), "Members per KIP-848 consumer group at most"),
    key!("group.consumer.min.session.timeout.ms", Kind::Int, Some("45000"), "Shortest consumer.session.timeout.ms a group config may set"),
    key!("group.consumer.max.session.timeout.ms", Kind::Int, Some("60000"), "Longest consumer.session.timeout.ms a group config may set"),
    key!("group.consumer.min.heartbeat.interval.ms", Kind::Int, Some("5000"), "Shortest consumer.heartbeat.interval.ms a group config may set"),
    key!("group.consumer.max.heartbeat.interval.ms", Kind::Int, Some("15000"), "Longest consumer.heartbeat.interval.ms a group config may set"),
    key!("offsets.retention.minutes", Kind::Int, Some("10080"), "Keep offsets of an empty group this long"),
    key!("controller.quorum.voters", Kind::List, None, "Raft voters as id@host:port; with more than this node, the metadata quorum runs on the controller listener"),
    key!("controller.quorum.bootstrap.servers", Kind::List, None, "Controllers to contact first, as host:port (Kafka's dynamic quorum); Blumfeld accepts it when it names only this node's own controller listener (a standalone controller, as `kafka-storage format --standalone` makes it)"),
    key!("controller.quorum.election.timeout.ms", Kind::Int, Some("1000"), "Base of the randomized wait before standing for election"),
    key!("controller.quorum.fetch.timeout.ms", Kind::Int, Some("2000"), "A follower that hears nothing from the leader this long stands for election"),
    key!("controller.quorum.election.backoff.max.ms", Kind::Int, Some("1000"), "Longest wait after a lost election"),
    key!("controller.quorum.request.timeout.ms", Kind::Int, Some("2000"), "An unanswered quorum request is resent after this"),
    key!("controller.quorum.retry.backoff.ms", Kind::Int, Some("20"), "Pause before retrying a failed quorum request"),
    key!("controller.listener.names", Kind::List, None, "Listener names of the controller"),
    key!("inter.broker.listener.name", Kind::Str, None, "Listener used between brokers"),
    key!("listener.security.protocol.map", Kind::Str, None, "Listener name to protocol (only PLAINTEXT is supported)"),
    key!("broker.rack", Kind::Str, None, "Rack of this broker"),
    key!("request.timeout.ms", Kind::Int, Some("30000"), "How long a request forwarded to the active controller may wait for its answer"),
    key!("broker.heartbeat.interval.ms", Kind::Int, Some("2000"), "How often a broker heartbeats to the active controller"),
    key!("broker.session.timeout.ms", Kind::Int, Some("9000"), "A broker that has not heartbeated this long is fenced"),
    key!("metadata.log.max.record.bytes.between.snapshots", Kind::Long, Some("20971520"), "Bytes of metadata records after which a controller takes a snapshot"),
    key!("metadata.log.segment.bytes", Kind::Int, Some("1073741824"), "Segment size of the metadata log; segments behind a snapshot are deleted"),
    key!("metadata.snapshot.max.interval.ms", Kind::Long, Some("3600000"), "Longest time between metadata snapshots while records arrive"),
    key!("cluster.id", Kind::Str, None, "Cluster id (default: generated on first start and kept in meta.properties)"),
    key!("metrics.listener", Kind::Str, Some("127.0.0.1:9644"), "Address of the Prometheus endpoint (/metrics, /health, /ready); port 0 picks a free port"),
    key!("metrics.partition.detail", Kind::Bool, Some("false"), "Export log size and offsets per partition, not only per topic"),
];

/// A topic-level key and the broker key its default comes from.
pub struct TopicKeyDef {
    pub name: &'static str,
    pub kind: Kind,
    /// The broker-level key that supplies the default, Kafka's topic-config synonym (None:
    /// `default` below). Its own synonyms come from [`broker_synonyms`].
    pub broker_key: Option<&'static str>,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

macro_rules! tkey {
    ($name:literal, $kind:expr, $broker:expr, $default:expr, $doc:literal) => {
        TopicKeyDef { name: $name, kind: $kind, broker_key: $broker, default: $default, doc: $doc }
    };
}

/// Topic configs, as DescribeConfigs lists them.
pub const TOPIC_KEYS: &[TopicKeyDef] = &[
    tkey!("cleanup.policy", Kind::ListOf(CLEANUP_POLICIES), Some("log.cleanup.policy"), None, "delete and/or compact old data; empty: keep everything"),
    tkey!("compression.type", Kind::Enum(COMPRESSION_TYPES), Some("compression.type"), None, "Codec of stored batches (producer: as sent)"),
    tkey!("delete.retention.ms", Kind::Long, Some("log.cleaner.delete.retention.ms"), None, "How long the cleaner keeps tombstones readable"),
    tkey!("file.delete.delay.ms", Kind::Long, Some("log.segment.delete.delay.ms"), None, "Delay before a deleted segment's file goes"),
    tkey!("flush.messages", Kind::Long, Some("log.flush.interval.messages"), None, "Fsync after this many messages"),
    tkey!("flush.ms", Kind::Long, Some("log.flush.interval.ms"), Some(LONG_MAX), "Fsync when the last flush is this old"),
    tkey!("index.interval.bytes", Kind::Int, Some("log.index.interval.bytes"), None, "Bytes of log between offset index entries"),
    tkey!("max.compaction.lag.ms", Kind::Long, Some("log.cleaner.max.compaction.lag.ms"), None, "Clean a dirty segment once its data is this old, whatever the ratio"),
    tkey!("max.message.bytes", Kind::Int, Some("message.max.bytes"), None, "Largest record batch accepted"),
    tkey!("message.timestamp.after.max.ms", Kind::Long, Some("log.message.timestamp.after.max.ms"), None, "How far ahead of the broker clock a timestamp may be"),
    tkey!("message.timestamp.before.max.ms", Kind::Long, Some("log.message.timestamp.before.max.ms"), None, "How far behind the broker clock a timestamp may be"),
    tkey!("message.timestamp.type", Kind::Enum(TIMESTAMP_TYPES), Some("log.message.timestamp.type"), None, "CreateTime (the producer's) or LogAppendTime (the broker's)"),
    tkey!("min.cleanable.dirty.ratio", Kind::Double, Some("log.cleaner.min.cleanable.ratio"), None, "Dirty fraction of the log that triggers cleaning"),
    tkey!("min.compaction.lag.ms", Kind::Long, Some("log.cleaner.min.compaction.lag.ms"), None, "Leave data younger than this uncompacted"),
    tkey!("leader.replication.throttled.replicas", Kind::List, None, None, "Replicas throttled on the leader side during a reassignment: * or partition:broker,..."),
    tkey!("follower.replication.throttled.replicas", Kind::List, None, None, "Replicas throttled on the follower side during a reassignment: * or partition:broker,..."),
    tkey!("min.insync.replicas", Kind::Int, Some("min.insync.replicas"), None, "Replicas that must acknowledge an acks=all write"),
    tkey!("preallocate", Kind::Bool, Some("log.preallocate"), None, "Preallocate segment files"),
    tkey!("retention.bytes", Kind::Long, Some("log.retention.bytes"), None, "Keep at most this many bytes per partition (-1: no limit)"),
    tkey!("retention.ms", Kind::Long, Some("log.retention.ms"), None, "Keep data this long (-1: forever)"),
    tkey!("segment.bytes", Kind::Int, Some("log.segment.bytes"), None, "Segment size before a roll"),
    tkey!("segment.index.bytes", Kind::Int, Some("log.index.size.max.bytes"), None, "Largest offset index of one segment"),
    tkey!("segment.jitter.ms", Kind::Long, None, Some("0"), "Random reduction of segment.ms, to spread rolls"),
    tkey!("segment.ms", Kind::Long, Some("log.roll.ms"), None, "Segment age before a roll"),
    tkey!("unclean.leader.election.enable", Kind::Bool, Some("unclean.leader.election.enable"), None, "Allow an out-of-sync replica to lead"),
];

/// Broker keys Kafka can change at run time (its `DynamicBrokerConfig.AllDynamicConfigs`,
/// restricted to the keys Blumfeld knows). DescribeConfigs reports the others read-only, as
/// Kafka does. IncrementalAlterConfigs and AlterConfigs store them in the metadata log, for one
/// broker or for all (the default entity), and every broker applies them live
/// ([`BrokerConfig::with_dynamic`], `Broker::effective_config`), except the listener keys
/// ([`LIVE_REFUSED_BROKER_KEYS`]).
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "log.segment.bytes",
    "log.roll.ms",
    "log.index.size.max.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.retention.bytes",
    "log.retention.ms",
    "log.index.interval.bytes",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.segment.delete.delay.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleanup.policy",
    "log.preallocate",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.backoff.ms",
    "unclean.leader.election.enable",
    "min.insync.replicas",
    "compression.type",
    "message.max.bytes",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "max.connections",
];

/// Whether Kafka lets `key` change at run time.
pub fn is_dynamic_broker_key(key: &str) -> bool {
    DYNAMIC_BROKER_KEYS.contains(&key)
}

/// Dynamic in Kafka, but Blumfeld cannot apply them to a running broker (it binds its
/// listeners once at start): altering them is refused with a message saying so.
pub const LIVE_REFUSED_BROKER_KEYS: &[&str] = &["listeners", "advertised.listeners", "listener.security.protocol.map"];

/// The broker keys that stand for one setting, in Kafka's order of precedence (its
/// `DynamicBrokerConfig.brokerConfigSynonyms`): `log.retention.ms` over `.minutes` over
/// `.hours`, and so on. Any other key is its own only synonym.
pub fn broker_synonyms(key: &str) -> &'static [&'static str] {
    const RETENTION: &[&str] = &["log.retention.ms", "log.retention.minutes", "log.retention.hours"];
    const ROLL: &[&str] = &["log.roll.ms", "log.roll.hours"];
    const FLUSH: &[&str] = &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"];
    match key {
        "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => RETENTION,
        "log.roll.ms" | "log.roll.hours" => ROLL,
        "log.flush.interval.ms" => FLUSH,
        _ => match BROKER_KEYS.iter().find(|k| k.name == key) {
            Some(k) => std::slice::from_ref(&k.name),
            None => &[],
        },
    }
}

/// Where the lower and upper bounds of a group config come from.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// A broker key (`group.consumer.min.session.timeout.ms`, ...).
    Key(&'static str),
    /// Kafka's default for a broker key Blumfeld does not define (share groups are not
    /// served, so their broker keys are not configurable); the name is the one Kafka's
    /// messages use.
    Fixed(&'static str, i32),
}

/// A group-level key (Kafka's `GroupConfig`): its default and bounds.
pub struct GroupKeyDef {
    pub name: &'static str,
    pub default: Bound,
    pub min: Bound,
    pub max: Bound,
    pub doc: &'static str,
}

/// Group configs: every key Kafka's `GroupConfig` defines, listed for every group as Kafka
/// lists them. The share-group keys are stored and validated but used by nothing yet.
pub const GROUP_KEYS: &[GroupKeyDef] = &[
    GroupKeyDef {
        name: "consumer.heartbeat.interval.ms",
        default: Bound::Key("group.consumer.heartbeat.interval.ms"),
        min: Bound::Key("group.consumer.min.heartbeat.interval.ms"),
        max: Bound::Key("group.consumer.max.heartbeat.interval.ms"),
        doc: "Heartbeat interval given to this group's KIP-848 members",
    },
    GroupKeyDef {
        name: "consumer.session.timeout.ms",
        default: Bound::Key("group.consumer.session.timeout.ms"),
        min: Bound::Key("group.consumer.min.session.timeout.ms"),
        max: Bound::Key("group.consumer.max.session.timeout.ms"),
        doc: "Session timeout of this group's KIP-848 members",
    },
    GroupKeyDef {
        name: "share.heartbeat.interval.ms",
        default: Bound::Fixed("group.share.heartbeat.interval.ms", 5000),
        min: Bound::Fixed("group.share.min.heartbeat.interval.ms", 5000),
        max: Bound::Fixed("group.share.max.heartbeat.interval.ms", 15000),
        doc: "Heartbeat interval of share group members (share groups are not served yet)",
    },
    GroupKeyDef {
        name: "share.record.lock.duration.ms",
        default: Bound::Fixed("group.share.record.lock.duration.ms", 30000),
        min: Bound::Fixed("group.share.min.record.lock.duration.ms", 15000),
        max: Bound::Fixed("group.share.max.record.lock.duration.ms", 60000),
        doc: "How long a share group member holds a record (share groups are not served yet)",
    },
    GroupKeyDef {
        name: "share.session.timeout.ms",
        default: Bound::Fixed("group.share.session.timeout.ms", 45000),
        min: Bound::Fixed("group.share.min.session.timeout.ms", 45000),
        max: Bound::Fixed("group.share.max.session.timeout.ms", 60000),
        doc: "Session timeout of share group members (share groups are not served yet)",
    },
];

/// Checks that `value` has the type `kind` asks for; returns the normalised text.
pub fn check_value(kind: Kind, value: &str) -> Result<String, String> {
    let v = value.trim();
    match kind {
        Kind::Int => v.parse::<i32>().map(|n| n.to_string()).map_err(|_| "expected a 32-bit integer".into()),
        Kind::Short => v.parse::<i16>().map(|n| n.to_string()).map_err(|_| "expected a 16-bit integer".into()),
        Kind::Long => v.parse::<i64>().map(|n| n.to_string()).map_err(|_| "expected a 64-bit integer".into()),
        Kind::Double => v.parse::<f64>().map(|n| n.to_string()).map_err(|_| "expected a number".into()),
        Kind::Bool => match v.to_ascii_lowercase().as_str() {
            "true" => Ok("true".into()),
            "false" => Ok("false".into()),
            _ => Err("expected true or false".into()),
        },
        Kind::Str | Kind::List => Ok(v.to_string()),
        Kind::Enum(words) => {
            let norm: String = v.split(',').map(str::trim).collect::<Vec<_>>().join(",");
            if words.iter().any(|w| w.eq_ignore_ascii_case(&norm)) {
                Ok(norm)
            } else {
                Err(format!("expected one of {}", words.join(" | ")))
            }
        }
        Kind::ListOf(words) => {
            let mut items: Vec<String> = Vec::new();
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let Some(word) = words.iter().find(|w| w.eq_ignore_ascii_case(item)) else {
                    return Err(format!("String must be one of: {}", words.join(", ")));
                };
                if !items.iter().any(|i| i == word) {
                    items.push((*word).to_string());
                }
            }
            Ok(items.join(","))
        }
    }
}

/// The effective broker configuration: every key's value as text, and the typed
/// [`Settings`] parsed from it.
///
/// It also keeps the layers a value comes from, for DescribeConfigs: `statics` holds what
/// the file and `--override` set (Kafka's STATIC_BROKER_CONFIG), `defaults` the built-in
/// defaults (DEFAULT_CONFIG). The dynamic layers live in the metadata image; a broker's
/// configuration in force is [`BrokerConfig::with_dynamic`] of its static one.
///
/// Invariant: `settings` is parsed from `values`; every change to `values` after loading goes
/// through [`BrokerConfig::set_dynamic`], which parses them again.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    values: BTreeMap<String, String>,
    statics: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
    /// Where each value that is not a default came from (`file:line`, `--override`), for
    /// errors found while parsing `settings`.
    origins: BTreeMap<String, String>,
    /// Keys Kafka defines that the file or `--override` set and Blumfeld does not use, with
    /// where each came from; [`BrokerConfig::load`] warns once naming them.
    unused: Vec<(String, String)>,
    settings: Settings,
}

/// Brokers in the cluster: Blumfeld runs one node.
pub const CLUSTER_BROKERS: i16 = 1;

/// Replication factors of internal topics, capped at the number of brokers.
const INTERNAL_REPLICATION_FACTORS: &[&str] = &["offsets.topic.replication.factor", "transaction.state.log.replication.factor"];

impl Default for BrokerConfig {
    fn default() -> Self {
        let defaults: BTreeMap<String, String> = BROKER_KEYS
            .iter()
            .filter_map(|k| k.default.map(|d| (k.name.to_string(), d.to_string())))
            .collect();
        let values = defaults.clone();
        let origins = BTreeMap::new();
        // The built-in table is code, not input: `defaults_are_kafkas` proves it parses.
        let settings = match Settings::parse(&settings::Source { values: &values, origins: &origins }) {
            Ok(s) => s,
            Err(e) => panic!("the built-in configuration defaults do not parse: {e}"),
        };
        let mut config = Self { values, statics: BTreeMap::new(), defaults, origins, unused: Vec::new(), settings };
        config.cap_replication_factors(CLUSTER_BROKERS);
        config
    }
}

pub fn key_def(name: &str) -> Option<&'static KeyDef> {
    BROKER_KEYS.iter().find(|k| k.name == name)
}

impl BrokerConfig {
    /// Reads `path` (if any), then applies `overrides` (`key=value`).
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(path) = path {
            let bytes = std::fs::read(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
            match FileFormat::of(path, &bytes) {
                FileFormat::Properties => config.apply_properties(path, &bytes)?,
                FileFormat::Yaml => {
                    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Syntax {
                        path: path.to_path_buf(),
                        reason: format!("not UTF-8: {e}"),
                    })?;
                    config.apply_yaml(path, &text)?;
                }
            }
        }
        for o in overrides {
            let (k, v) = o.split_once('=').ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
            config.set(k.trim(), v, "--override")?;
        }
        if !config.unused.is_empty() {
            let keys: Vec<String> = config.unused.iter().map(|(k, origin)| format!("{k} ({origin})")).collect();
            tracing::warn!(keys = %keys.join(", "), "Kafka configuration keys that Blumfeld does not use are ignored");
        }
        // A cluster keeps the configured factors (and Kafka's defaults): its controller caps
        // them at creation by the brokers registered then (`Broker::create_internal_topic`).
        config.restore_default_replication_factors();
        config.settings = config.parse_settings()?;
        if !config.settings.runs_quorum() {
            config.cap_replication_factors(CLUSTER_BROKERS);
            config.settings = config.parse_settings()?;
        }
        Ok(config)
    }

    /// The typed settings, parsed from the values in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn parse_settings(&self) -> Result<Settings, ConfigError> {
        Settings::parse(&settings::Source { values: &self.values, origins: &self.origins })
    }

    /// Changes dynamic broker key `key` at run time (`None` restores its static or default
    /// value) and parses the settings again; all or nothing. The caller re-derives what it
    /// built from the old settings (the log configs of hosted partitions).
    pub fn set_dynamic(&mut self, key: &str, value: Option<&str>) -> Result<(), ConfigError> {
        if !is_dynamic_broker_key(key) {
            return Err(ConfigError::NotDynamic(key.to_string()));
        }
        let mut next = self.clone();
        match value {
            Some(v) => next.set_value(key, v, "dynamic broker config", false)?,
            None => {
                match self.statics.get(key).or(self.defaults.get(key)) {
                    Some(v) => next.values.insert(key.to_string(), v.clone()),
                    None => next.values.remove(key),
                };
                next.origins.remove(key);
            }
        }
        next.settings = next.parse_settings()?;
        *self = next;
        Ok(())
    }

    /// A single node's configuration as the one voter of its own quorum, reached on
    /// `controller` (its controller listener, or a loopback port it bound for the purpose):
    /// combined roles and `controller.quorum.voters` naming this node alone. Kafka needs this
    /// written out and a `kafka-storage format` first; Blumfeld derives it, so a node started
    /// with no configuration runs the same quorum code as every cluster.
    pub fn single_node_quorum(&self, controller: SocketAddr) -> Result<BrokerConfig, ConfigError> {
        let mut out = self.clone();
        let origin = "single node (derived)";
        out.set_value("process.roles", "broker,controller", origin, true)?;
        out.set_value("controller.quorum.voters", &format!("{}@{controller}", self.settings.node_id.0), origin, true)?;
        out.settings = out.parse_settings()?;
        out.settings.single_node_quorum = true;
        Ok(out)
    }

    /// This configuration with the dynamic broker configs of the metadata image over it:
    /// `cluster_default` (the default broker entity, Kafka's DYNAMIC_DEFAULT_BROKER_CONFIG),
    /// then `own` (this broker's, DYNAMIC_BROKER_CONFIG), so a broker's own value wins. Keys
    /// that are not dynamic broker keys (the replication throttles, read from the image
    /// directly) are skipped; a value that does not parse (only a log written by other code
    /// could hold one) is skipped and returned with its error, so one bad record never stops
    /// a broker.
    pub fn with_dynamic(
        &self,
        cluster_default: &BTreeMap<String, String>,
        own: &BTreeMap<String, String>,
    ) -> (BrokerConfig, Vec<ConfigError>) {
        let mut out = self.clone();
        let mut errors = Vec::new();
        for (key, value) in cluster_default.iter().chain(own) {
            if !is_dynamic_broker_key(key) || LIVE_REFUSED_BROKER_KEYS.contains(&key.as_str()) {
                continue;
            }
            if let Err(e) = out.set_dynamic(key, Some(value)) {
                errors.push(e);
            }
        }
        (out, errors)
    }

    /// Undoes the single-node cap of [`BrokerConfig::default`] for the keys not configured:
    /// their default and effective values go back to the key table's.
    fn restore_default_replication_factors(&mut self) {
        for key in INTERNAL_REPLICATION_FACTORS {
            let Some(default) = key_def(key).and_then(|k| k.default) else { continue };
            self.defaults.insert(key.to_string(), default.to_string());
            if !self.statics.contains_key(*key) {
                self.values.insert(key.to_string(), default.to_string());
            }
        }
    }

    /// Caps the replication factors of internal topics at `brokers`, in every layer.
    ///
    /// Kafka keeps `offsets.topic.replication.factor=3` on a one-broker cluster and then
    /// cannot create `__consumer_offsets` (consumers see COORDINATOR_NOT_AVAILABLE until
    /// enough brokers join). Blumfeld creates its internal topics with the replication factor
    /// the cluster can give, so that is the value in force; capping the setting itself at
    /// start-up (with a warning when a configured value is lowered) makes DescribeConfigs
    /// show that value, and the same source, rather than a 3 that nothing uses.
    fn cap_replication_factors(&mut self, brokers: i16) {
        for key in INTERNAL_REPLICATION_FACTORS {
            for (layer, map) in [("configured", &mut self.statics), ("default", &mut self.defaults), ("effective", &mut self.values)] {
                let Some(v) = map.get_mut(*key) else { continue };
                if v.parse::<i16>().is_ok_and(|rf| rf > brokers) {
                    if layer == "configured" {
                        tracing::warn!(key, configured = %v, brokers, "replication factor capped at the number of brokers");
                    }
                    *v = brokers.to_string();
                }
            }
        }
    }

    /// The value the config file or `--override` gave `key` (Kafka's STATIC_BROKER_CONFIG).
    pub fn static_value(&self, key: &str) -> Option<&str> {
        self.statics.get(key).map(String::as_str)
    }

    /// The Kafka keys the file or `--override` set that Blumfeld does not use, in the order
    /// they came, each with where it came from (`file:line`, `--override`).
    pub fn unused_keys(&self) -> &[(String, String)] {
        &self.unused
    }

    /// The built-in default of `key` (Kafka's DEFAULT_CONFIG), after capping.
    pub fn default_value(&self, key: &str) -> Option<&str> {
        self.defaults.get(key).map(String::as_str)
    }

    fn apply_yaml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let syntax = |reason: String| ConfigError::Syntax { path: path.to_path_buf(), reason };
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| syntax(e.to_string()))?;
        let map = match doc {
            serde_yaml::Value::Null => return Ok(()),
            serde_yaml::Value::Mapping(m) => m,
            _ => return Err(syntax("the top level must be a mapping".into())),
        };
        for (k, v) in map {
            let key = match k {
                serde_yaml::Value::String(s) => s,
                other => return Err(syntax(format!("key {other:?} is not a string"))),
            };
            let origin = format!("{}:{}", path.display(), line_of_key(text, &key));
            let value = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Null => String::new(),
                serde_yaml::Value::Sequence(items) => items
                    .iter()
                    .map(|i| match i {
                        serde_yaml::Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => {
                    return Err(ConfigError::InvalidValue {
                        key,
                        value: format!("{other:?}"),
                        reason: "expected a scalar or a list".into(),
                        origin,
                    });
                }
            };
            self.set(&key, &value, &origin)?;
        }
        Ok(())
    }

    /// Reads a Java properties file as Kafka does (`java.util.Properties.load`: ISO-8859-1,
    /// `=`, `:` or white space between key and value, `#` and `!` comments, `\` line
    /// continuations and escapes). The `java-properties` crate implements exactly that format,
    /// with the line of each setting for our messages.
    fn apply_properties(&mut self, path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
        for line in java_properties::PropertiesIter::new(bytes) {
            let line = line.map_err(|e| ConfigError::PropertiesSyntax { path: path.to_path_buf(), reason: e.to_string() })?;
            let origin = format!("{}:{}", path.display(), line.line_number());
            if let java_properties::LineContent::KVPair(key, value) = line.consume_content() {
                self.set(key.trim(), &value, &origin)?;
            }
        }
        Ok(())
    }

    /// Sets one key of the file or `--override` after checking its name and type; `origin`
    /// says where it came from. A key Kafka defines that Blumfeld does not use is noted in
    /// `unused` and otherwise ignored. The settings are parsed once all are set.
    fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        if key_def(key).is_none() && kafka_keys::is_kafka_broker_key(key) {
            self.unused.retain(|(k, _)| k != key);
            self.unused.push((key.to_string(), origin.to_string()));
            return Ok(());
        }
        self.set_value(key, value, origin, true)
    }

    /// Sets the value in force of one key (and its static layer, if `is_static`).
    fn set_value(&mut self, key: &str, value: &str, origin: &str, is_static: bool) -> Result<(), ConfigError> {
        let def = key_def(key)
            .ok_or_else(|| ConfigError::UnknownKey { key: key.to_string(), origin: origin.to_string() })?;
        self.origins.insert(key.to_string(), origin.to_string());
        if value.trim().is_empty() && def.default.is_none() {
            self.values.remove(key);
            if is_static {
                self.statics.remove(key);
            }
            return Ok(());
        }
        let norm = check_value(def.kind, value).map_err(|reason| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason,
            origin: origin.to_string(),
        })?;
        self.values.insert(key.to_string(), norm.clone());
        if is_static {
            self.statics.insert(key.to_string(), norm);
        }
        self.validate_semantics(key, origin)
    }

    fn validate_semantics(&self, key: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::InvalidValue {
            key: key.to_string(),
            value: self.get(key).unwrap_or_default().to_string(),
            reason: reason.to_string(),
            origin: origin.to_string(),
        };
        match key {
            "listeners" | "advertised.listeners" => {
                // The address here; the name's protocol once the whole config is read
                // (`named_listeners`: `listener.security.protocol.map` may come later).
                for l in self.list(key) {
                    let (name, rest) = l.split_once("://").unwrap_or(("PLAINTEXT", l.as_str()));
                    if SECURE_PROTOCOLS.iter().any(|p| name.eq_ignore_ascii_case(p)) {
                        return Err(bad(&format!("only PLAINTEXT listeners are supported, not {name}")));
                    }
                    parse_listener(rest).map_err(|r| bad(&r))?;
                }
            }
            "num.partitions" if self.int(key) < 1 => return Err(bad("must be at least 1")),
            "log.segment.bytes" if self.int(key) < 14 => return Err(bad("must be at least 14")),
            "message.max.bytes" | "socket.request.max.bytes" if self.int(key) < 0 => {
                return Err(bad("must not be negative"));
            }
            "log.flush.interval.messages" if self.long(key) < 1 => return Err(bad("must be at least 1")),
            _ => {}
        }
        Ok(())
    }

    /// The text value in force of `key` (DescribeConfigs and the layers it shows).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Text lookups for the key checks above and the group bounds below, and for code not yet
    /// moved to [`Settings`] (the cluster simulation's controller loop); everything else reads
    /// typed fields. Values were type-checked on the way in.
    pub(crate) fn int(&self, key: &str) -> i32 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub(crate) fn long(&self, key: &str) -> i64 {
        self.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }

    /// `log.retention.ms` over `.minutes` over `.hours`.
    pub fn retention_ms(&self) -> i64 {
        self.settings.log.defaults.retention_ms
    }

    /// `log.roll.ms` over `log.roll.hours`.
    pub fn roll_ms(&self) -> i64 {
        self.settings.log.defaults.segment_ms
    }

    /// The broker-level value that a topic key defaults to, as text.
    pub fn topic_default(&self, key: &str) -> Option<String> {
        let def = TOPIC_KEYS.iter().find(|k| k.name == key)?;
        match key {
            "retention.ms" => return Some(self.retention_ms().to_string()),
            "segment.ms" => return Some(self.roll_ms().to_string()),
            "flush.ms" => {
                return Some(self.get("log.flush.interval.ms").unwrap_or(LONG_MAX).to_string());
            }
            _ => {}
        }
        match def.broker_key {
            Some(b) => self.get(b).map(str::to_string),
            None => def.default.map(str::to_string),
        }
    }

    /// The broker default of group config `key` (`None` for an unknown key).
    pub fn group_default(&self, key: &str) -> Option<i32> {
        GROUP_KEYS.iter().find(|k| k.name == key).map(|k| self.bound(k.default))
    }

    fn bound(&self, b: Bound) -> i32 {
        match b {
            Bound::Key(k) => self.int(k),
            Bound::Fixed(_, v) => v,
        }
    }

    /// Validates a group's complete set of overrides (Kafka's `GroupConfig.validate`):
    /// known names, integers of at least 1, within the broker's bounds, and a session
    /// timeout longer than the heartbeat interval. The message is Kafka's.
    pub fn check_group_configs(&self, configs: &BTreeMap<String, String>) -> Result<(), String> {
        let mut values = BTreeMap::new();
        for (k, v) in configs {
            let def = GROUP_KEYS.iter().find(|d| d.name == k).ok_or_else(|| format!("Unknown group config name: {k}"))?;
            let n: i32 = v.trim().parse().map_err(|_| format!("Invalid value {v} for configuration {k}: Not a number of type INT"))?;
            if n < 1 {
                return Err(format!("Invalid value {n} for configuration {k}: Value must be at least 1"));
            }
            values.insert(def.name, (n, def));
        }
        let bound_name = |b: Bound| match b {
            Bound::Key(k) | Bound::Fixed(k, _) => k,
        };
        let value_of = |name: &str| {
            values.get(name).map(|(n, _)| *n).or_else(|| self.group_default(name)).unwrap_or(0)
        };
        for def in GROUP_KEYS {
            let n = value_of(def.name);
            if n < self.bound(def.min) {
                return Err(format!("{} must be greater than or equal to {}", def.name, bound_name(def.min)));
            }
            if n > self.bound(def.max) {
                return Err(format!("{} must be less than or equal to {}", def.name, bound_name(def.max)));
            }
        }
        for (session, heartbeat) in [("consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"), ("share.session.timeout.ms", "share.heartbeat.interval.ms")] {
            if value_of(session) <= value_of(heartbeat) {
                return Err(format!("{session} must be greater than {heartbeat}"));
            }
        }
        Ok(())
    }
}

/// Parses `PLAINTEXT://host:port` (or `host:port`) into an address.
pub fn parse_listener(l: &str) -> Result<SocketAddr, String> {
    let hostport = match l.split_once("://") {
        Some((proto, rest)) => {
            if !proto.eq_ignore_ascii_case("PLAINTEXT") {
                return Err(format!("only PLAINTEXT listeners are supported, not {proto}"));
            }
            rest
        }
        None => l,
    };
    let (host, port) = hostport.rsplit_once(':').ok_or("expected host:port")?;
    let port: u16 = port.parse().map_err(|_| format!("bad port `{port}`"))?;
    let host = if host.is_empty() { "0.0.0.0" } else { host.trim_matches(['[', ']']) };
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    let ip: std::net::IpAddr = host.parse().map_err(|_| format!("`{host}` is not an IP address"))?;
    Ok(SocketAddr::new(ip, port))
}

/// The syntax of a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Yaml,
    /// Java properties, Kafka's `server.properties`.
    Properties,
}

impl FileFormat {
    /// `.properties` is properties and `.yaml` / `.yml` YAML; any other name is judged by its
    /// first setting: `key=value` (an `=` before any `:`) is properties, the rest YAML.
    fn of(path: &Path, bytes: &[u8]) -> Self {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("properties") => return FileFormat::Properties,
            Some("yaml" | "yml") => return FileFormat::Yaml,
            _ => {}
        }
        let text = String::from_utf8_lossy(bytes);
        let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!') && l != &"---");
        match first {
            Some(l) => match (l.find('='), l.find(':')) {
                (Some(eq), Some(colon)) if eq < colon => FileFormat::Properties,
                (Some(_), None) => FileFormat::Properties,
                _ => FileFormat::Yaml,
            },
            None => FileFormat::Yaml,
        }
    }
}

/// Finds the 1-based line where `key:` appears in a YAML text, for error messages.
fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches(['"', '\'']);
            t.starts_with(key) && t[key.len()..].trim_start_matches(['"', '\'']).trim_start().starts_with(':')
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Validates a topic-level config set (CreateTopics, IncrementalAlterConfigs).
pub fn check_topic_config(key: &str, value: &str) -> Result<String, String> {
    let def = TOPIC_KEYS
        .iter()
        .find(|k| k.name == key)
        .ok_or_else(|| format!("Unknown topic config name: {key}"))?;
    if matches!(key, crate::replication::throttle::LEADER_REPLICAS | crate::replication::throttle::FOLLOWER_REPLICAS) {
        crate::replication::throttle::ThrottledReplicas::parse(value)?;
    }
    check_value(def.kind, value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = BrokerConfig::default();
        assert_eq!(c.settings().topics.num_partitions, 1);
        assert_eq!(c.retention_ms(), 168 * 3_600_000);
        assert_eq!(c.settings().listener().ok(), "127.0.0.1:9092".parse().ok());
        assert!(c.settings().topics.auto_create);
    }

    #[test]
    fn unknown_key_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "node.id: 3\n# comment\nno.such.key: 1\n").unwrap();
        let err = BrokerConfig::load(Some(&p), &[]).unwrap_err().to_string();
        assert!(err.contains("no.such.key") && err.contains(":3"), "{err}");
    }

    /// A combined node's `server.properties` in Kafka 4.x's own form (KRaft, standalone
    /// controller through `controller.quorum.bootstrap.servers`).
    const KAFKA_SERVER_PROPERTIES: &str = "\
# A Kafka 4.x combined node
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
! a comment of the other kind
log.dirs=/tmp/kraft-combined-logs
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
log.retention.hours : 168
log.segment.bytes 1073741824
log.cleanup.policy=compact,\\
    delete
";

    #[test]
    fn a_kafka_server_properties_starts_blumfeld_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.properties");
        std::fs::write(&p, KAFKA_SERVER_PROPERTIES).unwrap();
        let c = BrokerConfig::load(Some(&p), &[]).unwrap();
        let s = c.settings();
        assert_eq!(s.node_id, crate::types::NodeId(1));
        assert_eq!(s.data_dir, PathBuf::from("/tmp/kraft-combined-logs"));
        assert_eq!(s.listener().unwrap(), "0.0.0.0:9092".parse().unwrap());
        assert_eq!(c.get("log.segment.bytes"), Some("1073741824"));
        assert_eq!(c.retention_ms(), 168 * 3_600_000);
        // The continuation line joins the list.
        assert_eq!(c.get("log.cleanup.policy"), Some("compact,delete"));
        // The standalone controller is this node alone: a single node.
        assert_eq!(s.quorum.voters, vec![(crate::types::NodeId(1), "localhost:9093".to_string())]);
        assert!(!s.runs_quorum() && s.is_sole_voter());
        let unused: Vec<(&str, &str)> = c.unused_keys().iter().map(|(k, o)| (k.as_str(), o.as_str())).collect();
        let at = |line: usize| format!("{}:{line}", p.display());
        let names: Vec<&str> = unused.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["num.network.threads", "num.io.threads", "num.recovery.threads.per.data.dir", "share.coordinator.state.topic.replication.factor"]);
        assert_eq!(unused[0].1, at(10));
        assert_eq!(unused[2].1, at(15));
    }

    #[test]
    fn a_properties_file_is_told_by_its_content_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broker.conf");
        std::fs::write(&p, "# Kafka\nnum.partitions=7\nlisteners=PLAINTEXT://127.0.0.1:0\n").unwrap();
        assert_eq!(BrokerConfig::load(Some(&p), &[]).unwrap().settings().topics.num_partitions, 7);
        let y = dir.path().join("broker.cfg");
        std::fs::write(&y, "num.partitions: 5\nlisteners: PLAINTEXT://127.0.0.1:0\n").unwrap();
        assert_eq!(BrokerConfig::load(Some(&y), &[]).unwrap().settings().topics.num_partitions, 5);
    }

    #[test]
    fn a_key_kafka_does_not_define_stops_a_properties_file_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.properties");
        std::fs::write(&p, "node.id=1\n# comment\nnum.io.threads=8\nzookeeper.connect=localhost:2181\n").unwrap();
        let err = BrokerConfig::load(Some(&p), &[]).unwrap_err().to_string();
        assert!(err.contains("zookeeper.connect") && err.ends_with("unknown configuration key `zookeeper.connect`") && err.contains(":4"), "{err}");
        // A bad value of a key Blumfeld uses names its line too.
        std::fs::write(&p, "node.id=1\nnum.partitions=many\n").unwrap();
        let err = BrokerConfig::load(Some(&p), &[]).unwrap_err().to_string();
        assert!(err.contains("num.partitions") && err.contains(":2"), "{err}");
    }

    #[test]
    fn kafka_keys_blumfeld_ignores_are_accepted_from_yaml_and_overrides() {
        let c = BrokerConfig::load(None, &["num.io.threads=8".into(), "listener.name.sasl_ssl.plain.sasl.jaas.config=x".into()]).unwrap();
        let names: Vec<&str> = c.unused_keys().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["num.io.threads", "listener.name.sasl_ssl.plain.sasl.jaas.config"]);
        assert!(BrokerConfig::load(None, &["listener.name.sasl_ssl.no.such=x".into()]).is_err());
    }

    #[test]
    fn bootstrap_servers_naming_other_controllers_are_refused_for_now() {
        let over = |v: &str| {
            vec![
                "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093".to_string(),
                "controller.listener.names=CONTROLLER".to_string(),
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_string(),
                format!("controller.quorum.bootstrap.servers={v}"),
            ]
        };
        assert!(BrokerConfig::load(None, &over("127.0.0.1:9093")).is_ok());
        let err = BrokerConfig::load(None, &over("127.0.0.1:9093,127.0.0.2:9093")).unwrap_err().to_string();
        assert!(err.contains("controller.quorum.voters"), "{err}");
        // Explicit voters win over bootstrap servers.
        let mut both = over("127.0.0.2:9093");
        both.push("controller.quorum.voters=1@127.0.0.1:9093".into());
        assert!(BrokerConfig::load(None, &both).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any bytes as a properties or YAML file give a configuration or an error, never a
        /// panic: lines of Kafka keys with arbitrary values, separators and escapes.
        #[test]
        fn any_config_file_loads_or_is_refused_without_panic(
            lines in proptest::collection::vec((0usize..8, "[ -~]{0,24}", proptest::sample::select(vec!["=", ":", " ", "=\\\n", ""])), 0..12),
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            yaml in proptest::prelude::any::<bool>(),
        ) {
            const KEYS: [&str; 8] = ["num.partitions", "listeners", "node.id", "num.io.threads", "log.dirs",
                "controller.quorum.bootstrap.servers", "process.roles", "listener.name.x.plain.sasl.jaas.config"];
            let mut bytes = Vec::new();
            for (k, v, sep) in &lines {
                bytes.extend_from_slice(format!("{}{sep}{v}\n", KEYS[*k]).as_bytes());
            }
            bytes.extend_from_slice(&noise);
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(if yaml { "c.yaml" } else { "c.properties" });
            std::fs::write(&p, &bytes).unwrap();
            let _ = BrokerConfig::load(Some(&p), &[]);
        }
    }

    #[test]
    fn bad_value_is_refused() {
        let err = BrokerConfig::load(None, &["num.partitions=abc".into()]).unwrap_err().to_string();
        assert!(err.contains("num.partitions"), "{err}");
        assert!(BrokerConfig::load(None, &["listeners=SSL://1.2.3.4:9".into()]).is_err());
    }

    /// Regenerates `config/single-node.yaml` from the key table:
    /// `cargo test --lib write_single_node_yaml -- --ignored`.
    #[test]
    #[ignore = "writes config/single-node.yaml"]
    fn write_single_node_yaml() {
        let mut out = String::from(
            "# Blumfeld single-node configuration: the embedded default, one key per Kafka property.\n\
             # Keys are Apache Kafka's own property names with Kafka's defaults, so Kafka's documentation\n\
             # applies. Start with:  blumfeld --config config/single-node.yaml\n\
             # Override one key on the command line:  --override log.retention.ms=60000\n\
             # Keys shown commented out have no default (Kafka's null).\n\n",
        );
        for k in BROKER_KEYS {
            out.push_str(&format!("# {}.\n", k.doc));
            match k.default {
                None => out.push_str(&format!("# {}:\n\n", k.name)),
                Some(v) if matches!(k.kind, Kind::Int | Kind::Long | Kind::Bool | Kind::Double) => {
                    out.push_str(&format!("{}: {v}\n\n", k.name));
                }
                Some(v) => out.push_str(&format!("{}: \"{v}\"\n\n", k.name)),
            }
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/single-node.yaml");
        std::fs::write(path, out.trim_end().to_string() + "\n").unwrap();
    }

    /// `config/single-node.yaml` documents the embedded defaults: they must agree.
    #[test]
    fn shipped_yaml_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/single-node.yaml");
        let from_file = BrokerConfig::load(Some(&path), &[]).unwrap();
        assert_eq!(from_file.values, BrokerConfig::default().values);
        for k in BROKER_KEYS {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(&format!("{}:", k.name)), "{} missing from the YAML", k.name);
        }
    }

    /// The shipped cluster configurations parse, and each names a quorum its controllers serve:
    /// every voter's address is the controller listener of the file with that node id, and no
    /// two nodes share a port or a data directory.
    #[test]
    fn shipped_cluster_configs_form_one_cluster_each() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cluster");
        for (dir, files) in [
            (root.clone(), vec!["node-1.yaml", "node-2.yaml", "node-3.yaml"]),
            (root.join("dedicated"), vec!["controller-1.yaml", "controller-2.yaml", "controller-3.yaml", "broker-101.yaml", "broker-102.yaml"]),
        ] {
            let configs: Vec<BrokerConfig> = files.iter().map(|f| BrokerConfig::load(Some(&dir.join(f)), &[]).unwrap()).collect();
            let voters = configs[0].settings().quorum.voters.clone();
            let mut ports = std::collections::HashSet::new();
            let mut dirs = std::collections::HashSet::new();
            for c in configs.iter().map(BrokerConfig::settings) {
                assert!(c.runs_quorum(), "{dir:?}: node {} runs no quorum", c.node_id);
                assert_eq!(c.quorum.voters, voters, "{dir:?}: one voter set");
                assert!(dirs.insert(c.data_dir.clone()), "{dir:?}: shared data dir");
                for (_, addr) in &c.listeners.named {
                    assert!(ports.insert(addr.port()), "{dir:?}: port {} twice", addr.port());
                }
                if c.roles.controller {
                    let addr = c.controller_listener().unwrap().unwrap().to_string();
                    assert!(voters.contains(&(c.node_id, addr.clone())), "{dir:?}: {addr} is not node {}'s voter address", c.node_id);
                }
                if c.roles.broker {
                    assert!(c.listener().is_ok());
                }
            }
            let controllers = configs.iter().filter(|c| c.settings().roles.controller).count();
            assert_eq!(controllers, voters.len(), "{dir:?}: every voter has a file");
        }
    }

    /// A sole controller (no broker role) runs the quorum its brokers observe; a combined
    /// node that is its only voter is a single node, which may be made the sole voter of its
    /// own quorum.
    #[test]
    fn a_sole_controller_runs_a_quorum_and_a_single_node_may_derive_its_own() {
        let load = |roles: &str| {
            let o = [
                format!("process.roles={roles}"),
                "controller.quorum.voters=1@127.0.0.1:29093".to_string(),
                "listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093".to_string(),
                "controller.listener.names=CONTROLLER".to_string(),
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_string(),
            ];
            BrokerConfig::load(None, &o).unwrap().settings().runs_quorum()
        };
        assert!(load("controller"));
        assert!(!load("broker,controller"));
        let single = BrokerConfig::load(None, &["node.id=4".to_string()]).unwrap();
        assert!(!single.settings().runs_quorum());
        let derived = single.single_node_quorum("127.0.0.1:40001".parse().unwrap()).unwrap();
        let s = derived.settings();
        assert!(s.runs_quorum() && s.is_sole_voter());
        assert_eq!(s.quorum.voters, vec![(crate::types::NodeId(4), "127.0.0.1:40001".to_string())]);
        assert_eq!(s.roles, Roles { broker: true, controller: true });
        // The single node's capped internal replication factors stay.
        assert_eq!(s.group.offsets_topic_replication_factor, 1);
    }

    /// `replica.selector.class` takes Kafka's rack-aware selector and refuses any other class.
    #[test]
    fn the_replica_selector_is_kafkas_rack_aware_one_or_none() {
        let load = |v: &str| BrokerConfig::load(None, &[format!("replica.selector.class={v}")]);
        assert!(!BrokerConfig::default().settings().replica.rack_aware_selector);
        assert!(load(settings::RACK_AWARE_SELECTOR).unwrap().settings().replica.rack_aware_selector);
        let err = load("com.example.MySelector").unwrap_err().to_string();
        assert!(err.contains("replica.selector.class") && err.contains("RackAwareReplicaSelector"), "{err}");
    }

    /// The typed defaults are Kafka's, and the two sources of log defaults (the key table and
    /// `LogConfig::default`) agree.
    #[test]
    fn typed_defaults_are_kafkas() {
        let s = BrokerConfig::default().settings().clone();
        assert_eq!(s.node_id, crate::types::NodeId(1));
        assert_eq!(s.roles, Roles { broker: true, controller: true });
        assert!(!s.runs_quorum());
        assert_eq!(s.request_timeout, std::time::Duration::from_secs(30));
        assert_eq!((s.quorum.election_timeout_ms, s.quorum.fetch_timeout_ms), (1000, 2000));
        assert_eq!((s.quorum.broker_heartbeat_interval_ms, s.quorum.broker_session_timeout_ms), (2000, 9000));
        assert_eq!(s.quorum.snapshot_record_bytes_max, 20 * 1024 * 1024);
        assert_eq!((s.socket.request_bytes_max, s.socket.fetch_bytes_max), (104_857_600, 57_671_680));
        assert_eq!(s.socket.connections_idle_max, std::time::Duration::from_secs(600));
        assert_eq!(s.topics, TopicSettings { num_partitions: 1, default_replication_factor: 1, auto_create: true, delete_enable: true });
        assert_eq!((s.group.min_session_timeout_ms, s.group.max_session_timeout_ms, s.group.initial_rebalance_delay_ms), (6000, 1_800_000, 3000));
        assert_eq!((s.group.offsets_topic_num_partitions, s.group.offsets_retention_ms), (50, 7 * 24 * 3_600_000));
        assert_eq!((s.txn.num_partitions, s.txn.max_timeout_ms, s.txn.partition_verification), (50, 900_000, true));
        assert_eq!(s.log.defaults, crate::log::LogConfig::default());
        assert!(s.log.cleaner_enable);
        assert_eq!(s.log.flush_scheduler_interval_ms, i64::MAX);
        assert_eq!(s.cluster_id, None);
    }

    /// A key the parse needs that has neither a value nor a default stops the load with its
    /// name; so does a key the parse misspells (it is not in the table).
    #[test]
    fn a_key_without_value_or_default_is_an_error() {
        let c = BrokerConfig::default();
        let mut values = c.values.clone();
        values.remove("socket.request.max.bytes");
        let err = Settings::parse(&settings::Source { values: &values, origins: &c.origins }).unwrap_err();
        assert!(matches!(&err, ConfigError::Missing { key, .. } if key == "socket.request.max.bytes"), "{err}");
        assert!(err.to_string().contains("socket.request.max.bytes"), "{err}");
    }

    /// Errors found while parsing the settings (after every key was read) still name the key
    /// and the line it came from.
    #[test]
    fn settings_errors_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "node.id: 3\nlisteners: \"FOO://127.0.0.1:9092\"\n").unwrap();
        let err = BrokerConfig::load(Some(&p), &[]).unwrap_err().to_string();
        assert!(err.contains("`listeners`") && err.contains("c.yaml:2") && err.contains("FOO"), "{err}");
        std::fs::write(&p, "node.id: 3\n\ncontroller.quorum.voters: \"1@127.0.0.1:9093,two@127.0.0.1:9094\"\n").unwrap();
        let err = BrokerConfig::load(Some(&p), &[]).unwrap_err().to_string();
        assert!(err.contains("controller.quorum.voters") && err.contains("c.yaml:3"), "{err}");
        let err = BrokerConfig::load(None, &["default.replication.factor=40000".into()]).unwrap_err().to_string();
        assert!(err.contains("default.replication.factor") && err.contains("--override"), "{err}");
    }

    /// A dynamic key's change parses the settings again (the topic log defaults with it); a
    /// static key, or a value that does not parse, changes nothing.
    /// The dynamic layers go over the static one, a broker's own value over the cluster
    /// default; throttles, listener keys and values that do not parse are left out.
    #[test]
    fn dynamic_layers_apply_in_kafkas_order() {
        let c = BrokerConfig::load(None, &["log.retention.ms=5".into(), "message.max.bytes=100".into()]).unwrap();
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let default = map(&[("log.retention.ms", "60000"), ("log.segment.bytes", "1048576"), ("leader.replication.throttled.rate", "10")]);
        let own = map(&[("log.retention.ms", "7"), ("max.connections", "many"), ("listeners", "PLAINTEXT://127.0.0.1:1")]);
        let (e, errors) = c.with_dynamic(&default, &own);
        assert_eq!(e.retention_ms(), 7, "the broker's own value wins");
        assert_eq!(e.settings().log.defaults.segment_bytes, 1_048_576);
        assert_eq!(e.settings().log.defaults.max_message_bytes, 100, "static where nothing dynamic is set");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(e.get("listeners"), c.get("listeners"));
        assert_eq!(c.retention_ms(), 5, "the static configuration is unchanged");
    }

    #[test]
    fn dynamic_changes_rederive_the_settings() {
        let mut c = BrokerConfig::load(None, &["log.retention.ms=5".into()]).unwrap();
        c.set_dynamic("message.max.bytes", Some("2000")).unwrap();
        c.set_dynamic("log.retention.ms", Some("7")).unwrap();
        c.set_dynamic("max.connections", Some("3")).unwrap();
        assert_eq!(c.settings().log.defaults.max_message_bytes, 2000);
        assert_eq!((c.retention_ms(), c.settings().socket.connections_max), (7, 3));
        assert_eq!(c.topic_default("max.message.bytes").as_deref(), Some("2000"));
        assert_eq!(c.static_value("log.retention.ms"), Some("5"), "the static layer is kept");

        c.set_dynamic("log.retention.ms", None).unwrap();
        c.set_dynamic("message.max.bytes", None).unwrap();
        assert_eq!((c.retention_ms(), c.settings().log.defaults.max_message_bytes), (5, 1_048_588));

        let before = c.settings().clone();
        assert!(matches!(c.set_dynamic("num.partitions", Some("4")), Err(ConfigError::NotDynamic(_))));
        assert!(c.set_dynamic("max.connections", Some("many")).is_err());
        assert!(c.set_dynamic("listeners", Some("FOO://127.0.0.1:1")).is_err());
        assert_eq!(c.settings(), &before);
        assert_eq!(c.get("max.connections"), Some("3"));
    }

    #[test]
    fn overrides_win() {
        let c = BrokerConfig::load(None, &["log.retention.ms=5".into(), "listeners=PLAINTEXT://127.0.0.1:0".into()])
            .unwrap();
        assert_eq!(c.retention_ms(), 5);
        assert_eq!(c.settings().listener().unwrap().port(), 0);
        assert_eq!(c.topic_default("retention.ms").as_deref(), Some("5"));
    }
}
