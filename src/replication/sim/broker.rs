//! One simulated broker: the production `Partition` (over a real `Log` in its directory)
//! and the glue the broker's tasks provide around it — the lifecycle (register, heartbeat),
//! metadata application (`broker::assign_role`), the replica fetcher (`cluster::replica`),
//! the leader's side of a follower fetch (`api::fetch::read_for_follower`), the
//! AlterPartition sender, and produce with its acks=all wait (`api::produce`).

use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response;
use uuid::Uuid;

use super::{
    ALTER_RETRY_BACKOFF_MS, BROKER_TICK_MS, BROKERS, CONTROLLER, FETCH_BACKOFF_MS, FetchRequest, MIN_INSYNC_REPLICAS, Msg, PRODUCE_TIMEOUT_MS,
    PlantedBug, REQUEST_TIMEOUT_MS, Sim, SimEvent, TOPIC,
};
use crate::broker::{assign_role, isr_eligible, may_lead};
use crate::log::{LogConfig, RecoveryMode};
use crate::metadata::MetadataImage;
use crate::metadata::cluster_control::AlterIsrItem;
use crate::partition::{FetchedFrom, Partition, PartitionError, RecordSet};
use crate::replication::{AlterIsrRequest, AlterIsrResult, ReplicationConfig};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionId, TopicPartition};

/// A follower fetch waiting for its answer.
pub(super) struct FetchInFlight {
    corr: u64,
    leader: usize,
    /// The partition as it was when the request was built: the answer is applied to it, as
    /// `cluster::replica::fetch_from` does, in the leader epoch it was sent in.
    partition: Arc<Partition>,
    from: FetchedFrom,
    sent_at_ms: u64,
}

/// An AlterPartition waiting for its answer.
pub(super) struct AlterInFlight {
    corr: u64,
    change: AlterIsrRequest,
    sent_at_ms: u64,
}

/// An acks=all produce waiting for the high watermark (`api::produce::wait_for_replication`).
pub(super) struct WaitingProduce {
    corr: u64,
    client: usize,
    epoch: LeaderEpoch,
    base_offset: i64,
    required: i64,
    deadline_ms: u64,
}

pub(super) struct BrokerProc {
    pub(super) id: NodeId,
    dir: PathBuf,
    up: bool,
    /// `None` while the process is down.
    pub(super) partition: Option<Arc<Partition>>,
    /// The metadata it applied; survives a crash (the metadata log is on disk).
    pub(super) image: Arc<MetadataImage>,
    pub(super) incarnation: u32,
    incarnation_id: Uuid,
    broker_epoch: Option<BrokerEpoch>,
    register_sent_ms: Option<u64>,
    next_heartbeat_ms: u64,
    next_isr_check_ms: u64,
    fetch: Option<FetchInFlight>,
    next_fetch_ms: u64,
    alter_pending: Option<AlterIsrRequest>,
    alter_in_flight: Option<AlterInFlight>,
    alter_retry_ms: u64,
    waiting: Vec<WaitingProduce>,
    pub(super) paused_until: Option<u64>,
    pub(super) clock_skew_ms: u64,
}

impl BrokerProc {
    pub(super) fn new(id: NodeId, dir: PathBuf) -> Self {
        BrokerProc {
            id,
            dir,
            up: false,
            partition: None,
            image: Arc::new(MetadataImage::default()),
            incarnation: 0,
            incarnation_id: Uuid::nil(),
            broker_epoch: None,
            register_sent_ms: None,
            next_heartbeat_ms: 0,
            next_isr_check_ms: 0,
            fetch: None,
            next_fetch_ms: 0,
            alter_pending: None,
            alter_in_flight: None,
            alter_retry_ms: 0,
            waiting: Vec::new(),
            paused_until: None,
            clock_skew_ms: 0,
        }
    }

    /// Up from `start_broker` until `crash`; the partition may not be open yet (the first
    /// image naming it has not arrived).
    pub(super) fn is_up(&self) -> bool {
        self.up
    }

