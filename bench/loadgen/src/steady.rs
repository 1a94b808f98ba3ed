//! `steady`: availability under a fault — one producer at a fixed rate that writes every
//! partition in turn and reports the longest gap between acknowledgements, of each partition
//! and of the producer as a whole.
//!
//! Records go to the partitions round-robin (explicit partition, not the sticky partitioner), so
//! a partition whose leader is gone cannot be avoided: its records wait in the client until a
//! new leader takes them. The gap of a partition is measured between successive successful
//! delivery reports of that partition; the first gap starts when producing starts, so a
//! partition that is slow to its first acknowledgement counts too. Failed deliveries are
//! counted and do not close a gap. librdkafka retries as it does by default
//! (`message.timeout.ms` 300 s), idempotence off as in every subcommand.
//!
//! Besides the longest gaps, every gap over `--record-gaps-over-ms` is listed with its start
//! (Unix time), so that a driver can tell the gap a fault caused from the ones before it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde_json::json;

use crate::common::{
    Acks, Compression, Deliveries, MIB, PayloadPool, ProducerSettings, QuietContext,
    consumer_config, now_micros, print_result, round3, topic_partitions,
};

/// How long the producer may take to deliver what is still queued once sending stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);

/// The shortest sleep between two rounds of sending.
const MIN_TICK: Duration = Duration::from_micros(500);

/// At most this many gaps are listed (the longest ones are always kept in the summary fields).
const MAX_LISTED_GAPS: usize = 100_000;

#[derive(Args, Debug)]
pub struct SteadyArgs {
    /// Broker addresses, host:port[,host:port...].
    #[arg(long)]
    bootstrap: String,
    /// Topic to write (it should exist; see `create`).
    #[arg(long)]
    topic: String,
    /// Produce rate in MB/s (MB = 2^20 bytes of value).
    #[arg(long)]
    rate_mb_per_s: f64,
    /// Seconds of sending (the flush of what is still queued comes on top).
    #[arg(long)]
    seconds: f64,
    /// Bytes of value per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// linger.ms of the producer.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Acknowledgement level. Idempotence stays off for every level, as for a plain producer.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
    /// List every gap longer than this (ms), of a partition or of the whole producer.
    #[arg(long, default_value_t = 20.0)]
    record_gaps_over_ms: f64,
}

/// The longest gap of one partition, or of the whole producer.
#[derive(Clone, Copy, Default)]
struct Gap {
    /// `now_micros()` of the latest acknowledgement (or of the start of producing).
    last: u64,
    /// The longest gap so far, in microseconds, and when it began (`now_micros()`).
    longest: u64,
    longest_from: u64,
}

impl Gap {
    /// Notes an acknowledgement at `at`; returns the gap it closes (start, length in µs).
    fn ack(&mut self, at: u64) -> (u64, u64) {
        let (from, gap) = (self.last, at.saturating_sub(self.last));
        if gap > self.longest {
            self.longest = gap;
            self.longest_from = from;
        }
        self.last = self.last.max(at);
        (from, gap)
    }
}

/// Gaps per partition (indexed by partition id) and overall.
struct Gaps {
    partitions: Vec<Gap>,
    any: Gap,
    /// Gaps longer than `list_over` µs: (partition, or -1 for the whole producer; start; length).
    listed: Vec<(i32, u64, u64)>,
    list_over: u64,
}

impl Gaps {
    fn list(&mut self, partition: i32, (from, gap): (u64, u64)) {
        if gap > self.list_over && self.listed.len() < MAX_LISTED_GAPS {
            self.listed.push((partition, from, gap));
        }
    }
}

/// Producer context that counts deliveries and keeps the gaps.
struct GapContext {
    deliveries: Arc<Deliveries>,
    gaps: Arc<Mutex<Gaps>>,
}

impl ClientContext for GapContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if level as i32 <= RDKafkaLogLevel::Warning as i32 {
            eprintln!("librdkafka {level:?} {fac}: {log_message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ProducerContext for GapContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let at = now_micros();
        match result {
            Ok(message) => {
                self.deliveries.delivered.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut gaps) = self.gaps.lock() {
                    let partition = message.partition();
                    if let Some(closed) = usize::try_from(partition)
                        .ok()
                        .and_then(|p| gaps.partitions.get_mut(p))
                        .map(|gap| gap.ack(at))
                    {
                        gaps.list(partition, closed);
                    }
                    let closed = gaps.any.ack(at);
                    gaps.list(-1, closed);
                }
            }
            Err((error, _)) => {
                if self.deliveries.note_error(error.to_string()) {
                    eprintln!("steady: delivery failed: {error}");
                }
            }
        }
        self.deliveries
            .last_report_micros
            .fetch_max(at, Ordering::Relaxed);
    }
}

