//! FindCoordinator: on a single node every group and transactional id is coordinated here.
//! In a cluster a group's coordinator is the leader of its `__consumer_offsets` partition and
//! a transactional id's the leader of its `__transaction_state` partition, as in Kafka (the
//! topic is created on first use; COORDINATOR_NOT_AVAILABLE while the partition has no
//! leader).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Api, str_bytes};

/// Key types: consumer group, transactional id, share group.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Kafka answers `Errors.message()`: the error's default text, and on success its name,
/// `NONE` (not null).
fn error_message(error: Option<ResponseError>) -> StrBytes {
    match error {
        None => StrBytes::from_static_str("NONE"),
        Some(e) => str_bytes(&e.to_string()),
    }
}

/// The node coordinating `key` of `key_type`, as (id, host, port).
fn coordinator(api: &Api, key_type: i8, key: &str) -> Result<(BrokerId, String, i32), ResponseError> {
    let advertised = api.broker.advertised();
    let local = (BrokerId(api.broker.node_id), advertised.host, advertised.port);
    if api.broker.cluster().is_none() {
        return Ok(local);
    }
    let (topic, partition) = if key_type == KEY_TYPE_GROUP {
        if let Err(e) = api.groups.ensure_offsets_topic() {
            tracing::debug!(error = %e, "the group metadata topic is not available yet");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        (crate::group::OFFSETS_TOPIC, api.groups.partition_for(key))
    } else {
        api.txns.ensure_state_topic()?;
        (crate::txn::TRANSACTION_STATE_TOPIC, api.txns.partition_for(key))
    };
    let image = api.broker.image();
    let leader = image
        .topic(topic)
        .and_then(|t| t.partition(partition))
        .and_then(|r| r.leader)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    super::metadata::listed_brokers(api, false)
        .into_iter()
        .find(|b| b.id == leader)
        .map(|b| (BrokerId(b.id.0), b.host, b.port))
        .ok_or(ResponseError::CoordinatorNotAvailable)
}

pub fn handle(api: &Api, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut r = FindCoordinatorResponse::default();
    let known_type = matches!(req.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION);
    if version <= 3 {
        let found = if known_type { coordinator(api, req.key_type, req.key.as_str()) } else { Err(ResponseError::InvalidRequest) };
        let error = match found {
            Ok((node, host, port)) => {
                r.node_id = node;
                r.host = str_bytes(&host);
                r.port = port;
                None
            }
            Err(e) => {
                r.error_code = e.code();
                r.node_id = BrokerId(-1);
                Some(e)
            }
        };
        if version >= 1 {
            r.error_message = Some(error_message(error));
        }
        return r;
    }
    r.coordinators = req
        .coordinator_keys
        .into_iter()
        .map(|key: StrBytes| {
            let mut c = Coordinator::default();
            c.key = key;
            let found = if known_type { coordinator(api, req.key_type, c.key.as_str()) } else { Err(ResponseError::InvalidRequest) };
            let error = match found {
                Ok((node, host, port)) => {
                    c.node_id = node;
                    c.host = str_bytes(&host);
                    c.port = port;
                    None
                }
                Err(e) => {
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                    c.error_code = e.code();
                    Some(e)
                }
            };
            c.error_message = Some(error_message(error));
            c
        })
        .collect();
    r
}