    pub(super) fn describe(&self) -> String {
        let Some(p) = &self.partition else {
            return format!("{}: {}", self.id.0, if self.is_up() { "up, no partition" } else { "down" });
        };
        let role = if p.is_leader() { "leader".to_string() } else { format!("follows {:?}", p.follows().map(|n| n.0)) };
        let isr = p.isr().map(|(isr, _)| format!(" isr {:?}", isr.iter().map(|n| n.0).collect::<Vec<_>>())).unwrap_or_default();
        format!(
            "{}: {role} epoch {} end {} hw {}{isr} last epoch {:?}{}",
            self.id.0,
            p.leader_epoch().0,
            p.log_end_offset(),
            p.high_watermark(),
            p.latest_epoch().map(|e| e.0),
            if self.paused_until.is_some() { " paused" } else { "" }
        )
    }
}

fn log_config() -> LogConfig {
    LogConfig { segment_bytes: 8 * 1024, min_insync_replicas: MIN_INSYNC_REPLICAS as i32, retention_ms: -1, ..LogConfig::default() }
}

fn tp() -> TopicPartition {
    TopicPartition::new(TOPIC, 0)
}

impl Sim {
    /// The broker's clock (ms), which may run ahead of the simulation's.
    fn broker_now(&self, b: usize) -> u64 {
        self.now_ms + self.brokers[b].clock_skew_ms
    }

    fn replication_config(&self) -> ReplicationConfig {
        ReplicationConfig { replica_lag_time_max_ms: self.chaos.replica_lag_time_max_ms, min_insync_replicas: MIN_INSYNC_REPLICAS }
    }

    /// A process starts: a new incarnation registers; the partition (when its image has it)
    /// is opened with recovery and takes the role that image names.
    pub(super) fn start_broker(&mut self, b: usize) {
        let incarnation = self.brokers[b].incarnation + 1;
        let incarnation_id = Uuid::from_u64_pair(self.seed ^ 0xB0, (b as u64) << 32 | incarnation as u64);
        {
            let n = &mut self.brokers[b];
            n.incarnation = incarnation;
            n.incarnation_id = incarnation_id;
            n.up = true;
            n.broker_epoch = None;
            n.register_sent_ms = None;
            n.next_heartbeat_ms = 0;
            n.fetch = None;
            n.alter_pending = None;
            n.alter_in_flight = None;
            n.waiting.clear();
            n.paused_until = None;
        }
        self.log_line(|| format!("broker {} starts (incarnation {incarnation})", b + 1));
        self.open_partition(b);
        self.schedule(self.now_ms + BROKER_TICK_MS, SimEvent::BrokerTick { b, incarnation });
    }

    /// Opens the partition once the broker's image names it, and gives it its role.
    fn open_partition(&mut self, b: usize) {
        if self.brokers[b].partition.is_some() || self.brokers[b].image.topic(TOPIC).is_none() {
            return;
        }
        let now = self.broker_now(b) as i64;
        let metrics = self.metrics.topic(TOPIC);
        let dir = self.brokers[b].dir.clone();
        match Partition::open(tp(), self.topic_id, &dir, log_config(), now, metrics, RecoveryMode::PageCacheIntact) {
            Ok(p) => {
                self.brokers[b].partition = Some(Arc::new(p));
                self.check.reopened(b);
                self.refresh_mirror(b);
                self.assign(b, true);
            }
            Err(e) => self.fail(format!("broker {} cannot open its partition: {e}", b + 1)),
        }
    }

    pub(super) fn crash(&mut self, b: usize) {
        if !self.brokers[b].is_up() {
            return;
        }
        self.stats.crashes += 1;
        self.log_line(|| format!("broker {} crashes", b + 1));
        let n = &mut self.brokers[b];
        // Dropped without `close`: no clean-shutdown marker, recovery runs at the restart.
        n.up = false;
        n.partition = None;
        n.broker_epoch = None;
        n.register_sent_ms = None;
        n.fetch = None;
        n.alter_pending = None;
        n.alter_in_flight = None;
        n.waiting.clear();
        n.paused_until = None;
    }

    /// Gives the partition the role the broker's image names (`broker::assign_role`, as
    /// `Broker::assign_roles` on a change or at start-up) and refreshes who may join the ISR.
    fn assign(&mut self, b: usize, role_changed: bool) {
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        let image = self.brokers[b].image.clone();
        let now = self.broker_now(b);
        let eligible = isr_eligible(&image);
        let mut changes = Vec::new();
        if role_changed && let Some(reg) = image.topic(TOPIC).and_then(|t| t.partition(0)) {
            let was_leader = partition.is_leader().then(|| partition.leader_epoch());
            let may_lead = may_lead(&image, self.brokers[b].id, self.brokers[b].broker_epoch);
            changes = assign_role(&partition, reg, self.brokers[b].id, may_lead, self.replication_config(), eligible.as_ref(), now);
            if partition.is_leader() && was_leader != Some(partition.leader_epoch()) {
                self.stats.elections += 1;
                let epoch = partition.leader_epoch();
                self.log_line(|| format!("broker {} leads in epoch {}", b + 1, epoch.0));
            }
        }
        // `Broker::refresh_isr_eligible` runs on every metadata change.
        if let Some(eligible) = eligible
            && let Some(change) = partition.set_isr_eligible(eligible, now)
        {
            changes.push(change);
        }
        for change in changes {
            self.submit_alter(b, change);
        }
        self.after_partition_change(b);
    }

