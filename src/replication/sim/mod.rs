//! A seeded, single-threaded, deterministic simulation of partition replication: three
//! brokers hosting one partition (replication factor 3, `min.insync.replicas` 2), a
//! controller, acks=all producers and consumers, on a network that loses, delays and
//! reorders messages and is cut by partitions that heal; brokers crash and restart, pause
//! (SIGSTOP) and have their clocks jump ahead.
//!
//! Each broker runs the production code: a real [`Partition`](crate::partition::Partition)
//! over a real [`Log`](crate::log::Log) in a temporary directory (tmpfs when there is one),
//! so the leader rules ([`crate::replication::leader`]), the follower rules
//! ([`crate::replication::follower`]), the partition's role changes, truncation, epoch cache
//! and log recovery are the broker's own. Roles come from
//! [`crate::broker::assign_role`], follower fetch answers are applied by
//! [`crate::cluster::replica::apply_partition`], AlterPartition answers are mapped by
//! [`crate::cluster::replica::alter_result`] and [`crate::api::alter_partition::partition_code`],
//! and the controller is a pure model around [`crate::metadata::cluster_control`]
//! (registration, heartbeats, fencing on session expiry, leader election from the ISR or,
//! with ELR on as a new cluster has it, the ELR and the last known leader (KIP-966), no
//! unclean election, AlterPartition). What the simulation writes itself is the glue the
//! broker's tasks provide: the fetcher loop and the leader's side of a follower fetch
//! (`api::fetch::read_for_follower`), the AlterPartition sender (`cluster::replica`: one
//! request in flight, an unanswered change retried, never reverted), produce with its acks=all
//! wait (`api::produce`) and the broker lifecycle (register, heartbeat).
//!
//! Crashes kill the process, not the machine: what was written stays in the page cache, so
//! a restarted broker finds its whole log (it is recovered with
//! `RecoveryMode::PageCacheIntact`). The log is thus treated as flushed on ack; losing an
//! unflushed tail (KIP-966's case) is not simulated yet; every restart registers as an
//! unclean shutdown all the same, so it leaves the ELR. The run's statistics count the
//! replicas that entered the ELR and the leaders elected from it. The metadata a broker applied
//! survives its crash (its metadata log is on disk), so it comes back with a stale image.
//!
//! After every event the simulator checks:
//! 1. no acknowledged record is lost: when acked it is committed, and every broker leading
//!    in the acknowledging epoch or a later one holds it at its offset;
//! 2. a leader's high watermark never moves back within its leader epoch; the committed
//!    prefix (the largest high watermark any leader reached) is one history, every replica's
//!    log agrees with it below that replica's own high watermark, and each committed offset
//!    was held by at least `min.insync.replicas` replicas when it became committed;
//! 3. a consumer never receives an offset at or past the high watermark of the replica it
//!    read from, and what it receives is the committed history;
//! 4. every leader-eligible member of the controller's ISR and ELR holds the whole committed
//!    prefix.
//!
//! At the end it stops the chaos, heals and restarts everything, and requires within a
//! deadline that a partition leader exists, that an acks=all write made after the healing
//! is acknowledged, and that the controller's ISR holds all three replicas again.
//!
//! Planted bugs ([`PlantedBug`]): `HwIgnoresPendingExpand`, `AlterTimeoutReverts`,
//! `NoTruncateOnDiverge`; each is found by some seed of a small range.
//!
//! Commands:
//! - CI: `cargo test --release --lib replication::sim` (2,000 seeds and the planted bugs).
//! - More seeds: `BLUMFELD_REPL_SIM_SEEDS=20000 cargo test --release --lib replication::sim::tests::many_seeds -- --nocapture`.
//! - Replay one seed with its trace: `BLUMFELD_REPL_SIM_SEED=N cargo test --release --lib replication::sim::tests::many_seeds -- --nocapture`
//!   (add `BLUMFELD_REPL_SIM_PLANTED=<name>` to replay it with a planted bug).
//! - Every failing seed of a range, on every core: `BLUMFELD_REPL_SIM_SURVEY=20000
//!   [BLUMFELD_REPL_SIM_FIRST=N] [BLUMFELD_REPL_SIM_THREADS=T]` with the `many_seeds` command.

mod broker;
mod chaos;
mod check;
mod clients;
mod controller;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{alter_partition_response, fetch_response};
use uuid::Uuid;

