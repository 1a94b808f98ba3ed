//! AlterPartition (KIP-497), v2-3: a partition leader asks the active controller to change
//! its ISR. The rules are [`crate::metadata::cluster_control::alter_partition`]; this file
//! decodes, maps errors to Kafka's codes and answers with each partition's registration once
//! the change is committed. Any node that is not the active controller answers NOT_CONTROLLER.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_partition_response::{PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse, BrokerId};

use super::{Api, errors};
use crate::metadata::cluster_control::{self, AlterIsrError, AlterIsrItem, MembershipError};
use crate::metadata::store::StoreError;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, PartitionId};

enum Failure {
    Refused(MembershipError),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub(crate) fn partition_code(e: AlterIsrError, version: i16) -> ResponseError {
    match e {
        AlterIsrError::UnknownTopicId => ResponseError::UnknownTopicId,
        AlterIsrError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        AlterIsrError::NotController => ResponseError::NotController,
        AlterIsrError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        AlterIsrError::InvalidRequest => ResponseError::InvalidRequest,
        AlterIsrError::InvalidUpdateVersion => ResponseError::InvalidUpdateVersion,
        AlterIsrError::IneligibleReplica if version >= 2 => ResponseError::IneligibleReplica,
        AlterIsrError::IneligibleReplica => ResponseError::OperationNotAttempted,
        AlterIsrError::NewLeaderElected if version > 1 => ResponseError::NewLeaderElected,
        AlterIsrError::NewLeaderElected => ResponseError::FencedLeaderEpoch,
    }
}

pub fn handle(api: &Api, version: i16, req: AlterPartitionRequest) -> AlterPartitionResponse {
    let mut r = AlterPartitionResponse::default();
    match api.broker.cluster() {
        Some(c) if c.is_controller && c.is_active_controller() => {}
        _ => {
            r.error_code = ResponseError::NotController.code();
            return r;
        }
    }
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            // v3 (KIP-903) names each member's broker epoch; v2 only ids (-1: not checked).
            let new_isr = if version >= 3 {
                p.new_isr_with_epochs
                    .iter()
                    .map(|b| (NodeId(b.broker_id.0), (b.broker_epoch >= 0).then_some(BrokerEpoch(b.broker_epoch))))
                    .collect()
            } else {
                p.new_isr.iter().map(|b| (NodeId(b.0), None)).collect()
            };
            items.push(AlterIsrItem {
                topic_id: t.topic_id,
                partition: PartitionId(p.partition_index),
                leader_epoch: LeaderEpoch(p.leader_epoch),
                partition_epoch: PartitionEpoch(p.partition_epoch),
                new_isr,
            });
        }
    }
    let broker = NodeId(req.broker_id.0);
    let epoch = BrokerEpoch(req.broker_epoch);
    let out = api.broker.metadata_store().update(|image| {
        cluster_control::alter_partition(image, &crate::metadata::partition_change::TopicDefaults::from_config(&api.broker.effective_config()), broker, epoch, &items).map_err(Failure::Refused)
    });
    let results = match out {
        Ok((_, results)) => results,
        Err(f) => {
            r.error_code = match f {
                Failure::Store(s) => errors::store_error(&s),
                Failure::Refused(MembershipError::NotRegistered | MembershipError::StaleEpoch { .. }) => ResponseError::StaleBrokerEpoch,
                Failure::Refused(_) => ResponseError::InvalidRequest,
            }
            .code();
            return r;
        }
    };
    let mut results = results.into_iter();
    for t in &req.topics {
        let mut topic = TopicData::default();
        topic.topic_id = t.topic_id;
        for p in &t.partitions {
            let mut out = PartitionData::default();
            out.partition_index = p.partition_index;
            match results.next() {
                Some(Ok(reg)) => {
                    out.leader_id = BrokerId(reg.leader.map_or(-1, |l| l.0));
                    out.leader_epoch = reg.leader_epoch.0;
                    out.partition_epoch = reg.partition_epoch.0;
                    out.isr = reg.isr.iter().map(|n| BrokerId(n.0)).collect();
                    out.leader_recovery_state = p.leader_recovery_state;
                }
                Some(Err(e)) => out.error_code = partition_code(e, version).code(),
                None => out.error_code = ResponseError::UnknownServerError.code(),
            }
            topic.partitions.push(out);
        }
        r.topics.push(topic);
    }
    r
}
