//! blumfeld-loadgen: a load generator on librdkafka that measures a Kafka-protocol broker (and the loopback ceiling) without being the limit itself.
//!
//! Every subcommand writes progress to stderr and one JSON object as the last line of stdout;
//! MB means 2^20 bytes and byte counts are value bytes.

mod common;
mod consume;
mod create;
mod e2e;
mod net;
mod produce;
mod raw;
mod steady;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "blumfeld-loadgen",
    version,
    about = "Load generator on librdkafka for benchmarking Blumfeld against Apache Kafka",
    long_about = "Load generator on librdkafka for benchmarking Blumfeld against Apache Kafka.\n\n\
        Every subcommand prints progress to stderr and exactly one JSON object as the last line of \
        stdout. MB/s is bytes / 2^20 / seconds; bytes are value bytes (records x record size). \
        Producers never use idempotence, whatever --acks is. Consumers assign partitions by hand \
        and never join a group or commit offsets."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a topic and wait until all its partitions have a leader and a whole ISR.
    Create(create::CreateArgs),
    /// Delete a topic (an unknown topic is fine).
    Delete(create::DeleteArgs),
    /// Producer throughput: N records as fast as possible, first send to last delivery report.
    Produce(produce::ProduceArgs),
    /// Consumer throughput: read N records of every partition from the beginning, no group.
    Consume(consume::ConsumeArgs),
    /// End-to-end latency at a fixed produce rate (one producer, one consumer, one process).
    E2e(e2e::E2eArgs),
    /// Availability under a fault: a fixed-rate producer's longest gap between acknowledgements.
    Steady(steady::SteadyArgs),
    /// Broker produce capacity: pre-built batches sent again and again (not a real client).
    RawProduce(raw::RawProduceArgs),
    /// Loopback ceiling, receiving side: read one TCP connection to its end.
    Sink(net::SinkArgs),
    /// Loopback ceiling, sending side: write to a sink for a given time.
    Blast(net::BlastArgs),
}

fn main() -> ExitCode {
    common::epoch();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Create(args) => create::run(args),
        Command::Delete(args) => create::delete(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::E2e(args) => e2e::run(args),
        Command::Steady(args) => steady::run(args),
        Command::RawProduce(args) => raw::run(args),
        Command::Sink(args) => net::sink(args),
        Command::Blast(args) => net::blast(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line with the whole chain of causes, without a backtrace.
            eprintln!("blumfeld-loadgen: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
