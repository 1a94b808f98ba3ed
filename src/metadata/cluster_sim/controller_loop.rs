//! The active controller's request loop, as the cluster simulation runs it: a pure,
//! single-threaded twin of `MetadataStore::propose` (quorum mode) and of the code that calls
//! it — the BrokerRegistration / BrokerHeartbeat / AllocateProducerIds handlers
//! (`api::cluster_membership`), CreateTopics on the active controller, and the active
//! controller's own duties every 250 ms (`cluster::active`).
//!
//! The write rule is the store's own (`metadata::write_rule`: compute only as a leader that
//! applied its whole log, one entry per change, answer once applied past it or NOT_CONTROLLER
//! when the epoch ends first). What this loop adds is what the store's callers do around it:
//! - changes are serialised (the store's controller mutex, FIFO): at most one is computed and
//!   in flight at a time, the others wait in `pending`;
//! - `request.timeout.ms` after a change was submitted it is answered REQUEST_TIMED_OUT (its
//!   records may still commit);
//! - a change that computes no records is answered at once, one that is refused answers the
//!   refusal.
//!
//! The pure functions it calls are the production ones (`write_rule`, `cluster_control::*`,
//! `controller::create_topic`); only the driving (threads, locks, sockets) is replaced.
//! [`ClusterBug`] breaks one rule at a time so the simulation can show it notices: the two
//! write-rule bugs through [`WriteRule`]'s test-only switches, the others in the handlers.

use std::collections::VecDeque;

use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::partition_change::TopicDefaults;
use crate::metadata::cluster_control::{self, BrokerSessions, Heartbeat, HeartbeatReply, MembershipError, Registration};
use crate::metadata::controller::{self, TopicSpec};
use crate::metadata::features;
use crate::metadata::image::MetadataImage;
use crate::metadata::records::MetadataRecord;
pub use crate::metadata::write_rule::LeaderView;
use crate::metadata::write_rule::{Gate, Outcome, ProposedChange, WriteRule};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset};

/// Test-only: the controller-layer rules the planted-bug tests break, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterBug {
    /// The controller computes as soon as it leads, before it has applied its whole log: it
    /// decides on a stale image (broker epochs that are not their record's offset, producer
    /// ids handed out twice, elections on an outdated ISR).
    ComputeBeforeApplied,
    /// Fencing an expired broker writes the fence record only and leaves its leaderships.
    FenceKeepsLeadership,
    /// A heartbeat unfences its broker without checking that the broker applied its own
    /// registration.
    UnfenceIgnoresCatchUp,
    /// A heartbeat naming an older incarnation's epoch is taken for the current one (a late
    /// heartbeat of a crashed process speaks for its successor).
    StaleEpochAccepted,
    /// A change is answered once proposed, not once committed and applied: an answer can
    /// describe records that a failover then loses.
    AnswerBeforeCommit,
    /// A broker acting on a delta's local changes ignores the deletions (a deleted topic's
    /// partitions stay on disk and in the replica manager).
    LocalChangesIgnoreDeletes,
}

/// A request a broker sends the active controller.
#[derive(Debug, Clone)]
pub enum BrokerRequest {
    Register(Registration),
    Heartbeat(Heartbeat),
    AllocateProducerIds { broker: NodeId, epoch: BrokerEpoch },
}

/// An admin request a client sends the active controller.
#[derive(Debug, Clone)]
pub enum AdminRequest {
    CreateTopic { spec: TopicSpec, id: Uuid },
    DeleteTopic { name: String },
    CreatePartitions { name: String, count: i32 },
}

/// One change the controller computes, proposes and answers.
#[derive(Debug, Clone)]
enum Change {
    /// A registration, with the time the handler read its clock (it touches the session
    /// with that time once the registration is applied).
    Register { reg: Registration, now_ms: i64 },
    Heartbeat(Heartbeat),
    AllocateProducerIds { broker: NodeId, epoch: BrokerEpoch },
    CreateTopic { spec: TopicSpec, id: Uuid },
    DeleteTopic { name: String },
    CreatePartitions { name: String, count: i32 },
    /// The cluster's first records (`cluster::active::leader_duties`).
    Bootstrap,
    /// Fencing brokers whose sessions expired (`cluster::active::leader_duties`).
    Fence { ids: Vec<NodeId> },
}