    /// `Broker::submit_isr_change`: the latest change of the partition wins.
    fn submit_alter(&mut self, b: usize, change: AlterIsrRequest) {
        let isr: Vec<i32> = change.new_isr.iter().map(|(n, _)| n.0).collect();
        self.log_line(|| format!("broker {} queues AlterPartition isr {isr:?} at pe {}", b + 1, change.partition_epoch.0));
        self.brokers[b].alter_pending = Some(change);
    }

    pub(super) fn broker_tick(&mut self, b: usize, incarnation: u32) {
        if self.brokers[b].incarnation != incarnation || !self.brokers[b].is_up() {
            return;
        }
        self.schedule(self.now_ms + BROKER_TICK_MS, SimEvent::BrokerTick { b, incarnation });
        if self.brokers[b].paused_until.is_some() {
            return;
        }
        self.lifecycle_tick(b);
        self.isr_tick(b);
        self.maybe_fetch(b);
        self.maybe_send_alter(b);
        self.complete_produces(b);
    }

    /// Registers until registered, then heartbeats every session timeout / 4.
    fn lifecycle_tick(&mut self, b: usize) {
        let now = self.now_ms;
        let interval = (self.chaos.session_timeout_ms / 4).max(BROKER_TICK_MS);
        let n = &mut self.brokers[b];
        if n.next_heartbeat_ms > now {
            return;
        }
        n.next_heartbeat_ms = now + interval;
        match n.broker_epoch {
            Some(epoch) => {
                let metadata_offset = n.image.offset;
                self.send(b, CONTROLLER, Msg::Heartbeat { epoch, metadata_offset });
            }
            None => {
                if n.register_sent_ms.is_some_and(|t| now < t + super::REQUEST_TIMEOUT_MS) {
                    return;
                }
                let incarnation_id = n.incarnation_id;
                n.register_sent_ms = Some(now);
                self.send(b, CONTROLLER, Msg::Register { incarnation_id });
            }
        }
    }

    /// `cluster::replica::check_isr`: every `replica.lag.time.max.ms / 2`.
    fn isr_tick(&mut self, b: usize) {
        let now = self.broker_now(b);
        if self.brokers[b].next_isr_check_ms > now {
            return;
        }
        self.brokers[b].next_isr_check_ms = now + (self.chaos.replica_lag_time_max_ms / 2).max(1);
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        if let Some(change) = partition.isr_tick(now) {
            self.submit_alter(b, change);
        }
        self.after_partition_change(b);
    }

    pub(super) fn broker_receive(&mut self, b: usize, from: usize, msg: Msg) {
        match msg {
            Msg::Registered { incarnation_id, epoch } => {
                let n = &mut self.brokers[b];
                if incarnation_id == n.incarnation_id && n.broker_epoch.is_none() {
                    if let Some(epoch) = epoch {
                        n.broker_epoch = Some(epoch);
                        n.next_heartbeat_ms = 0;
                    }
                }
            }
            Msg::HeartbeatStale { epoch } if self.brokers[b].broker_epoch == Some(epoch) => {
                self.brokers[b].broker_epoch = None;
            }
            Msg::Metadata(image) => self.apply_image(b, image),
            Msg::Fetch(req) => self.serve_fetch(b, from, req),
            Msg::FetchAnswer { corr, data } => self.on_fetch_answer(b, corr, data),
            Msg::AlterAnswer { corr, error_code, data } => self.on_alter_answer(b, corr, error_code, data),
            Msg::Produce { corr, batch_id, records } => self.serve_produce(b, from, corr, batch_id, records),
            _ => {}
        }
    }

