//! Writing transaction markers into this node's partitions: the one path by which a COMMIT
//! or ABORT reaches a log, whether this node's coordinator wrote it or another broker's
//! coordinator asked for it with WriteTxnMarkers.
//!
//! [`LocalMarkerWriter`] appends the control batch to each partition this node leads (for
//! `__consumer_offsets` it lets the group coordinator write it, so the transaction's pending
//! offsets become committed or are dropped) and then waits, as Kafka's WriteTxnMarkers
//! handler does with `acks=-1`, until every in-sync replica holds it: a marker counts as
//! written only once it cannot be lost with its leader, because the coordinator forgets the
//! partition once the marker is acknowledged. The coordinator reaches this writer through its
//! [`super::sender::MarkerTransport`], for partitions led here directly and for the others
//! over WriteTxnMarkers answered by the same writer on their leader.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::coordinator::WriteBarrier;
use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::partition::{PartitionError, ReplicationWait};
use crate::record::control::Marker;
use crate::types::{Offset, TopicPartition};

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
    /// The partition does not exist here.
    UnknownPartition,
    /// The ISR is smaller than `min.insync.replicas`: not appended (acks=-1's check).
    NotEnoughReplicas,
    /// The log refused or failed (not the leader, a fenced epoch, I/O).
    Partition(PartitionError),
    /// The group coordinator refused (`__consumer_offsets`).
    Group(ResponseError),
    /// Appended, but not known to be replicated.
    Replication(ReplicationWait),
}

pub type MarkerResults = Vec<(TopicPartition, Result<(), MarkerError>)>;

/// Markers into this node's partitions.
pub struct LocalMarkerWriter {
    broker: Arc<Broker>,
    groups: Arc<GroupCoordinator>,
}

impl LocalMarkerWriter {
    pub fn new(broker: Arc<Broker>, groups: Arc<GroupCoordinator>) -> Self {
        Self { broker, groups }
    }

    /// Appends `m`'s marker to `tp`; what the answer must wait for.
    fn append_one(&self, m: &TxnMarker, tp: &TopicPartition) -> Result<WriteBarrier, MarkerError> {
        let marker = Marker { commit: m.commit, coordinator_epoch: m.coordinator_epoch };
        let partition = self.broker.partition(tp).ok_or(MarkerError::UnknownPartition)?;
        if !partition.is_leader() {
            return Err(MarkerError::Partition(PartitionError::NotLeader));
        }
        if !partition.meets_min_isr() {
            return Err(MarkerError::NotEnoughReplicas);
        }
        let epoch = partition.leader_epoch();
        let written = self.broker.metrics.txn_markers_written.with_label_values(&[if m.commit { "commit" } else { "abort" }]);
        if tp.topic == OFFSETS_TOPIC {
            self.groups.complete_transaction(tp.partition.0, m.producer_id, m.producer_epoch, marker).map_err(MarkerError::Group)?;
            written.inc();
            let end = partition.log_end_offset();
            return Ok(WriteBarrier::new(partition, epoch, end));
        }
        let now = self.broker.clock.now_ms();
        let appended = partition.append_marker(crate::types::ProducerId(m.producer_id), m.producer_epoch, marker, now).map_err(MarkerError::Partition)?;
        written.inc();
        if appended.flush_due {
            partition.sync(now).map_err(MarkerError::Partition)?;
        }
        Ok(WriteBarrier::new(partition, epoch, Offset(appended.last_offset.0 + 1)))
    }

    /// Writes every marker of `markers` and waits (up to `timeout` in all) until each is
    /// replicated; one result list per marker, one result per partition, in order.
    pub async fn write_replicated(&self, markers: &[TxnMarker], timeout: Duration) -> Vec<MarkerResults> {
        let appended: Vec<Vec<(TopicPartition, Result<WriteBarrier, MarkerError>)>> =
            markers.iter().map(|m| m.partitions.iter().map(|tp| (tp.clone(), self.append_one(m, tp))).collect()).collect();
        let waits = appended.into_iter().map(|results| async move {
            let waits = results.into_iter().map(|(tp, appended)| async move {
                let result = match appended {
                    Ok(barrier) => barrier.wait(timeout).await.map_err(MarkerError::Replication),
                    Err(e) => Err(e),
                };
                (tp, result)
            });
            futures::future::join_all(waits).await
        });
        futures::future::join_all(waits).await
    }
}
