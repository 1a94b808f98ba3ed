//! CreatePartitions: grow topics to a larger partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{Api, errors, str_bytes};
use crate::metadata::controller;

pub fn handle(api: &Api, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut r = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut tr = CreatePartitionsTopicResult::default();
        tr.name = t.name.clone();
        let res = api.broker.apply_metadata(|image| {
            let records = controller::create_partitions(image, t.name.as_str(), t.count)?;
            Ok((if req.validate_only { vec![] } else { records }, ()))
        });
        if let Err(e) = res {
            tr.error_code = errors::broker_error(&e).code();
            tr.error_message = Some(str_bytes(&e.to_string()));
        }
        r.results.push(tr);
    }
    r
}
