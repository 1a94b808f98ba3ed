//! Transactional offsets (TxnOffsetCommit, KIP-447): written as a transactional batch of the
//! producer into the group's `__consumer_offsets` partition and kept pending until the
//! transaction's marker reaches that partition (see the module docs of [`super`]).

use std::collections::HashSet;

use kafka_protocol::ResponseError;

use super::{CommittedOffset, GroupCoordinator, OFFSET_METADATA_BYTES_MAX, OFFSETS_TOPIC, TxnOffsetCommit, records};

impl GroupCoordinator {
    /// TxnOffsetCommit: validates the committer (KIP-447), writes the offsets as a
    /// transactional batch of the producer and keeps them pending until the marker.
    #[allow(clippy::too_many_arguments)]
    pub fn txn_commit_offsets(
        &self,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<TxnOffsetCommit>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.check_coordinator(group_id)?;
        let now = self.now();
        let image = self.broker.image();
        let mut groups = self.groups();
        if !groups.contains_key(group_id) && generation_id >= 0 {
            // Kafka: a generation names a group that must exist.
            return Err(ResponseError::IllegalGeneration);
        }
        let entry = self.entry(&mut groups, group_id);
        match &entry.consumer {
            Some(c) => c.validate_txn_commit(member_id, instance, generation_id)?,
            None => entry.group.validate_txn_offset_commit(member_id, instance, generation_id)?,
        }
        let mut results = Vec::with_capacity(commits.len());
        let mut writes = Vec::new();
        let mut accepted = Vec::new();
        for c in commits {
            let known = image.topic(&c.topic).is_some_and(|t| t.partition(c.partition).is_some());
            let metadata = c.metadata.unwrap_or_default();
            if !known {
                results.push(Err(ResponseError::UnknownTopicOrPartition));
            } else if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                results.push(Err(ResponseError::OffsetMetadataTooLarge));
            } else {
                let value = records::OffsetValue { offset: c.offset, leader_epoch: c.leader_epoch, metadata, commit_timestamp_ms: now };
                writes.push((records::offset_key(group_id, &c.topic, c.partition), Some(records::offset_value(&value))));
                accepted.push((
                    (c.topic, c.partition),
                    CommittedOffset { offset: value.offset, leader_epoch: value.leader_epoch, metadata: value.metadata, commit_timestamp_ms: now },
                ));
                results.push(Ok(()));
            }
        }
        if !writes.is_empty() {
            if let Err(e) = self.append_batch(group_id, writes, Some((producer_id, producer_epoch))) {
                return Ok(results.into_iter().map(|r| r.and(Err(e))).collect());
            }
            entry.pending.entry(producer_id).or_default().extend(accepted);
        }
        Ok(results)
    }

    /// A transaction marker for `__consumer_offsets` partition `partition` (WriteTxnMarkers):
    /// appended, then the producer's pending offsets of every group on that partition are
    /// committed or dropped. UNKNOWN_TOPIC_OR_PARTITION if the partition does not exist.
    pub fn complete_transaction(&self, partition: i32, producer_id: i64, producer_epoch: i16, marker: crate::record::control::Marker) -> Result<(), ResponseError> {
        let tp = crate::types::TopicPartition::new(OFFSETS_TOPIC, partition);
        let p = self.broker.partition(&tp).ok_or(ResponseError::UnknownTopicOrPartition)?;
        let now = self.now();
        let mut groups = self.groups();
        // Not while the partition loads (the loader reads to the log end and must see every
        // marker), nor on a follower: the transaction coordinator retries.
        self.owned.check(crate::types::PartitionId(partition)).map_err(|e| match e {
            ResponseError::NotCoordinator => ResponseError::NotLeaderOrFollower,
            other => other,
        })?;
        let appended = p.append_marker(crate::types::ProducerId(producer_id), producer_epoch, marker, now).map_err(|e| {
            tracing::warn!(error = %e, producer_id, "marker refused by __consumer_offsets");
            match e {
                crate::partition::PartitionError::Log(crate::log::LogError::InvalidProducerEpoch { .. }) => ResponseError::InvalidProducerEpoch,
                crate::partition::PartitionError::Log(crate::log::LogError::CoordinatorFenced { .. }) => ResponseError::TransactionCoordinatorFenced,
                _ => ResponseError::NotLeaderOrFollower,
            }
        })?;
        if appended.flush_due {
            p.sync(now).map_err(|_| ResponseError::NotLeaderOrFollower)?;
        }
        for (id, e) in groups.iter_mut() {
            if self.partition_for(id) == partition {
                e.complete_transaction(producer_id, marker.commit);
            }
        }
        Ok(())
    }

    /// Partitions of `group_id` with offsets of an open transaction (OffsetFetch's
    /// `require_stable`).
    pub fn pending_offsets(&self, group_id: &str) -> HashSet<(String, i32)> {
        let groups = self.groups();
        groups.get(group_id).map(|e| e.pending.values().flat_map(|m| m.keys().cloned()).collect()).unwrap_or_default()
    }
}
