//! The controller's side of broker membership: BrokerRegistration, BrokerHeartbeat and
//! AllocateProducerIds, answered by the active controller (the rules are in
//! [`crate::metadata::cluster_control`]); any other node answers NOT_CONTROLLER, and the
//! broker tries the leader it learns from the quorum.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse,
    BrokerRegistrationRequest, BrokerRegistrationResponse, ProducerId,
};

use super::{Api, errors};
use crate::cluster::Cluster;
use crate::metadata::cluster_control::{self, Heartbeat, MembershipError, Registration};
use crate::metadata::records::Endpoint;
use crate::metadata::store::StoreError;
use crate::types::{BrokerEpoch, NodeId};

/// Refusals and storage failures of one membership change.
enum Failure {
    Refused(MembershipError),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

fn code(f: &Failure) -> ResponseError {
    match f {
        Failure::Store(s) => errors::store_error(s),
        Failure::Refused(m) => match m {
            MembershipError::DuplicateRegistration => ResponseError::DuplicateBrokerRegistration,
            MembershipError::NotRegistered => ResponseError::BrokerIdNotRegistered,
            MembershipError::StaleEpoch { .. } => ResponseError::StaleBrokerEpoch,
            MembershipError::InvalidId(_) => ResponseError::InvalidRequest,
            MembershipError::InconsistentClusterId { .. } => ResponseError::InconsistentClusterId,
        },
    }
}

/// The cluster this node is an active controller of, or the error to answer.
fn active(api: &Api) -> Result<&Cluster, ResponseError> {
    match api.broker.cluster() {
        Some(c) if c.is_controller && c.is_active_controller() => Ok(c),
        _ => Err(ResponseError::NotController),
    }
}

/// BrokerRegistration of `version`: from v3 the request's `previous_broker_epoch` says the
/// broker shut down cleanly (KIP-966), as Kafka's controller reads it.
pub fn broker_registration(api: &Api, version: i16, req: BrokerRegistrationRequest) -> BrokerRegistrationResponse {
    let mut r = BrokerRegistrationResponse::default();
    r.broker_epoch = -1;
    let cluster = match active(api) {
        Ok(c) => c,
        Err(e) => {
            r.error_code = e.code();
            return r;
        }
    };
    let reg = Registration {
        id: NodeId(req.broker_id.0),
        cluster_id: req.cluster_id.to_string(),
        incarnation_id: req.incarnation_id,
        endpoints: req
            .listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
                security_protocol: security_protocol_name(l.security_protocol).to_string(),
            })
            .collect(),
        rack: req.rack.as_ref().map(|r| r.to_string()),
        previous_broker_epoch: (version >= 3 && req.previous_broker_epoch >= 0).then_some(BrokerEpoch(req.previous_broker_epoch)),
    };
    let now = api.broker.clock.now_ms();
    let out = api.broker.metadata_store().update(|image| {
        let sessions = match cluster.sessions.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        cluster_control::register(image, &crate::metadata::partition_change::TopicDefaults::from_config(&api.broker.effective_config()), &sessions, &reg, now, cluster.session_timeout_ms).map_err(Failure::Refused)
    });
    match out {
        Ok((_, epoch)) => {
            if let Ok(mut s) = cluster.sessions.lock() {
                s.touch(reg.id, epoch, now);
            }
            tracing::info!(broker = reg.id.0, epoch = epoch.0, "broker registered");
            r.broker_epoch = epoch.0;
        }
        Err(f) => r.error_code = code(&f).code(),
    }
    r
}

pub fn broker_heartbeat(api: &Api, peer: Option<std::net::SocketAddr>, req: BrokerHeartbeatRequest) -> BrokerHeartbeatResponse {
    let mut r = BrokerHeartbeatResponse::default();
    r.is_fenced = true;
    let cluster = match active(api) {
        Ok(c) => c,
        Err(e) => {
            r.error_code = e.code();
            return r;
        }
    };
    let hb = Heartbeat {
        id: NodeId(req.broker_id.0),
        epoch: BrokerEpoch(req.broker_epoch),
        metadata_offset: req.current_metadata_offset,
        want_fence: req.want_fence,
        want_shut_down: req.want_shut_down,
    };
    let now = api.broker.clock.now_ms();
    // A broker that heartbeats is alive, whether or not what it asks can be written.
    let registered = api.broker.image().brokers.get(&hb.id).is_some_and(|b| b.epoch == hb.epoch);
    if registered && let Ok(mut s) = cluster.sessions.lock() {
        s.touch(hb.id, hb.epoch, now);
    }
    if registered && let Some(peer) = peer {
        cluster.heartbeat_connection(peer, hb.id, hb.epoch);
    }
    match api.broker.metadata_store().update(|image| cluster_control::heartbeat(image, &crate::metadata::partition_change::TopicDefaults::from_config(&api.broker.effective_config()), &hb).map_err(Failure::Refused)) {
        Ok((_, reply)) => {
            r.is_caught_up = reply.is_caught_up;
            r.is_fenced = reply.is_fenced;
            r.should_shut_down = reply.should_shut_down;
        }
        Err(f) => r.error_code = code(&f).code(),
    }
    r
}

pub fn allocate_producer_ids(api: &Api, req: AllocateProducerIdsRequest) -> AllocateProducerIdsResponse {
    let mut r = AllocateProducerIdsResponse::default();
    if let Err(e) = active(api) {
        r.error_code = e.code();
        return r;
    }
    let broker = NodeId(req.broker_id.0);
    let out = api.broker.metadata_store().update(|image| {
        match image.brokers.get(&broker) {
            Some(b) if b.epoch.0 == req.broker_epoch => {}
            Some(_) => return Err(Failure::Refused(MembershipError::StaleEpoch { got: req.broker_epoch, expected: -1 })),
            None => return Err(Failure::Refused(MembershipError::NotRegistered)),
        }
        let (start, record) = cluster_control::allocate_producer_ids(image);
        Ok((vec![record], start))
    });
    match out {
        Ok((_, start)) => {
            r.producer_id_start = ProducerId(start);
            r.producer_id_len = cluster_control::PRODUCER_ID_BLOCK_LEN;
        }
        Err(f) => {
            r.error_code = code(&f).code();
            r.producer_id_start = ProducerId(-1);
        }
    }
    r
}

/// Kafka's SecurityProtocol ids.
fn security_protocol_name(id: i16) -> &'static str {
    match id {
        1 => "SSL",
        2 => "SASL_PLAINTEXT",
        3 => "SASL_SSL",
        _ => "PLAINTEXT",
    }
}
