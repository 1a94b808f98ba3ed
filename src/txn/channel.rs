//! The markers the coordinator still has to get written, queued by destination broker: the
//! bookkeeping of Kafka's `TransactionMarkerChannelManager` and the rules of its
//! `TransactionMarkerRequestCompletionHandler`, without I/O or clocks (time comes in as an
//! argument), so that unit tests drive exactly what the sender runs ([`super::sender`]).
//!
//! One [`Entry`] per transactional id whose decision is durable: the partitions still
//! waiting for their marker, each routed afresh on every round to the leader the metadata
//! image names ([`Route`]). A round ([`MarkerQueue::requests`]) makes at most one request per
//! destination, batching the markers of every transaction headed there; a destination with a
//! request in flight is skipped until it answers. Each partition's answer is classified as
//! Kafka does ([`classify`]): written, retried (with a growing backoff that a new leader cuts
//! short), dropped (the partition needs no marker any more) or the whole entry abandoned (a
//! newer producer or coordinator epoch has taken over). Once no partition is left the entry
//! asks for its Complete state to be written; only when that is done does it leave the queue.
//!
//! Invariants: a partition is in flight to at most one destination; a destination has at
//! most one request in flight; answers are matched to the entry by [`Ticket`], so an answer
//! for an entry that was replaced or removed meanwhile changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kafka_protocol::ResponseError;

use super::markers::TxnMarker;
use crate::types::{NodeId, PartitionId, TopicPartition};

/// The first wait before a failed partition is tried again at the same leader (Kafka's
/// `retry.backoff.ms` default); it doubles with every failure up to [`RETRY_BACKOFF_MAX_MS`].
pub const RETRY_BACKOFF_MS: i64 = 100;
/// The longest wait between two attempts at the same leader (Kafka's
/// `reconnect.backoff.max.ms` default).
pub const RETRY_BACKOFF_MAX_MS: i64 = 1_000;

/// One marker's answer: each partition with its error (`None`: written).
pub type PartitionAnswers = Vec<(TopicPartition, Option<ResponseError>)>;

/// Where a partition's marker goes now, as the metadata image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Leader(NodeId),
    /// The partition exists but has no leader: wait for one.
    NoLeader,
    /// The partition does not exist (its topic was deleted): it needs no marker.
    Gone,
}

/// One attempt at completing one transaction; a newer attempt for the same id replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// Which transaction an entry completes: the coordinator checks it is still the current one
/// before it applies an answer or writes the Complete state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnKey {
    pub transactional_id: String,
    /// The `__transaction_state` partition of the id (entries leave with its leadership).
    pub txn_partition: PartitionId,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
}

/// What happened to one partition's marker, from the answer's error code (Kafka's
/// `TransactionMarkerRequestCompletionHandler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// Tried again, at whichever leader the image names then.
    Retry,
    /// The partition needs no marker (the producer could not have written there).
    Dropped,
    /// The producer or the coordinator has moved on: stop completing this transaction.
    Abandon,
}

/// Kafka's classification of a WriteTxnMarkers partition error. Errors Kafka treats as
/// impossible (it throws) are retried here, with the backoff.
pub fn classify(error: Option<ResponseError>) -> Outcome {
    use ResponseError as E;
    match error {
        None => Outcome::Written,
        Some(E::InvalidProducerEpoch | E::TransactionCoordinatorFenced) => Outcome::Abandon,
        Some(E::UnsupportedForMessageFormat | E::UnsupportedVersion) => Outcome::Dropped,
        Some(_) => Outcome::Retry,
    }
}

#[derive(Debug, Clone, Default)]
struct Progress {
    in_flight: Option<NodeId>,
    /// The leader of the last failed attempt and when to try it again.
    failed_at: Option<NodeId>,
    retry_at_ms: i64,
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completion {
    /// Partitions are left.
    Waiting,
    /// Due at this time.
    Due(i64),
    /// Handed to the coordinator; its answer is awaited.
    InProgress,
}

#[derive(Debug)]
struct Entry {
    key: TxnKey,
    ticket: Ticket,
    /// The decision is replicated: markers may go out.
    released: bool,
    partitions: BTreeMap<TopicPartition, Progress>,
    completion: Completion,
}

/// One WriteTxnMarkers request: every marker now headed for `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRequest {
    pub destination: NodeId,
    pub markers: Vec<(Ticket, TxnMarker)>,
}

