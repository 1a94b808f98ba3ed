//! LeaveGroup: one member (v0-2) or a batch of members by id or instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{Api, str_bytes};

pub fn handle(api: &Api, version: i16, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))).collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut r = LeaveGroupResponse::default();
    match api.groups.leave(req.group_id.as_str(), &members) {
        Err(e) => r.error_code = e.code(),
        Ok(results) if version >= 3 => {
            r.members = members
                .iter()
                .zip(results)
                .map(|((id, instance), res)| {
                    let mut m = MemberResponse::default();
                    m.member_id = str_bytes(id);
                    m.group_instance_id = instance.as_deref().map(str_bytes);
                    m.error_code = res.err().map(|e| e.code()).unwrap_or(0);
                    m
                })
                .collect();
        }
        Ok(results) => {
            if let Some(Err(e)) = results.into_iter().next() {
                r.error_code = e.code();
            }
        }
    }
    r
}
