//! Unit tests of the core's rules, one scenario each, on a perfect in-memory network (the
//! simulator covers the imperfect one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;

use bytes::Bytes;

use super::config::RaftConfig;
use super::core::{Action, Event, RaftCore, RaftError};
use super::log::{MemoryLog, RaftLog};
use super::message::*;
use super::state::{QuorumState, RoleKind};
use crate::types::{LeaderEpoch, NodeId, Offset};

fn config(id: i32, voters: &[i32]) -> RaftConfig {
    RaftConfig::new(NodeId(id), voters.iter().map(|v| NodeId(*v)).collect())
}

fn core(id: i32, voters: &[i32], log: MemoryLog) -> RaftCore<MemoryLog> {
    RaftCore::new(config(id, voters), log, QuorumState::default(), id as u64, 0).unwrap()
}

fn entry(epoch: i32, b: &'static [u8]) -> Entry {
    Entry { epoch: LeaderEpoch(epoch), data: EntryData::Records(Bytes::from_static(b)) }
}

fn log_of(entries: Vec<Entry>) -> MemoryLog {
    let mut log = MemoryLog::new();
    log.append(entries);
    log.flush();
    log
}

fn sends(actions: &[Action]) -> Vec<(NodeId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

/// Nodes on a lossless network that delivers in order; disks flush at once unless held.
struct Cluster {
    nodes: Vec<RaftCore<MemoryLog>>,
    persisted: Vec<QuorumState>,
    in_flight: VecDeque<(NodeId, NodeId, Message)>,
    hold_flush: Vec<bool>,
    /// Messages from or to this node are lost.
    cut: Option<NodeId>,
    /// This node's process is gone: requests to it fail at once (`Event::Unreachable`).
    down: Option<NodeId>,
    now_ms: u64,
}

impl Cluster {
    fn new(voters: &[i32], observers: &[i32]) -> Self {
        let nodes: Vec<_> =
            voters.iter().chain(observers).map(|id| core(*id, voters, MemoryLog::new())).collect();
        let n = nodes.len();
        Cluster { nodes, persisted: vec![QuorumState::default(); n], in_flight: VecDeque::new(), hold_flush: vec![false; n], cut: None, down: None, now_ms: 0 }
    }

    fn index(&self, id: NodeId) -> usize {
        self.nodes.iter().position(|c| c.local() == id).unwrap()
    }

    fn step(&mut self, i: usize, event: Event) -> Vec<Action> {
        let actions = self.nodes[i].step(self.now_ms, event).unwrap();
        self.execute(i, &actions);
        actions
    }

    fn execute(&mut self, i: usize, actions: &[Action]) {
        for action in actions {
            match action {
                Action::PersistQuorumState(q) => self.persisted[i] = *q,
                Action::Send { to, msg } => self.in_flight.push_back((self.nodes[i].local(), *to, msg.clone())),
                Action::Flush { .. } if !self.hold_flush[i] => {
                    let up_to = self.nodes[i].log_mut().flush();
                    let more = self.nodes[i].step(self.now_ms, Event::Flushed { up_to }).unwrap();
                    self.execute(i, &more);
                }
                _ => {}
            }
        }
    }

    fn deliver_all(&mut self) {
        let mut budget = 10_000;
        while let Some((from, to, msg)) = self.in_flight.pop_front() {
            budget -= 1;
            assert!(budget > 0, "the cluster should quiesce");
            if self.down == Some(to) {
                let is_request = matches!(msg, Message::VoteRequest(_) | Message::FetchRequest(_) | Message::FetchSnapshotRequest(_) | Message::BeginQuorumEpochRequest(_) | Message::EndQuorumEpochRequest(_));
                if is_request && self.down != Some(from) {
                    let i = self.index(from);
                    self.step(i, Event::Unreachable { peer: to });
                }
                continue;
            }
            if self.down == Some(from) || self.cut.is_some_and(|cut| cut == from || cut == to) {
                continue;
            }
            let i = self.index(to);
            self.step(i, Event::Message { from, msg });
        }
    }

    /// Advances time to `ms`, ticking every node every millisecond-ish step of 10 ms.
    fn run_until(&mut self, ms: u64) {
        while self.now_ms < ms {
            self.now_ms += 10;
            for i in 0..self.nodes.len() {
                self.step(i, Event::Tick);
            }
            self.deliver_all();
        }
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|c| c.role() == RoleKind::Leader)
    }

    fn flush(&mut self, i: usize) {
        let up_to = self.nodes[i].log_mut().flush();
        self.step(i, Event::Flushed { up_to });
    }
}

