//! A seeded state-machine test of the KIP-848 group coordinator ([`super::ConsumerGroup`])
//! driven by modelled clients, with the ownership invariants checked after every event.
//!
//! Each client behaves as the Java consumer does: it heartbeats with its epoch and (when it
//! changed, and now and then anyway while it is not applying an assignment) the partitions
//! it owns; an assignment in a response is
//! applied later, in its own event (revocation callbacks and commits take time); it leaves
//! after giving up everything; it may crash and stay silent. Responses may be lost, so a
//! client can come back with its previous epoch. Time moves in steps and drives session
//! expiry and revocation deadlines. Topics may grow partitions.
//!
//! Invariants after every event:
//! - the partitions the coordinator counts as held (assigned or pending revocation) by two
//!   members are disjoint;
//! - what a live client consumes is held by its member at the coordinator, so no other member
//!   can be given it;
//! - hence no partition is consumed by two live clients at once.
//!
//! At the end every client heartbeats with no loss until the group is stable, and the
//! assignment must then cover the target exactly.
//!
//! `BLUMFELD_GROUP_SIM_SEEDS=N` runs N seeds (default 1,000 in CI),
//! `BLUMFELD_GROUP_SIM_SEED=S` replays one; a failure prints its seed.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{ConsumerGroup, ConsumerLimits, HeartbeatRequest, LEAVE_EPOCH, TopicsView, Tp};

const LIMITS: ConsumerLimits = ConsumerLimits { session_timeout_ms: 45_000, heartbeat_interval_ms: 5_000, max_size: 100 };
const REBALANCE_TIMEOUT_MS: i32 = 30_000;

/// Partitions as `topic:partition` for the trace (topic ids here are small numbers).
fn parts(s: &BTreeSet<Tp>) -> Vec<String> {
    s.iter().map(|(t, p)| format!("{}:{p}", t.as_u128())).collect()
}

/// SplitMix64: small, seedable and good enough to pick events.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Life {
    /// Not in the group (never joined, left, or fenced and not yet back).
    Out,
    In,
    /// Stopped without a word; the coordinator learns of it by session expiry.
    Crashed,
}

#[derive(Debug, Clone)]
struct Client {
    name: String,
    life: Life,
    member_id: String,
    epoch: i32,
    /// What the client consumes now.
    owned: BTreeSet<Tp>,
    /// The owned set the coordinator last heard.
    owned_sent: Option<BTreeSet<Tp>>,
    /// An assignment received and not yet applied.
    pending: Option<BTreeSet<Tp>>,
}

impl Client {
    fn new(i: usize) -> Self {
        Self {
            name: format!("c{i}"),
            life: Life::Out,
            member_id: String::new(),
            epoch: 0,
            owned: BTreeSet::new(),
            owned_sent: None,
            pending: None,
        }
    }

    fn drop_everything(&mut self) {
        self.life = Life::Out;
        self.member_id.clear();
        self.epoch = 0;
        self.owned.clear();
        self.owned_sent = None;
        self.pending = None;
    }
}