/// The answer to a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Registered(BrokerEpoch),
    Heartbeat(HeartbeatReply),
    ProducerIds { start: i64 },
    /// A change with no reply of its own (topic creation, the duties).
    Done,
    Refused(MembershipError),
    TopicRefused(String),
    NotController,
    Timeout,
}

/// Who waits for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    /// A broker's call, answered over the network.
    Remote { node: usize, corr: u64 },
    /// The 250 ms duties of the active controller.
    Duties,
    /// A client's CreateTopics: the simulation only counts the answers.
    Client,
}

struct Pending {
    change: Change,
    waiter: Waiter,
    deadline_ms: u64,
}

struct InFlight {
    pending: Pending,
    /// Where the shared write rule says the change stands.
    change: ProposedChange,
    answer: Answer,
}

/// One controller process's request loop (its state dies with the process).
pub struct ControllerLoop {
    pending: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    /// Computed, handed to the caller to propose, waiting for [`ControllerLoop::proposed`].
    proposing: Option<(Pending, Answer, LeaderEpoch)>,
    /// The store's write rule, with this run's planted bug switched on.
    rule: WriteRule,
    sessions: BrokerSessions,
    was_leader: bool,
    /// The duties are awaited by the tick loop: one run at a time.
    duties_running: bool,
    answers: Vec<(Waiter, Answer)>,
    config: BrokerConfig,
    defaults: TopicDefaults,
    session_timeout_ms: i64,
    request_timeout_ms: u64,
    planted: Option<ClusterBug>,
}

impl ControllerLoop {
    pub fn new(config: BrokerConfig, planted: Option<ClusterBug>) -> Self {
        let session_timeout_ms = i64::from(config.int("broker.session.timeout.ms").max(1));
        let request_timeout_ms = config.long("request.timeout.ms").clamp(1000, 300_000) as u64;
        Self {
            pending: VecDeque::new(),
            in_flight: None,
            proposing: None,
            rule: WriteRule {
                compute_before_applied: planted == Some(ClusterBug::ComputeBeforeApplied),
                answer_before_commit: planted == Some(ClusterBug::AnswerBeforeCommit),
            },
            sessions: BrokerSessions::default(),
            was_leader: false,
            duties_running: false,
            answers: Vec::new(),
            defaults: TopicDefaults::from_config(&config),
            config,
            session_timeout_ms,
            request_timeout_ms,
            planted,
        }
    }

    /// A broker's request arrives (the handler's start): refused at once unless this node is
    /// the active controller; a heartbeat of a registration in the published image touches
    /// its session before anything is computed.
    pub fn request(&mut self, now_ms: u64, view: &LeaderView, image: &MetadataImage, waiter: Waiter, req: BrokerRequest) {
        if !view.is_leader {
            self.answers.push((waiter, Answer::NotController));
            return;
        }
        let change = match req {
            BrokerRequest::Register(reg) => Change::Register { reg, now_ms: now_ms as i64 },
            BrokerRequest::Heartbeat(hb) => {
                if image.brokers.get(&hb.id).is_some_and(|b| b.epoch == hb.epoch) {
                    self.sessions.touch(hb.id, hb.epoch, now_ms as i64);
                }
                Change::Heartbeat(hb)
            }
            BrokerRequest::AllocateProducerIds { broker, epoch } => Change::AllocateProducerIds { broker, epoch },
        };
        self.submit(now_ms, change, waiter);
    }

    /// A client's CreateTopics, DeleteTopics or CreatePartitions reached this node (refused
    /// unless it is the active controller).
    pub fn admin(&mut self, now_ms: u64, view: &LeaderView, req: AdminRequest) {
        if !view.is_leader {
            self.answers.push((Waiter::Client, Answer::NotController));
            return;
        }
        let change = match req {
            AdminRequest::CreateTopic { spec, id } => Change::CreateTopic { spec, id },
            AdminRequest::DeleteTopic { name } => Change::DeleteTopic { name },
            AdminRequest::CreatePartitions { name, count } => Change::CreatePartitions { name, count },
        };
        self.submit(now_ms, change, Waiter::Client);
    }

    fn submit(&mut self, now_ms: u64, change: Change, waiter: Waiter) {
        let deadline_ms = now_ms + self.request_timeout_ms;
        self.pending.push_back(Pending { change, waiter, deadline_ms });
    }

