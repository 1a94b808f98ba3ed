"""Minimal raw Kafka wire client: just enough to probe a broker without any client library.

Used for readiness probes (Metadata), the raw Fetch that checks batch compression attributes,
and as the building block of the malformed-frames test. Only non-flexible request versions are
encoded here (header v1), which every Kafka 4.x broker still serves for these APIs.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18

COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class WireError(Exception):
    pass


# ------------------------------------------------------------------ encoding


def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def array(items: list[bytes] | None) -> bytes:
    if items is None:
        return i32(-1)
    return i32(len(items)) + b"".join(items)


def request_header_v1(api_key: int, api_version: int, correlation_id: int, client_id: str = "compat-raw") -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def api_versions_v0(correlation_id: int) -> bytes:
    return frame(request_header_v1(API_API_VERSIONS, 0, correlation_id))


def metadata_v1(correlation_id: int, topics: list[str] | None = None) -> bytes:
    body = array(None if topics is None else [string(t) for t in topics])
    return frame(request_header_v1(API_METADATA, 1, correlation_id) + body)


def fetch_v11(correlation_id: int, topic: str, partition: int, offset: int, max_bytes: int = 8 << 20,
              rack: str = "") -> bytes:
    part = i32(partition) + i32(-1) + i64(offset) + i64(-1) + i32(max_bytes)
    topics = array([string(topic) + array([part])])
    body = (
        i32(-1) + i32(500) + i32(1) + i32(max_bytes) + i8(0)  # replica, max_wait_ms, min/max bytes, isolation
        + i32(0) + i32(-1)  # no fetch session
        + topics + array([]) + string(rack)
    )
    return frame(request_header_v1(API_FETCH, 11, correlation_id) + body)


# ------------------------------------------------------------------ decoding


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError(f"short read: need {n} at {self.pos} of {len(self.data)}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes_(self) -> bytes | None:
        n = self.i32()
        return None if n < 0 else self.take(n)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WireError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_response(sock: socket.socket, correlation_id: int) -> Reader:
    """Reads one response frame (header v0) and returns a reader positioned after the header."""
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 4 or size > 256 << 20:
        raise WireError(f"implausible response size {size}")
    r = Reader(recv_exact(sock, size))
    got = r.i32()
    if got != correlation_id:
        raise WireError(f"correlation id {got}, expected {correlation_id}")
    return r


@dataclass
class BrokerInfo:
    node_id: int
    host: str
    port: int


def request(host: str, port: int, payload: bytes, correlation_id: int, timeout_s: float = 5.0) -> Reader:
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(payload)
        return recv_response(s, correlation_id)


def metadata_brokers(host: str, port: int, timeout_s: float = 5.0) -> list[BrokerInfo]:
    """Sends Metadata v1 for no topics; returns the broker list. Raises on any failure."""
    r = request(host, port, metadata_v1(7, []), 7, timeout_s)
    brokers = []
    for _ in range(r.i32()):
        node_id = r.i32()
        bhost = r.string() or ""
        bport = r.i32()
        r.string()  # rack
        brokers.append(BrokerInfo(node_id, bhost, bport))
    return brokers


def api_versions(host: str, port: int, timeout_s: float = 5.0) -> dict[int, tuple[int, int]]:
    r = request(host, port, api_versions_v0(3), 3, timeout_s)
    err = r.i16()
    if err != 0:
        raise WireError(f"ApiVersions error {err}")
    out = {}
    for _ in range(r.i32()):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        out[key] = (lo, hi)
    return out


@dataclass
class BatchInfo:
    base_offset: int
    record_count: int
    magic: int
    compression: str
    attributes: int


def fetch_batches(host: str, port: int, topic: str, partition: int, offset: int = 0) -> tuple[int, list[BatchInfo]]:
    """Fetch v11 of one partition; returns (error_code, batches found in the records field)."""
    r = request(host, port, fetch_v11(11, topic, partition, offset), 11, timeout_s=10)
    r.i32()  # throttle
    top_err = r.i16()
    r.i32()  # session id
    if top_err:
        return top_err, []
    batches: list[BatchInfo] = []
    err = 0
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()  # partition
            err = r.i16()
            r.i64(), r.i64(), r.i64()  # high watermark, last stable, log start
            n_aborted = r.i32()
            for _ in range(max(n_aborted, 0)):
                r.i64(), r.i64()
            r.i32()  # preferred read replica
            records = r.bytes_() or b""
            batches.extend(parse_batches(records))
    return err, batches


def fetch_preferred_replica(host: str, port: int, topic: str, partition: int, offset: int, rack: str) -> tuple[int, int, int]:
    """Fetch v11 of one partition by a consumer in `rack`; returns (error_code, preferred read
    replica, bytes of records)."""
    r = request(host, port, fetch_v11(12, topic, partition, offset, rack=rack), 12, timeout_s=10)
    r.i32()  # throttle
    top_err = r.i16()
    r.i32()  # session id
    if top_err:
        return top_err, -1, 0
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()  # partition
            err = r.i16()
            r.i64(), r.i64(), r.i64()  # high watermark, last stable, log start
            for _ in range(max(r.i32(), 0)):
                r.i64(), r.i64()
            preferred = r.i32()
            records = r.bytes_() or b""
            return err, preferred, len(records)
    raise WireError("no partition in the fetch response")


def parse_batches(records: bytes) -> list[BatchInfo]:
    out = []
    pos = 0
    # A fetch may end with a partial batch; stop at the first incomplete one.
    while pos + 61 <= len(records):
        base_offset, batch_len = struct.unpack_from(">qi", records, pos)
        if pos + 12 + batch_len > len(records):
            break
        magic = records[pos + 16]
        attributes = struct.unpack_from(">h", records, pos + 21)[0]
        count = struct.unpack_from(">i", records, pos + 57)[0]
        out.append(BatchInfo(base_offset, count, magic, COMPRESSION_NAMES.get(attributes & 7, "?"), attributes))
        pos += 12 + batch_len
    return out