#[test]
fn a_single_voter_elects_itself_and_commits_only_what_is_flushed() {
    let mut c = Cluster::new(&[1], &[]);
    c.hold_flush[0] = true;
    c.run_until(2_100);
    assert_eq!(c.nodes[0].role(), RoleKind::Leader);
    assert_eq!(c.nodes[0].epoch(), LeaderEpoch(1));
    assert_eq!(c.persisted[0], QuorumState { epoch: LeaderEpoch(1), voted_for: Some(NodeId(1)), leader: Some(NodeId(1)) });
    // The leader-change entry is written but not flushed: nothing is committed yet.
    assert_eq!(c.nodes[0].log().end_offset(), Offset(1));
    assert_eq!(c.nodes[0].high_watermark(), Offset(0));
    c.flush(0);
    assert_eq!(c.nodes[0].high_watermark(), Offset(1));
    let (first, _) = c.nodes[0].propose(c.now_ms, vec![Bytes::from_static(b"r")]).unwrap();
    assert_eq!(first, Offset(1));
    assert_eq!(c.nodes[0].high_watermark(), Offset(1));
    c.flush(0);
    assert_eq!(c.nodes[0].high_watermark(), Offset(2));
}

#[test]
fn the_only_voter_leads_from_its_first_tick_and_again_after_a_restart() {
    let mut solo = core(1, &[1], MemoryLog::new());
    assert_eq!(solo.next_deadline_ms(), 0, "the only voter waits for no election timeout");
    solo.step(0, Event::Tick).unwrap();
    assert_eq!(solo.role(), RoleKind::Leader);
    assert_eq!(solo.epoch(), LeaderEpoch(1));
    // Restarted from its persisted state (it was the leader): it comes back resigned and
    // stands again at once, in the next epoch.
    let persisted = QuorumState { epoch: LeaderEpoch(1), voted_for: Some(NodeId(1)), leader: Some(NodeId(1)) };
    let mut again = RaftCore::new(config(1, &[1]), MemoryLog::new(), persisted, 7, 5_000).unwrap();
    again.step(5_000, Event::Tick).unwrap();
    assert_eq!(again.role(), RoleKind::Leader);
    assert_eq!(again.epoch(), LeaderEpoch(2));
    // One of three voters waits out its randomized election timeout.
    let mut one_of_three = core(1, &[1, 2, 3], MemoryLog::new());
    assert!(one_of_three.next_deadline_ms() >= 1_000);
    one_of_three.step(0, Event::Tick).unwrap();
    assert_ne!(one_of_three.role(), RoleKind::Leader);
}

#[test]
fn three_voters_elect_one_leader_and_replicate_to_an_observer() {
    let mut c = Cluster::new(&[1, 2, 3], &[9]);
    c.run_until(3_000);
    let leader = c.leader().expect("a leader");
    assert_eq!(c.nodes.iter().filter(|n| n.role() == RoleKind::Leader).count(), 1);
    let (first, actions) = c.nodes[leader].propose(c.now_ms, vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")]).unwrap();
    c.execute(leader, &actions);
    c.deliver_all();
    c.run_until(c.now_ms + 1_000);
    for n in &c.nodes {
        assert!(n.high_watermark() >= Offset(first.0 + 2), "{:?} has hw {}", n.local(), n.high_watermark());
        assert_eq!(n.log().read(first, 2), vec![entry(n.epoch().0, b"x"), entry(n.epoch().0, b"y")]);
    }
    let observer = c.index(NodeId(9));
    assert_eq!(c.nodes[observer].role(), RoleKind::Follower);
    let description = c.nodes[leader].describe_quorum().unwrap();
    assert_eq!(description.voters.len(), 3);
    assert_eq!(description.observers.len(), 1);
    assert_eq!(description.observers[0].replica_id, NodeId(9));
    assert!(c.nodes[observer].describe_quorum().is_none());
}

#[test]
fn a_vote_is_persisted_before_it_is_answered_and_granted_once_per_epoch() {
    let mut voter = core(1, &[1, 2, 3], MemoryLog::new());
    let request = |candidate: i32| Message::VoteRequest(VoteRequest {
        epoch: LeaderEpoch(1),
        candidate: NodeId(candidate),
        last: OffsetAndEpoch::ZERO,
        pre_vote: false,
    });
    let actions = voter.step(5, Event::Message { from: NodeId(2), msg: request(2) }).unwrap();
    let persist = actions
        .iter()
        .position(|a| matches!(a, Action::PersistQuorumState(q) if q.voted_for == Some(NodeId(2)) && q.epoch == LeaderEpoch(1)))
        .expect("the vote is persisted");
    let answer = actions.iter().position(|a| matches!(a, Action::Send { .. })).unwrap();
    assert!(persist < answer, "persist comes before the answer: {actions:?}");
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if r.granted));

    let actions = voter.step(6, Event::Message { from: NodeId(3), msg: request(3) }).unwrap();
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if !r.granted), "one vote per epoch");
    let actions = voter.step(7, Event::Message { from: NodeId(2), msg: request(2) }).unwrap();
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if r.granted), "the same candidate again");

    // A restart from the persisted state still remembers the vote.
    let restarted = RaftCore::new(config(1, &[1, 2, 3]), MemoryLog::new(), voter.quorum_state(), 1, 10).unwrap();
    assert_eq!(restarted.quorum_state().voted_for, Some(NodeId(2)));
}

