"""A Kafka 4.x `server.properties` starts Blumfeld unchanged (`blumfeld server.properties`, as
`kafka-server-start.sh` takes it): the keys Kafka defines and Blumfeld does not use are named in
one warning with their lines, clients produce and consume, and a key Kafka does not define
(ZooKeeper's, gone in Kafka 4) stops start-up naming the key and its line.

Blumfeld only: this checks how Blumfeld reads Kafka's file, which Kafka reads by definition."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from harness.broker import BrokerProcess, blumfeld_bin, broker_kind
from harness.wait import wait_until

pytestmark = pytest.mark.skipif(broker_kind() != "blumfeld", reason="reads Blumfeld's handling of Kafka's file")

# The combined-node sample Kafka 4.x ships (config/server.properties), with the addresses a
# test may use: an ephemeral client port on 127.0.0.1 and this test's own directories.
SERVER_PROPERTIES = """\
############################# Server Basics #############################
# The role of this server. Setting this puts us in KRaft mode
process.roles=broker,controller

# The node id associated with this instance's roles
node.id=1

# List of Controller servers used to bootstrap connections to the controller cluster.
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}

############################# Socket Server Settings #############################
listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{controller_port}

# Name of listener used for communication between brokers.
inter.broker.listener.name=PLAINTEXT

# A comma-separated list of the names of the listeners used by the controller.
controller.listener.names=CONTROLLER

# Maps listener names to security protocols, the default is for them to be the same.
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL

# The number of threads that the server uses for receiving requests from the network
num.network.threads=3

# The number of threads that the server uses for processing requests, which may include disk I/O
num.io.threads=8

# The send buffer (SO_SNDBUF) used by the socket server
socket.send.buffer.bytes=102400

# The receive buffer (SO_RCVBUF) used by the socket server
socket.receive.buffer.bytes=102400

# The maximum size of a request that the socket server will accept
socket.request.max.bytes=104857600

############################# Log Basics #############################
# A comma separated list of directories under which to store log files
log.dirs={log_dirs}

# The default number of log partitions per topic.
num.partitions=3

# The number of threads per data directory to be used for log recovery at startup
num.recovery.threads.per.data.dir=1

############################# Internal Topic Settings  #############################
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1

############################# Log Retention Policy #############################
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""

# The keys above that Kafka 4.x defines and Blumfeld has no use for.
UNUSED = ["num.network.threads", "num.io.threads", "num.recovery.threads.per.data.dir",
          "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr"]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PropertiesBroker(BrokerProcess):
    """Blumfeld started the way Kafka is: the properties file as its one argument."""

    def __init__(self, workdir: Path, properties: Path):
        super().__init__(workdir)
        self.properties = properties

    def command(self) -> list[str]:
        return [str(blumfeld_bin()), str(self.properties)]


def write_properties(workdir: Path, extra: str = "") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "server.properties"
    path.write_text(SERVER_PROPERTIES.format(controller_port=free_port(), log_dirs=workdir / "kraft-combined-logs") + extra)
    return path


def line_of(path: Path, key: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith(key + "="):
            return n
    raise AssertionError(f"{key} not in {path}")


def test_kafka_server_properties_starts_blumfeld(tmp_path):
    workdir = tmp_path / "node"
    path = write_properties(workdir)
    broker = PropertiesBroker(workdir, path)
    try:
        broker.start()
        log = broker.log_path.read_text()
        warnings = [line for line in log.splitlines() if "Blumfeld does not use" in line]
        assert len(warnings) == 1, log
        for key in UNUSED:
            assert f"{key} ({path}:{line_of(path, key)})" in warnings[0], warnings[0]
        assert "socket.request.max.bytes" not in warnings[0]

        topic = f"props-{uuid.uuid4().hex[:8]}"
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        for i in range(30):
            producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "props", "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        seen: list[bytes] = []
        partitions: set[int] = set()

        def all_read():
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                seen.append(m.value())
                partitions.add(m.partition())
            return len(seen) >= 30

        try:
            wait_until(all_read, 60, "30 records consumed")
        finally:
            consumer.close()
        assert sorted(seen) == sorted(f"v{i}".encode() for i in range(30))
        # num.partitions=3 from the file applies to the auto-created topic.
        assert partitions == {0, 1, 2}, partitions
        # The data went where log.dirs says.
        assert any((workdir / "kraft-combined-logs").glob(f"{topic}-*")), "no partition directory under log.dirs"
        assert broker.stop() == 0, broker.log_tail()
    finally:
        broker.stop()


def test_a_zookeeper_key_stops_start_up_with_its_line(tmp_path):
    workdir = tmp_path / "zk"
    path = write_properties(workdir, extra="\n# ZooKeeper mode, gone in Kafka 4\nzookeeper.connect=localhost:2181\n")
    out = subprocess.run([str(blumfeld_bin()), str(path)], capture_output=True, timeout=60, cwd=workdir)
    assert out.returncode == 2, out
    err = out.stderr.decode()
    assert f"{path}:{line_of(path, 'zookeeper.connect')}" in err and "zookeeper.connect" in err, err
    assert not (workdir / "kraft-combined-logs").exists(), "start-up wrote data before refusing its configuration"
