//! SyncGroup (classic protocol): the leader hands out assignments; everyone waits for theirs.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{Api, RequestContext, str_bytes};
use crate::group::classic::{Reply, SyncResult};

pub async fn handle(api: &Api, _ctx: &RequestContext, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let reply = api.groups.sync(req.group_id.as_str(), req.member_id.as_str(), instance.as_deref(), req.generation_id, assignments);
    let result = match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => rx
            .await
            .unwrap_or_else(|_| SyncResult { error: Some(ResponseError::UnknownMemberId), ..Default::default() }),
    };
    let mut r = SyncGroupResponse::default();
    r.error_code = result.error.map(|e| e.code()).unwrap_or(0);
    r.protocol_type = result.protocol_type.as_deref().map(str_bytes);
    r.protocol_name = result.protocol_name.as_deref().map(str_bytes);
    r.assignment = result.assignment;
    r
}