#[test]
fn a_candidate_with_a_less_up_to_date_log_is_refused() {
    let mut voter = core(1, &[1, 2, 3], log_of(vec![entry(1, b"a"), entry(2, b"b")]));
    let ask = |voter: &mut RaftCore<MemoryLog>, epoch: i32, last: (i64, i32), from: i32| {
        let msg = Message::VoteRequest(VoteRequest {
            epoch: LeaderEpoch(epoch),
            candidate: NodeId(from),
            last: OffsetAndEpoch::new(Offset(last.0), LeaderEpoch(last.1)),
            pre_vote: false,
        });
        let actions = voter.step(1, Event::Message { from: NodeId(from), msg }).unwrap();
        matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if r.granted)
    };
    // A longer log of an older epoch is less up to date.
    assert!(!ask(&mut voter, 3, (10, 1), 2));
    assert!(!ask(&mut voter, 4, (1, 2), 2));
    assert!(ask(&mut voter, 5, (2, 2), 2));
    assert_eq!(voter.epoch(), LeaderEpoch(5), "each higher epoch was adopted");
    // A last epoch at or above the candidate's epoch is malformed.
    let msg = Message::VoteRequest(VoteRequest {
        epoch: LeaderEpoch(6),
        candidate: NodeId(3),
        last: OffsetAndEpoch::new(Offset(2), LeaderEpoch(6)),
        pre_vote: false,
    });
    let actions = voter.step(2, Event::Message { from: NodeId(3), msg }).unwrap();
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if r.error == RaftErrorCode::InvalidRequest));
}

#[test]
fn a_pre_vote_changes_no_state_and_is_refused_by_a_follower_of_a_live_leader() {
    // A pre-vote carries its sender's current epoch (Kafka's): here the receiver's own.
    let mut voter = core(1, &[1, 2, 3], MemoryLog::new());
    let pre_vote = |epoch| {
        Message::VoteRequest(VoteRequest {
            epoch: LeaderEpoch(epoch),
            candidate: NodeId(2),
            last: OffsetAndEpoch::ZERO,
            pre_vote: true,
        })
    };
    let actions = voter.step(1, Event::Message { from: NodeId(2), msg: pre_vote(0) }).unwrap();
    assert!(!actions.iter().any(|a| matches!(a, Action::PersistQuorumState(_))), "{actions:?}");
    assert_eq!(voter.quorum_state(), QuorumState::default());
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if r.granted && r.pre_vote));

    // Once it follows a leader it hears from, it refuses.
    let begin = Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest { epoch: LeaderEpoch(1), leader: NodeId(3) });
    voter.step(2, Event::Message { from: NodeId(3), msg: begin }).unwrap();
    assert_eq!(voter.role(), RoleKind::Follower);
    let actions = voter.step(3, Event::Message { from: NodeId(2), msg: pre_vote(1) }).unwrap();
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if !r.granted && r.epoch == LeaderEpoch(1)));
    assert_eq!(voter.quorum_state(), QuorumState { epoch: LeaderEpoch(1), voted_for: None, leader: Some(NodeId(3)) });
    assert_eq!(voter.role(), RoleKind::Follower);
}

