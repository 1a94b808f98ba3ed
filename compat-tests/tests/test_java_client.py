"""Apache Kafka's Java client (kafka-clients 4.x), through the compat-java driver: Admin
create/delete/listOffsets, default producer (idempotent, acks=all) per codec, assign() consumer."""

from harness.clients import java_cmd, run_driver
from harness.scenario import MESSAGES, PARTITIONS


def test_roundtrip_all_codecs(broker):
    out = run_driver(java_cmd("roundtrip", "--bootstrap", broker.bootstrap, "--topic-prefix", "java",
                              "--partitions", str(PARTITIONS), "--count", str(MESSAGES)), timeout_s=900)
    print(out)
    assert out.count("ok codec=") == 5, out
