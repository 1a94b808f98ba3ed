//! PushTelemetry (KIP-714): a client instance pushes the metrics it was subscribed to, as an
//! OTLP `MetricsData` payload, possibly compressed. The push is checked as Kafka's
//! `ClientMetricsManager` checks it ([`crate::telemetry::manager`]), then decoded
//! ([`crate::telemetry::payload`]) and exported on the metrics endpoint; a payload that does
//! not decode is INVALID_RECORD, one that decompresses past `telemetry.max.bytes`
//! TELEMETRY_TOO_LARGE.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{PushTelemetryRequest, PushTelemetryResponse};

use super::{Api, RequestContext};
use crate::telemetry::manager::PushHeader;
use crate::telemetry::payload::{self, PayloadError};

pub fn handle(api: &Api, ctx: &RequestContext, req: PushTelemetryRequest) -> PushTelemetryResponse {
    let manager = &api.telemetry;
    manager.sync(&api.broker.image().client_metrics_configs);
    let now_ms = api.broker.clock.now_ms();
    let header = PushHeader {
        client_instance_id: req.client_instance_id,
        subscription_id: req.subscription_id,
        terminating: req.terminating,
        compression_type: req.compression_type,
        metrics_bytes: req.metrics.len(),
    };
    let mut r = PushTelemetryResponse::default();
    let accepted = match manager.push(now_ms, &header, &api.client_info(ctx)) {
        Ok(accepted) => accepted,
        Err(e) => {
            r.error_code = e.code();
            return r;
        }
    };
    if req.metrics.is_empty() {
        return r;
    }
    let max_bytes = usize::try_from(manager.telemetry_max_bytes()).unwrap_or(0);
    match payload::decode(req.compression_type, &req.metrics, max_bytes) {
        Ok(points) => api.broker.metrics.client_telemetry().record(
            &crate::telemetry::manager::kafka_uuid(req.client_instance_id),
            &accepted.client_id,
            now_ms,
            i64::from(accepted.push_interval_ms),
            points,
        ),
        Err(e) => {
            let code = match e {
                PayloadError::TooLarge => ResponseError::TelemetryTooLarge,
                _ => ResponseError::InvalidRecord,
            };
            tracing::debug!(error = %e, "pushed telemetry not decoded");
            manager.push_failed(req.client_instance_id, code);
            r.error_code = code.code();
        }
    }
    r
}
