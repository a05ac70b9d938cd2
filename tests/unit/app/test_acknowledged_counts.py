"""consumed = processed + dead-lettered counts acknowledged sends only: a dead letter or an
update that the sink did not acknowledge is not counted, so the counts stop reconciling and
`driftrec demo` exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_worker_cache import NAMES, ListSink

from driftrec.app import embedded
from driftrec.app.runtime import ScorerWorker
from driftrec.cli import main
from driftrec.model import ItemTable, Representation
from driftrec.scorer import Scorer, ScorerConfig, ServingModel
from driftrec.state.memory import MemoryStateStore
from driftrec.stream import Event, MemoryBroker, Record, encode
from driftrec.stream.errors import StreamUnavailable


class FailingSink(ListSink):
    """Acknowledges nothing sent to ``fail_topic`` (the whole send fails, as a producer's
    ``send_many`` does when one message is not acknowledged)."""

    def __init__(self, fail_topic: str) -> None:
        super().__init__()
        self.fail_topic = fail_topic

    def send_many(self, messages) -> None:
        if any(m.topic == self.fail_topic for m in messages):
            raise StreamUnavailable(f"{self.fail_topic}: not acknowledged")
        super().send_many(messages)


def _worker(sink) -> tuple[ScorerWorker, MemoryStateStore]:
    ids = [f"i{k}" for k in range(6)]
    vecs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    scorer = Scorer(
        ScorerConfig(top_k=3), ServingModel("v0", ItemTable.from_text(ids, vecs), Representation())
    )
    store = MemoryStateStore()
    return ScorerWorker(scorer, store, sink, NAMES, group="g"), store


def _batch() -> list[Record]:
    topic = NAMES.for_type("like")
    good = encode(Event("e0", "like", "u1", "i1", 1_000))
    return [Record(topic, 0, 0, b"u1", good), Record(topic, 0, 1, b"u2", b"{not json")]


def test_counts_reconcile_once_every_output_is_acknowledged() -> None:
    w, store = _worker(ListSink())
    w.handle(_batch())
    c = w.stats.counts
    assert (c.consumed, c.processed, c.dead_lettered) == (2, 1, 1) and c.reconciled
    assert w.stats.recs == 1 and store.offsets("g") == {f"{NAMES.for_type('like')}:0": 2}


@pytest.mark.parametrize("fail", ["dlq", "recs"])
def test_a_send_that_is_not_acknowledged_is_not_counted(fail: str) -> None:
    w, store = _worker(FailingSink(getattr(NAMES, fail)))
    with pytest.raises(StreamUnavailable):
        w.handle(_batch())
    c = w.stats.counts
    assert (c.consumed, c.processed, c.dead_lettered, w.stats.recs) == (2, 0, 0, 0)
    assert not c.reconciled
    assert store.offsets("g") == {}  # nothing committed: the batch is redelivered


class DlqFailingBroker(MemoryBroker):
    """The embedded transport, except that nothing sent to the dead-letter topic is acknowledged."""

    def send_many(self, messages) -> None:
        if any(m.topic.endswith("events.dlq") for m in messages):
            raise StreamUnavailable("events.dlq: not acknowledged")
        super().send_many(messages)


def test_demo_exits_non_zero_when_a_dead_letter_is_not_acknowledged(
    tiny_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(embedded, "MemoryBroker", DlqFailingBroker)
    report = tmp_path / "report"
    rc = main(
        [
            "demo",
            "--model",
            tiny_model,
            "--events",
            "600",
            "--users",
            "20",
            "--items",
            "80",
            "--rate",
            "0",
            "--train-every",
            "100000",
            "--malformed",
            "0.01",
            "--report",
            str(report),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["counts_reconcile"] is False
    assert summary["dead_lettered"] == 0 and summary["events_in"] > summary["events_processed"]
    assert "not acknowledged" in captured.err and "counts do not reconcile" in captured.err
    assert json.loads((report / "summary.json").read_text()) == summary