    fn apply_image(&mut self, b: usize, image: Arc<MetadataImage>) {
        if image.offset <= self.brokers[b].image.offset {
            return;
        }
        let reg_of = |i: &MetadataImage| i.topic(TOPIC).and_then(|t| t.partition(0)).cloned();
        let changed = reg_of(&self.brokers[b].image) != reg_of(&image);
        self.brokers[b].image = image;
        if self.brokers[b].partition.is_none() {
            return self.open_partition(b);
        }
        self.assign(b, changed);
    }

    /// The fetcher loop: one fetch in flight; an empty answer waits `fetch_wait_ms` (the
    /// leader's long poll), a failed one the backoff.
    fn maybe_fetch(&mut self, b: usize) {
        let now = self.now_ms;
        if let Some(f) = &self.brokers[b].fetch {
            if now < f.sent_at_ms + REQUEST_TIMEOUT_MS {
                return;
            }
            self.brokers[b].fetch = None;
            self.brokers[b].next_fetch_ms = now + FETCH_BACKOFF_MS;
        }
        if now < self.brokers[b].next_fetch_ms {
            return;
        }
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        let Some(leader) = partition.follows() else { return };
        let leader = (leader.0 - 1) as usize;
        if leader == b || leader >= BROKERS {
            return;
        }
        let corr = self.corr();
        let req = FetchRequest {
            corr,
            current_leader_epoch: partition.leader_epoch(),
            fetch_offset: partition.log_end_offset().0,
            last_fetched_epoch: partition.latest_epoch().map_or(-1, |e| e.0),
            log_start_offset: partition.log_start_offset().0,
        };
        let from = FetchedFrom { leader: NodeId(leader as i32 + 1), leader_epoch: req.current_leader_epoch };
        self.brokers[b].fetch = Some(FetchInFlight { corr, leader, partition, from, sent_at_ms: now });
        self.send(b, leader, Msg::Fetch(req));
    }

    /// The leader's side (`api::fetch::read_one` and `read_for_follower`): leadership and
    /// epoch checks, the KIP-320 divergence check, the follower's progress, then the read.
    fn serve_fetch(&mut self, b: usize, from: usize, req: FetchRequest) {
        let mut data = fetch_response::PartitionData::default();
        data.partition_index = 0;
        data.high_watermark = -1;
        data.last_stable_offset = -1;
        data.log_start_offset = -1;
        data.diverging_epoch.epoch = -1;
        data.diverging_epoch.end_offset = -1;
        let answer = |sim: &mut Sim, data: fetch_response::PartitionData| sim.send(b, from, Msg::FetchAnswer { corr: req.corr, data });
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        let positions = |data: &mut fetch_response::PartitionData| {
            data.high_watermark = partition.high_watermark().0;
            data.last_stable_offset = partition.last_stable_offset().0;
            data.log_start_offset = partition.log_start_offset().0;
        };
        let code = |e: ResponseError| e.code();
        if !partition.is_leader() {
            data.error_code = code(ResponseError::NotLeaderOrFollower);
            return answer(self, data);
        }
        let epoch = partition.leader_epoch();
        if req.current_leader_epoch > epoch {
            data.error_code = code(ResponseError::UnknownLeaderEpoch);
            return answer(self, data);
        }
        if req.current_leader_epoch.0 >= 0 && req.current_leader_epoch < epoch {
            data.error_code = code(ResponseError::FencedLeaderEpoch);
            return answer(self, data);
        }
        if req.last_fetched_epoch >= 0
            && let Some(d) = partition.diverging_epoch(LeaderEpoch(req.last_fetched_epoch), Offset(req.fetch_offset))
        {
            positions(&mut data);
            data.diverging_epoch.epoch = d.epoch.0;
            data.diverging_epoch.end_offset = d.end_offset.0;
            return answer(self, data);
        }
        let follower = NodeId(from as i32 + 1);
        let now = self.broker_now(b);
        match partition.record_follower_fetch(follower, Offset(req.fetch_offset), Offset(req.log_start_offset), None, now) {
            Ok(Some(change)) => self.submit_alter(b, change),
            Ok(None) => {}
            Err(e) => {
                positions(&mut data);
                data.error_code = crate::api::errors::partition_error(&e).code();
                self.after_partition_change(b);
                return answer(self, data);
            }
        }
        match partition.read_for_follower(Offset(req.fetch_offset), self.chaos.fetch_max_bytes, true) {
            Ok(read) => {
                data.records = Some(match read.records {
                    RecordSet::Memory(bytes) => bytes,
                    RecordSet::Regions { regions, .. } => {
                        let mut out = Vec::new();
                        for r in &regions {
                            match r.read_to_vec() {
                                Ok(v) => out.extend_from_slice(&v),
                                Err(e) => return self.fail(format!("broker {} cannot read its log: {e}", b + 1)),
                            }
                        }
                        out.into()
                    }
                });
                positions(&mut data);
            }
            Err(e) => {
                positions(&mut data);
                data.error_code = match &e {
                    PartitionError::Log(l) => crate::api::errors::log_error(l),
                    other => crate::api::errors::partition_error(other),
                }
                .code();
            }
        }
        self.after_partition_change(b);
        answer(self, data);
    }