/// Partitions whose marker is no longer awaited (written, or not needed), by transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acknowledged {
    pub by_txn: Vec<(TxnKey, Vec<TopicPartition>)>,
    /// Transactions given up ([`Outcome::Abandon`]).
    pub abandoned: Vec<TxnKey>,
}

impl Acknowledged {
    fn add(&mut self, key: &TxnKey, tp: TopicPartition) {
        match self.by_txn.iter_mut().find(|(k, _)| k == key) {
            Some((_, tps)) => tps.push(tp),
            None => self.by_txn.push((key.clone(), vec![tp])),
        }
    }
}

/// The queue of transactions whose markers are being written.
#[derive(Debug, Default)]
pub struct MarkerQueue {
    entries: HashMap<String, Entry>,
    busy: HashSet<NodeId>,
    next_ticket: u64,
}

impl MarkerQueue {
    /// Queues the markers of `key`'s transaction for `partitions`; replaces an entry of the
    /// same id for another transaction or coordinator epoch. `None` when this very
    /// transaction is queued already (nothing changes).
    pub fn add(&mut self, key: TxnKey, partitions: BTreeSet<TopicPartition>) -> Option<Ticket> {
        if self.entries.get(&key.transactional_id).is_some_and(|e| e.key == key) {
            return None;
        }
        self.next_ticket += 1;
        let ticket = Ticket(self.next_ticket);
        let entry = Entry {
            key: key.clone(),
            ticket,
            released: false,
            partitions: partitions.into_iter().map(|tp| (tp, Progress::default())).collect(),
            completion: Completion::Waiting,
        };
        self.entries.insert(key.transactional_id, entry);
        Some(ticket)
    }

    fn entry_mut(&mut self, transactional_id: &str, ticket: Ticket) -> Option<&mut Entry> {
        self.entries.get_mut(transactional_id).filter(|e| e.ticket == ticket)
    }

    /// The decision of the entry is replicated: its markers may be sent.
    pub fn release(&mut self, transactional_id: &str, ticket: Ticket, now_ms: i64) -> bool {
        let Some(e) = self.entry_mut(transactional_id, ticket) else { return false };
        e.released = true;
        if e.partitions.is_empty() {
            e.completion = Completion::Due(now_ms);
        }
        true
    }

    /// Drops the entry (whatever is in flight for it is ignored when it answers).
    pub fn remove(&mut self, transactional_id: &str, ticket: Ticket) -> Option<TxnKey> {
        if self.entries.get(transactional_id).is_some_and(|e| e.ticket == ticket) {
            return self.entries.remove(transactional_id).map(|e| e.key);
        }
        None
    }

