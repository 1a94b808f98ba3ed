//! A simulated broker process: `cluster::lifecycle`'s loop (register, heartbeat, register
//! again on STALE_BROKER_EPOCH / BROKER_ID_NOT_REGISTERED) and a producer-id manager that
//! takes blocks with AllocateProducerIds, each call made as `Cluster::call_controller` makes
//! it: to the leader this node's quorum status names, retried 100 ms after a failed attempt
//! until `request.timeout.ms`, each attempt itself bounded by that timeout (`NodeClient`).

use uuid::Uuid;

use super::controller_loop::{Answer, BrokerRequest};
use super::{Sim, SimEvent, Wire};
use crate::metadata::cluster_control::{Heartbeat, MembershipError, Registration};
use crate::types::BrokerEpoch;

/// `broker.heartbeat.interval.ms`.
const HEARTBEAT_INTERVAL_MS: u64 = 2_000;
/// The lifecycle heartbeats this often while fenced.
const FENCED_HEARTBEAT_MS: u64 = 500;
/// `lifecycle::REGISTER_BACKOFF`.
const REGISTER_BACKOFF_MS: u64 = 500;
/// `cluster::RETRY_BACKOFF`.
const RETRY_BACKOFF_MS: u64 = 100;
/// `request.timeout.ms` (`Cluster::call_controller` and `NodeClient`).
const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// `lifecycle::controlled_shutdown`'s pause between heartbeats.
const SHUTDOWN_HEARTBEAT_MS: u64 = 200;
/// `main::CONTROLLED_SHUTDOWN_MAX`.
const CONTROLLED_SHUTDOWN_MAX_MS: u64 = 30_000;

/// The two things a broker calls the controller for, each one call at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Membership,
    ProducerIds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Until the timer: then the next call starts.
    Sleeping,
    /// An attempt to node `to` is on the wire; the timer is its timeout.
    Waiting { corr: u64, to: usize },
    /// An attempt failed (or no leader is known); the timer retries.
    Backoff,
}

struct SlotState {
    phase: Phase,
    /// Bumped whenever the timer is reset: an older timer is stale.
    generation: u64,
    call: Option<(BrokerRequest, u64)>,
}

impl SlotState {
    fn new() -> Self {
        Self { phase: Phase::Sleeping, generation: 0, call: None }
    }
}

pub struct BrokerProc {
    pub incarnation: Uuid,
    pub epoch: Option<BrokerEpoch>,
    /// The last heartbeat answer's `is_fenced` (`Cluster::set_unfenced`).
    pub fenced: bool,
    /// SIGTERM arrived: heartbeats ask to shut down until the controller agrees or this
    /// deadline passes, then the process stops.
    pub shutdown_deadline_ms: Option<u64>,
    slots: [SlotState; 2],
}

impl BrokerProc {
    pub fn new(incarnation: Uuid) -> Self {
        Self { incarnation, epoch: None, fenced: true, shutdown_deadline_ms: None, slots: [SlotState::new(), SlotState::new()] }
    }

    fn slot(&mut self, slot: Slot) -> &mut SlotState {
        &mut self.slots[slot as usize]
    }
}

impl Sim {
    /// A broker process starts: it registers at once; its producer-id manager waits a while.
    pub(super) fn broker_start(&mut self, i: usize) {
        self.broker_next_call(i, Slot::Membership);
        let wait = self.range((500, 3_000));
        self.broker_sleep(i, Slot::ProducerIds, wait);
    }

    fn broker_set_timer(&mut self, i: usize, slot: Slot, phase: Phase, after_ms: u64) {
        let run = self.nodes[i].run;
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        let s = b.slot(slot);
        s.phase = phase;
        s.generation += 1;
        let generation = s.generation;
        self.schedule(self.now_ms + after_ms, SimEvent::BrokerTimer { node: i, run, slot, generation });
    }

    fn broker_sleep(&mut self, i: usize, slot: Slot, ms: u64) {
        self.broker_set_timer(i, slot, Phase::Sleeping, ms);
    }

