//! DescribeCluster: the registered brokers (as Metadata lists them), a live broker as the
//! controller clients talk to, and the cluster id; with
//! endpoint type 2 (`--bootstrap-controller`, KIP-919) on a node of a multi-node quorum, the
//! controllers (`controller.quorum.voters`) and the quorum's leader.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{Api, authorized_operations, metadata, str_bytes};

/// Endpoint types of DescribeCluster v1+.
const ENDPOINT_TYPE_BROKER: i8 = 1;
const ENDPOINT_TYPE_CONTROLLER: i8 = 2;

pub fn handle(api: &Api, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let broker = &api.broker;
    let mut r = DescribeClusterResponse::default();
    r.endpoint_type = req.endpoint_type;
    if req.endpoint_type == ENDPOINT_TYPE_CONTROLLER
        && let Some(raft) = api.raft()
    {
        r.cluster_id = str_bytes(&broker.image().cluster_id);
        r.controller_id = BrokerId(raft.status().leader.map_or(-1, |l| l.0));
        r.cluster_authorized_operations = authorized_operations::cluster(req.include_cluster_authorized_operations);
        for (id, addr) in &broker.config.settings().quorum.voters {
            let Some((host, port)) = addr.rsplit_once(':') else { continue };
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(id.0);
            b.host = str_bytes(host);
            b.port = port.parse().unwrap_or(-1);
            r.brokers.push(b);
        }
        return r;
    }
    if req.endpoint_type != ENDPOINT_TYPE_BROKER {
        r.error_code = ResponseError::UnsupportedEndpointType.code();
        return r;
    }
    r.cluster_id = str_bytes(&broker.image().cluster_id);
    r.cluster_authorized_operations = authorized_operations::cluster(req.include_cluster_authorized_operations);
    // v2 (KIP-1073): fenced brokers too when asked for, flagged.
    let listed = metadata::listed_brokers(api, req.include_fenced_brokers);
    r.controller_id = BrokerId(metadata::controller_id_for_clients(api, &listed));
    r.brokers = listed
        .into_iter()
        .map(|l| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(l.id.0);
            b.host = str_bytes(&l.host);
            b.port = l.port;
            b.rack = l.rack.as_deref().map(str_bytes);
            b.is_fenced = l.fenced;
            b
        })
        .collect();
    r
}
