//! A seeded, single-threaded, deterministic simulation of a whole cluster's metadata layer:
//! 3 or 5 controllers (quorum voters) and 3–5 brokers, either dedicated (brokers are quorum
//! observers) or combined (`process.roles=broker,controller` on every voter, plus up to two
//! broker-only nodes). Every node runs the production `RaftCore` over a `MemoryLog` and
//! applies what its quorum commits with the store's own code: one `MetadataDelta` per batch
//! of committed entries, each replayed by `write_rule::replay_entry`, snapshots written by
//! `store::snapshot_bytes` and read by `store::image_from_snapshot`. The active controller
//! runs [`controller_loop::ControllerLoop`]: the store's `write_rule` (the very functions
//! `MetadataStore::propose` calls) inside a single-threaded twin of the store's callers;
//! brokers act on each delta's `local_changes` as the replica manager does, and run the
//! lifecycle of `cluster::lifecycle` (register with a fresh incarnation,
//! heartbeat every 2 s with their applied offset, register again when told their epoch is
//! stale) and take producer-id blocks.
//!
//! The chaos is `raft::sim`'s — message loss, delay, duplication and reordering, symmetric
//! and one-way partitions, crashes (unflushed writes lost) and restarts (brokers come back as
//! a new incarnation), slow disks, congested links — plus slow appliers, so that brokers and
//! controllers fall behind the log they report on. Clients create topics on the active
//! controller; nodes take snapshots and laggards load them.
//!
//! After every event the simulator checks (each at the moment the state it reads changes):
//! - at most one quorum leader per epoch;
//! - every node's applied entries are a prefix of one history (digests), and a snapshot it
//!   loads is the image of that history's prefix;
//! - no node's high watermark moves back within one run of its process;
//! - in every node's applied image, every partition's leader is a registered, unfenced
//!   broker in the partition's ISR (a fenced broker never leads), and the ISR lies within
//!   the replicas;
//! - a broker's epoch is the offset of the log entry carrying its `RegisterBroker` record;
//! - an `UnfenceBroker` is proposed only once that incarnation has applied its registration;
//! - producer-id blocks handed out never overlap;
//! - a broker that acts only on its deltas' local changes (and rescans after a snapshot)
//!   hosts exactly the partitions its image places on it.
//!
//! At the end it stops the chaos, heals everything and restarts every node, then requires
//! the cluster to settle within a deadline: one leader that has applied its whole log,
//! every node caught up, every broker registered with its current incarnation and unfenced
//! (and told so), every partition led.
//!
//! Planted bugs ([`ClusterBug`], test-only, in the simulation's controller loop): computing
//! before the whole log is applied, fencing without moving leadership, unfencing without the
//! catch-up rule, accepting a stale broker epoch, answering before the commit, a broker
//! ignoring its deltas' deletions. Each is found within the CI seeds.
//!
//! Atomic changes: `MetadataStore::propose` writes a change as one Raft entry (its records as
//! a JSON array), so a failover cannot commit part of it; the simulation proposes the same way
//! and requires, at the end, that every partition has a registration (a topic created in part
//! would leave partitions without one). It found this bug when changes were one entry per
//! record.
//!
//! The stranded candidate (a quorum bug surveys found, fixed): a candidate whose Vote
//! requests were all lost stayed in its new epoch; its pre-votes were refused by voters that
//! follow the leader of the older epoch, whose answers it ignored as stale, and nothing told
//! that leader of the newer epoch, so the voter never rejoined. Seeds 15878, 16770, 35637 and
//! 51902 of the first 100,000 ended so ("node N applied x of y"). Pre-votes now carry the
//! prospective's epoch and pull the others into it, as Kafka's do (see `raft::core`); the
//! settle check also requires every node to follow the leader in its epoch, and
//! `tests::stranded_candidate_seeds_settle` keeps the four seeds.
//!
//! Commands:
//! - CI: `cargo test --release --lib metadata::cluster_sim` runs the default seeds and the
//!   planted-bug tests.
//! - Replay one seed with its trace: `BLUMFELD_CLUSTER_SIM_SEED=N cargo test --release --lib
//!   metadata::cluster_sim::tests::many_seeds -- --nocapture`.
//! - More seeds: `BLUMFELD_CLUSTER_SIM_SEEDS=100000 cargo test --release --lib
//!   metadata::cluster_sim::tests::many_seeds -- --nocapture` (stops at the first failure);
//!   every failing seed of a range, on every core: `BLUMFELD_CLUSTER_SIM_SURVEY=100000
//!   [BLUMFELD_CLUSTER_SIM_FIRST=N] [BLUMFELD_CLUSTER_SIM_THREADS=T]` with the same command.
//! - A million (a survey of seeds 1,000,000..2,000,000; about 30 minutes on 2 cores):
//!   `cargo test --release --lib metadata::cluster_sim::tests::a_million_seeds -- --ignored --nocapture`.

mod broker;
mod controller_loop;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write as _;

use bytes::Bytes;
use uuid::Uuid;

use self::broker::{BrokerProc, Slot};
pub use self::controller_loop::ClusterBug;
use self::controller_loop::{AdminRequest, Answer, BrokerRequest, ControllerLoop, Waiter};
use crate::config::BrokerConfig;
use crate::metadata::controller::TopicSpec;
use crate::metadata::image::MetadataImage;
use crate::metadata::records::MetadataRecord;
use crate::metadata::store;
use crate::raft::sim::{Scheduled, mix};
use crate::raft::state::SplitMix64;
use crate::raft::{Action, EntryData, Event, MemoryLog, Message, QuorumState, RaftConfig, RaftCore, RaftLog, RoleKind};
use crate::metadata::delta::MetadataDelta;
use crate::metadata::write_rule::{LeaderView, replay_entry};
use crate::types::{LeaderEpoch, NodeId, Offset, TopicPartition};
use std::sync::Arc;

/// How hard one run shakes the cluster; drawn from the seed.
#[derive(Debug, Clone, Copy)]
struct Chaos {
    loss: f64,
    duplicate: f64,
    slow_message: f64,
    crash_interval_ms: Option<(u64, u64)>,
    restart_after_ms: (u64, u64),
    partition_interval_ms: Option<(u64, u64)>,
    slow_disk: f64,
    slow_apply: f64,
    topic_interval_ms: (u64, u64),
    snapshot_interval_ms: Option<(u64, u64)>,
}

/// What travels between nodes.
#[derive(Debug, Clone)]
enum Wire {
    Raft(Message),
    Request { corr: u64, req: BrokerRequest },
    Reply { corr: u64, answer: Answer },
    /// The connection to the controller failed (refused, reset): the call may retry.
    Disconnected { corr: u64 },
    /// A quorum request's connection was refused or reset: the sender's process is down.
    RaftUnreachable,
}

#[derive(Debug)]
enum SimEvent {
    Deliver { from: usize, to: usize, wire: Wire },
    RaftTick { node: usize },
    FlushDone { node: usize, run: u32 },
    Apply { node: usize, run: u32 },
    ControllerTick { node: usize, run: u32 },
    BrokerTimer { node: usize, run: u32, slot: Slot, generation: u64 },
    Restart { node: usize },
    CrashSomeone,
    Sigterm { node: usize },
    Partition,
    Heal { generation: u32 },
    Admin,
    Snapshot,
    ToggleDisk,
    EndChaos,
    Settle,
}

