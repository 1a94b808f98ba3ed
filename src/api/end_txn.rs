//! EndTxn: commit or abort the producer's transaction (transactions version 1: v0-4; v5 is
//! the KIP-890 epoch-bumping form, not served).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::{Api, errors};

const PRODUCER_FENCED_MIN_VERSION: i16 = 2;

pub async fn handle(api: &Api, version: i16, req: EndTxnRequest) -> EndTxnResponse {
    let mut r = EndTxnResponse::default();
    r.producer_id = kafka_protocol::messages::ProducerId(-1);
    r.producer_epoch = -1;
    let result = api.txns.end_txn(req.transactional_id.as_str(), req.producer_id.0, req.producer_epoch, req.committed);
    let result = match result {
        Ok(()) => super::txn_replicated(api, req.transactional_id.as_str()).await,
        Err(e) => Err(e),
    };
    if result.is_ok() {
        // The decision is durable; give the markers a moment (see END_TXN_MARKERS_WAIT).
        api.txns.wait_markers(req.transactional_id.as_str(), crate::txn::END_TXN_MARKERS_WAIT).await;
    }
    r.error_code = result.err().map_or(0, |e| errors::fenced_for_version(e, version, PRODUCER_FENCED_MIN_VERSION).code());
    r
}
