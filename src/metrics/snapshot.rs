//! State computed at scrape time: the broker describes itself in a plain [`BrokerSnapshot`]
//! and the gauges are refilled from it, so nothing here depends on broker internals and
//! series of things that no longer exist vanish with them.

use std::collections::BTreeMap;

use prometheus::{IntGauge, IntGaugeVec, Opts};

use super::{Definer, MetricsError, gauge_value};

/// The broker's description of itself, built once per scrape.
pub type SnapshotSource = Box<dyn Fn() -> BrokerSnapshot + Send + Sync>;

/// Group states as Kafka names them; each is exported (0 when absent) so dashboards and
/// alerts see a stable set of series.
pub const GROUP_STATES: &[&str] = &["Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"];

/// Transaction states as Kafka names them.
pub const TRANSACTION_STATES: &[&str] =
    &["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"];

/// Everything the scrape-time gauges need, in plain values.
#[derive(Debug, Clone, Default)]
pub struct BrokerSnapshot {
    /// Every partition this broker hosts.
    pub partitions: Vec<PartitionSnapshot>,
    pub metadata: MetadataSnapshot,
    /// One entry per log directory (see [`super::log_dir_space`]).
    pub log_dirs: Vec<LogDirSnapshot>,
    /// Group count by state name ([`GROUP_STATES`]); empty until groups exist.
    pub groups_by_state: Vec<(String, u64)>,
    /// Transaction count by state name ([`TRANSACTION_STATES`]); empty until transactions exist.
    pub transactions_by_state: Vec<(String, u64)>,
    /// Committed offsets of every group. `Some` makes the lag gauge a pure function of the
    /// snapshot (lag = high watermark − committed offset, series of other pairs removed);
    /// `None` leaves it to [`super::Metrics::update_consumer_lag`].
    pub group_offsets: Option<Vec<GroupOffset>>,
    /// Transactions whose markers the coordinator is still getting written.
    pub marker_queue_transactions: u64,
}

/// One hosted partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// Where read_committed consumers stop (the high watermark without open transactions).
    pub last_stable_offset: i64,
    pub size_bytes: u64,
    /// This broker leads the partition.
    pub is_leader: bool,
    /// Replica count (replication factor) and in-sync replica count.
    pub replicas: u32,
    pub isr: u32,
    /// `min.insync.replicas` of the topic.
    pub min_isr: u32,
    /// No live leader anywhere (Kafka's offline partition).
    pub offline: bool,
    /// On the leader: how far each follower is behind (empty on a follower or a single node).
    pub followers: Vec<FollowerLag>,
}

/// One follower of a led partition, as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerLag {
    pub replica: i32,
    /// Records between the follower's last fetch offset and the leader's log end (the whole
    /// log before its first fetch in this leader epoch).
    pub lag_records: i64,
    /// Milliseconds since the follower last reached the leader's log end (Kafka's
    /// `lastCaughtUpTimeMs`, which `replica.lag.time.max.ms` is compared with).
    pub lag_ms: u64,
}

impl PartitionSnapshot {
    /// A partition of a single-node cluster: this broker leads, the ISR is itself.
    pub fn single_node(topic: &str, partition: i32, positions: LogPositions, size_bytes: u64) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            log_start_offset: positions.log_start_offset,
            log_end_offset: positions.log_end_offset,
            high_watermark: positions.high_watermark,
            last_stable_offset: positions.last_stable_offset,
            size_bytes,
            is_leader: true,
            replicas: 1,
            isr: 1,
            min_isr: 1,
            offline: false,
            followers: Vec::new(),
        }
    }
}

/// A partition's positions (`log_start_offset <= last_stable_offset <= high_watermark <=
/// log_end_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPositions {
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

impl LogPositions {
    /// Positions without transactions: the last stable offset is the high watermark.
    pub fn new(log_start_offset: i64, high_watermark: i64, log_end_offset: i64) -> Self {
        Self { log_start_offset, last_stable_offset: high_watermark, high_watermark, log_end_offset }
    }
}

/// The cluster metadata log as this broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataSnapshot {
    /// This node is the active controller.
    pub active_controller: bool,
    /// The end of the metadata log (the quorum's high watermark on a follower).
    pub log_end_offset: i64,
    /// The last record applied to this broker's metadata image.
    pub last_applied_offset: i64,
    /// The quorum's leader epoch (Raft term); 0 on a single node.
    pub leader_epoch: i64,
    /// The quorum leader's node id (-1: none known); on a single node, itself.
    pub quorum_leader: i64,
    /// The quorum's high watermark as this node knows it.
    pub high_watermark: i64,
    /// Epochs this node has seen begin since it started (elections).
    pub elections: u64,
    /// Registered brokers, and those of them fenced.
    pub registered_brokers: i64,
    pub fenced_brokers: i64,
    /// On the quorum leader: each other voter's and observer's lag behind its log end.
    pub replica_lag: Vec<QuorumReplicaLag>,
}