    /// Drops every entry of a `__transaction_state` partition (its leadership left this
    /// node: the next coordinator completes them). Returns how many.
    pub fn remove_txn_partition(&mut self, partition: PartitionId) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.key.txn_partition != partition);
        before - self.entries.len()
    }

    /// The ticket of the entry queued for `transactional_id`.
    pub fn ticket_of(&self, transactional_id: &str) -> Option<Ticket> {
        self.entries.get(transactional_id).map(|e| e.ticket)
    }

    pub fn is_queued(&self, transactional_id: &str) -> bool {
        self.entries.contains_key(transactional_id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// This round's requests: for every released entry, each partition neither in flight
    /// nor backing off (a partition whose leader changed since it failed goes at once),
    /// grouped by its leader; destinations with a request in flight wait. Partitions that
    /// are gone are dropped and returned.
    pub fn requests(&mut self, now_ms: i64, route: impl Fn(&TopicPartition) -> Route) -> (Vec<MarkerRequest>, Acknowledged) {
        let mut by_destination: BTreeMap<NodeId, Vec<(Ticket, TxnMarker)>> = BTreeMap::new();
        let mut gone = Acknowledged::default();
        for e in self.entries.values_mut().filter(|e| e.released) {
            let mut headed: BTreeMap<NodeId, Vec<TopicPartition>> = BTreeMap::new();
            let mut dropped = Vec::new();
            for (tp, p) in e.partitions.iter_mut().filter(|(_, p)| p.in_flight.is_none()) {
                match route(tp) {
                    Route::Gone => dropped.push(tp.clone()),
                    Route::NoLeader => {}
                    Route::Leader(d) if self.busy.contains(&d) => {}
                    Route::Leader(d) => {
                        if p.failed_at == Some(d) && now_ms < p.retry_at_ms {
                            continue;
                        }
                        p.in_flight = Some(d);
                        headed.entry(d).or_default().push(tp.clone());
                    }
                }
            }
            for tp in dropped {
                e.partitions.remove(&tp);
                gone.add(&e.key, tp);
            }
            if e.partitions.is_empty() && e.completion == Completion::Waiting {
                e.completion = Completion::Due(now_ms);
            }
            for (d, partitions) in headed {
                let marker = TxnMarker {
                    producer_id: e.key.producer_id,
                    producer_epoch: e.key.producer_epoch,
                    coordinator_epoch: e.key.coordinator_epoch,
                    commit: e.key.commit,
                    partitions,
                };
                by_destination.entry(d).or_default().push((e.ticket, marker));
            }
        }
        let requests: Vec<MarkerRequest> = by_destination.into_iter().map(|(destination, markers)| MarkerRequest { destination, markers }).collect();
        for r in &requests {
            self.busy.insert(r.destination);
        }
        (requests, gone)
    }

    /// `destination` answered: each marker's partitions with their error codes, in any
    /// order. Partitions the answer does not mention are retried.
    pub fn on_response(&mut self, destination: NodeId, answers: &[(Ticket, PartitionAnswers)], now_ms: i64) -> Acknowledged {
        self.busy.remove(&destination);
        let mut out = Acknowledged::default();
        let tickets: HashMap<Ticket, &PartitionAnswers> = answers.iter().map(|(t, r)| (*t, r)).collect();
        let mut abandoned = Vec::new();
        for e in self.entries.values_mut() {
            let answered = tickets.get(&e.ticket);
            let mut done = Vec::new();
            let mut abandon = false;
            for (tp, p) in e.partitions.iter_mut().filter(|(_, p)| p.in_flight == Some(destination)) {
                p.in_flight = None;
                let error = answered.and_then(|r| r.iter().find(|(t, _)| t == tp)).map(|(_, err)| *err);
                let outcome = match error {
                    Some(err) => classify(err),
                    None => Outcome::Retry,
                };
                match outcome {
                    Outcome::Written | Outcome::Dropped => done.push(tp.clone()),
                    Outcome::Retry => p.backoff(destination, now_ms),
                    Outcome::Abandon => abandon = true,
                }
            }
            if abandon {
                abandoned.push(e.key.transactional_id.clone());
                continue;
            }
            for tp in done {
                e.partitions.remove(&tp);
                out.add(&e.key, tp);
            }
            if e.released && e.partitions.is_empty() && e.completion == Completion::Waiting {
                e.completion = Completion::Due(now_ms);
            }
        }
        for id in abandoned {
            if let Some(e) = self.entries.remove(&id) {
                out.abandoned.push(e.key);
            }
        }
        out
    }

    /// The request to `destination` got no answer (connection refused or lost, timeout):
    /// everything in it is retried.
    pub fn on_undelivered(&mut self, destination: NodeId, now_ms: i64) {
        self.busy.remove(&destination);
        for e in self.entries.values_mut() {
            for p in e.partitions.values_mut().filter(|p| p.in_flight == Some(destination)) {
                p.in_flight = None;
                p.backoff(destination, now_ms);
            }
        }
    }

    /// Entries whose every marker is acknowledged and whose Complete state is due now:
    /// handed out once, until [`MarkerQueue::completed`] or [`MarkerQueue::completion_failed`].
    pub fn due_completions(&mut self, now_ms: i64) -> Vec<(Ticket, TxnKey)> {
        let mut out = Vec::new();
        for e in self.entries.values_mut() {
            if let Completion::Due(at) = e.completion
                && at <= now_ms
            {
                e.completion = Completion::InProgress;
                out.push((e.ticket, e.key.clone()));
            }
        }
        out
    }

    /// The Complete state is written (or no longer to be written): the entry leaves.
    pub fn completed(&mut self, transactional_id: &str, ticket: Ticket) {
        self.remove(transactional_id, ticket);
    }

    /// The Complete state could not be written yet: tried again after the backoff.
    pub fn completion_failed(&mut self, transactional_id: &str, ticket: Ticket, now_ms: i64) {
        if let Some(e) = self.entry_mut(transactional_id, ticket) {
            e.completion = Completion::Due(now_ms + RETRY_BACKOFF_MS);
        }
    }

    /// When the next backoff ends (a partition to retry, a completion to write), if any.
    pub fn next_due_ms(&self) -> Option<i64> {
        let mut next: Option<i64> = None;
        let mut consider = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
        for e in self.entries.values() {
            if let Completion::Due(at) = e.completion {
                consider(at);
            }
            if !e.released {
                continue;
            }
            for p in e.partitions.values().filter(|p| p.in_flight.is_none() && p.failed_at.is_some()) {
                consider(p.retry_at_ms);
            }
        }
        next
    }
}

impl Progress {
    fn backoff(&mut self, at: NodeId, now_ms: i64) {
        if self.failed_at != Some(at) {
            self.failures = 0;
        }
        let shift = self.failures.min(10);
        self.retry_at_ms = now_ms + (RETRY_BACKOFF_MS << shift).min(RETRY_BACKOFF_MAX_MS);
        self.failures = self.failures.saturating_add(1);
        self.failed_at = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, pid: i64) -> TxnKey {
        TxnKey { transactional_id: id.into(), txn_partition: PartitionId(0), producer_id: pid, producer_epoch: 0, coordinator_epoch: 3, commit: true }
    }

    fn tps(ps: &[i32]) -> BTreeSet<TopicPartition> {
        ps.iter().map(|p| TopicPartition::new("t", *p)).collect()
    }

    /// t-p is led by broker p (partition 9 has no leader, 8 is gone).
    fn route(tp: &TopicPartition) -> Route {
        match tp.partition.0 {
            9 => Route::NoLeader,
            8 => Route::Gone,
            p => Route::Leader(NodeId(p)),
        }
    }

    fn ok(tps: &[TopicPartition]) -> PartitionAnswers {
        tps.iter().map(|tp| (tp.clone(), None)).collect()
    }

    #[test]
    fn nothing_goes_out_before_the_decision_is_replicated() {
        let mut q = MarkerQueue::default();
        let t = q.add(key("a", 1), tps(&[1])).unwrap();
        assert!(q.requests(0, route).0.is_empty());
        assert!(q.release("a", t, 0));
        assert_eq!(q.requests(0, route).0.len(), 1);
    }

    #[test]
    fn one_request_per_destination_batches_every_transaction() {
        let mut q = MarkerQueue::default();
        let a = q.add(key("a", 1), tps(&[1, 2])).unwrap();
        let b = q.add(key("b", 2), tps(&[1])).unwrap();
        q.release("a", a, 0);
        q.release("b", b, 0);
        let (reqs, _) = q.requests(0, route);
        assert_eq!(reqs.iter().map(|r| (r.destination, r.markers.len())).collect::<Vec<_>>(), vec![(NodeId(1), 2), (NodeId(2), 1)]);
        // Busy destinations get nothing more until they answer.
        assert!(q.requests(0, route).0.is_empty());
    }

    #[test]
    fn the_complete_state_is_due_once_every_partition_answered() {
        let mut q = MarkerQueue::default();
        let a = q.add(key("a", 1), tps(&[1, 2])).unwrap();
        q.release("a", a, 0);
        let (reqs, _) = q.requests(0, route);
        let first = &reqs[0];
        let acked = q.on_response(first.destination, &[(a, ok(&first.markers[0].1.partitions))], 1);
        assert_eq!(acked.by_txn, vec![(key("a", 1), vec![TopicPartition::new("t", 1)])]);
        assert!(q.due_completions(1).is_empty(), "t-2 is still in flight");
        let acked = q.on_response(NodeId(2), &[(a, ok(&[TopicPartition::new("t", 2)]))], 2);
        assert_eq!(acked.by_txn.len(), 1);
        assert_eq!(q.due_completions(2), vec![(a, key("a", 1))]);
        assert!(q.due_completions(3).is_empty(), "handed out once");
        q.completion_failed("a", a, 3);
        assert!(q.due_completions(3).is_empty());
        assert_eq!(q.due_completions(3 + RETRY_BACKOFF_MS).len(), 1);
        q.completed("a", a);
        assert!(q.is_empty());
    }

    #[test]
    fn a_failed_partition_backs_off_unless_its_leader_changes() {
        let mut q = MarkerQueue::default();
        let a = q.add(key("a", 1), tps(&[1])).unwrap();
        q.release("a", a, 0);
        q.requests(0, route);
        let tp = TopicPartition::new("t", 1);
        q.on_response(NodeId(1), &[(a, vec![(tp.clone(), Some(ResponseError::NotLeaderOrFollower))])], 10);
        assert!(q.requests(10, route).0.is_empty(), "backing off");
        assert_eq!(q.next_due_ms(), Some(10 + RETRY_BACKOFF_MS));
        // The image names a new leader: sent there at once.
        let moved = |_: &TopicPartition| Route::Leader(NodeId(3));
        let (reqs, _) = q.requests(11, moved);
        assert_eq!(reqs[0].destination, NodeId(3));
        // Undelivered: backoff grows at the same leader.
        q.on_undelivered(NodeId(3), 20);
        assert!(q.requests(20 + RETRY_BACKOFF_MS - 1, moved).0.is_empty());
        assert_eq!(q.requests(20 + RETRY_BACKOFF_MS, moved).0.len(), 1);
        q.on_undelivered(NodeId(3), 200);
        assert!(q.requests(200 + RETRY_BACKOFF_MS, moved).0.is_empty(), "second failure there: twice the wait");
        assert_eq!(q.requests(200 + 2 * RETRY_BACKOFF_MS, moved).0.len(), 1);
    }

    #[test]
    fn gone_partitions_are_dropped_and_leaderless_ones_wait() {
        let mut q = MarkerQueue::default();
        let a = q.add(key("a", 1), tps(&[8, 9])).unwrap();
        q.release("a", a, 0);
        let (reqs, gone) = q.requests(0, route);
        assert!(reqs.is_empty());
        assert_eq!(gone.by_txn, vec![(key("a", 1), vec![TopicPartition::new("t", 8)])]);
        assert!(q.due_completions(0).is_empty(), "t-9 waits for a leader");
        let (reqs, _) = q.requests(1, |_| Route::Leader(NodeId(2)));
        assert_eq!(reqs.len(), 1);
    }

    #[test]
    fn a_fenced_epoch_abandons_the_transaction_and_stale_answers_change_nothing() {
        let mut q = MarkerQueue::default();
        let a = q.add(key("a", 1), tps(&[1, 2])).unwrap();
        q.release("a", a, 0);
        q.requests(0, route);
        let acked = q.on_response(NodeId(1), &[(a, vec![(TopicPartition::new("t", 1), Some(ResponseError::TransactionCoordinatorFenced))])], 1);
        assert_eq!(acked.abandoned, vec![key("a", 1)]);
        assert!(!q.is_queued("a"));
        // The answer for t-2 arrives after the entry left (or was replaced): ignored.
        let b = q.add(key("a", 1), tps(&[2])).unwrap();
        let acked = q.on_response(NodeId(2), &[(a, ok(&[TopicPartition::new("t", 2)]))], 2);
        assert!(acked.by_txn.is_empty());
        q.release("a", b, 2);
        assert_eq!(q.requests(2, route).0.len(), 1, "destination 2 answered: free again");
    }

    #[test]
    fn the_same_transaction_is_queued_once_and_a_new_epoch_replaces_it() {
        let mut q = MarkerQueue::default();
        assert!(q.add(key("a", 1), tps(&[1])).is_some());
        assert!(q.add(key("a", 1), tps(&[1])).is_none());
        let mut newer = key("a", 1);
        newer.coordinator_epoch = 4;
        assert!(q.add(newer, tps(&[1])).is_some());
        assert_eq!(q.len(), 1);
        assert_eq!(q.remove_txn_partition(PartitionId(0)), 1);
    }

    #[test]
    fn kafka_classification_of_marker_errors() {
        use ResponseError as E;
        assert_eq!(classify(None), Outcome::Written);
        for e in [E::NotLeaderOrFollower, E::UnknownTopicOrPartition, E::NotEnoughReplicas, E::NotEnoughReplicasAfterAppend, E::RequestTimedOut, E::KafkaStorageError] {
            assert_eq!(classify(Some(e)), Outcome::Retry, "{e:?}");
        }
        assert_eq!(classify(Some(E::InvalidProducerEpoch)), Outcome::Abandon);
        assert_eq!(classify(Some(E::TransactionCoordinatorFenced)), Outcome::Abandon);
        assert_eq!(classify(Some(E::UnsupportedForMessageFormat)), Outcome::Dropped);
    }
}
