"""``driftrec bench fuzz`` on a small run: the scorer stays up, counts reconcile, every record
the decoder rejects is on events.dlq with its bytes and a reason, nothing else is there."""

from __future__ import annotations

import json

import pytest

from driftrec.bench.fuzz import KINDS, fuzz_record, run_fuzz
from driftrec.cli import main
from driftrec.model.encoder import make_tiny_model
from driftrec.stream import Event
from driftrec.stream.events import Rejected, decode
from driftrec.stream.synthetic import vocabulary


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), vocabulary())


def test_every_kind_makes_records_the_decoder_mostly_rejects() -> None:
    import random

    rng = random.Random(0)
    good = Event("e1", "like", "u1", "i1", 1_700_000_000_000)
    for kind in KINDS:
        raws = [fuzz_record(rng, good, kind) for _ in range(20)]
        rejected = sum(isinstance(decode(r), Rejected) for r in raws)
        assert rejected >= 10, kind  # byte flips may leave a valid event now and then


def test_fuzzed_records_all_reach_the_dead_letter_topic(tiny: str) -> None:
    r = run_fuzz(records=1200, good=300, seed=1, model=tiny)
    assert r["drained"] and r["counts_reconcile"], r
    assert r["consumed"] == 1200 + 300 == r["processed"] + r["dead_lettered"], r
    assert r["rejected_not_on_dlq"] == 0 and r["on_dlq_not_fuzzed"] == 0, r
    assert r["on_dlq"] == r["dead_lettered"] == r["on_dlq_with_reason"] >= r["decoder_rejected"] > 1000, r
    assert set(r["kinds"]) == set(KINDS)


def test_bench_fuzz_command(tiny: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "fuzz", "--records", "200", "--good", "50", "--model", tiny, "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["fuzzed"] == 200 and res["rejected_not_on_dlq"] == 0