#[test]
fn a_pre_vote_from_a_higher_epoch_steps_even_a_live_leader_into_that_epoch() {
    // Kafka's handleVoteRequest: the epoch of a valid Vote request, pre-vote or not, is
    // adopted by a receiver that is behind it; the new epoch is persisted before the answer.
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let epoch = c.nodes[leader].epoch();
    let last = c.nodes[leader].log().end_offset_and_epoch();
    let candidate = c.nodes[(leader + 1) % 3].local();
    let pre_vote = Message::VoteRequest(VoteRequest { epoch: LeaderEpoch(epoch.0 + 1), candidate, last, pre_vote: true });
    let actions = c.nodes[leader].step(c.now_ms, Event::Message { from: candidate, msg: pre_vote }).unwrap();
    assert_eq!((c.nodes[leader].role(), c.nodes[leader].epoch()), (RoleKind::Unattached, LeaderEpoch(epoch.0 + 1)));
    let persist = actions
        .iter()
        .position(|a| matches!(a, Action::PersistQuorumState(q) if *q == QuorumState { epoch: LeaderEpoch(epoch.0 + 1), voted_for: None, leader: None }))
        .expect("the new epoch is persisted, with no vote");
    // (The fetches the leader held are answered too: it no longer leads.)
    let answer = actions.iter().position(|a| matches!(a, Action::Send { msg: Message::VoteResponse(_), .. })).unwrap();
    assert!(persist < answer, "{actions:?}");
    assert!(sends(&actions).iter().any(|(_, m)| matches!(m, Message::VoteResponse(r) if r.granted && r.epoch == LeaderEpoch(epoch.0 + 1))));

    // A pre-vote whose last entry is newer than its epoch is malformed and changes nothing.
    let follower = (leader + 2) % 3;
    let before = c.nodes[follower].quorum_state();
    let bad = Message::VoteRequest(VoteRequest {
        epoch: LeaderEpoch(epoch.0 + 5),
        candidate,
        last: OffsetAndEpoch::new(last.offset, LeaderEpoch(epoch.0 + 6)),
        pre_vote: true,
    });
    let actions = c.nodes[follower].step(c.now_ms, Event::Message { from: candidate, msg: bad }).unwrap();
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if r.error == RaftErrorCode::InvalidRequest));
    assert_eq!(c.nodes[follower].quorum_state(), before);
}

/// The scenario of `raft::sim` seed 90 (and of the cluster simulation's seeds 15878, 16770,
/// 35637, 51902 before the fix), played on the pure cores: a follower wins pre-votes from a
/// voter that had not yet heard from the leader, stands in the next epoch, and every one of
/// its Vote requests is lost. The leader keeps its majority and never hears of that epoch.
/// Before the fix the candidate's later pre-votes were refused by the leader and the follower
/// (they have a live leader) and their answers, from the older epoch, were stale to it: it
/// never fetched again. Now its pre-votes carry its epoch, the others step into it, and the
/// quorum elects a leader that all three follow.
#[test]
fn a_candidate_whose_vote_requests_were_all_lost_rejoins_the_quorum() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let epoch = c.nodes[leader].epoch();
    let stranded = (leader + 1) % 3;
    let stranded_id = c.nodes[stranded].local();
    // Cut off for a while, it times out and goes prospective; the others carry on.
    c.cut = Some(stranded_id);
    while c.nodes[stranded].role() != RoleKind::Prospective {
        c.run_until(c.now_ms + 10);
    }
    c.cut = None;
    assert_eq!(c.nodes[leader].role(), RoleKind::Leader);
    // The third voter had just restarted and follows on hearsay: it grants the pre-vote.
    let grant = Message::VoteResponse(VoteResponse {
        error: RaftErrorCode::None,
        epoch,
        leader: None,
        granted: true,
        pre_vote: true,
    });
    let from = c.nodes[(leader + 2) % 3].local();
    let actions = c.step(stranded, Event::Message { from, msg: grant });
    assert_eq!((c.nodes[stranded].role(), c.nodes[stranded].epoch()), (RoleKind::Candidate, LeaderEpoch(epoch.0 + 1)));
    // Every Vote request of the candidacy is lost, and so is the rest of what it sent.
    assert!(sends(&actions).iter().any(|(_, m)| matches!(m, Message::VoteRequest(r) if !r.pre_vote)));
    c.in_flight.retain(|(sender, _, _)| *sender != stranded_id);
    c.run_until(c.now_ms + 20_000);
    let leader = c.leader().expect("a leader");
    let (leader_id, epoch_now) = (c.nodes[leader].local(), c.nodes[leader].epoch());
    assert!(epoch_now > epoch, "the stranded candidate's epoch forced a new election");
    for (i, node) in c.nodes.iter().enumerate() {
        if i != leader {
            assert_eq!((node.role(), node.epoch(), node.leader()), (RoleKind::Follower, epoch_now, Some(leader_id)));
        }
    }
}

