//! DeleteTopics: by name (all versions) or by topic id (v6+).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{Api, errors, str_bytes};
use crate::metadata::controller;

pub fn handle(api: &Api, version: i16, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut wanted: Vec<(Option<TopicName>, uuid::Uuid)> = Vec::new();
    if version >= 6 {
        wanted.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    } else {
        wanted.extend(req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil())));
    }
    let mut r = DeleteTopicsResponse::default();
    for (name, id) in wanted {
        let mut tr = DeletableTopicResult::default();
        let image = api.broker.image();
        let resolved = match &name {
            Some(n) => image.topic(n.as_str()).map(|t| t.name.clone()).ok_or(ResponseError::UnknownTopicOrPartition),
            None => image.topic_by_id(&id).map(|t| t.name.clone()).ok_or(ResponseError::UnknownTopicId),
        };
        tr.name = name.clone();
        tr.topic_id = id;
        match resolved {
            Ok(topic) => {
                if version >= 6 {
                    tr.name = Some(TopicName(str_bytes(&topic)));
                    tr.topic_id = image.topic(&topic).map(|t| t.id).unwrap_or(id);
                }
                let res = api.broker.apply_metadata(|image| Ok((vec![controller::delete_topic(image, &api.broker.config, &topic)?], ())));
                if let Err(e) = res {
                    tr.error_code = errors::broker_error(&e).code();
                    tr.error_message = Some(str_bytes(&e.to_string()));
                }
            }
            Err(code) => tr.error_code = code.code(),
        }
        r.responses.push(tr);
    }
    r
}
