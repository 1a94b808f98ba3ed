//! EndTxn: commit or abort the producer's transaction. v0-4 speak transactions version 1; v5
//! is version 2 (KIP-890 part 2): the coordinator bumps the epoch with every decision (a new
//! producer id when it is used up) and the answer carries the producer id and epoch the
//! producer goes on with.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::{Api, errors};
use crate::txn::TxnVersion;
use crate::txn::state::{NO_EPOCH, NO_PRODUCER_ID};

const PRODUCER_FENCED_MIN_VERSION: i16 = 2;

pub async fn handle(api: &Api, version: i16, req: EndTxnRequest) -> EndTxnResponse {
    let mut r = EndTxnResponse::default();
    r.producer_id = ProducerId(NO_PRODUCER_ID);
    r.producer_epoch = NO_EPOCH;
    let id = req.transactional_id.as_str();
    let result = api.txns.end_txn(id, req.producer_id.0, req.producer_epoch, req.committed, TxnVersion::of_end_txn(version));
    let result = match result {
        Ok(answer) => super::txn_replicated(api, id).await.map(|()| answer),
        Err(e) => Err(e),
    };
    match result {
        Ok((producer_id, epoch)) => {
            // The decision is durable; give the markers a moment (see END_TXN_MARKERS_WAIT).
            api.txns.wait_markers(id, crate::txn::END_TXN_MARKERS_WAIT).await;
            r.producer_id = ProducerId(producer_id);
            r.producer_epoch = epoch;
        }
        Err(e) => r.error_code = errors::fenced_for_version(e, version, PRODUCER_FENCED_MIN_VERSION).code(),
    }
    r
}