/// One replica of the metadata log as the quorum leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplicaLag {
    pub node: i32,
    /// `voter` or `observer`.
    pub role: &'static str,
    /// Records behind the leader's log end (its end offset unknown: the whole log).
    pub lag_records: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirSnapshot {
    pub dir: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// A group's committed offset on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
}

pub(super) struct SnapshotGauges {
    partitions: IntGauge,
    leader_partitions: IntGauge,
    under_replicated: IntGauge,
    under_min_isr: IntGauge,
    at_min_isr: IntGauge,
    offline: IntGauge,
    replica_lag_max_records: IntGauge,
    replica_lag_max_ms: IntGauge,
    replica_lag_records: IntGaugeVec,
    replica_lag_ms: IntGaugeVec,
    active_controller: IntGauge,
    metadata_log_end_offset: IntGauge,
    metadata_last_applied_offset: IntGauge,
    metadata_lag_records: IntGauge,
    quorum_leader_epoch: IntGauge,
    quorum_leader: IntGauge,
    quorum_high_watermark: IntGauge,
    quorum_elections: IntGauge,
    registered_brokers: IntGauge,
    fenced_brokers: IntGauge,
    quorum_replica_lag: IntGaugeVec,
    topic_partitions: IntGaugeVec,
    topic_log_size_bytes: IntGaugeVec,
    log_size_bytes: IntGaugeVec,
    log_start_offset: IntGaugeVec,
    log_end_offset: IntGaugeVec,
    high_watermark: IntGaugeVec,
    lso_lag: IntGaugeVec,
    lso_lag_max: IntGauge,
    marker_queue: IntGauge,
    log_dir_total_bytes: IntGaugeVec,
    log_dir_free_bytes: IntGaugeVec,
    groups: IntGaugeVec,
    transactions: IntGaugeVec,
}

fn gauge(d: &mut Definer, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    d.add(IntGauge::with_opts(Opts::new(name, help))?)
}