use self::broker::BrokerProc;
use self::check::Checker;
use self::clients::{Consumer, Producer};
use self::controller::Controller;
pub use super::planted::PlantedBug;
use crate::metadata::MetadataImage;
use crate::metadata::cluster_control::AlterIsrItem;
use crate::metrics::{Metrics, MetricsConfig};
use crate::raft::sim::Scheduled;
use crate::raft::state::SplitMix64;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId};

/// Brokers, all replicas of the partition.
const BROKERS: usize = 3;
/// The controller's index on the network (brokers are 0..BROKERS).
const CONTROLLER: usize = BROKERS;
const TOPIC: &str = "t";
const MIN_INSYNC_REPLICAS: usize = 2;
/// How often a broker runs its periodic work (heartbeat, ISR check, fetch and send retries).
const BROKER_TICK_MS: u64 = 25;
const CONTROLLER_TICK_MS: u64 = 50;
/// How often the controller sends its image to every broker even when nothing changed.
const METADATA_REPUBLISH_MS: u64 = 250;
/// A request left unanswered this long fails at its sender (socket timeout).
const REQUEST_TIMEOUT_MS: u64 = 1_000;
/// `cluster::replica`'s wait before an unanswered AlterPartition change is sent again.
const ALTER_RETRY_BACKOFF_MS: u64 = 100;
/// `replica.fetch.backoff.ms` after a failed fetch.
const FETCH_BACKOFF_MS: u64 = 100;
/// The produce request's timeout at the broker (acks=all wait), and the client's own.
const PRODUCE_TIMEOUT_MS: u64 = 2_000;
const CLIENT_TIMEOUT_MS: u64 = 3_000;
const CHAOS_MS_MIN: u64 = 8_000;
const CHAOS_MS_MAX: u64 = 16_000;
const LIVENESS_DEADLINE_MS: u64 = 30_000;
const EVENTS_MAX: u64 = 400_000;
const TRACE_LINES_MAX: usize = 600;

/// How hard one run shakes the cluster; drawn from the seed.
#[derive(Debug, Clone, Copy)]
struct Chaos {
    loss: f64,
    slow_message: f64,
    crash_interval_ms: Option<(u64, u64)>,
    restart_after_ms: (u64, u64),
    partition_interval_ms: Option<(u64, u64)>,
    pause_interval_ms: Option<(u64, u64)>,
    pause_ms: (u64, u64),
    clock_jump_interval_ms: Option<(u64, u64)>,
    produce_interval_ms: (u64, u64),
    replica_lag_time_max_ms: u64,
    session_timeout_ms: u64,
    /// How long an idle follower fetch waits before the next (the leader's long poll).
    fetch_wait_ms: u64,
    fetch_max_bytes: usize,
    /// The chance that the controller's commit of an AlterPartition is slow (a slow quorum),
    /// so that its answer comes after the sender gave up on it.
    slow_commit: f64,
}

/// A follower's Fetch for the partition (Fetch v12's fields).
#[derive(Debug, Clone)]
struct FetchRequest {
    corr: u64,
    current_leader_epoch: LeaderEpoch,
    fetch_offset: i64,
    last_fetched_epoch: i32,
    log_start_offset: i64,
}

/// What travels between nodes.
#[derive(Debug, Clone)]
enum Msg {
    Register { incarnation_id: Uuid },
    /// `None`: refused (another incarnation's session is alive); try again later.
    Registered { incarnation_id: Uuid, epoch: Option<BrokerEpoch> },
    Heartbeat { epoch: BrokerEpoch, metadata_offset: i64 },
    /// The broker's epoch is not the registered one: it registers again.
    HeartbeatStale { epoch: BrokerEpoch },
    Metadata(Arc<MetadataImage>),
    Fetch(FetchRequest),
    FetchAnswer { corr: u64, data: fetch_response::PartitionData },
    Alter { corr: u64, broker_epoch: BrokerEpoch, item: AlterIsrItem },
    /// A request-level error code, or the partition's answer.
    AlterAnswer { corr: u64, error_code: i16, data: Option<alter_partition_response::PartitionData> },
    Produce { corr: u64, batch_id: u64, records: Bytes },
    ProduceAnswer { corr: u64, result: Result<(i64, LeaderEpoch), ResponseError>, leader_hint: Option<NodeId> },
}

