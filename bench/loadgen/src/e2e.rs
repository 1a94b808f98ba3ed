//! `e2e`: end-to-end latency at a fixed rate — send time to receive time of each record, one producer and one consumer in this process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::common::{
    Acks, Compression, CountingContext, Deliveries, MIB, PayloadPool, ProducerSettings,
    QuietContext, consumer_config, now_micros, print_result, round3, topic_partitions,
};

/// How long the consumer polls after its assignment, to connect and start fetching, before producing starts.
const CONSUMER_SETTLE: Duration = Duration::from_secs(1);

/// How long the consumer waits for the last records once producing is over.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The shortest sleep between two rounds of sending.
const MIN_TICK: Duration = Duration::from_micros(500);

/// Bytes of the send-time stamp at the start of every value.
const STAMP_BYTES: usize = 8;

#[derive(Args, Debug)]
pub struct E2eArgs {
    /// Broker address, host:port.
    #[arg(long)]
    bootstrap: String,
    /// Topic to write and read (it should exist; see `create`).
    #[arg(long)]
    topic: String,
    /// Produce rate in MB/s (MB = 2^20 bytes of value).
    #[arg(long)]
    rate_mb_per_s: f64,
    /// Measured seconds, after the warm-up.
    #[arg(long)]
    seconds: f64,
    /// Bytes of value per record (at least 8: the send time is stamped in the first 8).
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Seconds of producing at the rate before measuring starts; they come on top of --seconds.
    #[arg(long, default_value_t = 3.0)]
    warmup_seconds: f64,
    /// linger.ms of the producer.
    #[arg(long, default_value_t = 1)]
    linger_ms: u64,
    /// Acknowledgement level. Idempotence stays off for every level, as for a plain producer.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
}

/// State shared by the producing main thread and the consumer thread.
struct Shared {
    /// Records whose send time is at or after this (`now_micros()`) are measured.
    measure_from_micros: AtomicU64,
    /// Records sent in all, final once `producing_done` is set.
    sent_total: AtomicU64,
    producing_done: AtomicBool,
}

/// What the consumer thread saw.
struct Received {
    histogram: Histogram<u64>,
    received_total: u64,
    errors: u64,
}

