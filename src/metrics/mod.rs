//! Observability: every metric the broker exports, and the HTTP endpoint that serves them.
//!
//! One [`Metrics`] per broker, shared in an `Arc`. It owns a `prometheus::Registry` and every
//! metric family; names follow Prometheus conventions (`blumfeld_` prefix, unit last, `_total`
//! for counters, `_seconds` for durations) and each maps to one of Kafka's MBeans
//! (`metrics/README.md` has the table).
//!
//! Two ways in, chosen by cost:
//! - **Hot path (recorded as it happens).** Per-request and per-topic counters are resolved to
//!   label children once, at start-up ([`ApiMetrics`], one per served API, found by indexing
//!   an array with the API key) or when a topic is opened ([`TopicMetrics`], cached by the
//!   caller). Recording is then an atomic add (and a bucket search for histograms): no label
//!   hashing, no lock, no allocation.
//! - **State (computed at scrape time).** Partition counts, log sizes, offsets, disk space,
//!   group and transaction counts come from a [`BrokerSnapshot`] the broker builds when
//!   Prometheus scrapes ([`Metrics::set_snapshot_source`]). Series of partitions, topics and
//!   directories that disappeared from the snapshot disappear from the exposition.
//!
//! Cardinality is bounded by configuration: per-partition log series exist only with
//! `metrics.partition.detail=true` ([`MetricsConfig::partition_detail`]); otherwise only
//! per-topic aggregates. Consumer-lag series are removed explicitly
//! ([`Metrics::remove_consumer_lag`], [`Metrics::retain_consumer_lag`]) or replaced wholesale
//! by the snapshot.
//!
//! This module is a leaf: it depends on no other Blumfeld module, so the broker can feed it
//! from any layer, and `tests/metrics_names.rs` can compile it on its own.

mod api;
mod client_telemetry;
mod connections;
mod disk;
pub mod http;
mod lag;
mod snapshot;
mod topic;

#[cfg(test)]
mod tests;

use std::sync::{Mutex, OnceLock};

use kafka_protocol::messages::ApiKey;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use thiserror::Error;

pub use api::{ApiMetrics, error_name};
pub use client_telemetry::{ClientPoint, ClientTelemetry, PointKind};
pub use connections::ConnectionGuard;
pub use disk::{LogDirSpace, log_dir_space};
pub use http::{Health, HealthCheck, MetricsServer, serve};
pub use snapshot::{
    BrokerSnapshot, FollowerLag, GROUP_STATES, GroupOffset, LogDirSnapshot, LogPositions, MetadataSnapshot, PartitionSnapshot, QuorumReplicaLag, SnapshotSource,
    TRANSACTION_STATES,
};
pub use topic::TopicMetrics;

use lag::ConsumerLag;
use snapshot::SnapshotGauges;

use crate::sync::lock;

/// The text exposition format's content type (Prometheus 0.0.4).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request latency buckets, in seconds: 100 µs to 30 s (a long-polling Fetch waits up to
/// `fetch.max.wait.ms`, 500 ms by default, but clients may ask for more).
const REQUEST_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Queue-time buckets, in seconds: queueing should be short, so finer at the bottom.
const QUEUE_SECONDS_BUCKETS: &[f64] = &[0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];

#[derive(Debug, Error)]
pub enum MetricsError {
    /// A metric was defined twice or with an invalid name: a programming error, reported
    /// rather than panicking because it happens at start-up.
    #[error("metric registry: {0}")]
    Registry(#[from] prometheus::Error),
    #[error("cannot encode the exposition: {0}")]
    Encode(String),
}

/// The `metrics.*` configuration keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// `metrics.partition.detail`: export log size and offsets per partition (labels `topic`,
    /// `partition`). When false, only per-topic aggregates, so series grow with topics only.
    pub partition_detail: bool,
}

