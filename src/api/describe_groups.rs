//! DescribeGroups: state, protocol and members of classic groups.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{Api, authorized_operations, str_bytes};

/// First version with `include_authorized_operations`.
const AUTHORIZED_OPERATIONS_MIN_VERSION: i16 = 3;

pub fn handle(api: &Api, version: i16, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut r = DescribeGroupsResponse::default();
    let operations = authorized_operations::group(version >= AUTHORIZED_OPERATIONS_MIN_VERSION && req.include_authorized_operations);
    for id in req.groups {
        let mut g = DescribedGroup::default();
        g.group_id = id.clone();
        g.authorized_operations = operations;
        if let Err(e) = api.groups.check_coordinator(id.as_str()) {
            g.error_code = e.code();
            g.group_state = str_bytes("");
            r.groups.push(g);
            continue;
        }
        match api.groups.describe(id.as_str()) {
            None => g.group_state = str_bytes("Dead"),
            Some(d) => {
                g.group_state = str_bytes(d.state.name());
                g.protocol_type = str_bytes(&d.protocol_type);
                g.protocol_data = str_bytes(&d.protocol_name);
                g.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut x = DescribedGroupMember::default();
                        x.member_id = str_bytes(&m.member_id);
                        x.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                        x.client_id = str_bytes(&m.client_id);
                        x.client_host = str_bytes(&m.client_host);
                        x.member_metadata = m.metadata;
                        x.member_assignment = m.assignment;
                        x
                    })
                    .collect();
            }
        }
        r.groups.push(g);
    }
    r
}
