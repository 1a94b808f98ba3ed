//! `consume`: consumer throughput — every partition read from the beginning, without a group, from the first record to the N-th.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::common::{
    QuietContext, consumer_config, mb_per_s, print_result, round3, topic_partitions,
};

/// How long reading N records may take, from the assignment on.
const DEADLINE: Duration = Duration::from_secs(300);

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Broker address, host:port.
    #[arg(long)]
    bootstrap: String,
    /// Topic to read; all its partitions are assigned, no group is joined.
    #[arg(long)]
    topic: String,
    /// Records to read before stopping.
    #[arg(long)]
    records: u64,
}

pub fn run(args: ConsumeArgs) -> Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    let consumer: BaseConsumer<QuietContext> = consumer_config(&args.bootstrap)
        .create_with_context(QuietContext)
        .context("creating the consumer")?;
    let partitions = topic_partitions(&consumer, &args.topic)?;
    let mut assignment = TopicPartitionList::with_capacity(partitions.len());
    for &partition in &partitions {
        assignment
            .add_partition_offset(&args.topic, partition, Offset::Beginning)
            .context("building the assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning the partitions")?;
    eprintln!(
        "consume: {} records from {} partition(s) of {}",
        args.records,
        partitions.len(),
        args.topic
    );

    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = started;
    let mut records: u64 = 0;
    let mut bytes: u64 = 0;
    let mut errors: u64 = 0;
    while records < args.records {
        if started.elapsed() > DEADLINE {
            print_partial(&args, records, bytes)?;
            bail!(
                "read {records} of {} records within {DEADLINE:?}",
                args.records
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                records += 1;
                bytes += message.payload_len() as u64;
                if records.is_multiple_of(1_000_000) {
                    eprintln!("consume: {records} records");
                }
            }
            Some(Err(e)) => {
                errors += 1;
                if errors <= 10 {
                    eprintln!("consume: {e}");
                }
            }
        }
    }

    let seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    print_result(&json!({
        "mode": "consume",
        "records": records,
        "bytes": bytes,
        "seconds": round3(seconds),
        "mb_per_s": round3(mb_per_s(bytes, seconds)),
        "partitions": partitions.len(),
        "errors": errors,
    }))
}

/// The result line of a read that did not finish, so a script still sees how far it got.
fn print_partial(args: &ConsumeArgs, records: u64, bytes: u64) -> Result<()> {
    print_result(&json!({
        "mode": "consume",
        "records": records,
        "bytes": bytes,
        "seconds": 0.0,
        "mb_per_s": 0.0,
        "expected_records": args.records,
        "error": "deadline",
    }))
}
