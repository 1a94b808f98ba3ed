//! `raw-produce`: broker produce capacity with a client that costs next to nothing. Batches of
//! 1 KiB records are encoded once, up front (one per partition, uncompressed or lz4), and the
//! same Produce requests are sent again and again over one connection, pipelined. This is not
//! a real client: it shows what one broker core absorbs when the client is not the limit,
//! which a real client on one core cannot show for a broker faster than that client. One
//! untimed request goes first, retried while a new leader is still taking over.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use rdkafka::consumer::BaseConsumer;
use serde_json::json;

use crate::common::{Compression as Codec, PayloadPool, QuietContext, consumer_config, mb_per_s, print_result, round3, topic_partitions};

/// Produce v9: the first flexible version, served by Kafka 4 and Blumfeld alike.
const PRODUCE_VERSION: i16 = 9;

#[derive(Args, Debug)]
pub struct RawProduceArgs {
    /// Broker address (host:port), loopback only.
    #[arg(long)]
    bootstrap: String,
    /// Topic to write (must exist).
    #[arg(long)]
    topic: String,
    /// Records to write in total (rounded up to whole requests).
    #[arg(long)]
    records: u64,
    /// Value bytes per record.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Target uncompressed bytes per batch (one batch per partition per request).
    #[arg(long, default_value_t = 256 * 1024)]
    batch_bytes: usize,
    /// Compression of the pre-built batches.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Requests sent before waiting for the oldest answer.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
}

pub fn run(args: RawProduceArgs) -> Result<()> {
    let addr: SocketAddr = args.bootstrap.parse().with_context(|| format!("{} is not host:port", args.bootstrap))?;
    crate::common::require_loopback(&addr)?;
    let consumer: BaseConsumer<QuietContext> =
        consumer_config(&args.bootstrap).create_with_context(QuietContext).context("creating the metadata client")?;
    let partitions = topic_partitions(&consumer, &args.topic)?;
    drop(consumer);

    let per_batch = (args.batch_bytes / args.record_size.max(1)).max(1);
    let batch = encode_batch(per_batch, args.record_size, args.compression)?;
    let per_request = (per_batch * partitions.len()) as u64;
    let requests = args.records.div_ceil(per_request).max(1);
    let mut frame = produce_frame(&args.topic, &partitions, &batch)?;
    eprintln!(
        "raw-produce: {requests} requests of {} partitions x {per_batch} records ({} B batches, {} B frames)",
        partitions.len(),
        batch.len(),
        frame.len()
    );

    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).context("setting a read timeout")?;
    let mut reader = stream.try_clone().context("cloning the socket")?;
    let mut outstanding: VecDeque<i32> = VecDeque::new();
    let mut buf = vec![0u8; 1 << 16];
    warm_up(&mut stream, &mut reader, &mut frame, &mut buf)?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut answered = 0u64;
    while answered < requests {
        while sent < requests && outstanding.len() < args.in_flight.max(1) {
            let correlation_id = sent as i32;
            set_correlation_id(&mut frame, correlation_id, &mut stream)?;
            outstanding.push_back(correlation_id);
            sent += 1;
        }
        let expected = outstanding.pop_front().ok_or_else(|| anyhow!("nothing outstanding"))?;
        check_response(&mut reader, &mut buf, expected)?;
        answered += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let records = requests * per_request;
    let bytes = records * args.record_size as u64;
    print_result(&json!({
        "mode": "raw-produce",
        "records": records,
        "bytes": bytes,
        "seconds": round3(seconds),
        "mb_per_s": round3(mb_per_s(bytes, seconds)),
        "records_per_s": (records as f64 / seconds).round(),
        "errors": 0,
        "requests": requests,
        "partitions": partitions.len(),
        "batch_records": per_batch,
        "compression": args.compression.as_str(),
        "in_flight": args.in_flight,
        "acks": "all",
    }))
}

/// One batch of `count` records with `record_size`-byte values (the same pseudo-random
/// letters the `produce` subcommand sends), base offset 0: the broker assigns the offsets.
fn encode_batch(count: usize, record_size: usize, codec: Codec) -> Result<Bytes> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let pool = PayloadPool::new(record_size);
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let value = pool.record(i as u64).to_vec();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // offset - sequence stays constant, so the encoder keeps one batch.
                sequence: i as i32 - 1,
                timestamp: now,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let compression = match codec {
        Codec::None => kafka_protocol::records::Compression::None,
        Codec::Lz4 => kafka_protocol::records::Compression::Lz4,
    };
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, records.iter(), &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| anyhow!("encoding the batch: {e}"))?;
    Ok(out.freeze())
}

