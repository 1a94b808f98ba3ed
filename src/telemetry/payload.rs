//! Pushed telemetry payloads: decompression (bounded by `telemetry.max.bytes`, as Kafka bounds
//! the plugin's input) and the OTLP `MetricsData` protobuf, turned into the points the
//! metrics endpoint exports ([`crate::metrics::ClientPoint`]).
//!
//! Only what Prometheus can show is kept: gauges and sums of numbers, with their point
//! attributes as labels; histograms, summaries and non-scalar attributes are skipped (prost
//! skips the fields these types do not declare). Every input is untrusted: decoding returns
//! an error, never panics, and the counts of points and labels are bounded.

use std::io::Read;

use thiserror::Error;

use crate::metrics::{ClientPoint, PointKind};

/// At most this many points are kept from one push.
pub const POINTS_MAX: usize = 10_000;
/// At most this many labels per point (beyond the client's own).
pub const LABELS_MAX: usize = 16;
/// Label values are cut to this many bytes.
const LABEL_VALUE_BYTES_MAX: usize = 256;

/// OTLP's aggregation temporality DELTA (`AGGREGATION_TEMPORALITY_DELTA`).
const TEMPORALITY_DELTA: i32 = 1;

#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("the payload decompresses past telemetry.max.bytes")]
    TooLarge,
    #[error("unknown compression type {0}")]
    UnknownCompression(i8),
    #[error("cannot decompress the payload: {0}")]
    Decompress(String),
    #[error("not an OTLP MetricsData payload: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decompresses `bytes` (Kafka's compression type ids) into at most `max_bytes`, then decodes
/// the OTLP metrics in it.
pub fn decode(compression_type: i8, bytes: &[u8], max_bytes: usize) -> Result<Vec<ClientPoint>, PayloadError> {
    let raw = decompress(compression_type, bytes, max_bytes)?;
    let data: otlp::MetricsData = prost::Message::decode(raw.as_slice())?;
    Ok(points(data))
}

/// Kafka's codecs as record batches use them: 0 none, 1 gzip, 2 snappy (xerial framing or
/// raw), 3 lz4 (frame format), 4 zstd. Output past `max_bytes` is refused as it is produced.
pub fn decompress(compression_type: i8, bytes: &[u8], max_bytes: usize) -> Result<Vec<u8>, PayloadError> {
    let bounded = |reader: &mut dyn Read| -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::new();
        let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(1);
        reader.take(limit).read_to_end(&mut out).map_err(|e| PayloadError::Decompress(e.to_string()))?;
        if out.len() > max_bytes {
            return Err(PayloadError::TooLarge);
        }
        Ok(out)
    };
    let err = |e: std::io::Error| PayloadError::Decompress(e.to_string());
    match compression_type {
        0 if bytes.len() > max_bytes => Err(PayloadError::TooLarge),
        0 => Ok(bytes.to_vec()),
        1 => bounded(&mut flate2::read::MultiGzDecoder::new(bytes)),
        2 => snappy(bytes, max_bytes),
        3 => bounded(&mut lz4::Decoder::new(bytes).map_err(err)?),
        4 => bounded(&mut zstd::stream::read::Decoder::new(bytes).map_err(err)?),
        other => Err(PayloadError::UnknownCompression(other)),
    }
}