    /// The active controller's tick (`cluster::active::run`): a controller that just became
    /// leader restarts every session; the leader runs its duties unless a run is unfinished.
    /// The duties read the *published* image, as `leader_duties` does.
    pub fn tick(&mut self, now_ms: u64, view: &LeaderView, image: &MetadataImage) {
        if self.duties_running {
            return; // the tick loop awaits the duties: no tick while they run
        }
        if view.is_leader && !self.was_leader {
            self.sessions.restart_all(image, now_ms as i64);
        }
        self.was_leader = view.is_leader;
        if view.is_leader {
            self.start_duties(now_ms, image);
        }
    }

    fn start_duties(&mut self, now_ms: u64, image: &MetadataImage) {
        if image.cluster_id.is_empty() {
            self.duties_running = true;
            self.submit(now_ms, Change::Bootstrap, Waiter::Duties);
            return;
        }
        let ids = self.sessions.expired(image, now_ms as i64, self.session_timeout_ms);
        if !ids.is_empty() {
            self.duties_running = true;
            self.submit(now_ms, Change::Fence { ids }, Waiter::Duties);
        }
    }

    /// Runs the loop as far as it goes: answers what is done, and returns the records of the
    /// next change once one may be computed. The caller proposes them and reports the outcome
    /// with [`ControllerLoop::proposed`], then polls again.
    pub fn poll(&mut self, now_ms: u64, view: &LeaderView, image: &MetadataImage) -> Option<Vec<MetadataRecord>> {
        loop {
            if self.proposing.is_some() {
                return None;
            }
            let applied = Offset(image.offset);
            if let Some(f) = &self.in_flight {
                let outcome = f.change.poll(view, applied);
                let timed_out = now_ms >= f.pending.deadline_ms;
                if outcome == Outcome::Wait && !timed_out {
                    return None;
                }
                let f = self.in_flight.take()?;
                let answer = match outcome {
                    Outcome::Applied => f.answer,
                    Outcome::NotController(_) => Answer::NotController,
                    Outcome::Wait => Answer::Timeout,
                };
                self.finish(now_ms, image, f.pending, answer);
                continue;
            }
            let p = self.pending.pop_front()?;
            let epoch = match self.rule.may_compute(view, applied) {
                Gate::NotController(_) => {
                    self.finish(now_ms, image, p, Answer::NotController);
                    continue;
                }
                _ if now_ms >= p.deadline_ms => {
                    self.finish(now_ms, image, p, Answer::Timeout);
                    continue;
                }
                Gate::Wait => {
                    self.pending.push_front(p);
                    return None;
                }
                Gate::Compute(epoch) => epoch,
            };
            match self.compute(image, &p.change) {
                Err(answer) => self.finish(now_ms, image, p, answer),
                Ok((records, answer)) if records.is_empty() => self.finish(now_ms, image, p, answer),
                Ok((records, answer)) => {
                    // One entry per change (MetadataStore::propose): committed once past it.
                    self.proposing = Some((p, answer, epoch));
                    return Some(records);
                }
            }
        }
    }

    /// The outcome of proposing what [`ControllerLoop::poll`] returned: the offset of its
    /// entry, or `None` when the node was no longer leader.
    pub fn proposed(&mut self, now_ms: u64, view: &LeaderView, image: &MetadataImage, first: Option<Offset>) {
        let Some((pending, answer, epoch)) = self.proposing.take() else { return };
        match first {
            Some(first) => {
                let change = self.rule.proposed(first, epoch);
                if change.poll(view, Offset(image.offset)) == Outcome::Applied {
                    self.finish(now_ms, image, pending, answer);
                } else {
                    self.in_flight = Some(InFlight { pending, change, answer });
                }
            }
            None => self.finish(now_ms, image, pending, Answer::NotController),
        }
    }

    /// The answers produced since the last call.
    pub fn take_answers(&mut self) -> Vec<(Waiter, Answer)> {
        std::mem::take(&mut self.answers)
    }

