//! ListPartitionReassignments (KIP-455), v0: the ongoing reassignments (all of them, or of the
//! named partitions) with their replicas, adding and removing replicas, from the active
//! controller's image ([`crate::metadata::reassignment::list`]). A node that is not the active
//! controller forwards the request.

use kafka_protocol::messages::list_partition_reassignments_response::{OngoingPartitionReassignment, OngoingTopicReassignment};
use kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName};

use super::{Api, str_bytes};
use crate::metadata::reassignment;
use crate::types::{NodeId, PartitionId};

fn ids(nodes: &[NodeId]) -> Vec<BrokerId> {
    nodes.iter().map(|n| BrokerId(n.0)).collect()
}

pub fn handle(api: &Api, req: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let mut r = ListPartitionReassignmentsResponse::default();
    r.error_message = None;
    let asked: Option<Vec<(String, Vec<PartitionId>)>> = req
        .topics
        .as_ref()
        .map(|topics| topics.iter().map(|t| (t.name.to_string(), t.partition_indexes.iter().map(|p| PartitionId(*p)).collect())).collect());
    let image = api.broker.image();
    for (name, partitions) in reassignment::list(&image, asked.as_deref()) {
        let mut topic = OngoingTopicReassignment::default();
        topic.name = TopicName(str_bytes(&name));
        for p in partitions {
            let mut out = OngoingPartitionReassignment::default();
            out.partition_index = p.partition.0;
            out.replicas = ids(&p.replicas);
            out.adding_replicas = ids(&p.adding);
            out.removing_replicas = ids(&p.removing);
            topic.partitions.push(out);
        }
        r.topics.push(topic);
    }
    r
}