#[test]
fn a_higher_epoch_in_any_response_makes_the_leader_step_down() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let epoch = c.nodes[leader].epoch();
    let response = Message::BeginQuorumEpochResponse(EpochResponse {
        error: RaftErrorCode::FencedLeaderEpoch,
        epoch: LeaderEpoch(epoch.0 + 3),
        leader: None,
    });
    let actions = c.step(leader, Event::Message { from: NodeId(9), msg: response });
    assert_eq!(c.nodes[leader].role(), RoleKind::Unattached);
    assert_eq!(c.nodes[leader].epoch(), LeaderEpoch(epoch.0 + 3));
    assert!(actions.iter().any(|a| matches!(a, Action::PersistQuorumState(q) if q.epoch == LeaderEpoch(epoch.0 + 3))));
    assert!(matches!(
        c.nodes[leader].propose(c.now_ms, vec![Bytes::new()]),
        Err(RaftError::NotLeader { .. })
    ));
}

#[test]
fn a_diverging_follower_truncates_to_the_leaders_epoch_end_and_refetches() {
    // The leader (epoch 3) has [1, 1, 3]; the follower wrote [1, 1, 2, 2] in epoch 2.
    let leader_log = log_of(vec![entry(1, b"a"), entry(1, b"b"), entry(3, b"c")]);
    let follower_log = log_of(vec![entry(1, b"a"), entry(1, b"b"), entry(2, b"x"), entry(2, b"y")]);
    let persisted = |leader| QuorumState { epoch: LeaderEpoch(3), voted_for: None, leader: Some(NodeId(leader)) };
    let mut follower = RaftCore::new(config(2, &[1, 2, 3]), follower_log, persisted(1), 2, 0).unwrap();
    let mut leader = RaftCore::new(
        config(1, &[1, 2, 3]),
        leader_log,
        QuorumState { epoch: LeaderEpoch(2), voted_for: None, leader: None },
        1,
        0,
    )
    .unwrap();
    // Make node 1 leader of epoch 3 with node 3's vote.
    let mut now = 0;
    while leader.role() != RoleKind::Prospective {
        now += 100;
        leader.step(now, Event::Tick).unwrap();
    }
    let grant = |pre_vote, epoch| Message::VoteResponse(VoteResponse {
        error: RaftErrorCode::None,
        epoch: LeaderEpoch(epoch),
        leader: None,
        granted: true,
        pre_vote,
    });
    leader.step(now, Event::Message { from: NodeId(3), msg: grant(true, 2) }).unwrap();
    leader.step(now, Event::Message { from: NodeId(3), msg: grant(false, 3) }).unwrap();
    assert_eq!((leader.role(), leader.epoch()), (RoleKind::Leader, LeaderEpoch(3)));

    // Fetch: (offset 4, epoch 2) diverges; the leader's epoch 1 ends at 2.
    let mut messages: VecDeque<(NodeId, Message)> = sends(&follower.step(now, Event::Tick).unwrap()).into();
    let mut truncated = None;
    for _ in 0..10 {
        let Some((to, msg)) = messages.pop_front() else { break };
        let (core, from) = if to == NodeId(1) { (&mut leader, NodeId(2)) } else { (&mut follower, NodeId(1)) };
        if let Message::FetchResponse(r) = &msg {
            if let Some(d) = r.diverging_epoch {
                assert_eq!(d, OffsetAndEpoch::new(Offset(2), LeaderEpoch(1)));
            }
        }
        let actions = core.step(now, Event::Message { from, msg }).unwrap();
        for a in &actions {
            if let Action::LogTruncated { to } = a {
                truncated = Some(*to);
            }
            if let Action::Flush { .. } = a {
                let up_to = follower.log_mut().flush();
                messages.extend(sends(&follower.step(now, Event::Flushed { up_to }).unwrap()));
            }
        }
        messages.extend(sends(&actions));
    }
    assert_eq!(truncated, Some(Offset(2)));
    let leader_entries = leader.log().read(Offset(0), 10);
    assert_eq!(follower.log().read(Offset(0), 10), leader_entries);
}