/// Every metric of one broker. See the module documentation for the two ways in.
pub struct Metrics {
    config: MetricsConfig,
    registry: Registry,
    /// Indexed by API key, one slot per key Kafka defines; filled at start-up for the served
    /// APIs ([`Metrics::register_apis`]), on first use for any other.
    apis: Box<[OnceLock<ApiMetrics>]>,
    api_families: api::ApiFamilies,
    topics: topic::TopicFamilies,
    connections: connections::ConnectionFamilies,
    /// ISR shrinks (Kafka: `ReplicaManager,name=IsrShrinksPerSec`); 0 on a single node.
    pub isr_shrinks: IntCounter,
    /// ISR expansions (Kafka: `ReplicaManager,name=IsrExpandsPerSec`); 0 on a single node.
    pub isr_expands: IntCounter,
    /// Completed rebalances, all groups (Kafka: group-coordinator-metrics `group-rebalance-count`).
    pub group_rebalances: IntCounter,
    /// Fetch requests from follower replicas answered as leader (Kafka: `RequestMetrics,
    /// name=RequestsPerSec,request=FetchFollower`).
    pub follower_fetches: IntCounter,
    /// Record bytes served to followers (Kafka: `BrokerTopicMetrics,name=ReplicationBytesOutPerSec`).
    pub replication_bytes_out: IntCounter,
    /// Record bytes appended as a follower (Kafka: `BrokerTopicMetrics,name=ReplicationBytesInPerSec`).
    pub replication_bytes_in: IntCounter,
    /// From sending an AlterPartition to the controller to its answer (or failure).
    pub alter_partition_seconds: Histogram,
    /// COMMIT and ABORT markers written into partitions this broker leads (by the local
    /// coordinator or through WriteTxnMarkers), by `result`.
    pub txn_markers_written: IntCounterVec,
    lag: ConsumerLag,
    /// Metrics pushed by clients (KIP-714).
    client_telemetry: ClientTelemetry,
    gauges: SnapshotGauges,
    /// The broker's snapshot function. The lock also serializes scrapes, so one scrape's
    /// reset-and-refill of the snapshot gauges never interleaves with another's.
    source: Mutex<Option<SnapshotSource>>,
    /// Every family defined, in definition order.
    family_names: Vec<String>,
}

impl Metrics {
    /// Creates the registry and every metric family. Call [`Metrics::register_apis`] with the
    /// served APIs next, so their series exist (at 0) from the first scrape.
    pub fn new(config: MetricsConfig) -> Result<Self, MetricsError> {
        let mut d = Definer { registry: Registry::new(), names: Vec::new() };
        let build_info = d.add(IntGaugeVec::new(opts("blumfeld_build_info", "Broker version; the value is always 1"), &["version"])?)?;
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let api_families = api::ApiFamilies::define(&mut d)?;
        let apis = (0..api::slots()).map(|_| OnceLock::new()).collect();
        let topics = topic::TopicFamilies::define(&mut d)?;
        let connections = connections::ConnectionFamilies::define(&mut d)?;
        let isr_shrinks = d.add(IntCounter::with_opts(opts("blumfeld_isr_shrinks_total", "ISR shrinks (Kafka: ReplicaManager IsrShrinksPerSec)"))?)?;
        let isr_expands = d.add(IntCounter::with_opts(opts("blumfeld_isr_expands_total", "ISR expansions (Kafka: ReplicaManager IsrExpandsPerSec)"))?)?;
        let group_rebalances = d.add(IntCounter::with_opts(opts(
            "blumfeld_group_rebalances_total",
            "Completed group rebalances (Kafka: group-coordinator-metrics group-rebalance-count)",
        ))?)?;
        let follower_fetches = d.add(IntCounter::with_opts(opts(
            "blumfeld_follower_fetch_requests_total",
            "Fetch requests from follower replicas answered as leader (Kafka: RequestMetrics RequestsPerSec request=FetchFollower)",
        ))?)?;
        let replication_bytes_out = d.add(IntCounter::with_opts(opts(
            "blumfeld_replication_bytes_out_total",
            "Record bytes served to follower replicas (Kafka: BrokerTopicMetrics ReplicationBytesOutPerSec)",
        ))?)?;
        let replication_bytes_in = d.add(IntCounter::with_opts(opts(
            "blumfeld_replication_bytes_in_total",
            "Record bytes appended as a follower replica (Kafka: BrokerTopicMetrics ReplicationBytesInPerSec)",
        ))?)?;
        let alter_partition_seconds = d.add(Histogram::with_opts(histogram(
            "blumfeld_alter_partition_seconds",
            "From sending an AlterPartition (ISR change) to the controller to its answer",
            REQUEST_SECONDS_BUCKETS,
        ))?)?;
        let txn_markers_written = d.add(IntCounterVec::new(
            opts("blumfeld_transaction_markers_written_total", "COMMIT/ABORT markers appended to partitions this broker leads, by result"),
            &["result"],
        )?)?;
        for result in ["commit", "abort"] {
            txn_markers_written.with_label_values(&[result]);
        }
        let lag = ConsumerLag::define(&mut d)?;
        // Pushed series expire by wall-clock time, read only when Prometheus scrapes.
        let client_telemetry = d.add(ClientTelemetry::new(std::sync::Arc::new(wall_clock_ms))?)?;
        let gauges = SnapshotGauges::define(&mut d)?;
        Ok(Self {
            config,
            registry: d.registry,
            apis,
            api_families,
            topics,
            connections,
            isr_shrinks,
            isr_expands,
            group_rebalances,
            follower_fetches,
            replication_bytes_out,
            replication_bytes_in,
            alter_partition_seconds,
            txn_markers_written,
            lag,
            client_telemetry,
            gauges,
            source: Mutex::new(None),
            family_names: d.names,
        })
    }

