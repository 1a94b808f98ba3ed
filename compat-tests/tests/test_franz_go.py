"""franz-go + kadm, through the compat-go driver: create/delete/list offsets, default producer
(idempotent, acks=all) per codec, direct partition consumption."""

from harness.clients import go_cmd, run_driver
from harness.scenario import MESSAGES, PARTITIONS


def test_roundtrip_all_codecs(broker):
    out = run_driver(go_cmd("roundtrip", "--bootstrap", broker.bootstrap, "--topic-prefix", "franz",
                            "--partitions", str(PARTITIONS), "--count", str(MESSAGES)), timeout_s=900)
    print(out)
    assert out.count("ok codec=") == 5, out