    /// A change is answered: what the handler does after `update` returns.
    fn finish(&mut self, now_ms: u64, image: &MetadataImage, p: Pending, answer: Answer) {
        match (&p.change, &answer) {
            (Change::Register { reg, now_ms: at }, Answer::Registered(epoch)) => self.sessions.touch(reg.id, *epoch, *at),
            (Change::Bootstrap, Answer::Done) => {
                // `leader_duties` goes on to fencing in the same run, on the published image.
                self.duties_running = false;
                self.start_duties(now_ms, image);
                return;
            }
            _ => {}
        }
        if p.waiter == Waiter::Duties {
            self.duties_running = false;
        } else {
            self.answers.push((p.waiter, answer));
        }
    }

    /// The records of one change and its answer, from the image (the closure each handler
    /// passes to `MetadataStore::update`).
    fn compute(&self, image: &MetadataImage, change: &Change) -> Result<(Vec<MetadataRecord>, Answer), Answer> {
        match change {
            Change::Register { reg, now_ms } => {
                let (records, epoch) = cluster_control::register(image, &self.defaults, &self.sessions, reg, *now_ms, self.session_timeout_ms).map_err(Answer::Refused)?;
                Ok((records, Answer::Registered(epoch)))
            }
            Change::Heartbeat(hb) => {
                let mut hb = *hb;
                if self.planted == Some(ClusterBug::UnfenceIgnoresCatchUp) {
                    hb.metadata_offset = i64::MAX;
                }
                if self.planted == Some(ClusterBug::StaleEpochAccepted)
                    && let Some(b) = image.brokers.get(&hb.id)
                {
                    hb.epoch = b.epoch;
                }
                let (records, reply) = cluster_control::heartbeat(image, &self.defaults, &hb).map_err(Answer::Refused)?;
                Ok((records, Answer::Heartbeat(reply)))
            }
            Change::AllocateProducerIds { broker, epoch } => {
                match image.brokers.get(broker) {
                    Some(b) if b.epoch == *epoch => {}
                    Some(_) => return Err(Answer::Refused(MembershipError::StaleEpoch { got: epoch.0, expected: -1 })),
                    None => return Err(Answer::Refused(MembershipError::NotRegistered)),
                }
                let (start, record) = cluster_control::allocate_producer_ids(image);
                Ok((vec![record], Answer::ProducerIds { start }))
            }
            Change::CreateTopic { spec, id } => {
                // Brokers serve clients only once the cluster's first records are applied
                // (`main::wait_for_metadata`), so no topic predates the bootstrap features.
                if image.cluster_id.is_empty() {
                    return Err(Answer::TopicRefused("the cluster is not bootstrapped yet".into()));
                }
                let records = controller::create_topic(image, &self.config, spec).map_err(|e| Answer::TopicRefused(e.to_string()))?;
                Ok((with_topic_id(records, *id), Answer::Done))
            }
            Change::DeleteTopic { name } => {
                let record = controller::delete_topic(image, &self.config, name).map_err(|e| Answer::TopicRefused(e.to_string()))?;
                Ok((vec![record], Answer::Done))
            }
            Change::CreatePartitions { name, count } => {
                let records = controller::create_partitions(image, name, *count).map_err(|e| Answer::TopicRefused(e.to_string()))?;
                Ok((records, Answer::Done))
            }
            Change::Bootstrap => {
                if !image.cluster_id.is_empty() {
                    return Ok((Vec::new(), Answer::Done));
                }
                let mut records = vec![MetadataRecord::Cluster { cluster_id: "cluster-sim".into() }];
                if !image.features.contains_key(features::METADATA_VERSION) {
                    records.extend(features::bootstrap_records());
                }
                Ok((records, Answer::Done))
            }
            Change::Fence { ids } => {
                let mut records = cluster_control::fence(image, &self.defaults, ids);
                if self.planted == Some(ClusterBug::FenceKeepsLeadership) {
                    records.retain(|r| matches!(r, MetadataRecord::FenceBroker { .. }));
                }
                Ok((records, Answer::Done))
            }
        }
    }
}

/// `create_topic` draws a random topic id; the simulation gives it one from its seed so that
/// a run replays exactly.
fn with_topic_id(mut records: Vec<MetadataRecord>, id: Uuid) -> Vec<MetadataRecord> {
    for r in &mut records {
        match r {
            MetadataRecord::Topic { id: topic_id, .. } | MetadataRecord::Partition { topic_id, .. } => *topic_id = id,
            _ => {}
        }
    }
    records
}
