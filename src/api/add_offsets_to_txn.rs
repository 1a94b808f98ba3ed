//! AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction, so
//! its TxnOffsetCommit offsets get the transaction's marker.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::{Api, errors};
use crate::group::OFFSETS_TOPIC;
use crate::types::TopicPartition;

const PRODUCER_FENCED_MIN_VERSION: i16 = 2;

pub async fn handle(api: &Api, version: i16, req: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let mut r = AddOffsetsToTxnResponse::default();
    let result = match add(api, &req) {
        Ok(()) => super::txn_replicated(api, req.transactional_id.as_str()).await,
        Err(e) => Err(e),
    };
    let result = result.map_err(|e| errors::fenced_for_version(e, version, PRODUCER_FENCED_MIN_VERSION));
    r.error_code = result.err().map_or(0, |e| e.code());
    r
}

fn add(api: &Api, req: &AddOffsetsToTxnRequest) -> Result<(), ResponseError> {
    if req.group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    // The partition must be the one the group's offsets will go to, so the topic exists first.
    api.groups.ensure_offsets_topic().map_err(|e| {
        tracing::error!(error = %e, "cannot create __consumer_offsets");
        ResponseError::CoordinatorNotAvailable
    })?;
    let tp = TopicPartition::new(OFFSETS_TOPIC, api.groups.partition_for(req.group_id.as_str()));
    // Only version 1 clients send AddOffsetsToTxn (version 2 adds the partition with
    // TxnOffsetCommit v5), so Kafka records it as TV_0 whatever the request version.
    api.txns.add_partitions(req.transactional_id.as_str(), req.producer_id.0, req.producer_epoch, &BTreeSet::from([tp]), crate::txn::TxnVersion::V0)
}
