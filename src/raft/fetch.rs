//! Pull-based replication (KIP-595): the leader's answer to Fetch (records, a diverging epoch,
//! or a snapshot id) and the high watermark it advances; the follower's side (truncate on
//! divergence, append, flush, then fetch again); FetchSnapshot in chunks (KIP-630).
//!
//! A voter fetches only from a flushed log end, so every fetch offset the leader counts is
//! durable on that voter; the leader counts its own flushed end, never its written one.

use bytes::BytesMut;

use super::config::PlantedBug;
use super::core::{Action, RaftCore};
use super::log::RaftLog;
use super::message::{
    FetchPosition, FetchRequest, FetchResponse, FetchSnapshotRequest, FetchSnapshotResponse, Message,
    OffsetAndEpoch, RaftErrorCode, SnapshotId,
};
use super::state::{InFlightFetch, ParkedFetch, ReplicaProgress, Role, SnapshotDownload};
use crate::types::NodeId;

/// How a fetch position compares with the leader's log.
enum PositionCheck {
    Valid,
    Diverging(OffsetAndEpoch),
    Snapshot(SnapshotId),
}

impl<L: RaftLog> RaftCore<L> {
    pub(crate) fn fetch_response(&self, request: FetchPosition, error: RaftErrorCode) -> FetchResponse {
        FetchResponse {
            error,
            epoch: self.epoch(),
            leader: self.vouched_leader(),
            high_watermark: Some(self.high_watermark),
            log_start_offset: self.log.start_offset(),
            request,
            entries: Vec::new(),
            diverging_epoch: None,
            snapshot_id: None,
        }
    }

    /// Kafka's `validateOffsetAndEpoch`: the follower's last fetched epoch must end, in the
    /// leader's log, no earlier than its fetch offset.
    fn check_position(&self, position: FetchPosition) -> PositionCheck {
        let start = self.log.start_offset();
        let snapshot = |core: &Self| match core.log.latest_snapshot() {
            Some(id) => PositionCheck::Snapshot(id),
            None => PositionCheck::Diverging(OffsetAndEpoch::ZERO),
        };
        if position.fetch_offset < start {
            return snapshot(self);
        }
        if position.fetch_offset.0 == 0 {
            return PositionCheck::Valid;
        }
        match self.log.end_offset_for_epoch(position.last_fetched_epoch) {
            None => snapshot(self),
            Some(end) if end.epoch == position.last_fetched_epoch && end.offset >= position.fetch_offset => {
                PositionCheck::Valid
            }
            Some(end) if end.offset < start => snapshot(self),
            Some(end) => PositionCheck::Diverging(end),
        }
    }

    pub(crate) fn on_fetch_request(&mut self, from: NodeId, r: FetchRequest) {
        if !matches!(self.role, Role::Leader(_)) || r.epoch != self.epoch() {
            let error = if r.epoch < self.epoch() {
                RaftErrorCode::FencedLeaderEpoch
            } else {
                RaftErrorCode::NotLeaderOrFollower
            };
            let response = self.fetch_response(r.position, error);
            return self.send(from, Message::FetchResponse(response));
        }
        let now = self.now_ms;
        let leader_end = self.log.end_offset();
        let valid = matches!(self.check_position(r.position), PositionCheck::Valid);
        let observers_max = self.config.observers_tracked_max;
        let Role::Leader(state) = &mut self.role else { return };
        // A replica fetches one at a time: a newer fetch supersedes one still held (its
        // process restarted, or it gave up waiting), which is dropped unanswered here; the
        // driver releases whoever still waits for it (see `raft::driver`).
        state.parked.retain(|p| p.from != from);
        state.unacknowledged.remove(&from);
        let progress = if state.voters.contains_key(&from) {
            state.fetched_since_check.insert(from);
            state.voters.get_mut(&from)
        } else if state.observers.contains_key(&from) || state.observers.len() < observers_max {
            Some(state.observers.entry(from).or_insert_with(ReplicaProgress::default))
        } else {
            None
        };
        if let Some(progress) = progress {
            progress.last_fetch_ms = Some(now);
            if valid {
                progress.end_offset = Some(r.position.fetch_offset);
                if r.position.fetch_offset >= leader_end {
                    progress.last_caught_up_ms = Some(now);
                }
            }
        }
        let advanced = valid && self.maybe_advance_high_watermark();
        if valid && !advanced && r.max_wait_ms > 0 && r.position.fetch_offset >= leader_end {
            // Nothing new: hold the fetch until there is, or until its wait runs out.
            let Role::Leader(state) = &mut self.role else { return };
            state.parked.push(ParkedFetch { from, request: r, deadline_ms: now + r.max_wait_ms });
            return;
        }
        let response = self.answer_fetch(r.position);
        self.send(from, Message::FetchResponse(response));
        if advanced {
            self.answer_parked_fetches();
        }
    }

