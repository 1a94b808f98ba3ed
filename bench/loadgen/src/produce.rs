//! `produce`: producer throughput — N records as fast as P producers can send them, from first send to last delivery report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

use crate::common::{
    Acks, Compression, CountingContext, Deliveries, PayloadPool, ProducerSettings, mb_per_s,
    now_micros, print_result, round3,
};

/// How long `flush` may wait for the last delivery reports.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);

/// The local queues of all producers together hold at most this many KiB (1 GiB).
const TOTAL_QUEUE_KBYTES: u64 = 1 << 20;

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Broker address, host:port.
    #[arg(long)]
    bootstrap: String,
    /// Topic to write to (it should exist; see `create`).
    #[arg(long)]
    topic: String,
    /// Records in total, split evenly between the producers.
    #[arg(long)]
    records: u64,
    /// Bytes of value per record (records are keyless).
    #[arg(long)]
    record_size: usize,
    /// Compression codec of the batches.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    compression: Compression,
    /// Acknowledgement level. Idempotence stays off for every level, as for a plain producer.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
    /// Independent producer instances, one thread each.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// linger.ms of every producer.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Batch size limit in bytes (batch.size).
    #[arg(long, default_value_t = 262_144)]
    batch_bytes: u64,
    /// Add a note on the client's threads to the JSON result (field "threads_note").
    #[arg(long)]
    threads_note: bool,
}

pub fn run(args: ProduceArgs) -> Result<()> {
    if args.producers == 0 {
        bail!("--producers must be at least 1");
    }
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    if args.batch_bytes == 0 {
        bail!("--batch-bytes must be at least 1");
    }
    let producers = u64::from(args.producers);
    let settings = ProducerSettings {
        bootstrap: args.bootstrap.clone(),
        acks: args.acks,
        compression: args.compression,
        linger_ms: args.linger_ms,
        batch_bytes: args.batch_bytes,
        queue_kbytes: (TOTAL_QUEUE_KBYTES / producers).max(64 << 10),
    };
    let pool = Arc::new(PayloadPool::new(args.record_size));
    let deliveries = Arc::new(Deliveries::default());
    // now_micros() of the earliest first send of any producer.
    let first_send = Arc::new(AtomicU64::new(u64::MAX));

    // Create every producer and let it learn the topic's metadata before the clock starts,
    // so that connection set-up is not counted as produce time.
    let mut clients = Vec::with_capacity(args.producers as usize);
    for _ in 0..args.producers {
        let producer: BaseProducer<CountingContext> = settings
            .client_config()
            .create_with_context(CountingContext(deliveries.clone()))
            .context("creating a producer")?;
        producer
            .client()
            .fetch_metadata(Some(&args.topic), Duration::from_secs(30))
            .with_context(|| format!("fetching metadata of topic {}", args.topic))?;
        clients.push(producer);
    }
    eprintln!(
        "produce: {} records of {} bytes to {} with {} producer(s), acks={}, compression={}, linger.ms={}, batch.size={}",
        args.records,
        args.record_size,
        args.topic,
        args.producers,
        args.acks.as_str(),
        args.compression.as_str(),
        args.linger_ms,
        args.batch_bytes
    );

    let barrier = Arc::new(Barrier::new(args.producers as usize));
    let mut handles = Vec::with_capacity(clients.len());
    for (index, producer) in clients.into_iter().enumerate() {
        let index = index as u64;
        // Spread the remainder over the first producers.
        let share = args.records / producers + u64::from(index < args.records % producers);
        let topic = args.topic.clone();
        let pool = pool.clone();
        let barrier = barrier.clone();
        let first_send = first_send.clone();
        let deliveries = deliveries.clone();
        let handle = thread::Builder::new()
            .name(format!("producer-{index}"))
            .spawn(move || -> Result<()> {
                barrier.wait();
                send_all(
                    &producer,
                    &topic,
                    &pool,
                    index,
                    share,
                    &first_send,
                    &deliveries,
                );
                producer
                    .flush(FLUSH_TIMEOUT)
                    .context("flushing the producer")?;
                Ok(())
            })
            .context("starting a producer thread")?;
        handles.push(handle);
    }

    // Progress on stderr while the producers run.
    let mut last_delivered = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        thread::sleep(Duration::from_millis(100));
        let delivered = deliveries.delivered.load(Ordering::Relaxed);
        if delivered / 1_000_000 != last_delivered / 1_000_000 {
            eprintln!("produce: {delivered} delivered");
        }
        last_delivered = delivered;
    }
    let mut thread_failure = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => thread_failure = Some(e),
            Err(_) => thread_failure = Some(anyhow!("a producer thread panicked")),
        }
    }

    let delivered = deliveries.delivered.load(Ordering::Relaxed);
    let errors = deliveries.errors.load(Ordering::Relaxed);
    let first = first_send.load(Ordering::Relaxed);
    let last = deliveries.last_report_micros.load(Ordering::Relaxed);
    let seconds = if first == u64::MAX || last < first {
        0.0
    } else {
        (last - first) as f64 / 1e6
    };
    let bytes = args.records * args.record_size as u64;
    let mut result = json!({
        "mode": "produce",
        "records": args.records,
        "bytes": bytes,
        "seconds": round3(seconds),
        "mb_per_s": round3(mb_per_s(bytes, seconds)),
        "records_per_s": if seconds > 0.0 { (args.records as f64 / seconds).round() as u64 } else { 0 },
        "errors": errors,
        "producers": args.producers,
        "delivered": delivered,
        "record_size": args.record_size,
        "acks": args.acks.as_str(),
        "compression": args.compression.as_str(),
        "linger_ms": args.linger_ms,
        "batch_bytes": args.batch_bytes,
    });
    if args.threads_note {
        result["threads_note"] = json!(format!(
            "{} producer thread(s), each driving one librdkafka producer (BaseProducer, polled by its own thread); \
             librdkafka adds its own main thread and one thread per broker connection to each",
            args.producers
        ));
    }
    print_result(&result)?;

    if let Some(e) = thread_failure {
        return Err(e);
    }
    if errors > 0 {
        let first_error = deliveries
            .first_error()
            .unwrap_or_else(|| "see stderr".into());
        bail!("{errors} record(s) failed; first error: {first_error}");
    }
    if delivered != args.records {
        bail!(
            "{delivered} delivery report(s) for {} records",
            args.records
        );
    }
    Ok(())
}

/// Sends `count` records from one producer as fast as librdkafka takes them: when its local
/// queue is full, serve delivery reports and try the same record again.
fn send_all(
    producer: &BaseProducer<CountingContext>,
    topic: &str,
    pool: &PayloadPool,
    index: u64,
    count: u64,
    first_send: &AtomicU64,
    deliveries: &Deliveries,
) {
    first_send.fetch_min(now_micros(), Ordering::Relaxed);
    for i in 0..count {
        let mut record =
            BaseRecord::<(), [u8]>::to(topic).payload(pool.record(index.wrapping_mul(1 << 40) + i));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    if deliveries.note_error(format!("enqueue: {error}")) {
                        eprintln!("produce: enqueue failed: {error}");
                    }
                    break;
                }
            }
        }
        // Serve delivery reports now and then so that their callbacks do not pile up.
        if i % 4096 == 4095 {
            producer.poll(Duration::ZERO);
        }
    }
}
