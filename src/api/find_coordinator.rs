//! FindCoordinator: on a single node every group and transactional id is coordinated here.
//! Served now because librdkafka enables LZ4 only when FindCoordinator v0 is listed; the
//! group and transaction APIs themselves are separate work.

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

pub fn handle(api: &Api, version: i16, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let advertised = api.broker.advertised();
    let node = BrokerId(api.broker.node_id);
    let mut r = FindCoordinatorResponse::default();
    let known_type = matches!(req.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION);
    if version <= 3 {
        let error = if known_type {
            r.node_id = node;
            r.host = str_bytes(&advertised.host);
            r.port = advertised.port;
            None
        } else {
            r.error_code = ResponseError::InvalidRequest.code();
            r.node_id = BrokerId(-1);
            Some(ResponseError::InvalidRequest)
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
            let error = if known_type {
                c.node_id = node;
                c.host = str_bytes(&advertised.host);
                c.port = advertised.port;
                None
            } else {
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = ResponseError::InvalidRequest.code();
                Some(ResponseError::InvalidRequest)
            };
            c.error_message = Some(error_message(error));
            c
        })
        .collect();
    r
}