fn gauges(d: &mut Definer, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, MetricsError> {
    d.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
}

impl SnapshotGauges {
    pub(super) fn define(d: &mut Definer) -> Result<Self, MetricsError> {
        let tp = &["topic", "partition"];
        let s = Self {
            partitions: gauge(d, "blumfeld_partitions", "Partitions hosted by this broker (Kafka: ReplicaManager PartitionCount)")?,
            leader_partitions: gauge(d, "blumfeld_leader_partitions", "Partitions this broker leads (Kafka: ReplicaManager LeaderCount)")?,
            under_replicated: gauge(d, "blumfeld_under_replicated_partitions", "Led partitions whose ISR is smaller than their replica set (Kafka: ReplicaManager UnderReplicatedPartitions)")?,
            under_min_isr: gauge(d, "blumfeld_under_min_isr_partitions", "Led partitions whose ISR is below min.insync.replicas (Kafka: ReplicaManager UnderMinIsrPartitionCount)")?,
            at_min_isr: gauge(d, "blumfeld_at_min_isr_partitions", "Led partitions whose ISR equals min.insync.replicas (Kafka: ReplicaManager AtMinIsrPartitionCount)")?,
            offline: gauge(d, "blumfeld_offline_partitions", "Partitions without a live leader (Kafka: KafkaController OfflinePartitionsCount)")?,
            replica_lag_max_records: gauge(d, "blumfeld_replica_lag_max_records", "Largest lag in records of a follower of a partition this broker leads (Kafka's follower-side ReplicaFetcherManager MaxLag, seen from the leader)")?,
            replica_lag_max_ms: gauge(d, "blumfeld_replica_lag_max_milliseconds", "Longest time since a follower of a partition this broker leads last reached the leader's log end")?,
            replica_lag_records: gauges(d, "blumfeld_replica_lag_records", "Records a follower is behind its leader; on the leader, only with metrics.partition.detail (Kafka: FetcherLagMetrics ConsumerLag)", &["topic", "partition", "replica"])?,
            replica_lag_ms: gauges(d, "blumfeld_replica_lag_milliseconds", "Time since a follower last reached its leader's log end; on the leader, only with metrics.partition.detail (Kafka: Replica lastCaughtUpTimeMs)", &["topic", "partition", "replica"])?,
            active_controller: gauge(d, "blumfeld_active_controller_count", "1 on the active controller, 0 elsewhere (Kafka: KafkaController ActiveControllerCount)")?,
            metadata_log_end_offset: gauge(d, "blumfeld_metadata_log_end_offset", "End offset of the cluster metadata log (Kafka: raft-metrics log-end-offset)")?,
            metadata_last_applied_offset: gauge(d, "blumfeld_metadata_last_applied_offset", "Last metadata record applied to this broker's image (Kafka: broker-metadata-metrics last-applied-record-offset)")?,
            metadata_lag_records: gauge(d, "blumfeld_metadata_lag_records", "Metadata records not yet applied to this broker's image")?,
            quorum_leader_epoch: gauge(d, "blumfeld_quorum_leader_epoch", "Leader epoch of the metadata quorum (Kafka: raft-metrics current-epoch)")?,
            quorum_leader: gauge(d, "blumfeld_quorum_leader_id", "Node id of the metadata quorum's leader, -1 when none is known (Kafka: raft-metrics current-leader)")?,
            quorum_high_watermark: gauge(d, "blumfeld_quorum_high_watermark", "High watermark of the metadata log as this node knows it (Kafka: raft-metrics high-watermark)")?,
            quorum_elections: gauge(d, "blumfeld_quorum_elections_total", "Quorum epochs this node has seen begin since it started (Kafka: raft-metrics election-latency count)")?,
            registered_brokers: gauge(d, "blumfeld_registered_brokers", "Brokers registered in the metadata, fenced or not (Kafka: KafkaController ActiveBrokerCount + FencedBrokerCount)")?,
            fenced_brokers: gauge(d, "blumfeld_fenced_brokers", "Registered brokers that are fenced (Kafka: KafkaController FencedBrokerCount)")?,
            quorum_replica_lag: gauges(d, "blumfeld_quorum_replica_lag_records", "On the quorum leader: a voter's or observer's records behind the leader's log end", &["node", "role"])?,
            topic_partitions: gauges(d, "blumfeld_topic_partitions", "Partitions of a topic hosted here", &["topic"])?,
            topic_log_size_bytes: gauges(d, "blumfeld_topic_log_size_bytes", "Bytes on disk of a topic's hosted partitions (sum of Kafka's Log Size)", &["topic"])?,
            log_size_bytes: gauges(d, "blumfeld_log_size_bytes", "Bytes on disk of one partition; only with metrics.partition.detail (Kafka: Log Size)", tp)?,
            log_start_offset: gauges(d, "blumfeld_log_start_offset", "First offset of one partition; only with metrics.partition.detail (Kafka: Log LogStartOffset)", tp)?,
            log_end_offset: gauges(d, "blumfeld_log_end_offset", "Log end offset of one partition; only with metrics.partition.detail (Kafka: Log LogEndOffset)", tp)?,
            high_watermark: gauges(d, "blumfeld_partition_high_watermark", "High watermark of one partition; only with metrics.partition.detail", tp)?,
            lso_lag: gauges(d, "blumfeld_last_stable_offset_lag", "Records between the high watermark and the last stable offset of one led partition (held back by open transactions); only with metrics.partition.detail (Kafka: Partition LastStableOffsetLag)", tp)?,
            lso_lag_max: gauge(d, "blumfeld_last_stable_offset_lag_max", "Largest last stable offset lag over the partitions this broker leads")?,
            marker_queue: gauge(d, "blumfeld_transaction_marker_queue_transactions", "Decided transactions whose COMMIT/ABORT markers the coordinator is still getting written (Kafka: TransactionMarkerChannelManager queue sizes)")?,
            log_dir_total_bytes: gauges(d, "blumfeld_log_dir_total_bytes", "Size of the file system holding a log directory", &["dir"])?,
            log_dir_free_bytes: gauges(d, "blumfeld_log_dir_free_bytes", "Space available to the broker on a log directory's file system", &["dir"])?,
            groups: gauges(d, "blumfeld_group_coordinator_groups", "Consumer groups by state (Kafka: GroupMetadataManager NumGroups<State>)", &["state"])?,
            transactions: gauges(d, "blumfeld_transaction_coordinator_transactions", "Transactions by state (Kafka: transaction-coordinator-metrics)", &["state"])?,
        };
        s.fill_states(&[], &[]);
        Ok(s)
    }

    /// Refills every gauge from `snapshot`; per-partition series only with `partition_detail`.
    pub(super) fn apply(&self, snapshot: &BrokerSnapshot, partition_detail: bool) {
        self.apply_partitions(&snapshot.partitions, partition_detail);
        let m = &snapshot.metadata;
        self.active_controller.set(i64::from(m.active_controller));
        self.metadata_log_end_offset.set(m.log_end_offset);
        self.metadata_last_applied_offset.set(m.last_applied_offset);
        self.metadata_lag_records.set(m.log_end_offset.saturating_sub(m.last_applied_offset).max(0));
        self.quorum_leader_epoch.set(m.leader_epoch);
        self.quorum_leader.set(m.quorum_leader);
        self.quorum_high_watermark.set(m.high_watermark);
        self.quorum_elections.set(gauge_value(m.elections));
        self.registered_brokers.set(m.registered_brokers);
        self.fenced_brokers.set(m.fenced_brokers);
        self.quorum_replica_lag.reset();
        for r in &m.replica_lag {
            self.quorum_replica_lag.with_label_values(&[r.node.to_string().as_str(), r.role]).set(r.lag_records);
        }
        self.log_dir_total_bytes.reset();
        self.log_dir_free_bytes.reset();
        for dir in &snapshot.log_dirs {
            self.log_dir_total_bytes.with_label_values(&[dir.dir.as_str()]).set(gauge_value(dir.total_bytes));
            self.log_dir_free_bytes.with_label_values(&[dir.dir.as_str()]).set(gauge_value(dir.free_bytes));
        }
        self.fill_states(&snapshot.groups_by_state, &snapshot.transactions_by_state);
        self.marker_queue.set(gauge_value(snapshot.marker_queue_transactions));
    }

    fn apply_partitions(&self, partitions: &[PartitionSnapshot], partition_detail: bool) {
        let (mut leaders, mut under_replicated, mut under_min_isr, mut at_min_isr, mut offline) = (0, 0, 0, 0, 0);
        let mut per_topic: BTreeMap<&str, (i64, u64)> = BTreeMap::new();
        for detail in [&self.log_size_bytes, &self.log_start_offset, &self.log_end_offset, &self.high_watermark, &self.lso_lag, &self.replica_lag_records, &self.replica_lag_ms] {
            detail.reset();
        }
        let (mut max_lag_records, mut max_lag_ms, mut max_lso_lag) = (0i64, 0u64, 0i64);
        for p in partitions {
            for f in &p.followers {
                max_lag_records = max_lag_records.max(f.lag_records);
                max_lag_ms = max_lag_ms.max(f.lag_ms);
            }
            let lso_lag = p.high_watermark.saturating_sub(p.last_stable_offset).max(0);
            if p.is_leader {
                leaders += 1;
                max_lso_lag = max_lso_lag.max(lso_lag);
                under_replicated += i64::from(p.isr < p.replicas);
                under_min_isr += i64::from(p.isr < p.min_isr);
                at_min_isr += i64::from(p.isr == p.min_isr);
            }
            offline += i64::from(p.offline);
            let t = per_topic.entry(p.topic.as_str()).or_insert((0, 0));
            t.0 += 1;
            t.1 = t.1.saturating_add(p.size_bytes);
            if partition_detail {
                let partition = p.partition.to_string();
                let labels = [p.topic.as_str(), partition.as_str()];
                self.log_size_bytes.with_label_values(&labels).set(gauge_value(p.size_bytes));
                self.log_start_offset.with_label_values(&labels).set(p.log_start_offset);
                self.log_end_offset.with_label_values(&labels).set(p.log_end_offset);
                self.high_watermark.with_label_values(&labels).set(p.high_watermark);
                if p.is_leader {
                    self.lso_lag.with_label_values(&labels).set(lso_lag);
                }
                for f in &p.followers {
                    let replica = f.replica.to_string();
                    let labels = [p.topic.as_str(), partition.as_str(), replica.as_str()];
                    self.replica_lag_records.with_label_values(&labels).set(f.lag_records);
                    self.replica_lag_ms.with_label_values(&labels).set(gauge_value(f.lag_ms));
                }
            }
        }
        self.partitions.set(partitions.len() as i64);
        self.leader_partitions.set(leaders);
        self.lso_lag_max.set(max_lso_lag);
        self.under_replicated.set(under_replicated);
        self.under_min_isr.set(under_min_isr);
        self.at_min_isr.set(at_min_isr);
        self.offline.set(offline);
        self.replica_lag_max_records.set(max_lag_records);
        self.replica_lag_max_ms.set(gauge_value(max_lag_ms));
        self.topic_partitions.reset();
        self.topic_log_size_bytes.reset();
        for (topic, (count, size)) in per_topic {
            self.topic_partitions.with_label_values(&[topic]).set(count);
            self.topic_log_size_bytes.with_label_values(&[topic]).set(gauge_value(size));
        }
    }

    /// Known states at 0 unless given; unknown state names are exported as given.
    fn fill_states(&self, groups: &[(String, u64)], transactions: &[(String, u64)]) {
        for (family, known, given) in
            [(&self.groups, GROUP_STATES, groups), (&self.transactions, TRANSACTION_STATES, transactions)]
        {
            family.reset();
            for state in known {
                family.with_label_values(&[*state]).set(0);
            }
            for (state, count) in given {
                family.with_label_values(&[state.as_str()]).add(gauge_value(*count));
            }
        }
    }
}
