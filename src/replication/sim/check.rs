//! The invariants, checked after every event against what the brokers' real logs hold.
//!
//! Each broker's log is mirrored as one token per offset (the batch id and the record's
//! index, read back from the log's batch headers); the mirror follows the log's end after
//! every event (appends and truncations happen at batch boundaries, one per event) and is
//! re-read whole after a restart. A crashed broker's mirror is what its directory holds.
//! Checks are incremental: each broker remembers how much of its log is known to agree with
//! the committed history, and how many acknowledgements its leadership was checked against.

use super::{BROKERS, MIN_INSYNC_REPLICAS, Sim};
use crate::partition::PartitionError;
use crate::types::LeaderEpoch;

/// The largest read when refreshing a mirror.
const MIRROR_READ_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(super) struct Checker {
    mirrors: [Vec<u64>; BROKERS],
    /// How much of each mirror is known to equal the committed history.
    agreed: [usize; BROKERS],
    /// The tokens below the largest high watermark any leader reached.
    committed: Vec<u64>,
    /// Acknowledged records: offset, token, the epoch of the leader that acknowledged.
    acked: Vec<(i64, u64, LeaderEpoch)>,
    /// A leader's (incarnation, epoch) and how many acknowledgements it was checked against.
    leader_checked: [Option<(u32, LeaderEpoch, usize)>; BROKERS],
    /// A leader's (incarnation, epoch) and the largest high watermark it had in it.
    leader_hw: [Option<(u32, LeaderEpoch, i64)>; BROKERS],
}

impl Checker {
    pub(super) fn committed_len(&self) -> usize {
        self.committed.len()
    }

    pub(super) fn acked_len(&self) -> usize {
        self.acked.len()
    }

    /// The broker restarted: its log is read again from the start.
    pub(super) fn reopened(&mut self, b: usize) {
        self.mirrors[b].clear();
        self.agreed[b] = 0;
        self.leader_checked[b] = None;
        self.leader_hw[b] = None;
    }

    /// The first offset below `upto` where `b`'s mirror differs from the committed history.
    fn disagreement(&mut self, b: usize, upto: usize) -> Option<usize> {
        let upto = upto.min(self.committed.len()).min(self.mirrors[b].len());
        while self.agreed[b] < upto {
            let o = self.agreed[b];
            if self.mirrors[b][o] != self.committed[o] {
                return Some(o);
            }
            self.agreed[b] += 1;
        }
        None
    }
}

impl Sim {
    /// Brings broker `b`'s mirror to its log's end.
    pub(super) fn refresh_mirror(&mut self, b: usize) {
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        let end = partition.log_end_offset().0;
        if partition.log_start_offset().0 != 0 {
            return self.fail(format!("broker {}'s log starts at {}: nothing here deletes records", b + 1, partition.log_start_offset().0));
        }
        let c = &mut self.check;
        let len = c.mirrors[b].len() as i64;
        if end < len {
            c.mirrors[b].truncate(end as usize);
            c.agreed[b] = c.agreed[b].min(end as usize);
            c.leader_checked[b] = None;
            return;
        }
        while (self.check.mirrors[b].len() as i64) < end {
            let from = self.check.mirrors[b].len() as i64;
            let read = match partition.read_to_log_end(crate::types::Offset(from), MIRROR_READ_BYTES, true) {
                Ok(r) => r,
                Err(e) => return self.fail(format!("broker {} cannot read its log at {from}: {e}", b + 1)),
            };
            let tokens = super::clients::tokens(&read.records);
            if tokens.is_empty() {
                return self.fail(format!("broker {}'s log reads nothing at {from} below its end {end}", b + 1));
            }
            for (o, t) in tokens {
                let m = &mut self.check.mirrors[b];
                if o < m.len() as i64 {
                    continue;
                }
                if o != m.len() as i64 {
                    let len = m.len();
                    return self.fail(format!("broker {}'s log jumps from {len} to {o}", b + 1));
                }
                m.push(t);
            }
        }
    }

    /// An acknowledgement arrived: the record must be committed at its offset.
    pub(super) fn check_ack(&mut self, offset: i64, token: u64, epoch: LeaderEpoch) {
        let o = offset as usize;
        if self.check.committed.get(o) != Some(&token) {
            let has = self.check.committed.get(o).copied();
            return self.fail(format!(
                "record {token} acknowledged at {offset} in epoch {} is not committed there (committed {} offsets, holds {has:?})",
                epoch.0,
                self.check.committed.len()
            ));
        }
        self.check.acked.push((offset, token, epoch));
    }

    pub(super) fn check_consumed(&mut self, b: usize, position: i64, high_watermark: i64, got: &[(i64, u64)]) {
        for (o, t) in got {
            if *o >= high_watermark {
                return self.fail(format!("a consumer of broker {} at {position} got offset {o} at or past its high watermark {high_watermark}", b + 1));
            }
            if self.check.committed.get(*o as usize) != Some(t) {
                let has = self.check.committed.get(*o as usize).copied();
                return self.fail(format!("a consumer of broker {} got {t} at {o}; the committed history has {has:?}", b + 1));
            }
        }
    }

