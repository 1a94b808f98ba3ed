//! GetTelemetrySubscriptions (KIP-714): a client learns its instance id (a new one when it
//! sends the zero id), which metrics to push, how often, compressed how, and how large a push
//! may be. With no subscription matching it the answer is an empty metrics list and Kafka's
//! default interval, so the client pushes nothing. The rules live in
//! [`crate::telemetry::manager`].

use kafka_protocol::messages::{GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse};

use super::{Api, RequestContext, str_bytes};
use crate::telemetry::manager::ACCEPTED_COMPRESSION_TYPES;

pub fn handle(api: &Api, ctx: &RequestContext, req: GetTelemetrySubscriptionsRequest) -> GetTelemetrySubscriptionsResponse {
    let manager = &api.telemetry;
    manager.sync(&api.broker.image().client_metrics_configs);
    let now_ms = api.broker.clock.now_ms();
    let mut r = GetTelemetrySubscriptionsResponse::default();
    match manager.get_subscriptions(now_ms, req.client_instance_id, &api.client_info(ctx)).1 {
        Ok(answer) => {
            r.client_instance_id = answer.client_instance_id;
            r.subscription_id = answer.subscription_id;
            r.accepted_compression_types = ACCEPTED_COMPRESSION_TYPES.to_vec();
            r.push_interval_ms = answer.push_interval_ms;
            r.telemetry_max_bytes = manager.telemetry_max_bytes();
            r.delta_temporality = true;
            r.requested_metrics = answer.requested_metrics.iter().map(|m| str_bytes(m)).collect();
        }
        Err(e) => r.error_code = e.code(),
    }
    r
}
