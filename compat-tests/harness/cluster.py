"""A multi-node cluster under test: Blumfeld or Apache Kafka (BROKER=kafka), configured with
Kafka's own property names.

Every node is a `BrokerProcess` on its own data dir with ports chosen up front (the voters must
know each other's addresses before anyone starts): a client listener `PLAINTEXT://127.0.0.1:P`
on nodes with the broker role and a `CONTROLLER://127.0.0.1:C` listener on nodes with the
controller role, `controller.quorum.voters` naming every controller. Layouts:

- `combined`: every node is broker and controller (`process.roles=broker,controller`);
- `dedicated`: `controllers` controller-only nodes plus `brokers` broker-only nodes.

With `network` (a `harness.netns.Network` made for these node ids) every node runs in its own
network namespace on its own address, with the same ports on each; otherwise all share
127.0.0.1 with ephemeral ports. `prefix` is put in front of every node's command (the
benchmark pins the nodes with `taskset -c 0`).

All nodes are spawned before any is waited for: a node is ready only once a quorum has elected
a leader, which needs a majority of the controllers running.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .broker import BrokerProcess, broker_kind
from .kafka_launcher import free_port


@dataclass
class NodeSpec:
    node_id: int
    roles: tuple[str, ...]
    broker_port: int | None = None
    controller_port: int | None = None
    host: str = "127.0.0.1"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def is_controller(self) -> bool:
        return "controller" in self.roles


def distinct_free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


class Cluster:
    """Nodes of one cluster; `start()` spawns all and waits until each is ready."""

    def __init__(self, base: Path, layout: str = "combined", controllers: int = 3, brokers: int = 0,
                 overrides: dict[str, str] | None = None, kind: str | None = None, network=None,
                 prefix: list[str] | None = None):
        if layout not in ("combined", "dedicated"):
            raise ValueError(f"layout must be combined or dedicated, got {layout!r}")
        self.base = Path(base)
        self.kind = kind or broker_kind()
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        specs: list[NodeSpec] = []
        if layout == "combined":
            ports = distinct_free_ports(2 * controllers)
            for i in range(controllers):
                specs.append(NodeSpec(i + 1, ("broker", "controller"), ports[2 * i], ports[2 * i + 1]))
        else:
            ports = distinct_free_ports(controllers + brokers)
            # Kafka's habit: controllers 1..n, brokers from 100 up... any distinct ids will do.
            for i in range(controllers):
                specs.append(NodeSpec(i + 1, ("controller",), controller_port=ports[i]))
            for i in range(brokers):
                specs.append(NodeSpec(100 + i + 1, ("broker",), broker_port=ports[controllers + i]))
        self.network = network
        if network is not None:
            for s in specs:
                s.host = network.addresses[s.node_id]
                s.broker_port = 9092 if s.is_broker else None
                s.controller_port = 9093 if s.is_controller else None
        self.specs = specs
        voters = ",".join(f"{s.node_id}@{s.host}:{s.controller_port}" for s in specs if s.is_controller)
        self.nodes: dict[int, BrokerProcess] = {}
        for s in specs:
            listeners = []
            if s.is_broker:
                listeners.append(f"PLAINTEXT://{s.host}:{s.broker_port}")
            if s.is_controller:
                listeners.append(f"CONTROLLER://{s.host}:{s.controller_port}")
            props = {
                "node.id": str(s.node_id),
                "process.roles": ",".join(s.roles),
                "listeners": ",".join(listeners),
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.quorum.voters": voters,
                **(overrides or {}),
            }
            if self.kind == "kafka":
                # Kafka's nodes must be formatted with one cluster id; Blumfeld's quorum
                # writes its own into the metadata log.
                props["compat.cluster.id"] = self.cluster_id
            if s.is_broker:
                props["advertised.listeners"] = f"PLAINTEXT://{s.host}:{s.broker_port}"
                props["inter.broker.listener.name"] = "PLAINTEXT"
            if self.kind == "blumfeld":
                props["metrics.listener"] = f"{s.host}:0"
            node_prefix = (network.exec_prefix(s.node_id) if network is not None else []) + list(prefix or [])
            self.nodes[s.node_id] = ClusterNode(self.base / f"node-{s.node_id}", props, self.kind, s, node_prefix)

    # -- views

    def spec(self, node_id: int) -> NodeSpec:
        return next(s for s in self.specs if s.node_id == node_id)

    @property
    def broker_ids(self) -> list[int]:
        return [s.node_id for s in self.specs if s.is_broker]

    @property
    def controller_ids(self) -> list[int]:
        return [s.node_id for s in self.specs if s.is_controller]

    def bootstrap(self, exclude: tuple[int, ...] = ()) -> str:
        """The client listeners of the running brokers, comma-separated."""
        return ",".join(f"{self.spec(i).host}:{self.spec(i).broker_port}" for i in self.broker_ids
                        if i not in exclude and self.nodes[i].alive())

    def bootstrap_controllers(self, exclude: tuple[int, ...] = ()) -> str:
        return ",".join(f"{self.spec(i).host}:{self.spec(i).controller_port}" for i in self.controller_ids
                        if i not in exclude and self.nodes[i].alive())

    # -- lifecycle

    def start(self, timeout_s: float = 180) -> None:
        for node in self.nodes.values():
            node.spawn()
        for node in self.nodes.values():
            node.wait_listening(timeout_s)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def log_tails(self) -> str:
        return "\n".join(f"--- node {i} ---\n{n.log_tail()}" for i, n in self.nodes.items())


class ClusterNode(BrokerProcess):
    """A node whose properties are fixed (no ephemeral listener added)."""

    def __init__(self, workdir: Path, props: dict[str, str], kind: str, spec: NodeSpec, prefix: list[str] | None = None):
        super().__init__(workdir, props, kind)
        self.spec = spec
        # `ip netns exec NS` execs the broker: the pid (and group) stays the broker's.
        self.prefix = prefix or []

    def command(self) -> list[str]:
        import sys

        from .broker import blumfeld_bin

        props = {"log.dirs": str(self.data_dir), **self.overrides}
        args = [a for k, v in props.items() for a in ("--override", f"{k}={v}")]
        if self.kind == "kafka":
            return [*self.prefix, sys.executable, "-m", "harness.kafka_launcher", *args]
        return [*self.prefix, str(blumfeld_bin()), *args]