pub fn run(args: SteadyArgs) -> Result<()> {
    if !(args.rate_mb_per_s > 0.0 && args.rate_mb_per_s.is_finite()) {
        bail!("--rate-mb-per-s must be a positive number");
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    if args.record_size == 0 {
        bail!("--record-size must be at least 1");
    }
    if !args.record_gaps_over_ms.is_finite() {
        bail!("--record-gaps-over-ms must be a number");
    }
    let partitions = {
        let consumer: BaseConsumer<QuietContext> = consumer_config(&args.bootstrap)
            .create_with_context(QuietContext)
            .context("creating the metadata client")?;
        topic_partitions(&consumer, &args.topic)?
    };
    let slots = partitions
        .iter()
        .copied()
        .max()
        .map_or(0, |p| p as usize + 1);
    let deliveries = Arc::new(Deliveries::default());
    let gaps = Arc::new(Mutex::new(Gaps {
        partitions: vec![Gap::default(); slots],
        any: Gap::default(),
        listed: Vec::new(),
        list_over: (args.record_gaps_over_ms.max(0.0) * 1000.0) as u64,
    }));
    let settings = ProducerSettings {
        bootstrap: args.bootstrap.clone(),
        acks: args.acks,
        compression: Compression::None,
        linger_ms: args.linger_ms,
        batch_bytes: 262_144,
        queue_kbytes: 1 << 20,
    };
    let producer: BaseProducer<GapContext> = settings
        .client_config()
        .create_with_context(GapContext {
            deliveries: deliveries.clone(),
            gaps: gaps.clone(),
        })
        .context("creating the producer")?;
    producer
        .client()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(30))
        .with_context(|| format!("fetching metadata of topic {}", args.topic))?;
    eprintln!(
        "steady: {} MB/s of {}-byte records to {} ({} partitions, round-robin) for {} s, acks={}, linger.ms={}",
        args.rate_mb_per_s,
        args.record_size,
        args.topic,
        partitions.len(),
        args.seconds,
        args.acks.as_str(),
        args.linger_ms
    );

    let pool = PayloadPool::new(args.record_size);
    let interval = args.record_size as f64 / (args.rate_mb_per_s * MIB);
    let start = Instant::now();
    let start_micros = now_micros();
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if let Ok(mut g) = gaps.lock() {
        let g = &mut *g;
        for gap in g.partitions.iter_mut().chain(std::iter::once(&mut g.any)) {
            gap.last = start_micros;
        }
    }
    let mut sent = 0u64;
    let mut next_progress = 1.0;
    let mut first_ack_told = false;
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= args.seconds {
            break;
        }
        let due =
            ((elapsed / interval).floor() as u64 + 1).min((args.seconds / interval).ceil() as u64);
        while sent < due {
            let partition = partitions[(sent % partitions.len() as u64) as usize];
            let mut record = BaseRecord::<(), [u8]>::to(&args.topic)
                .partition(partition)
                .payload(pool.record(sent));
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((error, _)) => {
                        if deliveries.note_error(format!("enqueue: {error}")) {
                            eprintln!("steady: enqueue failed: {error}");
                        }
                        break;
                    }
                }
            }
            sent += 1;
            if sent.is_multiple_of(1024) {
                producer.poll(Duration::ZERO);
            }
        }
        producer.poll(Duration::ZERO);
        if !first_ack_told && deliveries.delivered.load(Ordering::Relaxed) > 0 {
            // The driver waits for this line before it starts the fault's clock.
            eprintln!(
                "steady: first acknowledgement after {:.3} s",
                start.elapsed().as_secs_f64()
            );
            first_ack_told = true;
        }
        if elapsed >= next_progress {
            eprintln!(
                "steady: {:.0} s, {sent} sent, {} acknowledged",
                elapsed.floor(),
                deliveries.delivered.load(Ordering::Relaxed)
            );
            next_progress += 1.0;
        }
        let wait = sent as f64 * interval - start.elapsed().as_secs_f64();
        thread::sleep(Duration::from_secs_f64(wait.max(0.0)).max(MIN_TICK));
    }
    let flushed = producer.flush(FLUSH_TIMEOUT);
    let delivered = deliveries.delivered.load(Ordering::Relaxed);
    let errors = deliveries.errors.load(Ordering::Relaxed);
    let g = gaps
        .lock()
        .map_err(|_| anyhow!("the gap table was poisoned"))?;
    let (worst_partition, worst) = partitions
        .iter()
        .filter_map(|&p| g.partitions.get(p as usize).map(|gap| (p, *gap)))
        .max_by_key(|(_, gap)| gap.longest)
        .ok_or_else(|| anyhow!("no partition"))?;
    let to_ms = |micros: u64| round3(micros as f64 / 1000.0);
    // Unix time of a `now_micros()` instant, for lining the gap up with the driver's clock.
    let unix_ms =
        |micros: u64| start_unix_ms as f64 + micros.saturating_sub(start_micros) as f64 / 1000.0;
    let per_partition: Vec<f64> = partitions
        .iter()
        .map(|&p| {
            g.partitions
                .get(p as usize)
                .map_or(0.0, |gap| to_ms(gap.longest))
        })
        .collect();
    print_result(&json!({
        "mode": "steady",
        "records": sent,
        "delivered": delivered,
        "errors": errors,
        "seconds": round3(start.elapsed().as_secs_f64()),
        "target_mb_per_s": args.rate_mb_per_s,
        "record_size": args.record_size,
        "partitions": partitions.len(),
        "longest_partition_gap_ms": to_ms(worst.longest),
        "longest_partition_gap_partition": worst_partition,
        "longest_partition_gap_from_unix_ms": round3(unix_ms(worst.longest_from)),
        "longest_gap_any_ack_ms": to_ms(g.any.longest),
        "longest_gap_any_ack_from_unix_ms": round3(unix_ms(g.any.longest_from)),
        "longest_gap_per_partition_ms": per_partition,
        "gaps_over_ms": args.record_gaps_over_ms,
        // [partition (-1: any acknowledgement), start (Unix ms), length (ms)], in closing order.
        "gaps": g
            .listed
            .iter()
            .map(|&(p, from, gap)| json!([p, round3(unix_ms(from)), to_ms(gap)]))
            .collect::<Vec<_>>(),
        "acks": args.acks.as_str(),
        "linger_ms": args.linger_ms,
    }))?;
    flushed.context("flushing the producer")?;
    if delivered + errors < sent {
        bail!(
            "{} record(s) without a delivery report",
            sent - delivered - errors
        );
    }
    Ok(())
}