/// snappy-java's stream framing: a 16-byte header, then blocks of a 4-byte big-endian
/// length and a raw snappy block. Without the header the bytes are one raw block (as
/// snappy-java reads them). Each block's decompressed size is checked before it is
/// decompressed.
fn snappy(bytes: &[u8], max_bytes: usize) -> Result<Vec<u8>, PayloadError> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const HEADER_BYTES: usize = 16;
    let err = |e: snap::Error| PayloadError::Decompress(e.to_string());
    let mut out = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), PayloadError> {
        let len = snap::raw::decompress_len(compressed).map_err(err)?;
        if out.len().saturating_add(len) > max_bytes {
            return Err(PayloadError::TooLarge);
        }
        out.extend_from_slice(&snap::raw::Decoder::new().decompress_vec(compressed).map_err(err)?);
        Ok(())
    };
    if !bytes.starts_with(MAGIC) {
        block(bytes, &mut out)?;
        return Ok(out);
    }
    let mut rest = bytes.get(HEADER_BYTES..).ok_or_else(|| PayloadError::Decompress("short snappy header".into()))?;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| PayloadError::Decompress("short snappy block length".into()))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        let compressed = tail.get(..len).ok_or_else(|| PayloadError::Decompress("short snappy block".into()))?;
        block(compressed, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// The numeric gauge and sum points of `data`, named for Prometheus.
fn points(data: otlp::MetricsData) -> Vec<ClientPoint> {
    let mut out = Vec::new();
    let metrics = data.resource_metrics.into_iter().flat_map(|r| r.scope_metrics).flat_map(|s| s.metrics);
    for metric in metrics {
        let name = prometheus_name(&metric.name);
        let (kind, data_points) = match metric.data {
            Some(otlp::metric::Data::Gauge(g)) => (PointKind::Gauge, g.data_points),
            Some(otlp::metric::Data::Sum(s)) => {
                (PointKind::Sum { delta: s.aggregation_temporality == TEMPORALITY_DELTA, monotonic: s.is_monotonic }, s.data_points)
            }
            None => continue,
        };
        for p in data_points {
            if out.len() >= POINTS_MAX {
                return out;
            }
            let value = match p.value {
                Some(otlp::number_data_point::Value::AsDouble(v)) => v,
                Some(otlp::number_data_point::Value::AsInt(v)) => v as f64,
                None => continue,
            };
            out.push(ClientPoint { name: name.clone(), kind, labels: labels(p.attributes), value });
        }
    }
    out
}

fn labels(attributes: Vec<otlp::KeyValue>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in attributes {
        if out.len() >= LABELS_MAX {
            break;
        }
        let value = match kv.value.and_then(|v| v.value) {
            Some(otlp::any_value::Value::StringValue(s)) => s,
            Some(otlp::any_value::Value::BoolValue(b)) => b.to_string(),
            Some(otlp::any_value::Value::IntValue(i)) => i.to_string(),
            Some(otlp::any_value::Value::DoubleValue(d)) => d.to_string(),
            None => continue,
        };
        let name = sanitize(&kv.key);
        // The client's own labels come from the instance, not from the payload.
        if name.is_empty() || name == "client_instance_id" || name == "client_id" || out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        out.push((name, truncate(value, LABEL_VALUE_BYTES_MAX)));
    }
    out.sort();
    out
}

/// `org.apache.kafka.producer.record.queue.time.max` → `kafka_producer_record_queue_time_max`;
/// other names get a `client_` prefix.
pub fn prometheus_name(otlp_name: &str) -> String {
    match otlp_name.strip_prefix("org.apache.kafka.") {
        Some(rest) => format!("kafka_{}", sanitize(rest)),
        None => format!("client_{}", sanitize(otlp_name)),
    }
}

/// Prometheus' name alphabet: letters, digits and `_`, not starting with a digit.
fn sanitize(name: &str) -> String {
    let mut s: String = name.chars().take(200).map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The subset of OpenTelemetry's `opentelemetry/proto/metrics/v1/metrics.proto` (and
/// `common/v1`, `resource/v1`) that a metrics push needs, with its field numbers.
pub mod otlp {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricsData {
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub description: String,
        #[prost(string, tag = "3")]
        pub unit: String,
        #[prost(oneof = "metric::Data", tags = "5, 7")]
        pub data: Option<metric::Data>,
    }

    pub mod metric {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Data {
            #[prost(message, tag = "5")]
            Gauge(super::Gauge),
            #[prost(message, tag = "7")]
            Sum(super::Sum),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sum {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
        /// 1 DELTA, 2 CUMULATIVE.
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
        #[prost(bool, tag = "3")]
        pub is_monotonic: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NumberDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(oneof = "number_data_point::Value", tags = "4, 6")]
        pub value: Option<number_data_point::Value>,
    }

    pub mod number_data_point {
        #[derive(Clone, Copy, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(double, tag = "4")]
            AsDouble(f64),
            #[prost(sfixed64, tag = "6")]
            AsInt(i64),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4")]
        pub value: Option<any_value::Value>,
    }

    pub mod any_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            StringValue(String),
            #[prost(bool, tag = "2")]
            BoolValue(bool),
            #[prost(int64, tag = "3")]
            IntValue(i64),
            #[prost(double, tag = "4")]
            DoubleValue(f64),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use std::io::Write;

    use prost::Message;
    use proptest::prelude::*;

    use super::otlp::*;
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }) }
    }

    fn point(value: number_data_point::Value, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint { attributes, start_time_unix_nano: 0, time_unix_nano: 1, value: Some(value) }
    }

    /// A push as the Java client makes one: a gauge and a delta sum.
    pub(crate) fn sample_payload() -> Vec<u8> {
        let gauge = Metric {
            name: "org.apache.kafka.producer.record.queue.time.max".into(),
            description: String::new(),
            unit: String::new(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(number_data_point::Value::AsDouble(12.5), vec![kv("client_id", "evil"), kv("node.id", "1")])] })),
        };
        let sum = Metric {
            name: "org.apache.kafka.producer.connection.creation.total".into(),
            description: String::new(),
            unit: String::new(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(number_data_point::Value::AsInt(3), vec![])],
                aggregation_temporality: TEMPORALITY_DELTA,
                is_monotonic: true,
            })),
        };
        let data = MetricsData {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: vec![kv("client_id", "app")] }),
                scope_metrics: vec![ScopeMetrics { metrics: vec![gauge, sum] }],
            }],
        };
        data.encode_to_vec()
    }

    #[test]
    fn gauges_and_sums_become_named_points() {
        let points = decode(0, &sample_payload(), 1 << 20).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].name, "kafka_producer_record_queue_time_max");
        assert_eq!(points[0].kind, PointKind::Gauge);
        assert_eq!(points[0].labels, vec![("node_id".to_string(), "1".to_string())], "the payload cannot set client_id");
        assert_eq!(points[0].value, 12.5);
        assert_eq!(points[1].name, "kafka_producer_connection_creation_total");
        assert_eq!(points[1].kind, PointKind::Sum { delta: true, monotonic: true });
        assert_eq!(points[1].value, 3.0);
        assert_eq!(prometheus_name("my.app-metric"), "client_my_app_metric");
    }

    #[test]
    fn every_codec_decompresses_and_is_bounded() {
        let raw = sample_payload();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        let gzip = gz.finish().unwrap();
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        lz.write_all(&raw).unwrap();
        let lz4 = lz.finish().0;
        let zstd = zstd::stream::encode_all(raw.as_slice(), 3).unwrap();
        let block = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&u32::try_from(block.len()).unwrap().to_be_bytes());
        xerial.extend_from_slice(&block);
        for (codec, bytes) in [(1, &gzip), (2, &xerial), (2, &block), (3, &lz4), (4, &zstd)] {
            assert_eq!(decompress(codec, bytes, raw.len()).unwrap(), raw, "codec {codec}");
            assert!(matches!(decompress(codec, bytes, raw.len() - 1), Err(PayloadError::TooLarge)), "codec {codec}");
        }
        assert!(matches!(decompress(0, &raw, raw.len() - 1), Err(PayloadError::TooLarge)));
        assert!(matches!(decompress(5, &raw, 1 << 20), Err(PayloadError::UnknownCompression(5))));
        // A small gzip bomb stops at the bound instead of filling memory.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 8 << 20]).unwrap();
        assert!(matches!(decompress(1, &gz.finish().unwrap(), 1 << 20), Err(PayloadError::TooLarge)));
    }

    proptest! {
        /// Arbitrary bytes, under every codec, give points or an error, never a panic.
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), codec in -1i8..6) {
            let _ = decode(codec, &bytes, 64 * 1024);
        }

        /// A valid payload with a few bytes flipped still never panics.
        #[test]
        fn corrupted_payloads_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = sample_payload();
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] ^= b;
            }
            let _ = decode(0, &bytes, 64 * 1024);
        }
    }
}
