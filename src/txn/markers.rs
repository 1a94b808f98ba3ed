//! Writing transaction markers: the one path by which a COMMIT or ABORT reaches a
//! partition, whether the coordinator writes it or a WriteTxnMarkers request asks for it.
//!
//! The coordinator sees only [`MarkerWriter`]; on a single node its implementation is
//! [`LocalMarkerWriter`], which appends the control batch to the local partition (and, for
//! `__consumer_offsets`, lets the group coordinator write it so the transaction's pending
//! offsets become committed or are dropped). The WriteTxnMarkers handler calls the same
//! `LocalMarkerWriter`, so between brokers the coordinator's side becomes a client that
//! sends WriteTxnMarkers to each partition leader, without a second way of writing markers.

use std::sync::Arc;

use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::partition::PartitionError;
use crate::record::control::Marker;
use crate::types::TopicPartition;

/// One producer's marker for some partitions (one entry of a WriteTxnMarkers request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
    pub partitions: Vec<TopicPartition>,
}

/// Why a marker was not written to a partition.
#[derive(Debug)]
pub enum MarkerError {
    /// The partition does not exist (here): the coordinator stops writing to it.
    UnknownPartition,
    /// The log refused or failed (a fenced epoch, I/O).
    Partition(PartitionError),
    /// The group coordinator refused (`__consumer_offsets`).
    Group(ResponseError),
}

pub type MarkerResults = Vec<(TopicPartition, Result<(), MarkerError>)>;

/// Writes a marker to every partition it names; one result per partition, in order.
pub trait MarkerWriter: Send + Sync {
    fn write_markers(&self, marker: &TxnMarker) -> MarkerResults;
}

/// Markers into this node's partitions.
pub struct LocalMarkerWriter {
    broker: Arc<Broker>,
    groups: Arc<GroupCoordinator>,
}

impl LocalMarkerWriter {
    pub fn new(broker: Arc<Broker>, groups: Arc<GroupCoordinator>) -> Self {
        Self { broker, groups }
    }

    fn write_one(&self, m: &TxnMarker, tp: &TopicPartition) -> Result<(), MarkerError> {
        let marker = Marker { commit: m.commit, coordinator_epoch: m.coordinator_epoch };
        if tp.topic == OFFSETS_TOPIC {
            return self
                .groups
                .complete_transaction(tp.partition.0, m.producer_id, m.producer_epoch, marker)
                .map_err(MarkerError::Group);
        }
        let partition = self.broker.partition(tp).ok_or(MarkerError::UnknownPartition)?;
        let now = self.broker.clock.now_ms();
        let appended = partition.append_marker(crate::types::ProducerId(m.producer_id), m.producer_epoch, marker, now).map_err(MarkerError::Partition)?;
        if appended.flush_due {
            partition.sync(now).map_err(MarkerError::Partition)?;
        }
        Ok(())
    }
}

impl MarkerWriter for LocalMarkerWriter {
    fn write_markers(&self, marker: &TxnMarker) -> MarkerResults {
        marker.partitions.iter().map(|tp| (tp.clone(), self.write_one(marker, tp))).collect()
    }
}
