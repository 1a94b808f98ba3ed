//! The simulation's controller: one never-crashing active controller whose state is a
//! `MetadataImage`, changed only by the records [`crate::metadata::cluster_control`] computes
//! (registration, heartbeats, fencing on session expiry with leader election from the ISR
//! or the ELR, AlterPartition), each change applied as one entry; ELR is on and
//! `min.insync.replicas` is 2. The quorum under it is simulated
//! elsewhere (`metadata::cluster_sim`); here it is one process that brokers can be cut off
//! from. It sends its image to every broker after each change and every
//! `METADATA_REPUBLISH_MS` (brokers keep the newest they received).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{BrokerId, alter_partition_response};
use uuid::Uuid;

use super::{BROKERS, CONTROLLER, CONTROLLER_TICK_MS, METADATA_REPUBLISH_MS, Msg, REQUEST_TIMEOUT_MS, Sim, SimEvent, TOPIC};
use crate::metadata::MetadataImage;
use crate::metadata::cluster_control::{self, AlterIsrItem, BrokerSessions, Heartbeat, MembershipError, Registration};
use crate::metadata::delta::MetadataDelta;
use crate::metadata::partition_change::TopicDefaults;
use crate::metadata::records::MetadataRecord;
use crate::metadata::registration::PartitionRegistration;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, PartitionId};

pub(super) struct Controller {
    image: Arc<MetadataImage>,
    /// The controller's topic defaults: `min.insync.replicas` 2.
    defaults: TopicDefaults,
    sessions: BrokerSessions,
    session_timeout_ms: u64,
    last_publish_ms: u64,
    /// The newest AlterPartition processed from each broker (by correlation id, which grows
    /// with send time). See `alter_partition`.
    last_alter_corr: [u64; BROKERS],
}

impl Controller {
    /// The topic exists from the start, without a leader: the first broker to be unfenced is
    /// elected (`cluster_control::heartbeat`).
    pub(super) fn new(topic_id: Uuid, session_timeout_ms: u64) -> Self {
        let replicas: Vec<NodeId> = (1..=BROKERS as i32).map(NodeId).collect();
        // ELR on (KIP-966), as a new cluster bootstraps it.
        let mut records = crate::metadata::features::bootstrap_records();
        records.extend([
            MetadataRecord::Topic {
                name: TOPIC.into(),
                id: topic_id,
                partitions: 1,
                replication_factor: BROKERS as i16,
                configs: Default::default(),
            },
            MetadataRecord::Partition {
                topic_id,
                partition: PartitionId(0),
                isr: replicas.clone(),
                leader: None,
                replicas,
                elr: vec![],
                // A topic is created led (by its first replica), so with ELR on it always has
                // a last known leader once it loses its leader; this leaderless start stands in
                // for that (all logs are empty: any replica is a safe first leader).
                last_known_elr: vec![NodeId(1)],
                adding_replicas: vec![],
                removing_replicas: vec![],
                leader_epoch: LeaderEpoch(0),
                partition_epoch: PartitionEpoch(0),
            },
        ]);
        let base = MetadataImage { cluster_id: "replsim".into(), ..MetadataImage::default() };
        let mut c = Controller {
            image: Arc::new(base),
            defaults: TopicDefaults { min_insync_replicas: super::MIN_INSYNC_REPLICAS as i32, ..TopicDefaults::default() },
            sessions: BrokerSessions::default(),
            session_timeout_ms,
            last_publish_ms: 0,
            last_alter_corr: [0; BROKERS],
        };
        c.apply(&records);
        c
    }

    pub(super) fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }

    pub(super) fn registration(&self) -> Option<&PartitionRegistration> {
        self.image.topic(TOPIC)?.partition(0)
    }

    /// One change, one entry (as `MetadataStore::propose` writes it).
    fn apply(&mut self, records: &[MetadataRecord]) -> bool {
        if records.is_empty() {
            return false;
        }
        let mut delta = MetadataDelta::new(self.image.clone());
        delta.replay_change(records);
        self.image = Arc::new(delta.apply());
        true
    }
}

impl Sim {
    /// The controller applies one change; counts what it did to the ELR.
    fn apply_at_controller(&mut self, records: &[MetadataRecord]) -> bool {
        let before = self.controller.registration().cloned();
        let changed = self.controller.apply(records);
        if let (Some(b), Some(a)) = (before, self.controller.registration()) {
            self.stats.elr_entries += a.elr.iter().filter(|r| !b.elr.contains(r)).count() as u64;
            if a.leader != b.leader && a.leader.is_some_and(|l| b.elr.contains(&l)) {
                self.stats.elr_elections += 1;
            }
        }
        changed
    }

    pub(super) fn controller_tick(&mut self) {
        let now = self.now_ms as i64;
        let timeout = self.controller.session_timeout_ms as i64;
        let expired = self.controller.sessions.expired(&self.controller.image, now, timeout);
        let mut changed = false;
        if !expired.is_empty() {
            let records = cluster_control::fence(&self.controller.image, &self.controller.defaults, &expired);
            self.log_line(|| format!("controller fences {expired:?} (session expired)"));
            changed = self.apply_at_controller(&records);
        }
        if changed || self.now_ms >= self.controller.last_publish_ms + METADATA_REPUBLISH_MS {
            self.publish();
        }
        self.schedule(self.now_ms + CONTROLLER_TICK_MS, SimEvent::ControllerTick);
    }

