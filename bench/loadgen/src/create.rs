//! `create`: makes a topic with the admin client and waits until every partition has a leader and all its replicas in the ISR (no measurement).

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::Client;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;

use crate::common::{QuietContext, print_result};

/// How long the topic may take to show all its partitions with a leader and a whole ISR.
const READY_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Broker address, host:port.
    #[arg(long)]
    bootstrap: String,
    /// Topic name.
    #[arg(long)]
    topic: String,
    /// Number of partitions.
    #[arg(long)]
    partitions: i32,
    /// Replicas of every partition, placed by the broker (ignored with --replica-assignment).
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Replica placement, one entry per partition, e.g. `1:2:3,1:3:2` (the first replica is
    /// the preferred leader); the number of entries must equal --partitions.
    #[arg(long)]
    replica_assignment: Option<String>,
    /// A topic config, `key=value` (repeatable), e.g. `min.insync.replicas=2`.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
}

/// `1:2:3,1:3:2` -> [[1, 2, 3], [1, 3, 2]].
fn parse_assignment(text: &str) -> Result<Vec<Vec<i32>>> {
    text.split(',')
        .map(|entry| {
            entry
                .split(':')
                .map(|id| {
                    id.trim()
                        .parse::<i32>()
                        .with_context(|| format!("{id:?} in --replica-assignment is not a node id"))
                })
                .collect()
        })
        .collect()
}

pub fn run(args: CreateArgs) -> Result<()> {
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "blumfeld-loadgen-admin");
    let admin: AdminClient<QuietContext> = config
        .create_with_context(QuietContext)
        .context("creating the admin client")?;

    if args.replication_factor < 1 {
        bail!("--replication-factor must be at least 1");
    }
    let assignment = args
        .replica_assignment
        .as_deref()
        .map(parse_assignment)
        .transpose()?;
    let rows: Vec<&[i32]> = assignment.iter().flatten().map(Vec::as_slice).collect();
    let replication = match &assignment {
        Some(a) if a.len() != args.partitions as usize => {
            bail!(
                "--replica-assignment has {} entries for {} partitions",
                a.len(),
                args.partitions
            )
        }
        Some(_) => TopicReplication::Variable(&rows),
        None => TopicReplication::Fixed(args.replication_factor),
    };
    let configs: Vec<(&str, &str)> = args
        .configs
        .iter()
        .map(|c| {
            c.split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--config needs KEY=VALUE, got {c:?}"))
        })
        .collect::<Result<_>>()?;
    let mut topic = NewTopic::new(&args.topic, args.partitions, replication);
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let started = Instant::now();
    let results = futures_executor::block_on(admin.create_topics([&topic], &options))
        .context("CreateTopics request")?;
    let mut existed = false;
    for result in results {
        match result {
            Ok(name) => eprintln!(
                "create: topic {name} created with {} partitions in {:.3} s",
                args.partitions,
                started.elapsed().as_secs_f64()
            ),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("create: topic {name} already exists");
                existed = true;
            }
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }

    wait_for_leaders(admin.inner(), &args.topic, args.partitions, existed)?;
    eprintln!(
        "create: all partitions have a leader and a whole ISR after {:.3} s",
        started.elapsed().as_secs_f64()
    );
    print_result(&json!({"mode": "create", "topic": args.topic, "partitions": args.partitions}))
}

/// Polls metadata until the topic has `partitions` partitions, each with a leader and every
/// replica in its ISR. A topic
/// that `existed` before with another partition count is an error, not something to wait for.
fn wait_for_leaders(
    client: &Client<QuietContext>,
    topic: &str,
    partitions: i32,
    existed: bool,
) -> Result<()> {
    let started = Instant::now();
    loop {
        // (partitions listed, of which with a leader)
        let seen = match client.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| {
                    let led = t
                        .partitions()
                        .iter()
                        .filter(|p| {
                            p.leader() >= 0
                                && p.error().is_none()
                                && p.isr().len() >= p.replicas().len()
                        })
                        .count();
                    (t.partitions().len(), led)
                }),
            Err(e) => {
                eprintln!("create: metadata request failed: {e}");
                None
            }
        };
        if let Some((listed, led)) = seen {
            if listed == partitions as usize && led == listed {
                return Ok(());
            }
            if existed && listed > 0 && listed != partitions as usize {
                bail!("topic {topic} already exists with {listed} partitions, not {partitions}");
            }
        }
        if started.elapsed() > READY_DEADLINE {
            bail!(
                "topic {topic} did not show {partitions} partitions with a leader and a whole ISR within {READY_DEADLINE:?}"
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Broker address, host:port.
    #[arg(long)]
    bootstrap: String,
    /// Topic name.
    #[arg(long)]
    topic: String,
}

/// Deletes a topic (an unknown topic is fine), so the next runs do not pay for its pages.
pub fn delete(args: DeleteArgs) -> Result<()> {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("client.id", "blumfeld-loadgen-admin");
    let admin: AdminClient<QuietContext> = config
        .create_with_context(QuietContext)
        .context("creating the admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures_executor::block_on(admin.delete_topics(&[args.topic.as_str()], &options))
        .context("DeleteTopics request")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => bail!("deleting topic {name}: {code}"),
        }
    }
    print_result(&json!({"mode": "delete", "topic": args.topic}))
}
