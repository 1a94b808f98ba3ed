"""The metadata quorum alone (issue 9, first slice): three nodes, each broker and controller,
elect a leader over KRaft's own messages, and Kafka's `kafka-metadata-quorum
--bootstrap-controller` reports it; kill -9 of the leader elects a new one (the time is printed,
polled with the tool, whose JVM start is included); the killed node restarts and catches up.

Runs against Blumfeld and Apache Kafka alike (BROKER=kafka). On Blumfeld the quorum does not
carry the brokers' metadata yet: test_cluster.py's topic scenarios wait for that slice.
"""

from __future__ import annotations

import time

from harness.cluster import Cluster
from harness.tools import quorum_replication, quorum_status
from harness.wait import wait_until

ELECTION_TIMEOUT_S = 60


def leader_of(bootstrap_controllers: str, not_this: int | None = None) -> dict[str, str] | None:
    try:
        s = quorum_status("--bootstrap-controller", bootstrap_controllers)
    except AssertionError:
        return None  # no leader yet: the tool times out finding the active controller
    leader = s.get("LeaderId", "-1")
    if leader in ("-1", str(not_this)):
        return None
    return s


def test_three_voters_elect_fail_over_and_catch_up(tmp_path):
    c = Cluster(tmp_path / "quorum", layout="combined", controllers=3)
    try:
        c.start()
        status = wait_until(lambda: leader_of(c.bootstrap_controllers()), ELECTION_TIMEOUT_S, "a quorum leader")
        leader = int(status["LeaderId"])
        epoch = int(status["LeaderEpoch"])
        assert leader in (1, 2, 3), status
        assert epoch >= 1 and int(status["HighWatermark"]) >= 1, status
        assert '"id": 1' in status["CurrentVoters"] and '"id": 3' in status["CurrentVoters"], status
        rows = quorum_replication("--bootstrap-controller", c.bootstrap_controllers())
        by_id = {int(r["NodeId"]): r for r in rows}
        assert by_id[leader]["Status"] == "Leader", rows
        assert sorted(i for i, r in by_id.items() if r["Status"] in ("Leader", "Follower")) == [1, 2, 3], rows

        t0 = time.monotonic()
        c.nodes[leader].kill9()
        survivors = c.bootstrap_controllers(exclude=(leader,))
        new = wait_until(lambda: leader_of(survivors, not_this=leader), ELECTION_TIMEOUT_S, "a new quorum leader")
        print(f"\nquorum: node {new['LeaderId']} leads epoch {new['LeaderEpoch']}, "
              f"{time.monotonic() - t0:.2f} s after kill -9 of leader {leader} (polled with the tool)")
        assert int(new["LeaderEpoch"]) > epoch

        t1 = time.monotonic()
        c.nodes[leader].start()

        def caught_up():
            try:
                rows = quorum_replication("--bootstrap-controller", c.bootstrap_controllers())
            except AssertionError:
                return False
            row = next((r for r in rows if int(r["NodeId"]) == leader), None)
            return row is not None and row["Status"] == "Follower" and row["Lag"] == "0"

        wait_until(caught_up, ELECTION_TIMEOUT_S, f"node {leader} back as a caught-up follower")
        print(f"quorum: node {leader} restarted and caught up in {time.monotonic() - t1:.2f} s")
    except BaseException:
        print(c.log_tails())
        raise
    finally:
        c.stop()