    pub(super) fn broker_timer(&mut self, i: usize, slot: Slot, generation: u64) {
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        let s = b.slot(slot);
        if s.generation != generation {
            return;
        }
        match s.phase {
            Phase::Sleeping => self.broker_next_call(i, slot),
            Phase::Waiting { .. } => self.broker_attempt_failed(i, slot),
            Phase::Backoff => {
                let deadline = s.call.as_ref().map_or(0, |(_, d)| *d);
                if self.now_ms >= deadline {
                    self.broker_call_done(i, slot, None);
                } else {
                    self.broker_attempt(i, slot);
                }
            }
        }
    }

    /// SIGTERM (`lifecycle::controlled_shutdown`): heartbeat at once, asking to shut down.
    pub(super) fn broker_sigterm(&mut self, i: usize) {
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        if b.shutdown_deadline_ms.is_some() {
            return;
        }
        b.shutdown_deadline_ms = Some(self.now_ms + CONTROLLED_SHUTDOWN_MAX_MS);
        let id = self.nodes[i].id;
        self.log_line(|| format!("{id:?} gets SIGTERM"));
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        if b.epoch.is_none() {
            return self.stop_gracefully(i, false); // never registered: nothing to hand over
        }
        if b.slot(Slot::Membership).phase == Phase::Sleeping {
            self.broker_next_call(i, Slot::Membership);
        }
    }

    /// What the lifecycle (or the producer-id manager) asks next.
    fn broker_next_call(&mut self, i: usize, slot: Slot) {
        let id = self.nodes[i].id;
        let applied = self.nodes[i].image.offset;
        let cluster_id = self.nodes[i].image.cluster_id.clone();
        let rack = self.nodes[i].rack.clone();
        let Some(b) = self.nodes[i].broker.as_ref() else { return };
        let shutting_down = b.shutdown_deadline_ms.is_some();
        if shutting_down && slot == Slot::Membership && (b.epoch.is_none() || b.shutdown_deadline_ms.is_some_and(|d| self.now_ms >= d)) {
            return self.stop_gracefully(i, false);
        }
        let req = match (slot, b.epoch) {
            (Slot::Membership, None) => BrokerRequest::Register(Registration {
                id,
                cluster_id,
                incarnation_id: b.incarnation,
                endpoints: vec![],
                rack,
                previous_broker_epoch: None,
            }),
            // The offset of the last record applied here.
            (Slot::Membership, Some(epoch)) => BrokerRequest::Heartbeat(Heartbeat {
                id,
                epoch,
                metadata_offset: applied - 1,
                want_fence: false,
                want_shut_down: shutting_down,
            }),
            // Producers stop with the chaos, so that the log comes to rest.
            (Slot::ProducerIds, Some(epoch)) if !b.fenced && self.chaos_on => BrokerRequest::AllocateProducerIds { broker: id, epoch },
            (Slot::ProducerIds, _) => return self.broker_sleep(i, slot, 1_000),
        };
        let deadline = self.now_ms + REQUEST_TIMEOUT_MS;
        if let Some(b) = self.nodes[i].broker.as_mut() {
            b.slot(slot).call = Some((req, deadline));
        }
        self.broker_attempt(i, slot);
    }

    /// One attempt of the current call, to the leader this node's quorum knows.
    fn broker_attempt(&mut self, i: usize, slot: Slot) {
        let leader = self.nodes[i].core.as_ref().and_then(|c| c.leader()).and_then(|l| self.index_of(l));
        let Some(req) = self.nodes[i].broker.as_mut().and_then(|b| b.slot(slot).call.as_ref().map(|(r, _)| r.clone())) else {
            return;
        };
        let Some(to) = leader else {
            return self.broker_set_timer(i, slot, Phase::Backoff, RETRY_BACKOFF_MS);
        };
        self.next_corr += 1;
        let corr = self.next_corr;
        self.broker_set_timer(i, slot, Phase::Waiting { corr, to }, REQUEST_TIMEOUT_MS);
        self.send(i, to, Wire::Request { corr, req });
    }