struct Sim {
    rng: Rng,
    group: ConsumerGroup,
    topics: TopicsView,
    clients: Vec<Client>,
    now_ms: i64,
    trace: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let mut topics = TopicsView::new();
        for t in 0..1 + rng.below(2) {
            topics.insert(Uuid::from_u128(u128::from(t) + 1), (format!("t{t}"), 1 + rng.below(8) as i32));
        }
        let clients = (0..2 + rng.below(3) as usize).map(Client::new).collect();
        Self { rng, group: ConsumerGroup::new("g".into(), 0), topics, clients, now_ms: 0, trace: Vec::new() }
    }

    fn heartbeat(&mut self, i: usize, lose_response: bool, force_owned: bool) {
        let c = &self.clients[i];
        let joining = c.life == Life::Out;
        // Like the Java consumer, the owned set goes out when it changed (after applying an
        // assignment) and, now and then, in full; never as a claim while an assignment is
        // being applied, when it would wrongly tell the coordinator that partitions received
        // but not yet applied are released.
        let send_owned =
            joining || (force_owned && c.pending.is_none()) || c.owned_sent.as_ref() != Some(&c.owned);
        let req = HeartbeatRequest {
            member_id: if joining { String::new() } else { c.member_id.clone() },
            member_epoch: if joining { 0 } else { c.epoch },
            client_id: c.name.clone(),
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            subscribed_topic_names: joining.then(|| self.topics.values().map(|(n, _)| n.clone()).collect()),
            owned: send_owned.then(|| c.owned.clone()),
            ..Default::default()
        };
        let owned = req.owned.clone();
        let r = self.group.heartbeat(req, &self.topics, &LIMITS, self.now_ms);
        self.trace.push(format!(
            "t={} {} hb epoch={} owned={:?} -> err={:?} epoch={} assignment={:?}{}",
            self.now_ms,
            c.name,
            if joining { 0 } else { c.epoch },
            owned.as_ref().map(parts),
            r.error,
            r.member_epoch,
            r.assignment.as_ref().map(parts),
            if lose_response { " (lost)" } else { "" }
        ));
        if lose_response {
            return;
        }
        let c = &mut self.clients[i];
        match r.error {
            None => {
                c.life = Life::In;
                c.member_id = r.member_id;
                c.epoch = r.member_epoch;
                if owned.is_some() {
                    c.owned_sent = owned;
                }
                if let Some(a) = r.assignment {
                    c.pending = Some(a);
                }
            }
            Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => c.drop_everything(),
            Some(e) => panic!("unexpected heartbeat error {e:?}"),
        }
    }

    fn step(&mut self) {
        let i = self.rng.below(self.clients.len() as u64) as usize;
        let roll = self.rng.below(100);
        match (self.clients[i].life.clone(), roll) {
            (Life::Crashed, r) if r < 10 => {
                self.trace.push(format!("{} restarts", self.clients[i].name));
                self.clients[i].drop_everything();
            }
            (Life::Crashed, _) => self.advance(),
            (_, 0..=44) => {
                let lose = self.rng.chance(10);
                let force = self.rng.chance(20);
                self.heartbeat(i, lose, force);
            }
            (Life::In, 45..=74) => {
                if let Some(a) = self.clients[i].pending.take() {
                    self.trace.push(format!("{} applies {:?}", self.clients[i].name, parts(&a)));
                    self.clients[i].owned = a;
                }
            }
            (Life::In, 75..=78) => {
                // A clean leave: revoke everything first, then say goodbye.
                let c = &mut self.clients[i];
                let req = HeartbeatRequest { member_id: c.member_id.clone(), member_epoch: LEAVE_EPOCH, ..Default::default() };
                self.trace.push(format!("{} leaves", c.name));
                c.drop_everything();
                self.group.heartbeat(req, &self.topics, &LIMITS, self.now_ms);
            }
            (Life::In, 79..=80) => {
                self.trace.push(format!("{} crashes", self.clients[i].name));
                let c = &mut self.clients[i];
                c.life = Life::Crashed;
                c.owned.clear();
                c.pending = None;
            }
            (_, 81..=82) => {
                let ids: Vec<Uuid> = self.topics.keys().copied().collect();
                let id = ids[self.rng.below(ids.len() as u64) as usize];
                if let Some(t) = self.topics.get_mut(&id) {
                    t.1 += 1;
                    self.trace.push(format!("topic {} grows to {}", t.0, t.1));
                }
            }
            _ => self.advance(),
        }
    }

    fn advance(&mut self) {
        // Mostly short steps; now and then one long enough for a deadline to pass.
        self.now_ms += if self.rng.chance(5) { 20_000 + self.rng.below(30_000) as i64 } else { self.rng.below(3_000) as i64 };
        if self.group.tick(&LIMITS, self.now_ms) {
            self.trace.push(format!("t={} tick expired members", self.now_ms));
        }
        self.forget_expired();
    }

    /// A live client whose member the coordinator removed learns it by its own timers (the
    /// Java consumer's poll and session deadlines) and gives up its partitions.
    fn forget_expired(&mut self) {
        for c in &mut self.clients {
            if c.life == Life::In && !self.group.members.contains_key(&c.member_id) {
                c.drop_everything();
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        let held: Vec<(String, BTreeSet<Tp>)> =
            self.group.members.values().map(|m| (m.member_id.clone(), m.held().cloned().collect())).collect();
        for (a, (ida, ha)) in held.iter().enumerate() {
            for (idb, hb) in held.iter().skip(a + 1) {
                if let Some(tp) = ha.intersection(hb).next() {
                    return Err(format!("partition {:?} held by members {ida} and {idb}", tp));
                }
            }
        }
        for c in self.clients.iter().filter(|c| c.life == Life::In) {
            let Some((_, h)) = held.iter().find(|(id, _)| *id == c.member_id) else {
                return Err(format!("{} is in the group but its member {} is gone", c.name, c.member_id));
            };
            if let Some(tp) = c.owned.difference(h).next() {
                return Err(format!("{} consumes partition {:?} that its member does not hold", c.name, tp));
            }
        }
        let live: Vec<&Client> = self.clients.iter().filter(|c| c.life == Life::In).collect();
        for (a, ca) in live.iter().enumerate() {
            for cb in live.iter().skip(a + 1) {
                if let Some(tp) = ca.owned.intersection(&cb.owned).next() {
                    return Err(format!("partition {:?} consumed by {} and {}", tp, ca.name, cb.name));
                }
            }
        }
        Ok(())
    }

    /// Every client that is not crashed heartbeats and applies, with no loss, until the group
    /// is stable; then the clients' assignments must be exactly the target.
    fn settle(&mut self) -> Result<(), String> {
        for c in &mut self.clients {
            if c.life == Life::Crashed {
                c.drop_everything();
            }
        }
        self.now_ms += i64::from(LIMITS.session_timeout_ms) + 1;
        self.group.tick(&LIMITS, self.now_ms);
        self.forget_expired();
        for round in 0..20 {
            for i in 0..self.clients.len() {
                self.heartbeat(i, false, false);
                if let Some(a) = self.clients[i].pending.take() {
                    self.clients[i].owned = a;
                }
                self.check()?;
            }
            self.now_ms += 1_000;
            if round > 2 && self.group.state_name() == "Stable" {
                for c in &self.clients {
                    let target = self.group.target.get(&c.member_id).cloned().unwrap_or_default();
                    if c.owned != target {
                        return Err(format!("stable, but {} consumes {:?} while its target is {:?}", c.name, c.owned, target));
                    }
                }
                let all: usize = self.topics.values().map(|(_, n)| *n as usize).sum();
                let covered: usize = self.clients.iter().map(|c| c.owned.len()).sum();
                if covered != all {
                    return Err(format!("stable with {covered} of {all} partitions consumed"));
                }
                return Ok(());
            }
        }
        Err(format!("not stable after 20 rounds: {}", self.group.state_name()))
    }
}

fn run(seed: u64, steps: usize) -> Result<(), (String, Vec<String>)> {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
        if let Err(e) = sim.check() {
            return Err((e, sim.trace));
        }
    }
    sim.settle().map_err(|e| (e, std::mem::take(&mut sim.trace)))
}

