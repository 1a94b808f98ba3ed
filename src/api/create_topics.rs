//! CreateTopics: validate each topic against the image and create it through the controller.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::topic_configs;
use super::{Api, errors, str_bytes};
use crate::metadata::controller::{self, TopicSpec};
use crate::types::NodeId;

pub fn handle(api: &Api, version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = &api.broker;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.as_str().to_string()).or_default() += 1;
    }
    // Every topic of the request is decided in one metadata change (one commit in a cluster),
    // each against the image after the ones before it.
    let specs: Vec<Result<TopicSpec, (ResponseError, String)>> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_str().to_string();
            if counts.get(&name).copied().unwrap_or(0) > 1 {
                Err((ResponseError::InvalidRequest, format!("Create topics request from client contains multiple entries for the topic {name}")))
            } else {
                spec_of(t)
            }
        })
        .collect();
    type Outcome = Result<Option<crate::metadata::MetadataRecord>, (ResponseError, String)>;
    let decided = broker.apply_metadata(|image| {
        let mut work = image.clone();
        let mut records = Vec::new();
        let mut each: Vec<Outcome> = Vec::with_capacity(specs.len());
        for spec in &specs {
            let spec = match spec {
                Ok(s) => s,
                Err(e) => {
                    each.push(Err(e.clone()));
                    continue;
                }
            };
            match controller::create_topic(&work, &broker.effective_config(), spec) {
                Ok(recs) => {
                    for r in &recs {
                        work.replay(r);
                    }
                    each.push(Ok(recs.first().cloned()));
                    if !req.validate_only {
                        records.extend(recs);
                    }
                }
                Err(e) => each.push(Err((errors::controller_error(&e), e.to_string()))),
            }
        }
        Ok((records, each))
    });
    let outcomes: Vec<Outcome> = match decided {
        Ok(each) => each,
        Err(e) => {
            let failure = (errors::broker_error(&e), e.to_string());
            specs.iter().map(|_| Err(failure.clone())).collect()
        }
    };
    let mut r = CreateTopicsResponse::default();
    for (t, outcome) in req.topics.into_iter().zip(outcomes) {
        let mut tr = CreatableTopicResult::default();
        tr.name = t.name.clone();
        tr.num_partitions = -1;
        tr.replication_factor = -1;
        // Null on success, as Kafka's controller answers (the generated default is "").
        tr.error_message = None;
        match outcome {
            Ok(Some(crate::metadata::MetadataRecord::Topic { id, partitions, replication_factor, configs, .. })) => {
                tr.topic_id = if req.validate_only { uuid::Uuid::nil() } else { id };
                tr.num_partitions = partitions;
                tr.replication_factor = replication_factor;
                if version >= 5 {
                    tr.configs = Some(
                        topic_configs(broker, &configs)
                            .into_iter()
                            .map(|c| {
                                let mut x = CreatableTopicConfigs::default();
                                x.name = c.name;
                                x.value = c.value;
                                x.read_only = c.read_only;
                                x.config_source = c.config_source;
                                x.is_sensitive = c.is_sensitive;
                                x
                            })
                            .collect(),
                    );
                }
            }
            Ok(_) => {}
            Err((code, message)) => {
                tr.error_code = code.code();
                tr.error_message = Some(str_bytes(&message));
            }
        }
        r.topics.push(tr);
    }
    r
}

fn spec_of(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<TopicSpec, (ResponseError, String)> {
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(v) = &c.value else {
            return Err((ResponseError::InvalidConfig, format!("Null value not supported for topic configs: {}", c.name.as_str())));
        };
        configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
    }
    let mut partitions = t.num_partitions;
    let mut replication_factor = t.replication_factor;
    let mut assignment = None;
    if !t.assignments.is_empty() {
        if partitions != -1 || replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        // The controller checks that the brokers are registered; the shape is checked here.
        let rf = t.assignments[0].broker_ids.len();
        for (i, a) in t.assignments.iter().enumerate() {
            if a.partition_index != i as i32 || a.broker_ids.is_empty() || a.broker_ids.len() != rf {
                return Err((ResponseError::InvalidReplicaAssignment, format!("Invalid replica assignment for partition {}", a.partition_index)));
            }
        }
        partitions = t.assignments.len() as i32;
        replication_factor = rf as i16;
        assignment = Some(t.assignments.iter().map(|a| a.broker_ids.iter().map(|b| NodeId(b.0)).collect()).collect());
    }
    Ok(TopicSpec { name: t.name.as_str().to_string(), partitions, replication_factor, configs, assignment })
}