    /// The fetcher applies the answer to the partition it fetched for
    /// (`cluster::replica::apply_partition`, the production function).
    fn on_fetch_answer(&mut self, b: usize, corr: u64, data: fetch_response::PartitionData) {
        let Some(f) = self.brokers[b].fetch.take_if(|f| f.corr == corr) else { return };
        if !self.brokers[b].partition.as_ref().is_some_and(|p| Arc::ptr_eq(p, &f.partition)) {
            return;
        }
        let now = self.broker_now(b) as i64;
        let before = f.partition.log_end_offset().0;
        let empty = data.records.as_ref().is_none_or(|r| r.is_empty());
        let diverging = data.diverging_epoch.end_offset >= 0;
        let result = crate::cluster::replica::apply_partition(&f.partition, f.from, &data, now);
        let after = f.partition.log_end_offset().0;
        if after < before {
            self.stats.truncations += 1;
            self.log_line(|| format!("broker {} truncates {before} -> {after} (answer from {})", b + 1, f.leader + 1));
        } else if diverging && self.tracing() {
            let d = (data.diverging_epoch.epoch, data.diverging_epoch.end_offset);
            self.log_line(|| format!("broker {} told diverging {d:?} at end {before}", b + 1));
        }
        let wait = match &result {
            Err(_) => FETCH_BACKOFF_MS,
            Ok(()) if empty && !diverging && data.error_code == 0 => self.chaos.fetch_wait_ms,
            Ok(()) => 0,
        };
        if data.error_code != 0 && self.tracing() {
            let code = data.error_code;
            self.log_line(|| format!("broker {}'s fetch from {} failed: {code}", b + 1, f.leader + 1));
        }
        self.brokers[b].next_fetch_ms = self.now_ms + wait;
        self.after_partition_change(b);
        if wait == 0 {
            self.maybe_fetch(b);
        }
    }

    /// `cluster::replica::send_isr_changes`: one request at a time; an unanswered change is
    /// sent again after a backoff (with the planted `AlterTimeoutReverts`, it is reverted).
    fn maybe_send_alter(&mut self, b: usize) {
        let now = self.now_ms;
        if let Some(f) = &self.brokers[b].alter_in_flight {
            if now < f.sent_at_ms + REQUEST_TIMEOUT_MS {
                return;
            }
            let Some(f) = self.brokers[b].alter_in_flight.take() else { return };
            self.alter_unanswered(b, f.change);
        }
        if now < self.brokers[b].alter_retry_ms {
            return;
        }
        let Some(epoch) = self.brokers[b].broker_epoch else { return };
        let Some(change) = self.brokers[b].alter_pending.take() else { return };
        let me = self.brokers[b].id;
        let item = AlterIsrItem {
            topic_id: self.topic_id,
            partition: PartitionId(0),
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change.new_isr.iter().map(|(id, e)| (*id, if *id == me { Some(epoch) } else { *e })).collect(),
        };
        let corr = self.corr();
        self.brokers[b].alter_in_flight = Some(AlterInFlight { corr, change, sent_at_ms: now });
        self.send(b, CONTROLLER, Msg::Alter { corr, broker_epoch: epoch, item });
    }

    /// No answer, or one that says nothing: retried unless a newer change was queued.
    fn alter_unanswered(&mut self, b: usize, change: AlterIsrRequest) {
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        if !partition.awaits_alter(&change) {
            return;
        }
        if self.planted(PlantedBug::AlterTimeoutReverts) {
            partition.on_alter_result(&change, AlterIsrResult::Rejected, self.broker_now(b));
            return self.after_partition_change(b);
        }
        self.brokers[b].alter_retry_ms = self.now_ms + ALTER_RETRY_BACKOFF_MS;
        if self.brokers[b].alter_pending.is_none() {
            self.brokers[b].alter_pending = Some(change);
        }
    }