#[test]
fn the_leader_commits_nothing_before_an_entry_of_its_epoch_is_on_a_majority() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let (first, actions) = c.nodes[leader].propose(c.now_ms, vec![Bytes::from_static(b"p")]).unwrap();
    c.execute(leader, &actions);
    c.deliver_all();
    c.run_until(c.now_ms + 500);
    let hw = c.nodes[leader].high_watermark();
    assert_eq!(hw, Offset(first.0 + 1));
    // Followers stop flushing: the leader's own flushed end alone is not a majority.
    for i in 0..3 {
        if i != leader {
            c.hold_flush[i] = true;
        }
    }
    let (_, actions) = c.nodes[leader].propose(c.now_ms, vec![Bytes::from_static(b"q")]).unwrap();
    c.execute(leader, &actions);
    c.run_until(c.now_ms + 300);
    assert_eq!(c.nodes[leader].high_watermark(), hw, "written on followers is not flushed on followers");
    let follower = (0..3).find(|i| *i != leader).unwrap();
    c.flush(follower);
    c.deliver_all();
    c.run_until(c.now_ms + 300);
    assert_eq!(c.nodes[leader].high_watermark(), Offset(hw.0 + 1));
}

#[test]
fn a_leader_without_fetches_from_a_majority_resigns_and_tells_the_voters() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    c.in_flight.clear();
    let mut now = c.now_ms;
    let mut resigned_at = None;
    for _ in 0..1000 {
        now += 10;
        let actions = c.nodes[leader].step(now, Event::Tick).unwrap();
        if c.nodes[leader].role() == RoleKind::Resigned {
            assert!(sends(&actions).iter().any(|(_, m)| matches!(m, Message::EndQuorumEpochRequest(_))));
            resigned_at = Some(now);
            break;
        }
    }
    let resigned_at = resigned_at.expect("check-quorum fires");
    let fetch_timeout = RaftConfig::FETCH_TIMEOUT_MS_DEFAULT;
    assert!(resigned_at - c.now_ms >= fetch_timeout, "not before the fetch timeout");
    assert!(resigned_at - c.now_ms <= 2 * fetch_timeout);
}

#[test]
fn end_quorum_epoch_lets_the_preferred_successor_stand_at_once() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let old_epoch = c.nodes[leader].epoch();
    let started = c.now_ms;
    c.step(leader, Event::Resign);
    c.deliver_all();
    c.run_until(started + 500);
    let new_leader = c.leader().expect("a successor within 500 ms");
    assert_ne!(new_leader, leader);
    assert!(c.nodes[new_leader].epoch() > old_epoch);
}

#[test]
fn a_follower_behind_the_log_start_fetches_the_snapshot() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let lagging = (0..3).find(|i| *i != leader).unwrap();
    let lagging_id = c.nodes[lagging].local();
    // The lagging follower misses everything from here on.
    let (_, actions) = c.nodes[leader].propose(c.now_ms, (0..10).map(|_| Bytes::from_static(b"r")).collect()).unwrap();
    c.execute(leader, &actions);
    let mut rounds = 0;
    while rounds < 50 {
        rounds += 1;
        c.now_ms += 10;
        let queued: Vec<_> = c.in_flight.drain(..).filter(|(f, t, _)| *f != lagging_id && *t != lagging_id).collect();
        c.in_flight.extend(queued);
        c.deliver_all();
        for i in 0..3 {
            if i != lagging {
                c.step(i, Event::Tick);
            }
        }
    }
    let hw = c.nodes[leader].high_watermark();
    assert!(hw >= Offset(11));
    let id = c.nodes[leader].snapshot_taken(hw, Bytes::from_static(b"the state")).unwrap();
    assert_eq!(c.nodes[leader].log().start_offset(), hw);
    c.in_flight.clear();
    c.run_until(c.now_ms + 3_000);
    let follower = &c.nodes[lagging];
    assert_eq!(follower.log().latest_snapshot(), Some(id));
    assert!(follower.high_watermark() >= hw);
    assert_eq!(follower.log().end_offset(), c.nodes[leader].log().end_offset());
    assert_eq!(follower.log().read_snapshot(id, 0, 100).map(|(b, _)| b), Some(Bytes::from_static(b"the state")));
}

#[test]
fn proposing_to_a_follower_names_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let err = c.nodes[follower].propose(c.now_ms, vec![Bytes::new()]).unwrap_err();
    assert_eq!(err, RaftError::NotLeader { epoch: c.nodes[leader].epoch(), leader: Some(c.nodes[leader].local()) });
}