struct Node {
    id: NodeId,
    is_controller: bool,
    is_broker: bool,
    core: Option<RaftCore<MemoryLog>>,
    /// What survives a crash: the flushed log and the persisted quorum state.
    durable_log: MemoryLog,
    persisted: QuorumState,
    /// Counts process starts: events of an earlier run are stale.
    run: u32,
    tick_at_ms: Option<u64>,
    flush_pending: bool,
    apply_pending: bool,
    slow_disk: bool,
    slow_apply: bool,
    send_lag_ms: u64,
    last_high_watermark: Offset,
    /// The applied image (`image.offset` is the applied offset) and the digest of the
    /// entries applied to reach it.
    image: MetadataImage,
    applied_digest: u64,
    /// The partitions this node hosts as a broker, kept from its deltas' local changes only.
    hosted: BTreeMap<TopicPartition, Uuid>,
    control: Option<ControllerLoop>,
    broker: Option<BrokerProc>,
    /// `broker.rack`.
    rack: Option<String>,
}

impl Node {
    fn view(&self) -> LeaderView {
        match &self.core {
            Some(c) => LeaderView { is_leader: c.role() == RoleKind::Leader, epoch: c.epoch(), leader: c.leader(), log_end: c.log().end_offset() },
            None => LeaderView { is_leader: false, epoch: LeaderEpoch(0), leader: None, log_end: Offset(0) },
        }
    }
}

/// A broken invariant, with the seed that reproduces it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub seed: u64,
    pub at_ms: u64,
    pub message: String,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub events: u64,
    pub elections: u64,
    /// Committed entries (changes and leader changes).
    pub entries: u64,
    pub registrations: u64,
    pub fencings: u64,
    pub unfencings: u64,
    pub admin_changes: u64,
    pub snapshots_loaded: u64,
    pub controlled_shutdowns: u64,
}

impl RunStats {
    fn add(&mut self, o: &RunStats) {
        self.events += o.events;
        self.elections += o.elections;
        self.entries += o.entries;
        self.registrations += o.registrations;
        self.fencings += o.fencings;
        self.unfencings += o.unfencings;
        self.admin_changes += o.admin_changes;
        self.snapshots_loaded += o.snapshots_loaded;
        self.controlled_shutdowns += o.controlled_shutdowns;
    }
}

const CHAOS_MS_MIN: u64 = 20_000;
const CHAOS_MS_MAX: u64 = 45_000;
/// After the chaos: a call lost in flight costs its 30 s timeout, then the broker registers
/// again, catches up and is unfenced.
const SETTLE_DEADLINE_MS: u64 = 90_000;
const SETTLE_CHECK_MS: u64 = 250;
const EVENTS_MAX: u64 = 3_000_000;
const TRACE_LINES_MAX: usize = 500;
const TOPICS_MAX: u64 = 24;
/// The chance that a crash cuts a step's actions short.
const MID_STEP_CRASH: f64 = 0.002;
/// `cluster::active::TICK`.
const CONTROLLER_TICK_MS: u64 = 250;

pub type Trace = Vec<String>;

pub struct Sim {
    seed: u64,
    rng: SplitMix64,
    now_ms: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled<SimEvent>>>,
    nodes: Vec<Node>,
    raft_config: RaftConfig,
    broker_config: BrokerConfig,
    planted: Option<ClusterBug>,
    chaos: Chaos,
    chaos_on: bool,
    blocked: Vec<Vec<bool>>,
    partition_generation: u32,
    /// `history_digest[o]`: the digest of committed entries `[0, o)`.
    history_digest: Vec<u64>,
    /// The entries of the history, kept to tell a changed entry from a matching one.
    history: Vec<crate::raft::Entry>,
    leaders: HashMap<LeaderEpoch, NodeId>,
    /// `(broker, epoch)` → the offset of the entry carrying its `RegisterBroker` record.
    registration_offsets: HashMap<(NodeId, i64), i64>,
    /// Incarnation → the largest offset its process applied.
    incarnation_applied: HashMap<Uuid, i64>,
    /// Producer-id blocks handed out: start → end.
    producer_id_blocks: BTreeMap<i64, i64>,
    /// Snapshot end offset → the digest of the snapshot's bytes (all snapshots at one offset
    /// must be the same image).
    snapshot_fingerprints: HashMap<i64, u64>,
    next_corr: u64,
    topics_created: u64,
    settle_deadline_ms: Option<u64>,
    settled: bool,
    trace: Option<Trace>,
    violation: Option<String>,
    stats: RunStats,
}

fn is_raft_request(msg: &Message) -> bool {
    matches!(
        msg,
        Message::VoteRequest(_)
            | Message::BeginQuorumEpochRequest(_)
            | Message::EndQuorumEpochRequest(_)
            | Message::FetchRequest(_)
            | Message::FetchSnapshotRequest(_)
    )
}

fn bytes_digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3))
}

/// The partitions a rescan of `image` places on `node` (the replica manager's `reconcile`).
fn hosted_by(image: &MetadataImage, node: NodeId) -> BTreeMap<TopicPartition, Uuid> {
    let mut out = BTreeMap::new();
    for t in image.topics.values() {
        for (p, r) in &t.partitions {
            if r.replicas.contains(&node) {
                out.insert(TopicPartition { topic: t.name.clone(), partition: *p }, t.id);
            }
        }
    }
    out
}

/// The store's snapshot decoding, with the offset it ends at.
fn image_from_snapshot(data: &[u8], end: Offset) -> Option<MetadataImage> {
    let mut image = store::image_from_snapshot(data).ok()?;
    image.offset = end.0;
    Some(image)
}