    fn on_alter_answer(
        &mut self,
        b: usize,
        corr: u64,
        error_code: i16,
        data: Option<kafka_protocol::messages::alter_partition_response::PartitionData>,
    ) {
        let Some(f) = self.brokers[b].alter_in_flight.take_if(|f| f.corr == corr) else { return };
        let result = match data {
            Some(d) if error_code == 0 => crate::cluster::replica::alter_result(&d),
            _ => None,
        };
        let Some(result) = result else { return self.alter_unanswered(b, f.change) };
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        if !partition.awaits_alter(&f.change) {
            return;
        }
        self.log_line(|| format!("broker {} takes AlterPartition answer {result:?}", b + 1));
        partition.on_alter_result(&f.change, result, self.broker_now(b));
        self.after_partition_change(b);
        self.maybe_send_alter(b);
    }

    /// `api::produce::append_partition` for acks=all, then the wait for the high watermark.
    fn serve_produce(&mut self, b: usize, from: usize, corr: u64, batch_id: u64, records: bytes::Bytes) {
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        let me = self.brokers[b].id;
        let leads = self.brokers[b].image.topic(TOPIC).and_then(|t| t.partition(0)).is_some_and(|r| r.leader == Some(me));
        let hint = self.brokers[b].image.topic(TOPIC).and_then(|t| t.partition(0)).and_then(|r| r.leader);
        let refuse = |sim: &mut Sim, e: ResponseError| sim.send(b, from, Msg::ProduceAnswer { corr, result: Err(e), leader_hint: hint });
        if !leads || !partition.is_leader() {
            return refuse(self, ResponseError::NotLeaderOrFollower);
        }
        if partition.isr().map_or(0, |(isr, _)| isr.len()) < MIN_INSYNC_REPLICAS {
            return refuse(self, ResponseError::NotEnoughReplicas);
        }
        let now = self.broker_now(b) as i64;
        match partition.append(&records, now) {
            Ok(result) => {
                let epoch = partition.leader_epoch();
                self.log_line(|| format!("broker {} appends batch {batch_id} at {} in epoch {}", b + 1, result.first_offset, epoch.0));
                self.brokers[b].waiting.push(WaitingProduce {
                    corr,
                    client: from,
                    epoch,
                    base_offset: result.first_offset.0,
                    required: result.last_offset.0 + 1,
                    deadline_ms: self.now_ms + PRODUCE_TIMEOUT_MS,
                });
                self.after_partition_change(b);
            }
            Err(e) => {
                let code = match &e {
                    PartitionError::Log(l) => crate::api::errors::log_error(l),
                    other => crate::api::errors::partition_error(other),
                };
                refuse(self, code);
            }
        }
    }

    /// Answers the waiting produces whose outcome is known (`wait_for_replication`).
    pub(super) fn complete_produces(&mut self, b: usize) {
        if self.brokers[b].waiting.is_empty() {
            return;
        }
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        let now = self.now_ms;
        let waiting = std::mem::take(&mut self.brokers[b].waiting);
        let hint = self.brokers[b].image.topic(TOPIC).and_then(|t| t.partition(0)).and_then(|r| r.leader);
        for w in waiting {
            let result = if !partition.is_leader() || partition.leader_epoch() != w.epoch {
                Some(Err(ResponseError::NotLeaderOrFollower))
            } else if partition.high_watermark().0 >= w.required {
                let isr = partition.isr().map_or(0, |(isr, _)| isr.len());
                Some(if isr >= MIN_INSYNC_REPLICAS { Ok((w.base_offset, w.epoch)) } else { Err(ResponseError::NotEnoughReplicasAfterAppend) })
            } else if now >= w.deadline_ms {
                Some(Err(ResponseError::RequestTimedOut))
            } else {
                None
            };
            match result {
                Some(result) => self.send(b, w.client, Msg::ProduceAnswer { corr: w.corr, result, leader_hint: hint }),
                None => self.brokers[b].waiting.push(w),
            }
        }
    }

    /// After anything that may have changed the partition: the invariant checker's view of
    /// the log, and the produces waiting on the high watermark.
    pub(super) fn after_partition_change(&mut self, b: usize) {
        self.refresh_mirror(b);
        self.complete_produces(b);
    }
}