    fn answer_fetch(&self, position: FetchPosition) -> FetchResponse {
        let mut response = self.fetch_response(position, RaftErrorCode::None);
        match self.check_position(position) {
            PositionCheck::Valid => {
                let mut entries = self.log.read(position.fetch_offset, self.config.fetch_max_entries);
                let mut bytes = 0usize;
                let within = entries
                    .iter()
                    .position(|e| {
                        bytes += match &e.data {
                            super::message::EntryData::Records(b) => b.len(),
                            super::message::EntryData::LeaderChange { .. } => 0,
                        };
                        bytes > self.config.fetch_max_bytes
                    })
                    .map_or(entries.len(), |i| i.max(1));
                entries.truncate(within);
                response.entries = entries;
            }
            PositionCheck::Diverging(end) => response.diverging_epoch = Some(end),
            PositionCheck::Snapshot(id) => response.snapshot_id = Some(id),
        }
        response
    }

    /// New entries or a new high watermark: every parked fetch learns of it now.
    pub(crate) fn answer_parked_fetches(&mut self) {
        let Role::Leader(state) = &mut self.role else { return };
        let parked = std::mem::take(&mut state.parked);
        for p in parked {
            let response = self.answer_fetch(p.request.position);
            self.send(p.from, Message::FetchResponse(response));
        }
    }

    pub(crate) fn answer_expired_fetches(&mut self) {
        let now = self.now_ms;
        let Role::Leader(state) = &mut self.role else { return };
        let (expired, kept): (Vec<ParkedFetch>, Vec<ParkedFetch>) =
            std::mem::take(&mut state.parked).into_iter().partition(|p| p.deadline_ms <= now);
        state.parked = kept;
        for p in expired {
            let response = self.answer_fetch(p.request.position);
            self.send(p.from, Message::FetchResponse(response));
        }
    }

    /// The leader's high watermark: the largest offset flushed on a majority of voters, once
    /// that includes this epoch's leader-change entry; it never moves back.
    pub(crate) fn maybe_advance_high_watermark(&mut self) -> bool {
        let local = self.local();
        let own_end =
            if self.planted(PlantedBug::UnflushedLeaderEndCounted) { self.log.end_offset() } else { self.flushed };
        let require_own_epoch = !self.planted(PlantedBug::CommitPriorEpochByCount);
        let Role::Leader(state) = &self.role else { return false };
        let Some(end) = state.majority_end(local, own_end, require_own_epoch) else { return false };
        if end <= self.high_watermark {
            return false;
        }
        assert!(end <= self.log.end_offset(), "the high watermark stays within the leader's log");
        self.high_watermark = end;
        self.out.push(Action::Commit { up_to: end });
        true
    }

    // ---- the follower's side ----

    fn current_position(&self) -> FetchPosition {
        FetchPosition { fetch_offset: self.log.end_offset(), last_fetched_epoch: self.log.last_epoch() }
    }