impl Sim {
    pub fn new(seed: u64, planted: Option<ClusterBug>, trace: bool) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0xC1_0575_E5EE_D000);
        let voter_count: i32 = if rng.below(10) < 7 { 3 } else { 5 };
        let combined = rng.below(3) == 0;
        let broker_only = if combined { rng.below(3) as i32 } else { 3 + rng.below(3) as i32 };
        let voters: Vec<NodeId> = (1..=voter_count).map(NodeId).collect();
        let mut raft_config = RaftConfig::new(NodeId(0), voters);
        if rng.below(2) == 0 {
            raft_config.election_timeout_ms = 200;
            raft_config.fetch_timeout_ms = 400;
            raft_config.election_backoff_max_ms = 200;
            raft_config.request_timeout_ms = 300;
            raft_config.fetch_max_wait_ms = 100;
        }
        // Small fetches: laggards catch up over many responses, so commits come in pieces.
        raft_config.fetch_max_entries = 2 + rng.below(30) as usize;
        raft_config.snapshot_chunk_bytes = 64 + rng.below(2048) as u32;
        let chaos = Self::draw_chaos(&mut rng, &raft_config);
        let racks = rng.below(2) == 0;
        let mut nodes = Vec::new();
        let blank = |id: NodeId, is_controller: bool, is_broker: bool| Node {
            id,
            is_controller,
            is_broker,
            core: None,
            durable_log: MemoryLog::new(),
            persisted: QuorumState::default(),
            run: 0,
            tick_at_ms: None,
            flush_pending: false,
            apply_pending: false,
            slow_disk: false,
            slow_apply: false,
            send_lag_ms: 0,
            last_high_watermark: Offset(0),
            image: MetadataImage::default(),
            applied_digest: 0,
            hosted: BTreeMap::new(),
            control: None,
            broker: None,
            rack: None,
        };
        for v in 1..=voter_count {
            nodes.push(blank(NodeId(v), true, combined));
        }
        for b in 0..broker_only {
            nodes.push(blank(NodeId(100 + b), false, true));
        }
        for n in &mut nodes {
            n.rack = racks.then(|| ["a", "b", "c"][(n.id.0 % 3) as usize].to_string());
        }
        let n = nodes.len();
        Sim {
            seed,
            rng,
            now_ms: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            raft_config,
            broker_config: BrokerConfig::default(),
            planted,
            chaos,
            chaos_on: true,
            blocked: vec![vec![false; n]; n],
            partition_generation: 0,
            history_digest: vec![0],
            history: Vec::new(),
            leaders: HashMap::new(),
            registration_offsets: HashMap::new(),
            incarnation_applied: HashMap::new(),
            producer_id_blocks: BTreeMap::new(),
            snapshot_fingerprints: HashMap::new(),
            next_corr: 0,
            topics_created: 0,
            settle_deadline_ms: None,
            settled: false,
            trace: trace.then(Vec::new),
            violation: None,
            stats: RunStats::default(),
        }
    }

    fn draw_chaos(rng: &mut SplitMix64, config: &RaftConfig) -> Chaos {
        let pick = |rng: &mut SplitMix64, options: &[f64]| options[rng.below(options.len() as u64) as usize];
        let t = config.election_timeout_ms;
        Chaos {
            loss: pick(rng, &[0.0, 0.01, 0.05, 0.15]),
            duplicate: pick(rng, &[0.0, 0.05, 0.2]),
            slow_message: pick(rng, &[0.0, 0.05, 0.2]),
            crash_interval_ms: match rng.below(3) {
                0 => None,
                1 => Some((t, 4 * t)),
                _ => Some((2_000, 8_000)),
            },
            restart_after_ms: if rng.below(2) == 0 { (1, 50) } else { (100, 12_000) },
            partition_interval_ms: match rng.below(3) {
                0 => None,
                1 => Some((t / 2, 2 * t)),
                _ => Some((2_000, 12_000)),
            },
            slow_disk: pick(rng, &[0.0, 0.3, 0.7]),
            slow_apply: pick(rng, &[0.0, 0.3, 0.6]),
            topic_interval_ms: if rng.below(2) == 0 { (100, 800) } else { (500, 4_000) },
            snapshot_interval_ms: if rng.below(2) == 0 { None } else { Some((300, 3_000)) },
        }
    }

    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.rng.below(hi.saturating_sub(lo) + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn schedule(&mut self, at_ms: u64, event: SimEvent) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at_ms, seq: self.seq, event }));
    }

    fn log_line(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>7} {}", self.now_ms, line()));
        }
    }

    fn fail(&mut self, message: String) {
        if self.violation.is_none() {
            self.log_line(|| format!("VIOLATION: {message}"));
            self.violation = Some(message);
        }
    }

    fn index_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Runs the seed to the end: chaos, then healing and settling.
    pub fn run(mut self) -> Result<(RunStats, Option<Trace>), (Violation, Option<Trace>)> {
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        let chaos_ms = self.range((CHAOS_MS_MIN, CHAOS_MS_MAX));
        self.schedule(chaos_ms, SimEvent::EndChaos);
        let at = self.range(self.chaos.topic_interval_ms);
        self.schedule(at, SimEvent::Admin);
        if let Some(interval) = self.chaos.crash_interval_ms {
            let at = self.range(interval);
            self.schedule(at, SimEvent::CrashSomeone);
        }
        if let Some(interval) = self.chaos.partition_interval_ms {
            let at = self.range(interval);
            self.schedule(at, SimEvent::Partition);
        }
        if let Some(interval) = self.chaos.snapshot_interval_ms {
            let at = self.range(interval);
            self.schedule(at, SimEvent::Snapshot);
        }
        let at = self.range((100, 1000));
        self.schedule(at, SimEvent::ToggleDisk);
        while let Some(Reverse(next)) = self.queue.pop() {
            if self.settle_deadline_ms.is_some_and(|d| next.at_ms > d) || self.stats.events >= EVENTS_MAX {
                break;
            }
            self.now_ms = next.at_ms;
            self.stats.events += 1;
            self.handle(next.event);
            if self.violation.is_some() || self.settled {
                break;
            }
        }
        if self.violation.is_none() && !self.settled {
            let why = self.unsettled().unwrap_or_else(|| "the event budget ran out".into());
            self.fail(format!("the cluster did not settle within {SETTLE_DEADLINE_MS} ms after healing: {why}"));
        }
        self.stats.entries = self.history.len() as u64;
        match self.violation.take() {
            None => Ok((self.stats, self.trace)),
            Some(message) => Err((Violation { seed: self.seed, at_ms: self.now_ms, message }, self.trace)),
        }
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Deliver { from, to, wire } => self.deliver(from, to, wire),
            SimEvent::RaftTick { node } => {
                if self.nodes[node].tick_at_ms.is_some_and(|at| at <= self.now_ms) {
                    self.nodes[node].tick_at_ms = None;
                }
                self.step(node, Event::Tick);
            }
            SimEvent::FlushDone { node, run } => {
                let n = &mut self.nodes[node];
                if n.run != run {
                    return;
                }
                n.flush_pending = false;
                let Some(core) = n.core.as_mut() else { return };
                let up_to = core.log_mut().flush();
                self.step(node, Event::Flushed { up_to });
            }
            SimEvent::Apply { node, run } => {
                if self.nodes[node].run == run && self.nodes[node].core.is_some() {
                    self.nodes[node].apply_pending = false;
                    self.apply(node);
                    self.drive_controller(node);
                }
            }
            SimEvent::ControllerTick { node, run } => {
                if self.nodes[node].run == run && self.nodes[node].core.is_some() {
                    let n = &mut self.nodes[node];
                    let view = n.view();
                    if let Some(c) = n.control.as_mut() {
                        c.tick(self.now_ms, &view, &n.image);
                    }
                    self.drive_controller(node);
                    self.schedule(self.now_ms + CONTROLLER_TICK_MS, SimEvent::ControllerTick { node, run });
                }
            }
            SimEvent::BrokerTimer { node, run, slot, generation } => {
                if self.nodes[node].run == run && self.nodes[node].core.is_some() {
                    self.broker_timer(node, slot, generation);
                }
            }
            SimEvent::Restart { node } => {
                if self.nodes[node].core.is_none() {
                    self.restart(node);
                }
            }
            SimEvent::CrashSomeone => self.crash_someone(),
            SimEvent::Sigterm { node } => {
                if self.nodes[node].core.is_some() && self.chaos_on {
                    match self.nodes[node].broker {
                        Some(_) => self.broker_sigterm(node),
                        None => self.stop_gracefully(node, false),
                    }
                }
            }
            SimEvent::Partition => self.partition(),
            SimEvent::Heal { generation } => {
                if generation == self.partition_generation {
                    self.heal();
                }
            }
            SimEvent::Admin => self.admin_request(),
            SimEvent::Snapshot => self.take_snapshot(),
            SimEvent::ToggleDisk => self.toggle_disk(),
            SimEvent::EndChaos => self.end_chaos(),
            SimEvent::Settle => {
                if self.unsettled().is_none() {
                    self.log_line(|| "settled".into());
                    self.settled = true;
                } else {
                    self.schedule(self.now_ms + SETTLE_CHECK_MS, SimEvent::Settle);
                }
            }
        }
    }

    // ---- the quorum: as raft::sim drives it ----

    fn step(&mut self, i: usize, event: Event) {
        let now = self.now_ms;
        let Some(core) = self.nodes[i].core.as_mut() else { return };
        let Ok(mut actions) = core.step(now, event) else { return };
        if self.chaos_on && !actions.is_empty() && self.chance(MID_STEP_CRASH) {
            let cut = self.rng.below(actions.len() as u64 + 1) as usize;
            actions.truncate(cut);
            self.execute(i, actions);
            return self.crash(i);
        }
        self.execute(i, actions);
        self.check_high_watermark(i);
        self.schedule_tick(i);
        self.drive_controller(i);
    }

    fn schedule_tick(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_ref() else { return };
        let at = core.next_deadline_ms().max(self.now_ms + 1);
        if self.nodes[i].tick_at_ms.is_none_or(|t| at < t) {
            self.nodes[i].tick_at_ms = Some(at);
            self.schedule(at, SimEvent::RaftTick { node: i });
        }
    }

    fn execute(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            if self.nodes[i].core.is_none() {
                return;
            }
            match action {
                Action::PersistQuorumState(state) => self.nodes[i].persisted = state,
                Action::Flush { .. } => {
                    if !self.nodes[i].flush_pending {
                        self.nodes[i].flush_pending = true;
                        let delay = if self.nodes[i].slow_disk { self.range((30, 600)) } else { self.range((1, 5)) };
                        let run = self.nodes[i].run;
                        self.schedule(self.now_ms + delay, SimEvent::FlushDone { node: i, run });
                    }
                }
                Action::Send { to, msg } => {
                    if let Some(to) = self.index_of(to) {
                        self.send(i, to, Wire::Raft(msg));
                    }
                }
                Action::Commit { .. } => self.schedule_apply(i),
                Action::SnapshotLoaded { id } => self.load_snapshot(i, id.offset),
                Action::RoleChanged { role, epoch, leader } => {
                    let id = self.nodes[i].id;
                    self.log_line(|| format!("{id:?} becomes {role:?} in {epoch:?} (leader {leader:?})"));
                    if role == RoleKind::Leader {
                        self.became_leader(i, epoch);
                    }
                }
                Action::LogTruncated { .. } => {}
            }
        }
    }

    fn became_leader(&mut self, i: usize, epoch: LeaderEpoch) {
        self.stats.elections += 1;
        let id = self.nodes[i].id;
        if !self.nodes[i].is_controller {
            return self.fail(format!("observer {id:?} became leader of {epoch:?}"));
        }
        if let Some(other) = self.leaders.insert(epoch, id)
            && other != id
        {
            self.fail(format!("two leaders in {epoch:?}: {other:?} and {id:?}"));
        }
    }

    fn check_high_watermark(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_ref() else { return };
        let hw = core.high_watermark();
        let end = core.log().end_offset();
        let n = &mut self.nodes[i];
        if hw < n.last_high_watermark {
            let (id, last) = (n.id, n.last_high_watermark);
            return self.fail(format!("node {id:?}'s high watermark went back from {last} to {hw}"));
        }
        if hw > end {
            let id = n.id;
            return self.fail(format!("node {id:?}'s high watermark {hw} is past its log end {end}"));
        }
        n.last_high_watermark = hw;
    }

    // ---- the network ----

    fn send(&mut self, from: usize, to: usize, wire: Wire) {
        if from == to {
            // Loopback: a combined node calling its own controller.
            return self.schedule(self.now_ms + 1, SimEvent::Deliver { from, to, wire });
        }
        if self.blocked[from][to] {
            return;
        }
        let chaos = self.chaos_on;
        let (loss, duplicate, slow) = (self.chaos.loss, self.chaos.duplicate, self.chaos.slow_message);
        if chaos && self.chance(loss) {
            // A broker's call over TCP sees a lost message as a reset connection half the
            // time, and as a silent hang (until its timeout) otherwise.
            let reset = self.rng.below(2) == 0;
            match wire {
                Wire::Request { corr, .. } if reset => self.disconnect(to, from, corr),
                Wire::Reply { corr, .. } if reset => self.disconnect(from, to, corr),
                _ => {}
            }
            return;
        }
        let copies = if chaos && self.chance(duplicate) { 2 } else { 1 };
        for copy in 0..copies {
            let lag = if chaos { self.nodes[from].send_lag_ms } else { 0 };
            let late = copy > 0 || (chaos && self.chance(slow));
            let delay = lag + if late { self.range((50, 3000)) } else { self.range((1, 10)) };
            self.schedule(self.now_ms + delay, SimEvent::Deliver { from, to, wire: wire.clone() });
        }
    }

    /// Tells the caller at `to` that its call `corr` lost its connection.
    fn disconnect(&mut self, from: usize, to: usize, corr: u64) {
        let at = self.now_ms + self.range((1, 20));
        self.schedule(at, SimEvent::Deliver { from, to, wire: Wire::Disconnected { corr } });
    }

    fn deliver(&mut self, from: usize, to: usize, wire: Wire) {
        let cut = from != to && self.blocked[from][to];
        if self.nodes[to].core.is_none() {
            // Connection refused: the caller hears it unless the network swallows that too.
            let back = !cut && !self.blocked[to][from];
            match wire {
                Wire::Request { corr, .. } if back => self.disconnect(to, from, corr),
                Wire::Raft(msg) if back && is_raft_request(&msg) => self.raft_unreachable(to, from),
                _ => {}
            }
            return;
        }
        if cut {
            return;
        }
        match wire {
            Wire::Raft(msg) => {
                let from_id = self.nodes[from].id;
                let to_id = self.nodes[to].id;
                self.log_line(|| format!("{from_id:?} -> {to_id:?}: {msg:?}"));
                self.step(to, Event::Message { from: from_id, msg });
            }
            Wire::Request { corr, req } => {
                let (from_id, to_id) = (self.nodes[from].id, self.nodes[to].id);
                self.log_line(|| format!("{from_id:?} asks {to_id:?} (call {corr}): {req:?}"));
                let n = &mut self.nodes[to];
                let view = n.view();
                match n.control.as_mut() {
                    Some(c) => c.request(self.now_ms, &view, &n.image, Waiter::Remote { node: from, corr }, req),
                    None => return self.disconnect(to, from, corr),
                }
                self.drive_controller(to);
            }
            Wire::Reply { corr, answer } => self.broker_reply(to, corr, Some(answer)),
            Wire::Disconnected { corr } => self.broker_reply(to, corr, None),
            Wire::RaftUnreachable => {
                let (peer, id) = (self.nodes[from].id, self.nodes[to].id);
                self.log_line(|| format!("{id:?}: quorum connection to {peer:?} refused"));
                self.step(to, Event::Unreachable { peer });
            }
        }
    }

    /// Tells node `to` that its quorum connection to the down node `from` failed at once.
    fn raft_unreachable(&mut self, from: usize, to: usize) {
        let at = self.now_ms + self.range((1, 5));
        self.schedule(at, SimEvent::Deliver { from, to, wire: Wire::RaftUnreachable });
    }

    // ---- the controller layer ----

    /// Runs node `i`'s controller loop as far as it goes: proposes what it computed, sends
    /// its answers.
    fn drive_controller(&mut self, i: usize) {
        loop {
            let n = &mut self.nodes[i];
            let view = n.view();
            let (Some(c), Some(core)) = (n.control.as_mut(), n.core.as_mut()) else { return };
            let Some(records) = c.poll(self.now_ms, &view, &n.image) else { break };
            // One entry per change, as MetadataStore::propose writes it.
            let entries = match crate::metadata::store::encode_change(&records) {
                Ok(b) => vec![b],
                Err(e) => return self.fail(format!("a change does not encode: {e}")),
            };
            let proposed = core.propose(self.now_ms, entries);
            let first = proposed.as_ref().ok().map(|(first, _)| *first);
            let view = LeaderView { log_end: core.log().end_offset(), ..view };
            c.proposed(self.now_ms, &view, &n.image, first);
            if let Some(first) = first {
                let id = self.nodes[i].id;
                self.log_line(|| format!("{id:?} proposes at {first}: {records:?}"));
                self.check_proposal(i, first, &records);
            }
            if let Ok((_, actions)) = proposed {
                self.execute(i, actions);
                self.schedule_tick(i);
            }
            if self.violation.is_some() {
                return;
            }
        }
        let answers = match self.nodes[i].control.as_mut() {
            Some(c) => c.take_answers(),
            None => return,
        };
        for (waiter, answer) in answers {
            match waiter {
                Waiter::Remote { node, corr } => {
                    if let Answer::ProducerIds { start } = answer {
                        self.check_producer_ids(start);
                    }
                    self.send(i, node, Wire::Reply { corr, answer });
                }
                Waiter::Client => {
                    if answer == Answer::Done {
                        self.stats.admin_changes += 1;
                    }
                }
                Waiter::Duties => {}
            }
        }
    }

    /// The controller proposes `records` at `first`: an unfencing must come after that
    /// incarnation applied its own registration.
    fn check_proposal(&mut self, i: usize, first: Offset, records: &[MetadataRecord]) {
        for (k, r) in records.iter().enumerate() {
            let MetadataRecord::UnfenceBroker { id, epoch } = r else { continue };
            let Some(b) = self.nodes[i].image.brokers.get(id).filter(|b| b.epoch == *epoch) else { continue };
            let Some(registered_at) = self.registration_offsets.get(&(*id, epoch.0)).copied() else {
                return self.fail(format!("broker {id:?} unfenced at epoch {} that no RegisterBroker record has", epoch.0));
            };
            let applied = self.incarnation_applied.get(&b.incarnation_id).copied().unwrap_or(0);
            if applied <= registered_at {
                let at = first.0 + k as i64;
                return self.fail(format!(
                    "broker {id:?} is unfenced (record at {at}) while it has applied only below {applied}, \
                     not its registration at {registered_at}"
                ));
            }
        }
    }

    fn check_producer_ids(&mut self, start: i64) {
        let end = start + i64::from(crate::metadata::cluster_control::PRODUCER_ID_BLOCK_LEN);
        let before = self.producer_id_blocks.range(..end).next_back().map(|(s, e)| (*s, *e));
        if let Some((s, e)) = before
            && e > start
        {
            return self.fail(format!("producer-id block [{start}, {end}) overlaps [{s}, {e}) handed out before"));
        }
        self.producer_id_blocks.insert(start, end);
    }

    /// A client's admin request: mostly a new topic, sometimes more partitions for one or a
    /// deletion; mostly to the active controller, now and then to a node that is not.
    fn admin_request(&mut self) {
        if !self.chaos_on {
            return;
        }
        let at = self.now_ms + self.range(self.chaos.topic_interval_ms);
        self.schedule(at, SimEvent::Admin);
        let leader = (0..self.nodes.len()).find(|i| self.nodes[*i].view().is_leader);
        let target = match leader {
            Some(l) if self.rng.below(10) != 0 => l,
            _ => self.rng.below(self.nodes.len() as u64) as usize,
        };
        let existing: Vec<(String, i32)> = self.nodes[target].image.topics.values().map(|t| (t.name.clone(), t.partition_count())).collect();
        let req = match self.rng.below(8) {
            0 | 1 if !existing.is_empty() => {
                let (name, count) = existing[self.rng.below(existing.len() as u64) as usize].clone();
                if self.rng.below(2) == 0 {
                    AdminRequest::DeleteTopic { name }
                } else {
                    AdminRequest::CreatePartitions { name, count: count + 1 + self.rng.below(2) as i32 }
                }
            }
            _ if self.topics_created < TOPICS_MAX => {
                self.topics_created += 1;
                let spec = TopicSpec {
                    name: format!("t{}", self.topics_created),
                    partitions: 1 + self.rng.below(4) as i32,
                    replication_factor: 1 + self.rng.below(3) as i16,
                    configs: BTreeMap::new(),
                    assignment: None,
                };
                let id = Uuid::from_u64_pair(self.rng.next_u64() | 1, self.rng.next_u64());
                AdminRequest::CreateTopic { spec, id }
            }
            _ => return,
        };
        let n = &mut self.nodes[target];
        let view = n.view();
        if let (Some(c), Some(_)) = (n.control.as_mut(), n.core.as_ref()) {
            c.admin(self.now_ms, &view, req);
        }
        self.drive_controller(target);
    }

    // ---- applying what the quorum committed (the store's applier) ----

    fn schedule_apply(&mut self, i: usize) {
        if self.nodes[i].apply_pending {
            return;
        }
        self.nodes[i].apply_pending = true;
        let delay = if self.nodes[i].slow_apply && self.chaos_on { self.range((50, 1500)) } else { self.range((0, 2)) };
        let run = self.nodes[i].run;
        self.schedule(self.now_ms + delay, SimEvent::Apply { node: i, run });
    }

    /// Applies the committed entries beyond the node's image, as one published delta, and
    /// checks them against the history and the image against the invariants.
    fn apply(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_ref() else { return };
        let hw = core.high_watermark();
        let mut applied = Offset(self.nodes[i].image.offset);
        if applied >= hw {
            return;
        }
        let entries = core.log().read(applied, usize::try_from(hw.0 - applied.0).unwrap_or(0));
        if entries.len() as i64 != hw.0 - applied.0 {
            let start = core.log().start_offset();
            let id = self.nodes[i].id;
            return self.fail(format!("node {id:?} must apply from {applied} but its log starts at {start}"));
        }
        let mut digest = self.nodes[i].applied_digest;
        // The store's applier: one delta over the committed entries, replayed by the shared
        // `write_rule::replay_entry`, published whole.
        let mut delta = MetadataDelta::new(Arc::new(std::mem::take(&mut self.nodes[i].image)));
        for entry in entries {
            let o = applied.0 as usize;
            if o < self.history.len() {
                if self.history[o] != entry {
                    let id = self.nodes[i].id;
                    self.nodes[i].image = delta.apply();
                    return self.fail(format!("node {id:?} applies {entry:?} at {o}, the history has {:?}", self.history[o]));
                }
            } else {
                self.extend_history(&entry);
            }
            digest = mix(digest, &entry);
            if replay_entry(&mut delta, &entry).is_err() {
                self.nodes[i].image = delta.apply();
                return self.fail(format!("an unreadable record at {o}"));
            }
            applied = Offset(applied.0 + 1);
        }
        let node_id = self.nodes[i].id;
        let changes = delta.local_changes(node_id);
        let n = &mut self.nodes[i];
        n.image = delta.apply();
        n.applied_digest = digest;
        if n.is_broker {
            // What the replica manager does with the delta's local changes.
            for p in changes.leaders.iter().chain(&changes.followers) {
                n.hosted.insert(p.tp.clone(), p.topic_id);
            }
            let deletes = if self.planted == Some(ClusterBug::LocalChangesIgnoreDeletes) { &[][..] } else { &changes.deletes[..] };
            for (tp, id) in deletes {
                if n.hosted.get(tp) == Some(id) {
                    n.hosted.remove(tp);
                }
            }
        }
        if let Some(b) = &n.broker {
            self.incarnation_applied.insert(b.incarnation, n.image.offset);
        }
        self.check_image(i);
        self.check_hosted(i);
    }

    /// A broker that follows its deltas' local changes hosts exactly the partitions a rescan
    /// of its image places on it (the delta must not miss a creation, a move or a deletion).
    fn check_hosted(&mut self, i: usize) {
        let n = &self.nodes[i];
        if !n.is_broker {
            return;
        }
        let placed = hosted_by(&n.image, n.id);
        if placed != n.hosted {
            let extra: Vec<_> = n.hosted.iter().filter(|(tp, id)| placed.get(*tp) != Some(id)).map(|(tp, _)| tp.to_string()).collect();
            let missing: Vec<_> = placed.iter().filter(|(tp, id)| n.hosted.get(*tp) != Some(id)).map(|(tp, _)| tp.to_string()).collect();
            let message = format!(
                "node {:?} at offset {}: its local changes leave it hosting {extra:?} beyond its image and missing {missing:?}",
                n.id, n.image.offset
            );
            self.fail(message);
        }
    }

    /// A committed entry seen for the first time: the history grows, and the checks that
    /// concern the log as such run once.
    fn extend_history(&mut self, entry: &crate::raft::Entry) {
        let o = self.history.len() as i64;
        let d = mix(self.history_digest[self.history.len()], entry);
        self.history_digest.push(d);
        self.history.push(entry.clone());
        let EntryData::Records(bytes) = &entry.data else { return };
        let Ok(records) = crate::metadata::store::decode_entry(bytes) else { return };
        for record in records {
            self.record_seen(o, record);
        }
    }

    fn record_seen(&mut self, o: i64, record: MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker { id, epoch, .. } => {
                self.stats.registrations += 1;
                if epoch.0 != o {
                    return self.fail(format!("broker {id:?} registered with epoch {} at offset {o}: the epoch must be its entry's offset", epoch.0));
                }
                self.registration_offsets.insert((id, epoch.0), o);
            }
            MetadataRecord::FenceBroker { .. } => self.stats.fencings += 1,
            MetadataRecord::UnfenceBroker { .. } => self.stats.unfencings += 1,
            _ => {}
        }
    }

    /// The invariants of one applied image.
    fn check_image(&mut self, i: usize) {
        let n = &self.nodes[i];
        let image = &n.image;
        for t in image.topics.values() {
            for (p, r) in &t.partitions {
                let Some(leader) = r.leader else { continue };
                let why = match image.brokers.get(&leader) {
                    None => Some("an unregistered broker"),
                    Some(b) if b.fenced => Some("a fenced broker"),
                    Some(_) if !r.replicas.contains(&leader) => Some("not a replica"),
                    Some(_) if !r.isr.contains(&leader) => Some("not in the ISR"),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    let message = format!(
                        "node {:?}'s image at offset {}: {}-{} is led by broker {leader:?}, {why} ({r:?})",
                        n.id, image.offset, t.name, p.0
                    );
                    return self.fail(message);
                }
                if r.isr.iter().any(|b| !r.replicas.contains(b)) {
                    let message = format!("node {:?}'s image: {}-{} has an ISR outside its replicas ({r:?})", n.id, t.name, p.0);
                    return self.fail(message);
                }
            }
        }
    }

    // ---- snapshots ----

    fn take_snapshot(&mut self) {
        let Some(interval) = self.chaos.snapshot_interval_ms else { return };
        let at = self.now_ms + self.range(interval);
        self.schedule(at, SimEvent::Snapshot);
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let n = &mut self.nodes[i];
        let Some(core) = n.core.as_mut() else { return };
        let end = Offset(n.image.offset);
        if end.0 <= core.log().start_offset().0 + 4 {
            return;
        }
        let data = match store::snapshot_bytes(&n.image) {
            Ok(d) => d,
            Err(e) => return self.fail(format!("snapshot_bytes failed: {e}")),
        };
        let round_trip = image_from_snapshot(&data, end).and_then(|im| store::snapshot_bytes(&im).ok());
        if round_trip.as_ref() != Some(&data) {
            return self.fail(format!("the image at {end} does not survive its own snapshot"));
        }
        let fingerprint = bytes_digest(&data);
        if core.snapshot_taken(end, data).is_err() {
            return; // not yet flushed here: the store retries on a later tick
        }
        let id = n.id;
        if let Some(other) = self.snapshot_fingerprints.insert(end.0, fingerprint)
            && other != fingerprint
        {
            return self.fail(format!("node {id:?}'s snapshot at {end} differs from another node's at the same offset"));
        }
        self.log_line(|| format!("{id:?} snapshots at {end}"));
    }

    fn load_snapshot(&mut self, i: usize, end: Offset) {
        self.stats.snapshots_loaded += 1;
        let Some(core) = self.nodes[i].core.as_ref() else { return };
        let Some(data) = core.log().snapshot_data().cloned() else {
            return self.fail(format!("node {i} loaded a snapshot it does not hold"));
        };
        self.install_image(i, end, &data);
    }

    /// Replaces node `i`'s image with a snapshot's (the store's `Committed::Snapshot`).
    fn install_image(&mut self, i: usize, end: Offset, data: &Bytes) {
        let id = self.nodes[i].id;
        let Some(image) = image_from_snapshot(data, end) else {
            return self.fail(format!("node {id:?}'s snapshot at {end} does not decode"));
        };
        let Some(digest) = usize::try_from(end.0).ok().and_then(|o| self.history_digest.get(o).copied()) else {
            return self.fail(format!("node {id:?} holds a snapshot at {end} beyond the committed history"));
        };
        if self.snapshot_fingerprints.get(&end.0).is_some_and(|f| *f != bytes_digest(data)) {
            return self.fail(format!("node {id:?} loaded a snapshot at {end} that is not the one taken there"));
        }
        let n = &mut self.nodes[i];
        n.image = image;
        n.applied_digest = digest;
        // A snapshot publishes no delta: the broker rescans the image.
        n.hosted = hosted_by(&n.image, n.id);
        n.last_high_watermark = n.last_high_watermark.max(end);
        if let Some(b) = &n.broker {
            self.incarnation_applied.insert(b.incarnation, end.0);
        }
        self.check_image(i);
    }

    // ---- crashes, partitions, slowness ----

    fn crash_someone(&mut self) {
        let Some(interval) = self.chaos.crash_interval_ms.filter(|_| self.chaos_on) else { return };
        let leader = (0..self.nodes.len()).find(|i| self.nodes[*i].view().is_leader);
        let node = match leader {
            Some(l) if self.rng.below(3) == 0 => l,
            _ => self.rng.below(self.nodes.len() as u64) as usize,
        };
        if self.rng.below(4) == 0 {
            self.schedule(self.now_ms, SimEvent::Sigterm { node });
        } else {
            self.crash(node);
        }
        let at = self.now_ms + self.range(interval);
        self.schedule(at, SimEvent::CrashSomeone);
    }

    /// A process exits after SIGTERM: once its controlled shutdown is done (`handed_over`:
    /// the controller said it may stop) it must lead nothing in the latest image. A leader
    /// resigns; what it wrote survives (a process exit, not a power cut).
    fn stop_gracefully(&mut self, i: usize, handed_over: bool) {
        let id = self.nodes[i].id;
        self.log_line(|| format!("{id:?} stops (controlled shutdown complete: {handed_over})"));
        if handed_over {
            let latest = self.nodes.iter().filter(|n| n.core.is_some()).max_by_key(|n| n.image.offset).map(|n| &n.image);
            let led = latest.and_then(|image| {
                image.topics.values().find_map(|t| t.partitions.iter().find(|(_, r)| r.leader == Some(id)).map(|(p, _)| format!("{}-{} at offset {}", t.name, p.0, image.offset)))
            });
            if let Some(p) = led {
                return self.fail(format!("broker {id:?} stopped after its controlled shutdown while it still leads {p}"));
            }
            self.stats.controlled_shutdowns += 1;
        }
        if self.nodes[i].view().is_leader {
            self.step(i, Event::Resign);
        }
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.log_mut().flush();
        }
        self.crash(i);
    }

    fn crash(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.take() else { return };
        // Its quorum connections reset: followers fetch from a leader on one all the time.
        for other in 0..self.nodes.len() {
            if other != i && self.nodes[other].core.is_some() && !self.blocked[i][other] && !self.blocked[other][i] {
                self.raft_unreachable(i, other);
            }
        }
        let id = self.nodes[i].id;
        self.log_line(|| format!("{id:?} crashes"));
        let mut log = core.log().clone();
        log.crash();
        let n = &mut self.nodes[i];
        n.durable_log = log;
        n.flush_pending = false;
        n.apply_pending = false;
        n.tick_at_ms = None;
        n.control = None;
        n.broker = None;
        self.broker_calls_reset(i);
        let at = self.now_ms + self.range(self.chaos.restart_after_ms);
        self.schedule(at, SimEvent::Restart { node: i });
    }

    /// Starts node `i`'s process from its durable state: the quorum core, the image from the
    /// log's snapshot, a fresh controller loop, a broker with a new incarnation.
    fn restart(&mut self, i: usize) {
        let mut config = self.raft_config.clone();
        config.node_id = self.nodes[i].id;
        self.nodes[i].run += 1;
        let run = self.nodes[i].run;
        let seed = self.seed.wrapping_mul(31).wrapping_add(i as u64 * 1_000_003 + u64::from(run));
        let log = std::mem::take(&mut self.nodes[i].durable_log);
        let start = log.start_offset();
        let snapshot = log.snapshot_data().cloned();
        let persisted = self.nodes[i].persisted;
        match RaftCore::new(config, log, persisted, seed, self.now_ms) {
            Ok(core) => self.nodes[i].core = Some(core),
            Err(e) => return self.fail(format!("restart failed: {e}")),
        }
        let id = self.nodes[i].id;
        self.log_line(|| format!("{id:?} starts (run {run}) with {persisted:?}, log from {start}"));
        let n = &mut self.nodes[i];
        n.last_high_watermark = start;
        n.image = MetadataImage::default();
        n.hosted.clear();
        n.applied_digest = 0;
        if n.is_controller {
            n.control = Some(ControllerLoop::new(self.broker_config.clone(), self.planted));
        }
        if n.is_broker {
            let incarnation = Uuid::from_u64_pair(self.rng.next_u64(), self.rng.next_u64());
            self.nodes[i].broker = Some(BrokerProc::new(incarnation));
            self.incarnation_applied.insert(incarnation, 0);
        }
        if let Some(data) = snapshot {
            self.install_image(i, start, &data);
        }
        self.schedule_tick(i);
        if self.nodes[i].is_controller {
            let at = self.now_ms + self.range((1, CONTROLLER_TICK_MS));
            self.schedule(at, SimEvent::ControllerTick { node: i, run });
        }
        if self.nodes[i].is_broker {
            self.broker_start(i);
        }
    }

    fn partition(&mut self) {
        let Some(interval) = self.chaos.partition_interval_ms.filter(|_| self.chaos_on) else { return };
        let n = self.nodes.len();
        self.heal();
        let kind = self.rng.below(4);
        let victim = self.rng.below(n as u64) as usize;
        let g = self.partition_generation as usize;
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    continue;
                }
                self.blocked[a][b] = match kind {
                    0 => a == victim || b == victim,
                    1 => ((a * 7 + g) % 2) != ((b * 7 + g) % 2),
                    2 => b == victim,
                    _ => a == victim,
                };
            }
        }
        self.log_line(|| format!("partition kind {kind} victim {victim} (gen {g})"));
        let heal_at = self.now_ms + self.range((interval.0 / 2, interval.1));
        let generation = self.partition_generation;
        self.schedule(heal_at, SimEvent::Heal { generation });
        let next = self.now_ms + self.range(interval);
        self.schedule(next, SimEvent::Partition);
    }

    fn heal(&mut self) {
        self.partition_generation += 1;
        for row in &mut self.blocked {
            row.iter_mut().for_each(|b| *b = false);
        }
    }

    fn toggle_disk(&mut self) {
        if !self.chaos_on {
            return;
        }
        let node = self.rng.below(self.nodes.len() as u64) as usize;
        let (disk, apply) = (self.chaos.slow_disk, self.chaos.slow_apply);
        self.nodes[node].slow_disk = self.chance(disk);
        self.nodes[node].slow_apply = self.chance(apply);
        let lagging = self.chance(self.chaos.slow_message * 3.0);
        self.nodes[node].send_lag_ms = if lagging { self.range((100, 2000)) } else { 0 };
        let at = self.now_ms + self.range((100, 1000));
        self.schedule(at, SimEvent::ToggleDisk);
    }

    fn end_chaos(&mut self) {
        self.log_line(|| "chaos ends: heal, restart, wait for the cluster to settle".into());
        self.chaos_on = false;
        self.heal();
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            n.slow_disk = false;
            n.slow_apply = false;
            n.send_lag_ms = 0;
            if n.core.is_none() {
                self.restart(i);
            }
        }
        self.settle_deadline_ms = Some(self.now_ms + SETTLE_DEADLINE_MS);
        self.schedule(self.now_ms + SETTLE_CHECK_MS, SimEvent::Settle);
    }

    /// Why the cluster has not settled yet (`None` once it has).
    fn unsettled(&self) -> Option<String> {
        let leader = (0..self.nodes.len()).find(|i| self.nodes[*i].view().is_leader);
        let Some(l) = leader else { return Some("no quorum leader".into()) };
        let ln = &self.nodes[l];
        let core = ln.core.as_ref()?;
        let epoch = core.epoch();
        for n in &self.nodes {
            let Some(c) = n.core.as_ref() else { return Some(format!("node {:?} is down", n.id)) };
            if n.id != ln.id && (c.epoch() != epoch || c.vouched_leader() != Some(ln.id)) {
                return Some(format!(
                    "node {:?} is {:?} in {:?}, not following leader {:?} of {epoch:?}",
                    n.id,
                    c.role(),
                    c.epoch(),
                    ln.id
                ));
            }
        }
        let end = core.log().end_offset().0;
        if ln.image.offset != end {
            return Some(format!("leader {:?} applied {} of {end}", ln.id, ln.image.offset));
        }
        if let Some(n) = self.nodes.iter().find(|n| n.image.offset != end) {
            return Some(format!("node {:?} applied {} of {end}", n.id, n.image.offset));
        }
        let image = &ln.image;
        if image.cluster_id.is_empty() {
            return Some("no cluster id".into());
        }
        for n in self.nodes.iter().filter(|n| n.is_broker) {
            let b = n.broker.as_ref()?;
            match image.brokers.get(&n.id) {
                None => return Some(format!("broker {:?} is not registered", n.id)),
                Some(r) if r.incarnation_id != b.incarnation => {
                    return Some(format!("broker {:?}'s current incarnation is not registered", n.id));
                }
                Some(r) if r.fenced => return Some(format!("broker {:?} is fenced", n.id)),
                Some(_) if b.fenced || b.epoch.is_none() => return Some(format!("broker {:?} was not told it is unfenced", n.id)),
                Some(_) => {}
            }
        }
        for t in image.topics.values() {
            for (p, r) in &t.partitions {
                if r.is_unknown() {
                    return Some(format!("{}-{} has no registration", t.name, p.0));
                }
                if r.leader.is_none() {
                    return Some(format!("{}-{} has no leader ({r:?})", t.name, p.0));
                }
            }
        }
        None
    }
}