    pub fn config(&self) -> MetricsConfig {
        self.config
    }

    /// The registry, for metrics defined elsewhere (register them before serving).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates the handles of `served` now (the version table's APIs), so their series are
    /// exported from the first scrape, before any request.
    pub fn register_apis(&self, served: impl IntoIterator<Item = ApiKey>) {
        for key in served {
            let _ = self.api(key);
        }
    }

    /// The handles of one API: an index into an array, resolved once. Always `Some` for a key
    /// of [`ApiKey`]; the `Option` only spares the hot path a panic path.
    #[inline]
    pub fn api(&self, key: ApiKey) -> Option<&ApiMetrics> {
        let slot = self.apis.get(api::index(key))?;
        Some(slot.get_or_init(|| ApiMetrics::new(key, &self.api_families)))
    }

    /// The counters of one topic: resolves the label children once. Call it when a topic's
    /// partition is opened and keep the result (a clone is four `Arc`s).
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        self.topics.handles(topic, &self.isr_shrinks, &self.isr_expands)
    }

    /// Removes a deleted topic's counters from the exposition. Handles still held keep
    /// counting into detached series that are no longer exported.
    pub fn remove_topic(&self, topic: &str) {
        self.topics.remove(topic)
    }

    /// Counts a client connection as open until the guard is dropped.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections.opened()
    }

    /// Sets the consumer lag of one group on one partition (records between the group's
    /// committed offset and the high watermark). The series stays until removed, retained
    /// away, or replaced by a snapshot that carries group offsets.
    pub fn update_consumer_lag(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        self.lag.update(group, topic, partition, lag)
    }

    /// Removes one lag series (the group no longer consumes the partition).
    pub fn remove_consumer_lag(&self, group: &str, topic: &str, partition: i32) {
        self.lag.remove(group, topic, partition)
    }

    /// Keeps only the lag series for which `keep(group, topic, partition)` is true: call it
    /// when groups expire or topics are deleted.
    pub fn retain_consumer_lag(&self, keep: impl Fn(&str, &str, i32) -> bool) {
        self.lag.retain(keep)
    }

    /// The metrics clients push (KIP-714), exported with the broker's.
    pub fn client_telemetry(&self) -> &ClientTelemetry {
        &self.client_telemetry
    }

    /// Installs the function that describes the broker's state at scrape time. It runs on a
    /// blocking thread once per scrape; it should read published positions, not touch disks
    /// beyond a `statvfs` ([`log_dir_space`]).
    pub fn set_snapshot_source(&self, source: SnapshotSource) {
        *lock(&self.source) = Some(source);
    }

    /// Refreshes the snapshot gauges, then gathers every family that has series.
    pub fn gather(&self) -> Vec<MetricFamily> {
        let source = lock(&self.source);
        if let Some(source) = source.as_ref() {
            let snapshot = source();
            self.gauges.apply(&snapshot, self.config.partition_detail);
            if let Some(offsets) = &snapshot.group_offsets {
                self.lag.replace_from_offsets(offsets, &snapshot.partitions);
            }
        }
        // Still under the lock: a concurrent scrape must not see this one's half refill.
        self.registry.gather()
    }

    /// The exposition in Prometheus' text format.
    pub fn encode_text(&self) -> Result<String, MetricsError> {
        let families = self.gather();
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&families, &mut out).map_err(|e| MetricsError::Encode(e.to_string()))?;
        String::from_utf8(out).map_err(|e| MetricsError::Encode(e.to_string()))
    }

    /// The name of every family this broker defines, whether or not it has series yet
    /// (`gather` leaves out families without series).
    pub fn family_names(&self) -> &[String] {
        &self.family_names
    }
}

/// Registers collectors and remembers their names, so definitions read as one expression.
struct Definer {
    registry: Registry,
    names: Vec<String>,
}

impl Definer {
    fn add<C: Collector + Clone + 'static>(&mut self, c: C) -> Result<C, MetricsError> {
        self.names.extend(c.desc().iter().map(|d| d.fq_name.clone()));
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

fn wall_clock_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}


/// Saturating conversion for gauges: sizes are `u64`, Prometheus' integer gauges `i64`.
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
