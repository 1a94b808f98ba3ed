//! Blumfeld: a message broker that speaks the Apache Kafka wire protocol.
//!
//! # Module map (imports point one way, top to bottom)
//!
//! ```text
//! server     accepts connections, frames requests, enforces limits, answers in request order
//!   └─ api       the only place that knows Kafka requests: one file per API, one dispatch
//!                match, one version table, one map from internal errors to Kafka error codes
//!        ├─ txn        the transaction coordinator: transactional ids, epochs, transactions,
//!        │             durable in `__transaction_state`; markers through one writer
//!        ├─ group      the group coordinator: classic consumer groups and committed offsets,
//!        │             durable in the internal topic `__consumer_offsets` (transactional
//!        │             offsets pending until their marker)
//!        ├─ coordinator what both coordinators share: the internal-topic partitions led
//!        │             here (load on election, drop on resignation), acks=all answers
//!        └─ broker     the replica manager: the partitions this node hosts, topic lifecycle
//!             ├─ partition  leadership, high watermark, leader epoch, waits for appends
//!             └─ metadata   the immutable cluster image (topics, ids, partition and broker
//!                           registrations, configs), deltas, replica placement
//!                  └─ log       bytes on disk: segments, indexes, recovery, retention,
//!                               producer state (idempotence, open transactions), aborted-
//!                               transaction indexes, leader-epoch cache
//!                       └─ record    record batches as raw bytes: parse, validate, patch
//!                            └─ types     newtypes shared by everything (Offset, NodeId, ...)
//! raft       the metadata quorum's consensus core: KRaft as a sans-I/O state machine (uses types)
//! client     outbound Kafka requests to another node (Raft, registration, forwarding, fetchers)
//! config     the YAML configuration with Kafka's property names and defaults, parsed once
//!            into typed settings and per-topic log configs (uses log's LogConfig, types)
//! clock      injected time (a leaf)
//! logging    log levels changed at run time (Kafka's BROKER_LOGGER resource)
//! telemetry  client telemetry (KIP-714): client-metrics subscriptions, client instances,
//!            pushed OTLP payloads decoded for the metrics endpoint (uses metrics)
//! alloc      the global allocator: lazy mappings for huge allocations (see its docs)
//! ```
//!
//! # Data flow
//!
//! Produce: `server::connection` reads a frame → `api::dispatch` decodes the header and body →
//! `api::produce` checks topic and acks → `broker` finds the partition → `partition::append`
//! → `record::validate` (one pass: lengths, CRC32C) → `log::Log::append` patches base offsets
//! in place and writes the bytes as received → the high watermark moves → the fetches waiting
//! on that partition wake.
//!
//! Fetch: `api::fetch` → `partition::read` bounded by the high watermark → `log::Log::read`
//! locates the stored batches as file regions (`log::Log::read_regions`) → the response is
//! encoded around them (`api::response_frame`: the record sets stay separate chunks) → the
//! connection writes the encoded fields with vectored writes and the regions with `sendfile`,
//! page cache to socket.

pub mod alloc;
pub mod api;
pub mod broker;
pub mod client;
pub mod cluster;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod group;
pub mod log;
pub mod logging;
pub mod metadata;
pub mod partition;
pub mod raft;
pub mod replication;
pub mod record;
pub mod runtime;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod txn;
pub mod types;
pub mod metrics;