#[test]
fn a_restarted_leader_comes_back_resigned() {
    let state = QuorumState { epoch: LeaderEpoch(4), voted_for: Some(NodeId(1)), leader: Some(NodeId(1)) };
    let node = RaftCore::new(config(1, &[1, 2, 3]), MemoryLog::new(), state, 1, 0).unwrap();
    assert_eq!(node.role(), RoleKind::Resigned);
    assert_eq!(node.leader(), None);
    assert!(RaftCore::new(config(1, &[]), MemoryLog::new(), state, 1, 0).is_err());
}

#[test]
fn a_candidate_persists_its_own_vote_before_asking_for_votes() {
    let mut node = core(1, &[1, 2, 3], MemoryLog::new());
    let mut now = 0;
    for _ in 0..400 {
        now += 10;
        let actions = node.step(now, Event::Tick).unwrap();
        if node.role() == RoleKind::Prospective {
            // A pre-vote persists nothing.
            assert!(!actions.iter().any(|a| matches!(a, Action::PersistQuorumState(_))), "{actions:?}");
            let grant = Message::VoteResponse(VoteResponse {
                error: RaftErrorCode::None,
                epoch: LeaderEpoch(0),
                leader: None,
                granted: true,
                pre_vote: true,
            });
            let actions = node.step(now, Event::Message { from: NodeId(2), msg: grant }).unwrap();
            assert_eq!(node.role(), RoleKind::Candidate);
            let persist = actions
                .iter()
                .position(|a| matches!(a, Action::PersistQuorumState(q) if q.voted_for == Some(NodeId(1)) && q.epoch == LeaderEpoch(1)))
                .expect("the candidate's vote for itself is persisted");
            let first_request = actions
                .iter()
                .position(|a| matches!(a, Action::Send { msg: Message::VoteRequest(r), .. } if !r.pre_vote))
                .expect("vote requests");
            assert!(persist < first_request, "{actions:?}");
            return;
        }
    }
    panic!("the election timeout never fired");
}

#[test]
fn an_observer_never_votes_and_never_counts_towards_the_high_watermark() {
    let mut observer = core(9, &[1, 2, 3], MemoryLog::new());
    let request = Message::VoteRequest(VoteRequest {
        epoch: LeaderEpoch(1),
        candidate: NodeId(1),
        last: OffsetAndEpoch::ZERO,
        pre_vote: false,
    });
    let actions = observer.step(1, Event::Message { from: NodeId(1), msg: request }).unwrap();
    assert!(matches!(&sends(&actions)[0].1, Message::VoteResponse(r) if !r.granted && r.error == RaftErrorCode::InconsistentVoterSet));
    assert_eq!(observer.quorum_state().voted_for, None);

    let mut c = Cluster::new(&[1, 2, 3], &[9]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let hw = c.nodes[leader].high_watermark();
    for i in 0..3 {
        if i != leader {
            c.hold_flush[i] = true;
        }
    }
    let (_, actions) = c.nodes[leader].propose(c.now_ms, vec![Bytes::from_static(b"o")]).unwrap();
    c.execute(leader, &actions);
    c.run_until(c.now_ms + 500);
    let observer = c.index(NodeId(9));
    assert!(c.nodes[observer].log().end_offset() > hw, "the observer has the entry");
    assert_eq!(c.nodes[leader].high_watermark(), hw, "but it is no vote towards committing it");
}

#[test]
fn a_follower_whose_leader_is_unreachable_stands_within_the_backoff_not_the_fetch_timeout() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let (dead, epoch) = (c.nodes[leader].local(), c.nodes[leader].epoch());
    // kill -9 of the leader: both followers' connections to it are reset at once.
    c.down = Some(dead);
    let killed_ms = c.now_ms;
    for i in (0..3).filter(|i| *i != leader) {
        c.step(i, Event::Unreachable { peer: dead });
        assert_eq!(c.nodes[i].leader(), Some(dead), "it still follows, but no longer vouches");
    }
    let backoff_max = config(1, &[1]).election_backoff_max_ms;
    let fetch_timeout = config(1, &[1]).fetch_timeout_ms;
    while !(0..3).any(|i| i != leader && c.nodes[i].role() == RoleKind::Leader) {
        let states: Vec<_> = c.nodes.iter().map(|n| (n.local(), n.role(), n.epoch(), n.leader(), n.next_deadline_ms())).collect();
        assert!(c.now_ms < killed_ms + fetch_timeout, "no new leader before a fetch timeout: {states:?} at {}", c.now_ms);
        c.run_until(c.now_ms + 10);
    }
    let new_leader = (0..3).find(|i| *i != leader && c.nodes[*i].role() == RoleKind::Leader).unwrap();
    assert!(c.nodes[new_leader].epoch() > epoch);
    // These seeds draw backoffs 1 ms apart: both stand in the same 10 ms step and split the
    // vote (about 1.2 s in all). The dead voter's refused connection counts as a refusal, so
    // the split costs a backoff, not an election timeout.
    assert!(c.now_ms - killed_ms <= 2 * backoff_max, "{} ms", c.now_ms - killed_ms);
}

