//! InitProducerId: a fresh producer id at epoch 0 for an idempotent producer; for a
//! transactional id, the transaction coordinator's answer (epoch bumps, fencing, KIP-360).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{Api, errors};
use crate::txn::state::{NO_EPOCH, NO_PRODUCER_ID, ProducerIdAndEpoch};

/// First version whose clients know PRODUCER_FENCED (KIP-588); older ones get
/// INVALID_PRODUCER_EPOCH, as Kafka answers them.
const PRODUCER_FENCED_MIN_VERSION: i16 = 4;

pub async fn handle(api: &Api, version: i16, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    r.producer_id = ProducerId(-1);
    r.producer_epoch = -1;
    let Some(transactional_id) = req.transactional_id else {
        match api.broker.allocate_producer_id() {
            Ok(id) => {
                r.producer_id = ProducerId(id);
                r.producer_epoch = 0;
            }
            Err(e) => r.error_code = errors::broker_error(&e).code(),
        }
        return r;
    };
    let expected = match (req.producer_id.0, req.producer_epoch) {
        (NO_PRODUCER_ID, NO_EPOCH) => None,
        (NO_PRODUCER_ID, _) | (_, NO_EPOCH) => {
            r.error_code = ResponseError::InvalidRequest.code();
            return r;
        }
        (producer_id, epoch) => Some(ProducerIdAndEpoch { producer_id, epoch }),
    };
    let result = match api.txns.init_producer_id(transactional_id.as_str(), req.transaction_timeout_ms, expected) {
        Ok(answer) => super::txn_replicated(api, transactional_id.as_str()).await.map(|()| answer),
        // Fencing an open transaction wrote its abort: CONCURRENT_TRANSACTIONS only once
        // that is replicated, as every answer.
        Err(ResponseError::ConcurrentTransactions) => {
            super::txn_replicated(api, transactional_id.as_str()).await.and(Err(ResponseError::ConcurrentTransactions))
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((id, epoch)) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = epoch;
        }
        Err(e) => r.error_code = errors::fenced_for_version(e, version, PRODUCER_FENCED_MIN_VERSION).code(),
    }
    r
}