#[derive(Debug)]
enum SimEvent {
    /// Boxed: a message is much larger than the other events.
    Deliver { from: usize, to: usize, msg: Box<Msg> },
    BrokerTick { b: usize, incarnation: u32 },
    ControllerTick,
    Produce { p: usize },
    ProducerTimeout { p: usize, corr: u64 },
    Consume { c: usize },
    CrashSomeone,
    Restart { b: usize },
    Partition,
    Heal { generation: u32 },
    PauseSomeone,
    Resume { b: usize },
    ClockJump,
    EndChaos,
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
    pub acked: u64,
    pub committed: u64,
    pub elections: u64,
    pub truncations: u64,
    pub crashes: u64,
    /// Replicas the controller moved into the ELR.
    pub elr_entries: u64,
    /// Leaders the controller elected from the ELR.
    pub elr_elections: u64,
}

pub type Trace = Vec<String>;

pub struct Sim {
    seed: u64,
    rng: SplitMix64,
    now_ms: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled<SimEvent>>>,
    chaos: Chaos,
    chaos_on: bool,
    /// `blocked[a][b]`: what `a` sends to `b` is lost (a partition); brokers and controller.
    blocked: Vec<Vec<bool>>,
    partition_generation: u32,
    brokers: Vec<BrokerProc>,
    controller: Controller,
    producers: Vec<Producer>,
    consumers: Vec<Consumer>,
    check: Checker,
    metrics: Metrics,
    topic_id: Uuid,
    /// Holds every broker's data directory; removed when the run ends.
    _root: tempfile::TempDir,
    next_corr: u64,
    next_batch_id: u64,
    /// Batches from this id on were first sent after the healing.
    liveness_marker: Option<u64>,
    live: bool,
    settled: bool,
    planted: Option<PlantedBug>,
    trace: Option<Trace>,
    violation: Option<String>,
    stats: RunStats,
}

/// Where the brokers' directories go: tmpfs when there is one (the log's writes then cost
/// no disk), else the system's temporary directory.
fn temp_root() -> std::io::Result<tempfile::TempDir> {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("blumfeld-replsim").tempdir_in(&shm) {
            return Ok(dir);
        }
    }
    tempfile::Builder::new().prefix("blumfeld-replsim").tempdir()
}

impl Sim {
    pub fn new(seed: u64, planted: Option<PlantedBug>, trace: bool) -> Result<Self, String> {
        let mut rng = SplitMix64::new(seed ^ 0x2E71_5EED_0000_0003);
        let chaos = Self::draw_chaos(&mut rng);
        let root = temp_root().map_err(|e| format!("temporary directory: {e}"))?;
        let metrics = Metrics::new(MetricsConfig { partition_detail: false }).map_err(|e| format!("metrics: {e}"))?;
        let topic_id = Uuid::from_u64_pair(seed, 0x70_91C);
        let brokers = (0..BROKERS).map(|i| BrokerProc::new(NodeId(i as i32 + 1), root.path().join(format!("broker-{}", i + 1)))).collect();
        let producer_count = 1 + rng.below(4) as usize;
        let consumer_count = 1 + rng.below(2) as usize;
        let controller = Controller::new(topic_id, chaos.session_timeout_ms);
        Ok(Sim {
            seed,
            rng,
            now_ms: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            chaos,
            chaos_on: true,
            blocked: vec![vec![false; BROKERS + 1]; BROKERS + 1],
            partition_generation: 0,
            brokers,
            controller,
            producers: (0..producer_count).map(|_| Producer::default()).collect(),
            consumers: (0..consumer_count).map(|_| Consumer::default()).collect(),
            check: Checker::default(),
            metrics,
            topic_id,
            _root: root,
            next_corr: 0,
            next_batch_id: 1,
            liveness_marker: None,
            live: false,
            settled: false,
            planted,
            trace: trace.then(Vec::new),
            violation: None,
            stats: RunStats::default(),
        })
    }

