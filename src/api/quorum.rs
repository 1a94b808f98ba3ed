//! The metadata quorum's APIs (KRaft, KIP-595): Vote, BeginQuorumEpoch, EndQuorumEpoch,
//! FetchSnapshot, DescribeQuorum, and Fetch of `__cluster_metadata`-0 (routed here by
//! [`super::fetch`]). Each request is converted to the core's message ([`crate::raft::wire`]),
//! handed to the quorum driver, and its answer converted back. A node that runs no quorum (a
//! single node, or one whose metadata log failed) answers with a top-level error.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    BeginQuorumEpochRequest, BeginQuorumEpochResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    EndQuorumEpochRequest, EndQuorumEpochResponse, FetchRequest, FetchResponse, FetchSnapshotRequest,
    FetchSnapshotResponse, VoteRequest, VoteResponse,
};

use kafka_protocol::protocol::StrBytes;

use super::Api;
use crate::raft::Message;
use crate::raft::wire::{self, METADATA_TOPIC};

/// Kafka's answer where no quorum runs: the request reached a node that is not a controller.
fn no_quorum() -> i16 {
    ResponseError::UnknownServerError.code()
}

/// Whether a Fetch is for the metadata log (by name up to v12, by topic id from v13).
pub fn is_metadata_fetch(req: &FetchRequest) -> bool {
    req.topics.len() == 1
        && req.topics.iter().all(|t| t.topic_id == wire::metadata_topic_id() || t.topic.as_str() == METADATA_TOPIC)
}

pub async fn vote(api: &Api, req: VoteRequest) -> VoteResponse {
    let mut out = VoteResponse::default();
    let Some(raft) = api.raft() else {
        out.error_code = no_quorum();
        return out;
    };
    let r = match wire::vote_request_from_wire(&req) {
        Ok(r) => r,
        Err(e) => {
            out.error_code = e.error_code().code();
            return out;
        }
    };
    match raft.request(r.candidate, Message::VoteRequest(r)).await {
        Some(Message::VoteResponse(resp)) => wire::vote_response_to_wire(&resp),
        _ => {
            out.error_code = no_quorum();
            out
        }
    }
}

pub async fn begin_quorum_epoch(api: &Api, req: BeginQuorumEpochRequest) -> BeginQuorumEpochResponse {
    let mut out = BeginQuorumEpochResponse::default();
    let Some(raft) = api.raft() else {
        out.error_code = no_quorum();
        return out;
    };
    let r = match wire::begin_quorum_epoch_request_from_wire(&req) {
        Ok(r) => r,
        Err(e) => {
            out.error_code = e.error_code().code();
            return out;
        }
    };
    match raft.request(r.leader, Message::BeginQuorumEpochRequest(r)).await {
        Some(Message::BeginQuorumEpochResponse(resp)) => wire::begin_quorum_epoch_response_to_wire(&resp),
        _ => {
            out.error_code = no_quorum();
            out
        }
    }
}

pub async fn end_quorum_epoch(api: &Api, req: EndQuorumEpochRequest) -> EndQuorumEpochResponse {
    let mut out = EndQuorumEpochResponse::default();
    let Some(raft) = api.raft() else {
        out.error_code = no_quorum();
        return out;
    };
    let r = match wire::end_quorum_epoch_request_from_wire(&req) {
        Ok(r) => r,
        Err(e) => {
            out.error_code = e.error_code().code();
            return out;
        }
    };
    match raft.request(r.leader, Message::EndQuorumEpochRequest(r)).await {
        Some(Message::EndQuorumEpochResponse(resp)) => wire::end_quorum_epoch_response_to_wire(&resp),
        _ => {
            out.error_code = no_quorum();
            out
        }
    }
}

pub async fn fetch(api: &Api, version: i16, req: FetchRequest) -> FetchResponse {
    let mut out = FetchResponse::default();
    let Some(raft) = api.raft() else {
        out.error_code = no_quorum();
        return out;
    };
    let r = match wire::fetch_request_from_wire(&req, version) {
        Ok(r) => r,
        Err(e) => {
            out.error_code = e.error_code().code();
            return out;
        }
    };
    match raft.request(r.replica_id, Message::FetchRequest(r)).await {
        Some(Message::FetchResponse(resp)) => wire::fetch_response_to_wire(&resp, version).unwrap_or_else(|_| {
            out.error_code = ResponseError::UnknownServerError.code();
            out
        }),
        _ => {
            out.error_code = no_quorum();
            out
        }
    }
}

pub async fn fetch_snapshot(api: &Api, req: FetchSnapshotRequest) -> FetchSnapshotResponse {
    let mut out = FetchSnapshotResponse::default();
    let Some(raft) = api.raft() else {
        out.error_code = no_quorum();
        return out;
    };
    let r = match wire::fetch_snapshot_request_from_wire(&req) {
        Ok(r) => r,
        Err(e) => {
            out.error_code = e.error_code().code();
            return out;
        }
    };
    match raft.request(r.replica_id, Message::FetchSnapshotRequest(r)).await {
        Some(Message::FetchSnapshotResponse(resp)) => wire::fetch_snapshot_response_to_wire(&resp),
        _ => {
            out.error_code = no_quorum();
            out
        }
    }
}

pub async fn describe_quorum(api: &Api, _req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let Some(raft) = api.raft() else {
        let mut out = DescribeQuorumResponse::default();
        out.error_code = no_quorum();
        out.error_message = Some(StrBytes::from_static_str("this node runs no metadata quorum"));
        return out;
    };
    let mut out = match raft.describe().await {
        Some(d) => wire::describe_quorum_response_to_wire(&d),
        None => wire::describe_quorum_not_leader(),
    };
    // Null on success (v2+), as Kafka sends.
    if out.error_code == 0 {
        out.error_message = None;
    }
    out
}
