//! The faults: crashes and restarts, network partitions and their healing, paused
//! processes, clock jumps, and the end of the chaos (everything healed and restarted).

use super::{BROKERS, CONTROLLER, Sim, SimEvent};

impl Sim {
    pub(super) fn end_chaos(&mut self) {
        self.log_line(|| "chaos ends: heal, resume, restart; wait for an ack and a whole ISR".into());
        self.chaos_on = false;
        self.heal();
        for b in 0..BROKERS {
            if self.brokers[b].paused_until.is_some() {
                self.resume(b);
            }
            if !self.brokers[b].is_up() {
                self.start_broker(b);
            }
        }
        self.liveness_marker = Some(self.next_batch_id);
    }

    pub(super) fn crash_someone(&mut self) {
        let Some(interval) = self.chaos.crash_interval_ms.filter(|_| self.chaos_on) else { return };
        // Half the crashes hit the leader: that is where the rules are tested.
        let leader = self.controller.registration().and_then(|r| r.leader).map(|l| (l.0 - 1) as usize);
        let b = match leader {
            Some(l) if l < BROKERS && self.rng.below(2) == 0 => l,
            _ => self.rng.below(BROKERS as u64) as usize,
        };
        self.crash(b);
        let restart = self.range(self.chaos.restart_after_ms);
        self.schedule(self.now_ms + restart, SimEvent::Restart { b });
        let at = self.now_ms + self.range(interval);
        self.schedule(at, SimEvent::CrashSomeone);
    }

    pub(super) fn partition(&mut self) {
        let Some(interval) = self.chaos.partition_interval_ms.filter(|_| self.chaos_on) else { return };
        self.heal();
        let n = BROKERS + 1;
        let kind = self.rng.below(5);
        let victim = self.rng.below(BROKERS as u64) as usize;
        let other = (victim + 1 + self.rng.below(BROKERS as u64 - 1) as usize) % BROKERS;
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    continue;
                }
                self.blocked[a][b] = match kind {
                    // A broker cut off from everyone.
                    0 => a == victim || b == victim,
                    // A broker cut off from the controller only: it is fenced, yet its
                    // followers still reach it (a zombie leader).
                    1 => (a == victim && b == CONTROLLER) || (b == victim && a == CONTROLLER),
                    // Two brokers cannot reach each other.
                    2 => (a == victim && b == other) || (a == other && b == victim),
                    // The victim can send but not receive.
                    3 => b == victim,
                    // The victim can receive but not send.
                    _ => a == victim,
                };
            }
        }
        let g = self.partition_generation;
        self.log_line(|| format!("partition kind {kind} victim {} other {} (gen {g})", victim + 1, other + 1));
        let heal_at = self.now_ms + self.range((interval.0 / 2, interval.1));
        self.schedule(heal_at, SimEvent::Heal { generation: g });
        let next = self.now_ms + self.range(interval);
        self.schedule(next, SimEvent::Partition);
    }

    pub(super) fn heal(&mut self) {
        self.partition_generation += 1;
        for row in &mut self.blocked {
            row.iter_mut().for_each(|b| *b = false);
        }
    }

    pub(super) fn pause_someone(&mut self) {
        let Some(interval) = self.chaos.pause_interval_ms.filter(|_| self.chaos_on) else { return };
        let b = self.rng.below(BROKERS as u64) as usize;
        if self.brokers[b].is_up() && self.brokers[b].paused_until.is_none() {
            let until = self.now_ms + self.range(self.chaos.pause_ms);
            self.brokers[b].paused_until = Some(until);
            self.log_line(|| format!("broker {} pauses until {until}", b + 1));
            self.schedule(until, SimEvent::Resume { b });
        }
        let at = self.now_ms + self.range(interval);
        self.schedule(at, SimEvent::PauseSomeone);
    }

    pub(super) fn resume(&mut self, b: usize) {
        if self.brokers[b].paused_until.take().is_some() {
            self.log_line(|| format!("broker {} resumes", b + 1));
        }
    }

    /// A broker's clock jumps ahead (an NTP step, a VM resumed): its followers look lagging.
    pub(super) fn clock_jump(&mut self) {
        let Some(interval) = self.chaos.clock_jump_interval_ms.filter(|_| self.chaos_on) else { return };
        let b = self.rng.below(BROKERS as u64) as usize;
        let jump = self.range((50, 2 * self.chaos.replica_lag_time_max_ms));
        self.brokers[b].clock_skew_ms += jump;
        self.log_line(|| format!("broker {}'s clock jumps {jump} ms ahead", b + 1));
        let at = self.now_ms + self.range(interval);
        self.schedule(at, SimEvent::ClockJump);
    }
}