    /// Sends the next Fetch if none is in flight and the log is flushed to its end.
    pub(crate) fn maybe_fetch(&mut self) {
        let now = self.now_ms;
        let position = self.current_position();
        let flushed_to_end =
            self.flushed >= position.fetch_offset || self.planted(PlantedBug::FollowerFetchesBeforeFlush);
        let (epoch, local) = (self.epoch(), self.local());
        let max_wait_ms = self.config.fetch_max_wait_ms;
        let max_bytes = self.config.snapshot_chunk_bytes;
        let Role::Follower(f) = &mut self.role else { return };
        if now < f.fetch_not_before_ms {
            return;
        }
        let leader = f.leader;
        if let Some(download) = &mut f.snapshot {
            if download.in_flight.is_none() {
                let position = download.data.len() as u64;
                download.in_flight = Some((position, now));
                let request = FetchSnapshotRequest {
                    epoch,
                    replica_id: local,
                    snapshot_id: download.id,
                    position,
                    max_bytes,
                };
                self.send(leader, Message::FetchSnapshotRequest(request));
            }
            return;
        }
        if f.in_flight.is_some() || !flushed_to_end {
            return;
        }
        f.in_flight = Some(InFlightFetch { to: leader, position, sent_ms: now });
        let request = FetchRequest { epoch, replica_id: local, position, max_wait_ms };
        self.send(leader, Message::FetchRequest(request));
    }

    /// An observer without a leader asks a voter; any answer names the leader it knows.
    pub(crate) fn maybe_probe_for_leader(&mut self) {
        let now = self.now_ms;
        let timeout = self.config.request_timeout_ms;
        let Role::Unattached { probe, probe_not_before_ms, .. } = &self.role else { return };
        if now < *probe_not_before_ms || probe.is_some_and(|p| p.sent_ms + timeout > now) {
            return;
        }
        let voters = self.config.voters.len() as u64;
        let to = self.config.voters[self.rng.below(voters) as usize];
        let position = self.current_position();
        let request = FetchRequest { epoch: self.epoch(), replica_id: self.local(), position, max_wait_ms: 0 };
        if let Role::Unattached { probe, .. } = &mut self.role {
            *probe = Some(InFlightFetch { to, position, sent_ms: now });
        }
        self.send(to, Message::FetchRequest(request));
    }

    pub(crate) fn on_fetch_response(&mut self, from: NodeId, r: FetchResponse) {
        let now = self.now_ms;
        let retry = self.config.retry_backoff_ms;
        if let Role::Unattached { probe, probe_not_before_ms, .. } = &mut self.role {
            if probe.is_some_and(|p| p.to == from) {
                *probe = None;
                *probe_not_before_ms = now + retry;
            }
            return;
        }
        let fetch_timeout = self.config.fetch_timeout_ms;
        let epoch = self.epoch();
        let Role::Follower(f) = &mut self.role else { return };
        let expected = f.in_flight.is_some_and(|p| p.to == from && p.position == r.request);
        if f.leader != from || !expected {
            return; // late, duplicated, or from a node we no longer follow
        }
        f.in_flight = None;
        if r.error != RaftErrorCode::None || r.epoch != epoch {
            f.fetch_not_before_ms = now + retry;
            return;
        }
        f.fetch_deadline_ms = now + fetch_timeout;
        f.heard_from_leader = true;
        f.leader_unreachable = false;
        if self.log.end_offset() != r.request.fetch_offset {
            return self.maybe_fetch();
        }
        if let Some(diverging) = r.diverging_epoch {
            self.truncate_to_diverging(diverging);
        } else if let Some(id) = r.snapshot_id {
            if let Role::Follower(f) = &mut self.role {
                f.snapshot = Some(SnapshotDownload { id, data: BytesMut::new(), in_flight: None });
            }
        } else {
            self.append_fetched(r);
        }
        self.maybe_fetch();
    }

    fn truncate_to_diverging(&mut self, diverging: OffsetAndEpoch) {
        let start = self.log.start_offset();
        let local_end = self.log.end_offset_for_epoch(diverging.epoch).map_or(start, |e| e.offset);
        let to = diverging.offset.min(local_end).max(start);
        if to < self.log.end_offset() {
            self.log.truncate_to(to);
            self.flushed = self.flushed.min(to);
            self.out.push(Action::LogTruncated { to });
        }
    }