#[test]
fn an_unreachable_report_about_a_live_leader_disturbs_nothing() {
    // A reset connection to a leader that is alive: the follower stands early, but the other
    // follower still hears the leader and refuses its pre-vote, and the leader answers it:
    // the epoch does not move and the follower returns to the leader.
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let (leader_id, epoch) = (c.nodes[leader].local(), c.nodes[leader].epoch());
    let follower = (leader + 1) % 3;
    c.step(follower, Event::Unreachable { peer: leader_id });
    // Another report during the same outage draws no new, earlier deadline.
    c.step(follower, Event::Unreachable { peer: leader_id });
    c.run_until(c.now_ms + 10_000);
    assert_eq!((c.nodes[leader].role(), c.nodes[leader].epoch()), (RoleKind::Leader, epoch));
    for i in (0..3).filter(|i| *i != leader) {
        assert_eq!((c.nodes[i].role(), c.nodes[i].epoch(), c.nodes[i].leader()), (RoleKind::Follower, epoch, Some(leader_id)));
    }
    // Only the leader it follows counts: a report about another voter changes nothing.
    let other = c.nodes[(leader + 2) % 3].local();
    let before = c.nodes[follower].next_deadline_ms();
    c.step(follower, Event::Unreachable { peer: other });
    assert_eq!(c.nodes[follower].next_deadline_ms(), before);
    assert_eq!(c.nodes[follower].role(), RoleKind::Follower);
}

fn fetch_answers(actions: &[Action], to: NodeId) -> Vec<FetchResponse> {
    sends(actions)
        .into_iter()
        .filter_map(|(t, m)| match m {
            Message::FetchResponse(r) if t == to => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_newer_fetch_supersedes_a_held_one_and_a_resigning_leader_answers_what_it_holds() {
    let mut c = Cluster::new(&[1, 2, 3], &[]);
    c.run_until(3_000);
    let leader = c.leader().unwrap();
    let follower = c.nodes[(leader + 1) % 3].local();
    let epoch = c.nodes[leader].epoch();
    let position = FetchPosition { fetch_offset: c.nodes[leader].log().end_offset(), last_fetched_epoch: epoch };
    let fetch = Message::FetchRequest(FetchRequest { epoch, replica_id: follower, position, max_wait_ms: 500 });
    // The follower's own fetch is held already; a newer one (a restarted process) replaces it.
    for _ in 0..2 {
        let actions = c.nodes[leader].step(c.now_ms, Event::Message { from: follower, msg: fetch.clone() }).unwrap();
        assert!(fetch_answers(&actions, follower).is_empty(), "nothing new: held, the older one dropped");
    }
    // A new entry answers the one held fetch: one answer, not one per request received.
    let (_, actions) = c.nodes[leader].propose(c.now_ms, vec![Bytes::from_static(b"x")]).unwrap();
    let mut answers = fetch_answers(&actions, follower);
    if answers.is_empty() {
        let up_to = c.nodes[leader].log_mut().flush();
        answers = fetch_answers(&c.nodes[leader].step(c.now_ms, Event::Flushed { up_to }).unwrap(), follower);
    }
    assert_eq!(answers.len(), 1, "{answers:?}");

    // Held again, then the leader steps down: the held fetch learns who leads now.
    let position = FetchPosition { fetch_offset: c.nodes[leader].log().end_offset(), last_fetched_epoch: epoch };
    let fetch = Message::FetchRequest(FetchRequest { epoch, replica_id: follower, position, max_wait_ms: 500 });
    c.nodes[leader].step(c.now_ms, Event::Message { from: follower, msg: fetch }).unwrap();
    let response = Message::BeginQuorumEpochResponse(EpochResponse { error: RaftErrorCode::FencedLeaderEpoch, epoch: LeaderEpoch(epoch.0 + 1), leader: None });
    let resigned = c.nodes[leader].step(c.now_ms, Event::Message { from: NodeId(9), msg: response }).unwrap();
    let answers = fetch_answers(&resigned, follower);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!((answers[0].error, answers[0].epoch), (RaftErrorCode::NotLeaderOrFollower, LeaderEpoch(epoch.0 + 1)));
}
