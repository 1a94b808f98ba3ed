//! DeleteGroups: empty groups only (NON_EMPTY_GROUP otherwise), offsets included.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::Api;

pub fn handle(api: &Api, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut g = DeletableGroupResult::default();
        if let Err(e) = api.groups.delete_group(id.as_str()) {
            g.error_code = e.code();
        }
        g.group_id = id;
        r.results.push(g);
    }
    r
}