    fn append_fetched(&mut self, r: FetchResponse) {
        // Epochs in the log never go down, and nothing is newer than the leader's epoch.
        let mut last = self.log.last_epoch();
        for entry in &r.entries {
            if entry.epoch < last || entry.epoch > r.epoch {
                return;
            }
            last = entry.epoch;
        }
        if !r.entries.is_empty() {
            self.log.append(r.entries);
            self.written();
        }
        if let Some(hw) = r.high_watermark {
            let hw = hw.min(self.log.end_offset());
            if hw > self.high_watermark {
                self.high_watermark = hw;
                self.out.push(Action::Commit { up_to: hw });
            }
        }
    }

    // ---- snapshots ----

    pub(crate) fn on_fetch_snapshot_request(&mut self, from: NodeId, r: FetchSnapshotRequest) {
        let mut response = FetchSnapshotResponse {
            error: RaftErrorCode::None,
            epoch: self.epoch(),
            leader: self.vouched_leader(),
            snapshot_id: r.snapshot_id,
            size: 0,
            position: r.position,
            chunk: Default::default(),
        };
        if !matches!(self.role, Role::Leader(_)) || r.epoch != self.epoch() {
            response.error = if r.epoch < self.epoch() {
                RaftErrorCode::FencedLeaderEpoch
            } else {
                RaftErrorCode::NotLeaderOrFollower
            };
        } else {
            let max_bytes = r.max_bytes.min(self.config.snapshot_chunk_bytes);
            match self.log.read_snapshot(r.snapshot_id, r.position, max_bytes) {
                None => response.error = RaftErrorCode::SnapshotNotFound,
                Some((_, size)) if r.position > size => response.error = RaftErrorCode::PositionOutOfRange,
                Some((chunk, size)) => {
                    response.size = size;
                    response.chunk = chunk;
                }
            }
        }
        self.send(from, Message::FetchSnapshotResponse(response));
    }

    pub(crate) fn on_fetch_snapshot_response(&mut self, from: NodeId, r: FetchSnapshotResponse) {
        let now = self.now_ms;
        let retry = self.config.retry_backoff_ms;
        let fetch_timeout = self.config.fetch_timeout_ms;
        let epoch = self.epoch();
        let Role::Follower(f) = &mut self.role else { return };
        let Some(download) = &mut f.snapshot else { return };
        let expected = download.in_flight.is_some_and(|(position, _)| position == r.position)
            && download.id == r.snapshot_id
            && f.leader == from;
        if !expected {
            return;
        }
        download.in_flight = None;
        if r.error != RaftErrorCode::None || r.epoch != epoch {
            if r.error == RaftErrorCode::SnapshotNotFound {
                // The leader moved on to a newer snapshot: ask again with a plain Fetch.
                f.snapshot = None;
            }
            f.fetch_not_before_ms = now + retry;
            return;
        }
        f.fetch_deadline_ms = now + fetch_timeout;
        f.heard_from_leader = true;
        f.leader_unreachable = false;
        if r.chunk.is_empty() && (download.data.len() as u64) < r.size {
            f.fetch_not_before_ms = now + retry;
            return;
        }
        download.data.extend_from_slice(&r.chunk);
        if (download.data.len() as u64) < r.size {
            return self.maybe_fetch();
        }
        let id = download.id;
        let data = std::mem::take(&mut download.data).freeze();
        f.snapshot = None;
        self.install_snapshot(id, data);
        self.maybe_fetch();
    }

    fn install_snapshot(&mut self, id: SnapshotId, data: bytes::Bytes) {
        if id.offset <= self.high_watermark && self.log.end_offset_for_epoch(id.epoch).is_some_and(|e| e.offset >= id.offset && e.epoch == id.epoch) {
            return; // already have everything it covers
        }
        self.log.install_snapshot(id, data);
        self.flushed = id.offset;
        self.out.push(Action::SnapshotLoaded { id });
        // A snapshot holds only committed state.
        if id.offset > self.high_watermark {
            self.high_watermark = id.offset;
            self.out.push(Action::Commit { up_to: id.offset });
        }
    }
}