pub fn run(args: E2eArgs) -> Result<()> {
    if !(args.rate_mb_per_s > 0.0 && args.rate_mb_per_s.is_finite()) {
        bail!("--rate-mb-per-s must be a positive number");
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number");
    }
    if !(args.warmup_seconds >= 0.0 && args.warmup_seconds.is_finite()) {
        bail!("--warmup-seconds must be zero or more");
    }
    if args.record_size < STAMP_BYTES {
        bail!("--record-size must be at least {STAMP_BYTES}");
    }

    // The consumer starts at the current end of every partition, resolved here to explicit offsets
    // so that no record produced afterwards can be skipped by a late offset lookup.
    let consumer: BaseConsumer<QuietContext> = consumer_config(&args.bootstrap)
        .create_with_context(QuietContext)
        .context("creating the consumer")?;
    let partitions = topic_partitions(&consumer, &args.topic)?;
    let mut assignment = TopicPartitionList::with_capacity(partitions.len());
    for &partition in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(&args.topic, partition, Duration::from_secs(10))
            .with_context(|| format!("end offset of partition {partition}"))?;
        assignment
            .add_partition_offset(&args.topic, partition, Offset::Offset(high))
            .context("building the assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning the partitions")?;

    let deliveries = Arc::new(Deliveries::default());
    let settings = ProducerSettings {
        bootstrap: args.bootstrap.clone(),
        acks: args.acks,
        compression: Compression::None,
        linger_ms: args.linger_ms,
        batch_bytes: 262_144,
        queue_kbytes: 1 << 20,
    };
    let producer: BaseProducer<CountingContext> = settings
        .client_config()
        .create_with_context(CountingContext(deliveries.clone()))
        .context("creating the producer")?;
    producer
        .client()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(30))
        .with_context(|| format!("fetching metadata of topic {}", args.topic))?;

    let shared = Arc::new(Shared {
        measure_from_micros: AtomicU64::new(u64::MAX),
        sent_total: AtomicU64::new(0),
        producing_done: AtomicBool::new(false),
    });
    let (ready_tx, ready_rx) = mpsc::channel();
    let consumer_thread = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("consumer".into())
            .spawn(move || consume(&consumer, &shared, &ready_tx))
            .context("starting the consumer thread")?
    };
    ready_rx
        .recv_timeout(CONSUMER_SETTLE * 10)
        .map_err(|_| anyhow!("the consumer thread did not get ready"))?;
    eprintln!(
        "e2e: {} MB/s of {}-byte records to {} ({} partitions) for {} s after {} s of warm-up, acks={}, linger.ms={}",
        args.rate_mb_per_s,
        args.record_size,
        args.topic,
        partitions.len(),
        args.seconds,
        args.warmup_seconds,
        args.acks.as_str(),
        args.linger_ms
    );

    let sent = produce_at_rate(&producer, &args, &shared, &deliveries);
    let flushed = producer.flush(Duration::from_secs(60));
    shared.sent_total.store(sent.total, Ordering::Relaxed);
    shared.producing_done.store(true, Ordering::Release);
    let received = consumer_thread
        .join()
        .map_err(|_| anyhow!("the consumer thread panicked"))??;

    let histogram = &received.histogram;
    let records = histogram.len();
    let to_ms = |micros: u64| round3(micros as f64 / 1000.0);
    let errors = deliveries.errors.load(Ordering::Relaxed) + received.errors;
    let lost = sent.measured.saturating_sub(records);
    let achieved = if sent.measured_seconds > 0.0 {
        sent.measured as f64 * args.record_size as f64 / MIB / sent.measured_seconds
    } else {
        0.0
    };
    print_result(&json!({
        "mode": "e2e",
        "records": records,
        "achieved_mb_per_s": round3(achieved),
        "p50_ms": to_ms(histogram.value_at_quantile(0.50)),
        "p99_ms": to_ms(histogram.value_at_quantile(0.99)),
        "p999_ms": to_ms(histogram.value_at_quantile(0.999)),
        "max_ms": to_ms(histogram.max()),
        "target_mb_per_s": args.rate_mb_per_s,
        "seconds": round3(sent.measured_seconds),
        "warmup_seconds": args.warmup_seconds,
        "record_size": args.record_size,
        "sent": sent.total,
        "received": received.received_total,
        "lost": lost,
        "errors": errors,
        "partitions": partitions.len(),
        "acks": args.acks.as_str(),
        "linger_ms": args.linger_ms,
    }))?;

    flushed.context("flushing the producer")?;
    if errors > 0 {
        let first = deliveries
            .first_error()
            .unwrap_or_else(|| "see stderr".into());
        bail!("{errors} error(s); first producer error: {first}");
    }
    if lost > 0 {
        bail!("{lost} measured record(s) sent but not received");
    }
    if records == 0 {
        bail!("no record was measured");
    }
    Ok(())
}

/// What the producer did.
struct Sent {
    /// Records enqueued in all.
    total: u64,
    /// Records enqueued after the warm-up.
    measured: u64,
    /// Seconds from the end of the warm-up to the end of producing.
    measured_seconds: f64,
}

