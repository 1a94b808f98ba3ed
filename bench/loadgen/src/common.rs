//! Shared pieces: the process clock, client settings, librdkafka contexts, payloads and the JSON result line.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;

/// Bytes in one MB, as Kafka's ProducerPerformance counts them.
pub const MIB: f64 = 1024.0 * 1024.0;

/// The group id handed to librdkafka, which wants one even when partitions are only assigned.
/// No subcommand subscribes, joins a group or commits.
pub const GROUP_ID: &str = "blumfeld-loadgen";

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide time origin; call once early in `main` so it is fixed before any thread starts.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the process-wide origin.
pub fn now_micros() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// MB/s with MB = 2^20 bytes; 0 when no time passed.
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / MIB / seconds
    } else {
        0.0
    }
}

/// Rounds for the JSON line: figures read by people and a script, not by a physicist.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints the one JSON object that ends stdout, and flushes it.
pub fn print_result(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}").context("writing the result line")?;
    out.flush().context("flushing stdout")?;
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Lz4,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    All,
    #[value(name = "1")]
    One,
    #[value(name = "0")]
    Zero,
}

impl Acks {
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::One => "1",
            Acks::Zero => "0",
        }
    }
}

/// Producer settings that keep librdkafka from being the limit: a deep local queue, large
/// batches, the caller's linger. Idempotence stays off whatever `acks` is, as in a plain
/// Kafka producer configured with acks only.
pub struct ProducerSettings {
    pub bootstrap: String,
    pub acks: Acks,
    pub compression: Compression,
    pub linger_ms: u64,
    pub batch_bytes: u64,
    /// The local queue's size for this one producer, in KiB.
    pub queue_kbytes: u64,
}

impl ProducerSettings {
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "blumfeld-loadgen-producer")
            .set("acks", self.acks.as_str())
            .set("enable.idempotence", "false")
            .set("compression.codec", self.compression.as_str())
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_bytes.to_string())
            // The byte limit above is the one that binds; the count limit is set out of the way.
            .set("batch.num.messages", "1000000")
            .set("queue.buffering.max.kbytes", self.queue_kbytes.to_string())
            .set("queue.buffering.max.messages", "10000000")
            // A batch may not exceed message.max.bytes, so raise it for large --batch-bytes.
            .set(
                "message.max.bytes",
                self.batch_bytes
                    .max(1_000_000)
                    .saturating_add(1024)
                    .to_string(),
            )
            .set("log.connection.close", "false");
        config
    }
}

/// Consumer settings for reading fast with partitions assigned by hand: generous fetches, a deep
/// prefetch queue, no offset commits, no end-of-partition events.
pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "blumfeld-loadgen-consumer")
        .set("group.id", GROUP_ID)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", (50u64 << 20).to_string())
        .set("max.partition.fetch.bytes", (8u64 << 20).to_string())
        .set("queued.max.messages.kbytes", (1u64 << 20).to_string())
        .set("log.connection.close", "false");
    config
}

/// Forwards librdkafka's warnings and errors to stderr.
fn log_to_stderr(level: RDKafkaLogLevel, facility: &str, message: &str) {
    // The levels are syslog's: the lower, the more severe.
    if level as i32 <= RDKafkaLogLevel::Warning as i32 {
        eprintln!("librdkafka {level:?} {facility}: {message}");
    }
}

/// Context of the consumers and admin clients: only logging.
#[derive(Clone, Default)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_stderr(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ConsumerContext for QuietContext {}

/// Delivery outcomes, shared by every producer of a run.
#[derive(Default)]
pub struct Deliveries {
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    /// `now_micros()` of the latest delivery report seen.
    pub last_report_micros: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Deliveries {
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    /// Counts one failed record; true (and the message kept) when it is the first.
    pub fn note_error(&self, message: String) -> bool {
        let first = self.errors.fetch_add(1, Ordering::Relaxed) == 0;
        if first && let Ok(mut slot) = self.first_error.lock() {
            *slot = Some(message);
        }
        first
    }
}

/// Producer context that counts delivery reports into a shared [`Deliveries`].
#[derive(Clone)]
pub struct CountingContext(pub Arc<Deliveries>);

impl ClientContext for CountingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_stderr(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let shared = &self.0;
        match result {
            Ok(_) => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                shared.note_error(error.to_string());
            }
        }
        shared
            .last_report_micros
            .fetch_max(now_micros(), Ordering::Relaxed);
    }
}

/// A pool of pseudo-random capital letters (like the payload of Kafka's ProducerPerformance)
/// from which each record takes a window at its own offset, so records differ from each other
/// without a payload being generated per message.
pub struct PayloadPool {
    bytes: Vec<u8>,
    record_size: usize,
    stride: usize,
}

impl PayloadPool {
    pub fn new(record_size: usize) -> PayloadPool {
        let len = record_size + (4 << 20);
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes = (0..len)
            .map(|_| {
                // xorshift64*: cheap and good enough to defeat naive compression.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                b'A' + ((r >> 32) % 26) as u8
            })
            .collect();
        // An odd step through the pool, so consecutive records start far apart.
        PayloadPool {
            bytes,
            record_size,
            stride: 7919,
        }
    }

    /// The value of record number `i`.
    pub fn record(&self, i: u64) -> &[u8] {
        let room = (self.bytes.len() - self.record_size + 1) as u64;
        let start = (i.wrapping_mul(self.stride as u64) % room) as usize;
        &self.bytes[start..start + self.record_size]
    }
}

/// The partition ids of `topic`, from a metadata request; fails when the topic is unknown.
pub fn topic_partitions(consumer: &BaseConsumer<QuietContext>, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("fetching metadata of topic {topic}"))?;
    let entry = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic {topic} missing from the metadata response"))?;
    if let Some(error) = entry.error() {
        bail!("metadata of topic {topic}: {error:?}");
    }
    let mut ids: Vec<i32> = entry.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Checks that an address given to `sink` or `blast` is on the loopback range.
pub fn require_loopback(addr: &std::net::SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address; this tool only measures 127.0.0.0/8 or ::1");
    }
    Ok(())
}