#[test]
fn no_partition_is_consumed_twice() {
    let seeds: Vec<u64> = match std::env::var("BLUMFELD_GROUP_SIM_SEED") {
        Ok(s) => vec![s.parse().unwrap_or(0)],
        Err(_) => {
            let n = std::env::var("BLUMFELD_GROUP_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
            (0..n).collect()
        }
    };
    for seed in seeds {
        if let Err((e, trace)) = run(seed, 400) {
            let tail: Vec<&String> = trace.iter().rev().take(40).rev().collect();
            panic!(
                "seed {seed}: {e}\nreplay: BLUMFELD_GROUP_SIM_SEED={seed} cargo test --lib no_partition_is_consumed_twice\nlast events:\n{}",
                tail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// The scenario the issue reported: A owns 0-5, B joins, A is told to keep 0-2, and B must
/// not get 3-5 before A acknowledges the revocation.
#[test]
fn partitions_are_withheld_until_the_previous_owner_revokes() {
    let mut topics = TopicsView::new();
    let t = Uuid::from_u128(1);
    topics.insert(t, ("t".into(), 6));
    let mut g = ConsumerGroup::new("g".into(), 0);
    let join = |id: &str| HeartbeatRequest {
        member_id: id.into(),
        member_epoch: 0,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(BTreeSet::new()),
        ..Default::default()
    };
    let hb = |id: &str, epoch: i32, owned: &BTreeSet<Tp>| HeartbeatRequest {
        member_id: id.into(),
        member_epoch: epoch,
        owned: Some(owned.clone()),
        ..Default::default()
    };
    let a = g.heartbeat(join("a"), &topics, &LIMITS, 0);
    let all = a.assignment.unwrap_or_default();
    assert_eq!(all.len(), 6);
    let b = g.heartbeat(join("b"), &topics, &LIMITS, 1);
    assert_eq!(b.assignment.map(|s| s.len()), Some(0));
    let a2 = g.heartbeat(hb("a", a.member_epoch, &all), &topics, &LIMITS, 2);
    let kept = a2.assignment.unwrap_or_default();
    assert_eq!(kept.len(), 3);
    // B heartbeats before A acknowledged: nothing yet.
    let b2 = g.heartbeat(hb("b", b.member_epoch, &BTreeSet::new()), &topics, &LIMITS, 3);
    assert!(b2.assignment.is_none_or(|s| s.is_empty()), "B must wait until A revoked");
    // A heartbeats again still owning everything (revocation callbacks running): still nothing for B.
    g.heartbeat(hb("a", a2.member_epoch, &all), &topics, &LIMITS, 4);
    let b3 = g.heartbeat(hb("b", b2.member_epoch, &BTreeSet::new()), &topics, &LIMITS, 5);
    assert!(b3.assignment.is_none_or(|s| s.is_empty()), "B must wait until A revoked");
    // A acknowledges; B gets the other three.
    g.heartbeat(hb("a", a2.member_epoch, &kept), &topics, &LIMITS, 6);
    let b4 = g.heartbeat(hb("b", b3.member_epoch, &BTreeSet::new()), &topics, &LIMITS, 7);
    let got = b4.assignment.unwrap_or_default();
    assert_eq!(got.len(), 3);
    assert!(got.is_disjoint(&kept));
}