    fn broker_attempt_failed(&mut self, i: usize, slot: Slot) {
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        let deadline = b.slot(slot).call.as_ref().map_or(0, |(_, d)| *d);
        let wait = RETRY_BACKOFF_MS.min(deadline.saturating_sub(self.now_ms));
        self.broker_set_timer(i, slot, Phase::Backoff, wait);
    }

    /// An answer (or a lost connection, `None`) for call `corr` of broker `i`.
    pub(super) fn broker_reply(&mut self, i: usize, corr: u64, answer: Option<Answer>) {
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        let Some(slot) = [Slot::Membership, Slot::ProducerIds].into_iter().find(|s| matches!(b.slot(*s).phase, Phase::Waiting { corr: c, .. } if c == corr)) else {
            return; // an answer to an attempt given up on
        };
        match answer {
            Some(answer) => self.broker_call_done(i, slot, Some(answer)),
            None => self.broker_attempt_failed(i, slot),
        }
    }

    /// Node `to`'s process died: the kernel resets its connections, so every call waiting on
    /// it fails at once (unless the network swallows the reset too).
    pub(super) fn broker_calls_reset(&mut self, to: usize) {
        for i in 0..self.nodes.len() {
            let Some(b) = self.nodes[i].broker.as_ref() else { continue };
            let waiting: Vec<u64> = b
                .slots
                .iter()
                .filter_map(|s| match s.phase {
                    Phase::Waiting { corr, to: t } if t == to => Some(corr),
                    _ => None,
                })
                .collect();
            for corr in waiting {
                if !self.blocked[to][i] {
                    self.disconnect(to, i, corr);
                }
            }
        }
    }

    /// The call ended with the controller's answer, or undelivered (`None`).
    fn broker_call_done(&mut self, i: usize, slot: Slot, answer: Option<Answer>) {
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        let Some((req, _)) = b.slot(slot).call.take() else { return };
        let id = self.nodes[i].id;
        self.log_line(|| format!("{id:?} call ends: {answer:?}"));
        let Some(b) = self.nodes[i].broker.as_mut() else { return };
        let heartbeat_wait = |fenced: bool| if fenced { HEARTBEAT_INTERVAL_MS.min(FENCED_HEARTBEAT_MS) } else { HEARTBEAT_INTERVAL_MS };
        if b.shutdown_deadline_ms.is_some() && slot == Slot::Membership {
            return match answer {
                Some(Answer::Heartbeat(reply)) if reply.should_shut_down => self.stop_gracefully(i, true),
                Some(Answer::Refused(_)) => self.stop_gracefully(i, false),
                _ => self.broker_sleep(i, slot, SHUTDOWN_HEARTBEAT_MS),
            };
        }
        match (req, answer) {
            (BrokerRequest::Register(_), Some(Answer::Registered(epoch))) => {
                b.epoch = Some(epoch);
                b.fenced = true;
                self.broker_next_call(i, Slot::Membership);
            }
            (BrokerRequest::Register(_), _) => self.broker_sleep(i, slot, REGISTER_BACKOFF_MS),
            (BrokerRequest::Heartbeat(_), Some(Answer::Heartbeat(reply))) => {
                b.fenced = reply.is_fenced;
                self.broker_sleep(i, slot, heartbeat_wait(reply.is_fenced));
            }
            (BrokerRequest::Heartbeat(_), Some(Answer::Refused(MembershipError::StaleEpoch { .. } | MembershipError::NotRegistered))) => {
                b.epoch = None;
                b.fenced = true;
                self.broker_next_call(i, Slot::Membership);
            }
            (BrokerRequest::Heartbeat(_), _) => {
                let wait = heartbeat_wait(b.fenced);
                self.broker_sleep(i, slot, wait);
            }
            (BrokerRequest::AllocateProducerIds { .. }, Some(Answer::ProducerIds { .. })) => {
                let wait = self.range((500, 5_000));
                self.broker_sleep(i, slot, wait);
            }
            (BrokerRequest::AllocateProducerIds { .. }, _) => self.broker_sleep(i, slot, 1_000),
        }
    }
}