    /// Sends the image to every broker.
    fn publish(&mut self) {
        self.controller.last_publish_ms = self.now_ms;
        if self.tracing() {
            let line = self.controller.registration().map(|r| {
                format!("controller image @{}: leader {:?} epoch {:?} isr {:?} pe {:?}", self.controller.image.offset, r.leader, r.leader_epoch, r.isr, r.partition_epoch)
            });
            if let Some(line) = line {
                self.log_line(|| line);
            }
        }
        for b in 0..BROKERS {
            let image = self.controller.image.clone();
            self.send(CONTROLLER, b, Msg::Metadata(image));
        }
    }

    pub(super) fn controller_receive(&mut self, from: usize, msg: Msg) {
        let id = NodeId(from as i32 + 1);
        let now = self.now_ms as i64;
        let timeout = self.controller.session_timeout_ms as i64;
        let changed = match msg {
            Msg::Register { incarnation_id } => {
                let req = Registration { id, cluster_id: "replsim".into(), incarnation_id, endpoints: vec![], rack: None, previous_broker_epoch: None };
                match cluster_control::register(&self.controller.image, &self.controller.defaults, &self.controller.sessions, &req, now, timeout) {
                    Ok((records, epoch)) => {
                        self.log_line(|| format!("controller registers broker {} with epoch {}", id.0, epoch.0));
                        self.controller.sessions.touch(id, epoch, now);
                        let changed = self.apply_at_controller(&records);
                        self.send(CONTROLLER, from, Msg::Registered { incarnation_id, epoch: Some(epoch) });
                        changed
                    }
                    Err(_) => {
                        self.send(CONTROLLER, from, Msg::Registered { incarnation_id, epoch: None });
                        false
                    }
                }
            }
            Msg::Heartbeat { epoch, metadata_offset } => {
                let hb = Heartbeat { id, epoch, metadata_offset, want_fence: false, want_shut_down: false };
                match cluster_control::heartbeat(&self.controller.image, &self.controller.defaults, &hb) {
                    Ok((records, _)) => {
                        self.controller.sessions.touch(id, epoch, now);
                        self.apply_at_controller(&records)
                    }
                    Err(MembershipError::StaleEpoch { .. } | MembershipError::NotRegistered) => {
                        self.send(CONTROLLER, from, Msg::HeartbeatStale { epoch });
                        false
                    }
                    Err(_) => false,
                }
            }
            Msg::Alter { corr, broker_epoch, item } => self.alter_partition(from, id, corr, broker_epoch, item),
            _ => false,
        };
        if changed {
            self.publish();
        }
    }

    /// `api::alter_partition::handle` for one partition: the rules, then the answer coded as
    /// the broker receives it.
    ///
    /// A request sent before one already processed from the same broker is dropped: requests
    /// travel over TCP, and one that was overtaken by its retry was on a connection the
    /// timeout closed, so it is either processed before the retry or never. (Without this
    /// rule the simulation finds that a late original, applied after its retry was refused as
    /// INELIGIBLE_REPLICA and the leader reverted, re-adds a member the leader no longer
    /// waits for; the production controller orders requests per connection only.)
    fn alter_partition(&mut self, from: usize, id: NodeId, corr: u64, broker_epoch: BrokerEpoch, item: AlterIsrItem) -> bool {
        if corr < self.controller.last_alter_corr[from] {
            return false;
        }
        self.controller.last_alter_corr[from] = corr;
        let outcome = cluster_control::alter_partition(&self.controller.image, &self.controller.defaults, id, broker_epoch, std::slice::from_ref(&item));
        let (records, results) = match outcome {
            Ok(out) => out,
            Err(_) => {
                let error_code = ResponseError::StaleBrokerEpoch.code();
                self.send(CONTROLLER, from, Msg::AlterAnswer { corr, error_code, data: None });
                return false;
            }
        };
        let changed = self.apply_at_controller(&records);
        let mut data = alter_partition_response::PartitionData::default();
        data.partition_index = 0;
        match results.into_iter().next() {
            Some(Ok(reg)) => {
                data.leader_id = BrokerId(reg.leader.map_or(-1, |l| l.0));
                data.leader_epoch = reg.leader_epoch.0;
                data.partition_epoch = reg.partition_epoch.0;
                data.isr = reg.isr.iter().map(|n| BrokerId(n.0)).collect();
            }
            Some(Err(e)) => data.error_code = crate::api::alter_partition::partition_code(e, 3).code(),
            None => data.error_code = ResponseError::UnknownServerError.code(),
        }
        let (isr, code) = (item.new_isr.iter().map(|(n, _)| n.0).collect::<Vec<_>>(), data.error_code);
        self.log_line(|| format!("controller: AlterPartition from {} isr {isr:?} at pe {:?}: error {code}", id.0, item.partition_epoch));
        // The change is applied at once (the image moves on); only the answer is late.
        let slow = self.chaos_on && self.chance(self.chaos.slow_commit);
        let after = if slow { self.range((REQUEST_TIMEOUT_MS / 2, 3 * REQUEST_TIMEOUT_MS)) } else { 0 };
        self.send_after(CONTROLLER, from, Msg::AlterAnswer { corr, error_code: 0, data: Some(data) }, after);
        changed
    }
}