/// Sends records on a deadline schedule: record k is due `k * interval` after the start. Each
/// round sends every record that is due (catching up at once when behind), then sleeps until
/// the next one is due, but at least `MIN_TICK`, so that a high rate is sent in small bursts
/// rather than with a wake-up per record. Each value is stamped with its actual send time.
fn produce_at_rate(
    producer: &BaseProducer<CountingContext>,
    args: &E2eArgs,
    shared: &Shared,
    deliveries: &Deliveries,
) -> Sent {
    let interval = args.record_size as f64 / (args.rate_mb_per_s * MIB);
    // The rest of each value is filler; the stamp is written over its first 8 bytes per send.
    let mut value = PayloadPool::new(args.record_size).record(0).to_vec();

    let start = Instant::now();
    let start_micros = now_micros();
    let measure_from = start_micros + (args.warmup_seconds * 1e6) as u64;
    let end_micros = measure_from + (args.seconds * 1e6) as u64;
    shared
        .measure_from_micros
        .store(measure_from, Ordering::Release);
    let mut sent = Sent {
        total: 0,
        measured: 0,
        measured_seconds: 0.0,
    };
    let mut next_progress = 1.0;
    'rounds: loop {
        let elapsed = start.elapsed().as_secs_f64();
        let due = (elapsed / interval).floor() as u64 + 1;
        while sent.total < due {
            let stamp = now_micros();
            if stamp >= end_micros {
                break 'rounds;
            }
            value[..STAMP_BYTES].copy_from_slice(&stamp.to_le_bytes());
            let mut record = BaseRecord::<(), [u8]>::to(&args.topic).payload(value.as_slice());
            let enqueued = loop {
                match producer.send(record) {
                    Ok(()) => break true,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        producer.poll(Duration::ZERO);
                    }
                    Err((error, _)) => {
                        if deliveries.note_error(format!("enqueue: {error}")) {
                            eprintln!("e2e: enqueue failed: {error}");
                        }
                        break false;
                    }
                }
            };
            if enqueued {
                sent.total += 1;
                if stamp >= measure_from {
                    sent.measured += 1;
                }
            }
            if sent.total.is_multiple_of(1024) {
                producer.poll(Duration::ZERO);
            }
        }
        producer.poll(Duration::ZERO);
        if elapsed >= next_progress {
            eprintln!("e2e: {:.0} s, {} records sent", elapsed.floor(), sent.total);
            next_progress += 1.0;
        }
        let wait = sent.total as f64 * interval - start.elapsed().as_secs_f64();
        thread::sleep(Duration::from_secs_f64(wait.max(0.0)).max(MIN_TICK));
    }
    sent.measured_seconds = now_micros().saturating_sub(measure_from) as f64 / 1e6;
    sent
}

/// The consumer thread: settles, says it is ready, then records the latency of every measured
/// record until all sent records arrived (or the drain timeout passed).
fn consume(
    consumer: &BaseConsumer<QuietContext>,
    shared: &Shared,
    ready: &mpsc::Sender<()>,
) -> Result<Received> {
    let settle_until = Instant::now() + CONSUMER_SETTLE;
    let mut received = Received {
        histogram: Histogram::new_with_max(3_600_000_000, 3).context("creating the histogram")?,
        received_total: 0,
        errors: 0,
    };
    let mut ready_sent = false;
    let mut done_at: Option<Instant> = None;
    loop {
        if !ready_sent && Instant::now() >= settle_until {
            // The receiver only goes away when the main thread gave up; then stop too.
            ready
                .send(())
                .map_err(|_| anyhow!("the producer side went away"))?;
            ready_sent = true;
        }
        match consumer.poll(Duration::from_millis(if ready_sent { 100 } else { 10 })) {
            None => {}
            Some(Ok(message)) => {
                let received_at = now_micros();
                received.received_total += 1;
                let payload = message.payload().unwrap_or_default();
                let Some(stamp) = payload
                    .get(..STAMP_BYTES)
                    .and_then(|s| <[u8; STAMP_BYTES]>::try_from(s).ok())
                else {
                    received.errors += 1;
                    eprintln!(
                        "e2e: a record of {} bytes has no send-time stamp",
                        payload.len()
                    );
                    continue;
                };
                let sent_at = u64::from_le_bytes(stamp);
                if sent_at >= shared.measure_from_micros.load(Ordering::Acquire) {
                    received
                        .histogram
                        .saturating_record(received_at.saturating_sub(sent_at));
                }
            }
            Some(Err(e)) => {
                received.errors += 1;
                if received.errors <= 10 {
                    eprintln!("e2e: consumer: {e}");
                }
            }
        }
        if shared.producing_done.load(Ordering::Acquire) {
            if received.received_total >= shared.sent_total.load(Ordering::Relaxed) {
                break;
            }
            let since = *done_at.get_or_insert_with(Instant::now);
            if since.elapsed() > DRAIN_TIMEOUT {
                eprintln!(
                    "e2e: gave up waiting: {} of {} records received",
                    received.received_total,
                    shared.sent_total.load(Ordering::Relaxed)
                );
                break;
            }
        }
    }
    Ok(received)
}