    pub(super) fn check_consume_error(&mut self, b: usize, position: i64, e: &PartitionError) {
        let Some(partition) = &self.brokers[b].partition else { return };
        if position <= partition.high_watermark().0 {
            let hw = partition.high_watermark().0;
            self.fail(format!("a consumer of broker {} at {position} (below its high watermark {hw}) failed: {e}", b + 1));
        }
    }

    pub(super) fn check_invariants(&mut self) {
        for b in 0..BROKERS {
            self.refresh_mirror(b);
            if self.violation.is_some() {
                return;
            }
            self.check_broker(b);
        }
        self.check_controller_isr();
    }

    fn check_broker(&mut self, b: usize) {
        let Some(partition) = self.brokers[b].partition.clone() else { return };
        let (hw, end) = (partition.high_watermark().0, partition.log_end_offset().0);
        if hw > end {
            return self.fail(format!("broker {}'s high watermark {hw} is past its log end {end}", b + 1));
        }
        if partition.is_leader() {
            let key = (self.brokers[b].incarnation, partition.leader_epoch());
            if let Some((i, e, last)) = self.check.leader_hw[b]
                && (i, e) == key
                && hw < last
            {
                return self.fail(format!("leader {}'s high watermark went back from {last} to {hw} in epoch {}", b + 1, e.0));
            }
            self.check.leader_hw[b] = Some((key.0, key.1, hw));
            self.extend_committed(b, hw);
            self.check_leader_holds_acks(b, key);
        }
        if let Some(o) = self.check.disagreement(b, hw.max(0) as usize) {
            let (has, committed) = (self.check.mirrors[b][o], self.check.committed[o]);
            self.fail(format!("broker {} holds {has} at {o}, below its high watermark {hw}; the committed history has {committed}", b + 1));
        }
    }

    /// A leader's high watermark passed the committed history's end: the new offsets join it,
    /// each held by at least `min.insync.replicas` logs.
    fn extend_committed(&mut self, b: usize, hw: i64) {
        let hw = hw.max(0) as usize;
        while self.check.committed.len() < hw {
            let o = self.check.committed.len();
            let Some(&token) = self.check.mirrors[b].get(o) else {
                return self.fail(format!("leader {}'s high watermark {hw} is past its log", b + 1));
            };
            let holders = self.check.mirrors.iter().filter(|m| m.get(o) == Some(&token)).count();
            if holders < MIN_INSYNC_REPLICAS {
                return self.fail(format!("leader {} committed offset {o} held by {holders} replica(s) only", b + 1));
            }
            self.check.committed.push(token);
        }
    }

    /// Every record acknowledged in this leader's epoch or an earlier one is in its log.
    fn check_leader_holds_acks(&mut self, b: usize, key: (u32, LeaderEpoch)) {
        let from = match self.check.leader_checked[b] {
            Some((i, e, n)) if (i, e) == key => n,
            _ => 0,
        };
        for i in from..self.check.acked.len() {
            let (offset, token, epoch) = self.check.acked[i];
            if epoch > key.1 {
                continue;
            }
            if self.check.mirrors[b].get(offset as usize) != Some(&token) {
                let has = self.check.mirrors[b].get(offset as usize).copied();
                return self.fail(format!(
                    "leader {} of epoch {} lacks record {token} acknowledged at {offset} in epoch {} (holds {has:?})",
                    b + 1,
                    key.1.0,
                    epoch.0
                ));
            }
        }
        self.check.leader_checked[b] = Some((key.0, key.1, self.check.acked.len()));
    }

    /// Every leader-eligible member of the controller's ISR and ELR holds the committed
    /// history (an ELR member left the ISR below min ISR, when the high watermark froze).
    fn check_controller_isr(&mut self) {
        let Some(reg) = self.controller.registration().cloned() else { return };
        let image = self.controller.image().clone();
        let committed = self.check.committed.len();
        for id in reg.isr.iter().chain(&reg.elr) {
            let b = (id.0 - 1) as usize;
            let eligible = image.brokers.get(id).is_some_and(|r| !r.fenced && !r.in_controlled_shutdown);
            if !eligible || b >= BROKERS {
                continue;
            }
            if let Some(o) = self.check.disagreement(b, committed) {
                return self.fail(format!("ISR/ELR member {} holds another record at committed offset {o}", b + 1));
            }
            let len = self.check.mirrors[b].len();
            if len < committed {
                return self.fail(format!(
                    "ISR/ELR member {} (epoch {:?}, isr {:?}, elr {:?}) lacks committed offsets {len}..{committed}",
                    b + 1,
                    reg.leader_epoch,
                    reg.isr,
                    reg.elr
                ));
            }
        }
    }
}
