//! Producers and consumers. A producer sends one acks=all batch at a time to the broker it
//! believes leads, and retries it (the same records; duplicates are allowed, it is not
//! idempotent) on an error or when no answer comes, following the leader hint of the
//! answer (KIP-951). A consumer reads from the broker the controller names as leader (as a
//! client's metadata would, eventually), from its position up to that broker's high
//! watermark.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{BROKERS, CLIENT_TIMEOUT_MS, CONTROLLER, Msg, Sim, SimEvent};
use crate::record::{BatchBuilder, BatchIter};
use crate::types::{LeaderEpoch, NodeId};

/// Records per batch at most; a record's token is `batch_id * RECORDS_PER_BATCH_MAX + index`.
pub(super) const RECORDS_PER_BATCH_MAX: u64 = 4;

/// A batch being sent.
struct InFlight {
    corr: u64,
    batch_id: u64,
    records: Bytes,
}

#[derive(Default)]
pub(super) struct Producer {
    /// The broker index it sends to.
    leader_guess: usize,
    /// The batch it is sending (kept across retries), and the attempt's correlation id.
    batch: Option<(u64, Bytes)>,
    in_flight: Option<InFlight>,
}

#[derive(Default)]
pub(super) struct Consumer {
    position: i64,
}

/// A batch whose base timestamp is its id, so that a log's tokens can be read from headers.
fn batch(batch_id: u64, count: usize) -> Bytes {
    Bytes::from(BatchBuilder::new(0).timestamps(batch_id as i64).records(count, 8).build())
}

/// The token of each offset a set of stored batches holds.
pub(super) fn tokens(bytes: &[u8]) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    for (header, _) in BatchIter::new(bytes) {
        for o in header.base_offset..=header.last_offset() {
            let index = (o - header.base_offset) as u64;
            out.push((o, header.base_timestamp as u64 * RECORDS_PER_BATCH_MAX + index));
        }
    }
    out
}

impl Sim {
    fn client_index(p: usize) -> usize {
        CONTROLLER + 1 + p
    }

    pub(super) fn produce(&mut self, p: usize) {
        if self.producers[p].in_flight.is_some() {
            return;
        }
        if self.producers[p].batch.is_none() {
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            let count = 1 + self.rng.below(RECORDS_PER_BATCH_MAX - 1) as usize;
            self.producers[p].batch = Some((id, batch(id, count)));
        }
        let Some((batch_id, records)) = self.producers[p].batch.clone() else { return };
        let corr = self.corr();
        let to = self.producers[p].leader_guess;
        self.producers[p].in_flight = Some(InFlight { corr, batch_id, records: records.clone() });
        self.send(Self::client_index(p), to, Msg::Produce { corr, batch_id, records });
        self.schedule(self.now_ms + CLIENT_TIMEOUT_MS, SimEvent::ProducerTimeout { p, corr });
    }

    pub(super) fn producer_timeout(&mut self, p: usize, corr: u64) {
        if self.producers[p].in_flight.as_ref().is_some_and(|f| f.corr == corr) {
            self.producers[p].in_flight = None;
            self.producers[p].leader_guess = self.rng.below(BROKERS as u64) as usize;
            self.produce(p);
        }
    }

    pub(super) fn client_receive(&mut self, p: usize, from: usize, msg: Msg) {
        let Msg::ProduceAnswer { corr, result, leader_hint } = msg else { return };
        let Some(f) = self.producers[p].in_flight.take_if(|f| f.corr == corr) else { return };
        match result {
            Ok((base, epoch)) => {
                self.producers[p].batch = None;
                self.acked(f.batch_id, &f.records, base, epoch, from);
                let at = self.now_ms + self.range(self.chaos.produce_interval_ms);
                self.schedule(at, SimEvent::Produce { p });
            }
            Err(e) => {
                self.producers[p].leader_guess = match leader_hint {
                    Some(NodeId(id)) if id >= 1 && (id as usize) <= BROKERS && e == ResponseError::NotLeaderOrFollower => id as usize - 1,
                    _ if e == ResponseError::NotLeaderOrFollower => self.rng.below(BROKERS as u64) as usize,
                    _ => self.producers[p].leader_guess,
                };
                let at = self.now_ms + self.range((10, 100));
                self.schedule(at, SimEvent::Produce { p });
            }
        }
    }

    fn acked(&mut self, batch_id: u64, records: &Bytes, base: i64, epoch: LeaderEpoch, from: usize) {
        let count = BatchIter::new(records).map(|(h, _)| h.records_count.max(0) as u64).sum::<u64>();
        self.log_line(|| format!("batch {batch_id} acked by broker {} at {base} in epoch {}", from + 1, epoch.0));
        for k in 0..count {
            let offset = base + k as i64;
            let token = batch_id * RECORDS_PER_BATCH_MAX + k;
            self.check_ack(offset, token, epoch);
        }
        if self.liveness_marker.is_some_and(|m| batch_id >= m) {
            self.live = true;
        }
    }

    /// A consumer's fetch (`api::fetch::read_one`, read_uncommitted): from the leader only,
    /// whole batches below its high watermark.
    pub(super) fn consume(&mut self, c: usize) {
        let at = self.now_ms + self.range((20, 300));
        self.schedule(at, SimEvent::Consume { c });
        let leader = self.controller.registration().and_then(|r| r.leader);
        let b = match leader {
            Some(NodeId(id)) if id >= 1 && (id as usize) <= BROKERS && self.rng.below(5) != 0 => id as usize - 1,
            _ => self.rng.below(BROKERS as u64) as usize,
        };
        if self.brokers[b].paused_until.is_some() {
            return;
        }
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        if !partition.is_leader() {
            return;
        }
        let position = self.consumers[c].position;
        match partition.read(crate::types::Offset(position), 1_000, true) {
            Ok(read) => {
                let got = tokens(&read.records);
                let next = got.last().map_or(position, |(o, _)| o + 1);
                self.check_consumed(b, position, read.high_watermark.0, &got);
                self.consumers[c].position = next;
            }
            Err(e) => self.check_consume_error(b, position, &e),
        }
    }
}