/// Runs `count` seeds from `first`; stops at the first violation.
pub fn run_seeds(first: u64, count: u64, planted: Option<ClusterBug>) -> Result<RunStats, Violation> {
    let mut total = RunStats::default();
    for seed in first..first + count {
        match Sim::new(seed, planted, false).run() {
            Ok((stats, _)) => total.add(&stats),
            Err((violation, _)) => return Err(violation),
        }
    }
    Ok(total)
}

/// The trace of one seed's run (the last lines), for a failure report.
pub fn trace_of(seed: u64, planted: Option<ClusterBug>) -> String {
    let lines = match Sim::new(seed, planted, true).run() {
        Ok((_, trace)) | Err((_, trace)) => trace.unwrap_or_default(),
    };
    let skip = lines.len().saturating_sub(TRACE_LINES_MAX);
    let mut out = String::new();
    for line in &lines[skip..] {
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Instant;

    const CI_SEEDS: u64 = 3_000;

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
    }

    fn replay_hint(seed: u64) -> String {
        format!("replay: BLUMFELD_CLUSTER_SIM_SEED={seed} cargo test --release --lib metadata::cluster_sim::tests::many_seeds -- --nocapture")
    }

    fn run_or_report(first: u64, count: u64) {
        let started = Instant::now();
        match run_seeds(first, count, None) {
            Ok(s) => {
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "cluster sim: {count} seeds in {secs:.1} s ({:.0} seeds/s): {} events, {} elections, {} entries, {} registrations, {} fencings, {} unfencings, {} admin changes, {} controlled shutdowns, {} snapshots loaded",
                    count as f64 / secs,
                    s.events,
                    s.elections,
                    s.entries,
                    s.registrations,
                    s.fencings,
                    s.unfencings,
                    s.admin_changes,
                    s.controlled_shutdowns,
                    s.snapshots_loaded
                );
            }
            Err(v) => {
                let trace = trace_of(v.seed, None);
                panic!("seed {} broke an invariant at {} ms: {}\n{}\n--- trace (last lines) ---\n{trace}", v.seed, v.at_ms, v.message, replay_hint(v.seed));
            }
        }
    }

    /// CI: the default seeds (`BLUMFELD_CLUSTER_SIM_SEEDS` for more), or one seed with its
    /// trace (`BLUMFELD_CLUSTER_SIM_SEED`).
    #[test]
    fn many_seeds() {
        if let Some(seed) = env_u64("BLUMFELD_CLUSTER_SIM_SEED") {
            let (outcome, trace) = match Sim::new(seed, None, true).run() {
                Ok((stats, trace)) => (format!("ok: {stats:?}"), trace),
                Err((v, trace)) => (format!("VIOLATION at {} ms: {}", v.at_ms, v.message), trace),
            };
            for line in trace.unwrap_or_default() {
                println!("{line}");
            }
            println!("seed {seed}: {outcome}");
            assert!(outcome.starts_with("ok"), "seed {seed} failed");
            return;
        }
        if let Some(count) = env_u64("BLUMFELD_CLUSTER_SIM_SURVEY") {
            return survey(env_u64("BLUMFELD_CLUSTER_SIM_FIRST").unwrap_or(0), count);
        }
        let count = env_u64("BLUMFELD_CLUSTER_SIM_SEEDS").unwrap_or(CI_SEEDS);
        run_or_report(0, count);
    }

    /// Every failing seed of `first..first + count`, not only the first, on every core.
    fn survey(first: u64, count: u64) {
        let started = Instant::now();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let threads = env_u64("BLUMFELD_CLUSTER_SIM_THREADS").unwrap_or(cores).max(1);
        let mut failures: Vec<Violation> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        (first + t..first + count)
                            .step_by(threads as usize)
                            .filter_map(|seed| Sim::new(seed, None, false).run().err().map(|(v, _)| v))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        failures.sort_by_key(|v| v.seed);
        for v in &failures {
            println!("seed {}: at {} ms: {}", v.seed, v.at_ms, v.message);
        }
        let secs = started.elapsed().as_secs_f64();
        println!("cluster sim survey: {count} seeds in {secs:.0} s on {threads} threads, {} failed", failures.len());
        if let Some(v) = failures.first() {
            panic!("{} of {count} seeds failed; {}", failures.len(), replay_hint(v.seed));
        }
    }

    /// A million seeds on every core, reporting every failing seed (about 30 minutes on 2 cores).
    #[test]
    #[ignore = "a million seeds: run on purpose"]
    fn a_million_seeds() {
        survey(1_000_000, 1_000_000);
    }

    fn planted_bug_is_found(bug: ClusterBug) {
        let started = Instant::now();
        if let Some(count) = env_u64("BLUMFELD_CLUSTER_SIM_DETECTION_RATE") {
            let found = (0..count).filter(|seed| Sim::new(*seed, Some(bug), false).run().is_err()).count();
            println!("planted {bug:?}: caught by {found} of {count} seeds");
            assert!(found > 0);
            return;
        }
        for seed in 0..CI_SEEDS {
            if let Err((v, _)) = Sim::new(seed, Some(bug), false).run() {
                println!("planted {bug:?}: found by seed {seed} after {:.1} s: {}", started.elapsed().as_secs_f64(), v.message);
                return;
            }
        }
        panic!("planted bug {bug:?} went unnoticed through {CI_SEEDS} seeds: the simulator lacks teeth");
    }

    #[test]
    fn planted_compute_before_applied_is_found() {
        planted_bug_is_found(ClusterBug::ComputeBeforeApplied);
    }

    #[test]
    fn planted_fence_keeps_leadership_is_found() {
        planted_bug_is_found(ClusterBug::FenceKeepsLeadership);
    }

    #[test]
    fn planted_unfence_ignores_catch_up_is_found() {
        planted_bug_is_found(ClusterBug::UnfenceIgnoresCatchUp);
    }

    #[test]
    fn planted_stale_epoch_accepted_is_found() {
        planted_bug_is_found(ClusterBug::StaleEpochAccepted);
    }

    #[test]
    fn planted_answer_before_commit_is_found() {
        planted_bug_is_found(ClusterBug::AnswerBeforeCommit);
    }

    #[test]
    fn planted_local_changes_ignore_deletes_is_found() {
        planted_bug_is_found(ClusterBug::LocalChangesIgnoreDeletes);
    }

    /// The seeds that stranded a candidate before pre-votes carried the prospective's epoch.
    #[test]
    fn stranded_candidate_seeds_settle() {
        for seed in [15878, 16770, 35637, 51902] {
            if let Err((v, _)) = Sim::new(seed, None, false).run() {
                panic!("seed {seed} at {} ms: {}\n{}", v.at_ms, v.message, replay_hint(seed));
            }
        }
    }

    #[test]
    fn a_seed_replays_exactly() {
        let a = Sim::new(7, None, true).run().map(|(s, t)| (s.events, t)).map_err(|(v, t)| (v.message, t));
        let b = Sim::new(7, None, true).run().map(|(s, t)| (s.events, t)).map_err(|(v, t)| (v.message, t));
        assert_eq!(a, b);
    }
}
