from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftrec.app.embedded import dlq_records
from driftrec.app.system import SystemSpec, build_system
from driftrec.learner import LearnerConfig
from driftrec.scorer import ScorerConfig
from driftrec.state import MemoryStateStore
from driftrec.stream import TopicNames, generate


@pytest.fixture()
def pipeline(tiny_model: str, tmp_path: Path):
    stream = generate("abrupt", n_events=3000, n_users=40, n_items=160, seed=2)
    # min_gain=-1: every candidate passes the gate, so swaps happen deterministically
    lcfg = LearnerConfig(train_every=700, min_pairs=100, epochs=1, max_steps=4, min_gain=-1.0, drift=None)
    spec = SystemSpec(model=tiny_model, lora_r=2, scorer=ScorerConfig(), learner=lcfg)
    system = build_system(spec, stream.items)
    state = MemoryStateStore()
    pipe = system.embedded(state, str(tmp_path / "artifacts"), TopicNames("t"), batch_size=64, batch_ms=5)
    pipe.publish_items(stream.items)
    return pipe, stream, state


def test_pipeline_end_to_end(pipeline) -> None:
    pipe, stream, state = pipeline
    pipe.start()
    bad = [b"{oops", b'{"event_id":"x","type":"like","item_id":"i1","ts":1}']
    for lo in range(0, len(stream.events) - 200, 800):  # paced: the learner keeps up
        pipe.publish_events(stream.events[lo : min(lo + 800, len(stream.events) - 200)])
        if lo == 800:
            pipe.publish_raw("t.events.likes", bad, b"k")
        assert pipe.wait_idle(timeout=120, learner_too=True)
    pipe.publish_events(stream.events[-200:])  # scored by the newest version
    assert pipe.wait_idle(timeout=120)
    pipe.stop()
    s = pipe.summary()
    assert s["events_in"] == len(stream.events) + 2
    assert s["events_processed"] == len(stream.events) and s["dead_lettered"] == 2
    assert s["counts_reconcile"]
    dl = dlq_records(pipe.broker, pipe.names)
    assert sorted(d["reason"] for d in dl) == ["bad_json", "missing_user_id"]
    assert all(d["source_topic"] == "t.events.likes" for d in dl)
    assert {d["raw"] for d in dl} == set(bad)
    # every event applied exactly once
    assert sum(u.n_events for u in state.users().values()) == len(stream.events)
    # learner trained, published, and the scorer swapped every published version in order
    assert s["adapters_published"] >= 2
    assert s["adapters_swapped"] == s["adapters_published"]
    published = [rec["version"] for _, _, rec in pipe.observed.trainings if rec]
    assert [ev.version for _, ev in pipe.observed.swaps] == published
    assert s["serving_version"] == published[-1]
    # recs.updates carry the version that scored them
    versions = {json.loads(r.value)["model_version"] for r in pipe.broker.records("t.recs.updates")}
    assert "base" in versions and published[-1] in versions
    # the registry knows every published version
    assert [r["version"] for r in state.records()] == published
