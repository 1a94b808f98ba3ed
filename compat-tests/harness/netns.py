"""A network made by the test, for fault tests that need real isolation (issue 10, fault 3).

Every node runs in a network namespace of its own. A hub namespace holds a bridge; each node
namespace is joined to it by a veth pair, and the test process (in the root namespace) by one
more, so that the clients the test runs reach every node directly:

    root ns  veth ── hub ns: bridge ── veth ─ node ns 1 (10.N.M.1)
    (10.N.M.254)                    ├─ veth ─ node ns 2 (10.N.M.2)
                                    └─ veth ─ node ns 3 (10.N.M.3)

The subnet is a /24 of 10.0.0.0/8 that no interface on this machine uses. Nothing is routed
or translated out of it (no forwarding is enabled, no default route exists in the node
namespaces), so the test never sends traffic to an address it did not create.

`cut(node)` isolates a node from the other nodes with nftables drop rules in its namespace
(silently dropped, as a real partition does: connections time out, they are not refused)
while the test's clients still reach it; `heal(node)` removes the rules. `delay(node, ms,
loss_pct)` adds `tc netem` on the node's link. `close()` removes everything made here.
Requires root, `ip` (iproute2), `nft` (nftables) and `tc`.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import subprocess


def available() -> str | None:
    """None when this machine can make the network, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def used_networks() -> list[ipaddress.IPv4Network]:
    out = sh("ip", "-4", "-o", "addr", "show").stdout + sh("ip", "-4", "route", "show").stdout
    nets = []
    for word in out.split():
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    return nets


class Network:
    def __init__(self, nodes: list[int]) -> None:
        self.tag = f"bf{os.getpid() % 10_000}{random.randrange(100):02d}"
        used = used_networks()
        rng = random.Random()
        for _ in range(100):
            candidate = ipaddress.ip_network(f"10.{rng.randrange(200, 250)}.{rng.randrange(1, 255)}.0/24")
            if not any(candidate.overlaps(u) for u in used):
                break
        else:
            raise RuntimeError("no free /24 in 10.200.0.0-10.249.255.0 for the test network")
        self.subnet = candidate
        hosts = list(candidate.hosts())
        self.client_address = str(hosts[253])  # .254
        self.addresses = {n: str(hosts[i]) for i, n in enumerate(nodes)}
        self.hub = f"{self.tag}-hub"
        self.namespaces = {n: f"{self.tag}-n{n}" for n in nodes}
        self.made_namespaces: list[str] = []
        self.host_link = f"{self.tag}-h"
        self.cut_nodes: set[int] = set()
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.made_namespaces.append(name)
        sh("ip", "link", "set", "lo", "up", ns=name)

    def _build(self) -> None:
        prefix = self.subnet.prefixlen
        self._add_ns(self.hub)
        sh("ip", "link", "add", "br0", "type", "bridge", ns=self.hub)
        sh("ip", "link", "set", "br0", "up", ns=self.hub)
        # The test's own link: one end here in the root namespace, one on the bridge.
        sh("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "hpeer")
        sh("ip", "link", "set", "hpeer", "netns", self.hub)
        sh("ip", "link", "set", "hpeer", "master", "br0", ns=self.hub)
        sh("ip", "link", "set", "hpeer", "up", ns=self.hub)
        sh("ip", "addr", "add", f"{self.client_address}/{prefix}", "dev", self.host_link)
        sh("ip", "link", "set", self.host_link, "up")
        for n, ns in self.namespaces.items():
            self._add_ns(ns)
            peer = f"p{n}"
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.hub)
            sh("ip", "link", "set", peer, "master", "br0", ns=self.hub)
            sh("ip", "link", "set", peer, "up", ns=self.hub)
            sh("ip", "addr", "add", f"{self.addresses[n]}/{prefix}", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)

    def exec_prefix(self, node: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[node]]

    def cut(self, node: int) -> None:
        """Drops every packet between `node` and the other nodes, both ways."""
        ns = self.namespaces[node]
        peers = ", ".join(a for n, a in self.addresses.items() if n != node)
        rules = (
            "table inet bfcut {\n"
            f"  chain input {{ type filter hook input priority 0; ip saddr {{ {peers} }} drop; }}\n"
            f"  chain output {{ type filter hook output priority 0; ip daddr {{ {peers} }} drop; }}\n"
            "}\n"
        )
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True)
        self.cut_nodes.add(node)

    def heal(self, node: int) -> None:
        if node in self.cut_nodes:
            sh("nft", "delete", "table", "inet", "bfcut", ns=self.namespaces[node], check=False)
            self.cut_nodes.discard(node)

    def delay(self, node: int, delay_ms: int, loss_pct: float = 0.0) -> None:
        args = ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", f"{delay_ms}ms"]
        if loss_pct:
            args += ["loss", f"{loss_pct}%"]
        sh(*args, ns=self.namespaces[node])

    def close(self) -> None:
        for node in list(self.cut_nodes):
            self.heal(node)
        sh("ip", "link", "del", self.host_link, check=False)
        for ns in reversed(self.made_namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.made_namespaces.clear()