    fn draw_chaos(rng: &mut SplitMix64) -> Chaos {
        fn pick<T: Copy>(rng: &mut SplitMix64, options: &[T]) -> T {
            options[rng.below(options.len() as u64) as usize]
        }
        let lag = pick(rng, &[400, 1_000, 2_500]);
        let session = pick(rng, &[600, 1_500, 3_000]);
        Chaos {
            loss: pick(rng, &[0.0, 0.01, 0.05, 0.15]),
            slow_message: pick(rng, &[0.0, 0.05, 0.2]),
            crash_interval_ms: pick(rng, &[None, Some((500, 3_000)), Some((2_000, 6_000))]),
            restart_after_ms: pick(rng, &[(5, 100), (50, 3_000)]),
            partition_interval_ms: pick(rng, &[None, Some((300, 2_000)), Some((1_000, 5_000))]),
            pause_interval_ms: pick(rng, &[None, Some((500, 3_000))]),
            pause_ms: pick(rng, &[(50, 500), (300, 3_000)]),
            clock_jump_interval_ms: pick(rng, &[None, None, Some((500, 4_000))]),
            produce_interval_ms: pick(rng, &[(2, 30), (20, 150)]),
            replica_lag_time_max_ms: lag,
            session_timeout_ms: session,
            fetch_wait_ms: pick(rng, &[5, 30, 150]),
            fetch_max_bytes: pick(rng, &[150, 600, 64 * 1024]),
            slow_commit: pick(rng, &[0.0, 0.1, 0.3]),
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

    fn corr(&mut self) -> u64 {
        self.next_corr += 1;
        self.next_corr
    }

    fn tracing(&self) -> bool {
        self.trace.is_some()
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

    fn planted(&self, bug: PlantedBug) -> bool {
        self.planted == Some(bug)
    }

    /// Runs the seed to the end: chaos, then healing and the liveness check.
    pub fn run(mut self) -> Result<(RunStats, Option<Trace>), (Violation, Option<Trace>)> {
        let _planted = super::planted::plant(self.planted);
        for b in 0..BROKERS {
            self.start_broker(b);
        }
        self.schedule(CONTROLLER_TICK_MS, SimEvent::ControllerTick);
        let chaos_ms = self.range((CHAOS_MS_MIN, CHAOS_MS_MAX));
        self.schedule(chaos_ms, SimEvent::EndChaos);
        for p in 0..self.producers.len() {
            let at = self.range((100, 500));
            self.schedule(at, SimEvent::Produce { p });
        }
        for c in 0..self.consumers.len() {
            let at = self.range((100, 500));
            self.schedule(at, SimEvent::Consume { c });
        }
        let chaos = self.chaos;
        let periodic = [
            (chaos.crash_interval_ms, SimEvent::CrashSomeone),
            (chaos.partition_interval_ms, SimEvent::Partition),
            (chaos.pause_interval_ms, SimEvent::PauseSomeone),
            (chaos.clock_jump_interval_ms, SimEvent::ClockJump),
        ];
        for (interval, event) in periodic {
            if let Some(i) = interval {
                let at = self.range(i);
                self.schedule(at, event);
            }
        }
        let deadline_ms = chaos_ms + LIVENESS_DEADLINE_MS;
        while let Some(Reverse(next)) = self.queue.pop() {
            if next.at_ms > deadline_ms || self.stats.events >= EVENTS_MAX {
                break;
            }
            self.now_ms = next.at_ms;
            self.stats.events += 1;
            self.handle(next.event);
            if self.violation.is_none() {
                self.check_invariants();
            }
            if !self.chaos_on && !self.settled {
                self.settled = self.isr_complete();
            }
            if self.violation.is_some() || (self.live && self.settled) {
                break;
            }
        }
        if self.violation.is_none() && !self.live {
            let states = self.states();
            self.fail(format!("no acks=all write acknowledged within {LIVENESS_DEADLINE_MS} ms after healing: {states}"));
        } else if self.violation.is_none() && !self.settled {
            let states = self.states();
            self.fail(format!("the ISR is not whole {LIVENESS_DEADLINE_MS} ms after healing: {states}"));
        }
        self.stats.committed = self.check.committed_len() as u64;
        self.stats.acked = self.check.acked_len() as u64;
        match self.violation.take() {
            None => Ok((self.stats, self.trace)),
            Some(message) => Err((Violation { seed: self.seed, at_ms: self.now_ms, message }, self.trace)),
        }
    }

    /// The controller's registration leads and its ISR holds every replica.
    fn isr_complete(&self) -> bool {
        self.controller.registration().is_some_and(|r| r.leader.is_some() && r.isr.len() == BROKERS)
    }

    /// One line on every broker and the controller's registration, for failure messages.
    fn states(&self) -> String {
        let mut out = String::new();
        if let Some(r) = self.controller.registration() {
            let _ = write!(out, "controller: leader {:?} epoch {:?} isr {:?} pe {:?}; ", r.leader, r.leader_epoch, r.isr, r.partition_epoch);
        }
        for b in &self.brokers {
            let _ = write!(out, "{}; ", b.describe());
        }
        out
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::Deliver { from, to, msg } => self.deliver(from, to, *msg),
            SimEvent::BrokerTick { b, incarnation } => self.broker_tick(b, incarnation),
            SimEvent::ControllerTick => self.controller_tick(),
            SimEvent::Produce { p } => self.produce(p),
            SimEvent::ProducerTimeout { p, corr } => self.producer_timeout(p, corr),
            SimEvent::Consume { c } => self.consume(c),
            SimEvent::CrashSomeone => self.crash_someone(),
            SimEvent::Restart { b } => {
                if !self.brokers[b].is_up() {
                    self.start_broker(b);
                }
            }
            SimEvent::Partition => self.partition(),
            SimEvent::Heal { generation } => {
                if generation == self.partition_generation {
                    self.heal();
                }
            }
            SimEvent::PauseSomeone => self.pause_someone(),
            SimEvent::Resume { b } => self.resume(b),
            SimEvent::ClockJump => self.clock_jump(),
            SimEvent::EndChaos => self.end_chaos(),
        }
    }

    /// Sends `msg`; lost when the link is cut or by chance, late by chance.
    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        self.send_after(from, to, msg, 0);
    }

    /// [`Sim::send`] once `after_ms` have passed (the sender is slow to answer).
    fn send_after(&mut self, from: usize, to: usize, msg: Msg, after_ms: u64) {
        let network = from <= CONTROLLER && to <= CONTROLLER;
        if network && self.blocked[from][to] {
            return;
        }
        let (loss, slow) = (self.chaos.loss, self.chaos.slow_message);
        if self.chaos_on && self.chance(loss) {
            return;
        }
        let late = self.chaos_on && self.chance(slow);
        let delay = if late { self.range((30, 1_500)) } else { self.range((1, 8)) };
        self.schedule(self.now_ms + after_ms + delay, SimEvent::Deliver { from, to, msg: Box::new(msg) });
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        if from <= CONTROLLER && to <= CONTROLLER && self.blocked[from][to] {
            return;
        }
        if to < BROKERS {
            if let Some(until) = self.brokers[to].paused_until {
                // A stopped process reads its sockets when it resumes.
                return self.schedule(until.max(self.now_ms + 1), SimEvent::Deliver { from, to, msg: Box::new(msg) });
            }
            if !self.brokers[to].is_up() {
                return;
            }
            self.broker_receive(to, from, msg);
        } else if to == CONTROLLER {
            self.controller_receive(from, msg);
        } else {
            self.client_receive(to - CONTROLLER - 1, from, msg);
        }
    }
}

/// Runs `count` seeds from `first`; stops at the first violation.
pub fn run_seeds(first: u64, count: u64, planted: Option<PlantedBug>) -> Result<RunStats, Violation> {
    let mut total = RunStats::default();
    for seed in first..first + count {
        let sim = Sim::new(seed, planted, false).map_err(|message| Violation { seed, at_ms: 0, message })?;
        match sim.run() {
            Ok((s, _)) => {
                total.events += s.events;
                total.acked += s.acked;
                total.committed += s.committed;
                total.elections += s.elections;
                total.truncations += s.truncations;
                total.crashes += s.crashes;
                total.elr_entries += s.elr_entries;
                total.elr_elections += s.elr_elections;
            }
            Err((violation, _)) => return Err(violation),
        }
    }
    Ok(total)
}

/// The trace of one seed's run (the last lines), for a failure report.
pub fn trace_of(seed: u64, planted: Option<PlantedBug>) -> String {
    let lines = match Sim::new(seed, planted, true).map(Sim::run) {
        Ok(Ok((_, trace)) | Err((_, trace))) => trace.unwrap_or_default(),
        Err(e) => vec![e],
    };
    let skip = lines.len().saturating_sub(TRACE_LINES_MAX);
    let mut out = String::new();
    for line in &lines[skip..] {
        let _ = writeln!(out, "{line}");
    }
    out
}
