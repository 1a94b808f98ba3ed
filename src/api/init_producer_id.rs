//! InitProducerId for idempotent (non-transactional) producers: a fresh producer id, epoch 0.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Api, errors};

pub fn handle(api: &Api, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    if req.transactional_id.is_some() {
        // Transactions need a transaction coordinator, which this broker does not have yet.
        r.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return r;
    }
    match api.broker.allocate_producer_id() {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(e) => r.error_code = errors::broker_error(&e).code(),
    }
    r
}
