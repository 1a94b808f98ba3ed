//! Client telemetry (KIP-714): the subscriptions clients are asked to push metrics for, the
//! state of each client instance that asked, and the pushed payloads.
//!
//! - [`subscription`]: the CLIENT_METRICS config resource (keys, validation, matching).
//! - [`manager`]: client instances, their subscriptions and the push rules.
//! - [`payload`]: pushed payloads: bounded decompression, OTLP decoding into points.
//!
//! Subscriptions are metadata (CLIENT_METRICS config records in the metadata log, as group
//! configs are); client instances are in memory only, as in Kafka: a client that reconnects
//! to another broker, or to this one after a restart, is simply a new instance there.

pub mod subscription;
pub mod manager;
pub mod payload;