/// A whole Produce frame (length prefix included) with the same batch for every partition.
fn produce_frame(topic: &str, partitions: &[i32], batch: &Bytes) -> Result<BytesMut> {
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    let mut data = TopicProduceData::default();
    data.name = TopicName(StrBytes::from_string(topic.to_string()));
    for &p in partitions {
        let mut pd = PartitionProduceData::default();
        pd.index = p;
        pd.records = Some(batch.clone());
        data.partition_data.push(pd);
    }
    request.topic_data.push(data);
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Produce as i16;
    header.request_api_version = PRODUCE_VERSION;
    header.client_id = Some(StrBytes::from_static_str("blumfeld-loadgen-raw"));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::Produce.request_header_version(PRODUCE_VERSION))
        .map_err(|e| anyhow!("encoding the header: {e}"))?;
    request.encode(&mut body, PRODUCE_VERSION).map_err(|e| anyhow!("encoding the request: {e}"))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes `frame` with `correlation_id` in its header (bytes 8..12 after the length).
fn set_correlation_id(frame: &mut BytesMut, correlation_id: i32, stream: &mut TcpStream) -> Result<()> {
    frame
        .get_mut(8..12)
        .ok_or_else(|| anyhow!("frame too short"))?
        .copy_from_slice(&correlation_id.to_be_bytes());
    stream.write_all(frame).context("sending a Produce request")
}

/// Error codes a partition answers while its new leader is taking over (NOT_LEADER_OR_FOLLOWER,
/// UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS).
const TAKING_OVER: [i16; 4] = [6, 3, 5, 19];

/// How long the untimed first request may be retried.
const WARM_UP_DEADLINE: Duration = Duration::from_secs(30);

/// Sends the request once, untimed, again every 100 ms while some partition answers an error
/// of `TAKING_OVER`: a broker of a cluster can list itself as the leader in Metadata a moment
/// before it serves as one. Its records are written but not counted.
fn warm_up(stream: &mut TcpStream, reader: &mut TcpStream, frame: &mut BytesMut, buf: &mut Vec<u8>) -> Result<()> {
    let started = Instant::now();
    for attempt in 1.. {
        let correlation_id = -attempt;
        set_correlation_id(frame, correlation_id, stream)?;
        let errors = response_errors(reader, buf, correlation_id)?;
        let Some(&(partition, code)) = errors.first() else {
            return Ok(());
        };
        if !errors.iter().all(|(_, code)| TAKING_OVER.contains(code)) || started.elapsed() > WARM_UP_DEADLINE {
            bail!("partition {partition} answered error {code}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Reads one response frame and fails unless it answers `expected` with no error anywhere.
fn check_response(reader: &mut TcpStream, buf: &mut Vec<u8>, expected: i32) -> Result<()> {
    if let Some((partition, code)) = response_errors(reader, buf, expected)?.first() {
        bail!("partition {partition} answered error {code}");
    }
    Ok(())
}

/// Reads one response frame answering `expected`; returns the (partition, error code) of every
/// partition that answered an error.
fn response_errors(reader: &mut TcpStream, buf: &mut Vec<u8>, expected: i32) -> Result<Vec<(i32, i16)>> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).context("reading a response length")?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 64 << 20 {
        bail!("response of {len} bytes is implausible");
    }
    buf.resize(len, 0);
    reader.read_exact(buf).context("reading a response")?;
    let mut bytes = Bytes::copy_from_slice(buf);
    let header = ResponseHeader::decode(&mut bytes, ApiKey::Produce.response_header_version(PRODUCE_VERSION))
        .map_err(|e| anyhow!("decoding a response header: {e}"))?;
    if header.correlation_id != expected {
        bail!("response {} where {expected} was due", header.correlation_id);
    }
    let response =
        ProduceResponse::decode(&mut bytes, PRODUCE_VERSION).map_err(|e| anyhow!("decoding a response: {e}"))?;
    Ok(response
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .filter(|p| p.error_code != 0)
        .map(|p| (p.index, p.error_code))
        .collect())
}
