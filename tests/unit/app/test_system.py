"""The composition root builds every variant of the system from one spec and a catalog."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from driftrec.app.embedded import EmbeddedPipeline
from driftrec.app.runtime import LearnerWorker, ScorerWorker, TopicNames
from driftrec.app.settings import Settings
from driftrec.app.system import SystemSpec, build_system, load_encoder
from driftrec.learner import LearnerConfig
from driftrec.scorer import ScorerConfig
from driftrec.state import MemoryStateStore
from driftrec.stream import Item, MemoryBroker, generate


@pytest.fixture(scope="module")
def stream():
    return generate("abrupt", n_events=400, n_users=20, n_items=60, seed=1)


@pytest.fixture()
def spec(tiny_model: str) -> SystemSpec:
    # no training within these tests' few events
    return SystemSpec(
        model=tiny_model, lora_r=2, device="cpu", learner=LearnerConfig(train_every=10**6, seed=3)
    )


def _lora(enc) -> dict[str, np.ndarray]:
    return {n: t.numpy() for n, t in enc.lora_state().items()}


def test_spec_from_settings() -> None:
    st = Settings(model="m", device="cpu", lora_r=4, max_len=16, cache_dir="/c")
    sp = SystemSpec.from_settings(st)
    assert (sp.model, sp.lora_r, sp.max_len, sp.device, sp.train_device, sp.cache_dir) == (
        "m",
        4,
        16,
        "cpu",
        "cpu",
        "/c",
    )
    assert sp.scorer is st.scorer and sp.learner is st.learner and sp.rep is st.rep


def test_the_whole_system(spec: SystemSpec, stream) -> None:
    s = build_system(spec, stream.items)
    assert s.scorer is not None and s.swaps is not None and s.learner is not None
    assert s.encoder is not None and s.standby is not None and s.trainer is not None
    assert len({id(s.encoder), id(s.standby), id(s.trainer)}) == 3
    assert s.table.item_ids == [i.item_id for i in stream.items]
    assert s.scorer.version == "base" and s.scorer.model.encoder is s.encoder
    assert s.learner.encoder is s.trainer
    assert s.base_model == s.encoder.base_model
    # the serving encoders start from seed 0, the trainer from the learner's seed
    want = _lora(load_encoder(spec.model, spec.lora_r, spec.max_len, "cpu", seed=3))
    got = _lora(s.trainer)
    assert all(np.array_equal(got[n], want[n]) for n in want)
    serving = _lora(s.encoder)
    assert any(not np.array_equal(serving[n], want[n]) for n in want)


def test_scorer_only(spec: SystemSpec, stream, tmp_path: Path) -> None:
    s = build_system(spec, stream.items, learn=False, standby=False, store=str(tmp_path), key="k")
    assert s.learner is None and s.trainer is None and s.standby is None
    assert s.swaps is not None and s.swaps.store == str(tmp_path) and s.swaps.key == "k"
    w = s.scorer_worker(MemoryStateStore(), MemoryBroker(), TopicNames("x"), "g")
    assert isinstance(w, ScorerWorker) and w.scorer is s.scorer and w.swaps is s.swaps and w.group == "g"
    with pytest.raises(ValueError):
        s.learner_worker(MemoryBroker(), MemoryStateStore(), TopicNames("x"), str(tmp_path))


def test_learner_only(spec: SystemSpec, stream, tmp_path: Path) -> None:
    s = build_system(spec, stream.items, serve=False)
    assert s.scorer is None and s.swaps is None and s.standby is None
    assert s.learner is not None and s.encoder is s.trainer  # the table under the trainer
    w = s.learner_worker(MemoryBroker(), MemoryStateStore(), TopicNames("x"), str(tmp_path), group="lg")
    assert isinstance(w, LearnerWorker) and w.learner is s.learner and w.base_model == s.base_model
    with pytest.raises(ValueError):
        s.scorer_worker(MemoryStateStore(), MemoryBroker(), TopicNames("x"), "g")
    with pytest.raises(ValueError):
        s.embedded(MemoryStateStore(), str(tmp_path))
    with pytest.raises(ValueError):
        build_system(spec, stream.items, serve=False, trainer="serving")


def test_empty_catalog_gives_an_empty_table(spec: SystemSpec) -> None:
    s = build_system(spec, [], learn=False)
    assert s.table.item_ids == [] and s.table.text.shape == (0, s.encoder.dim)
    assert s.item_ts is None


def test_systems_sharing_one_base_table(spec: SystemSpec, stream) -> None:
    """The eval harness's three systems: frozen, without adapters, and the full one."""
    frozen = replace(spec, lora_r=0)
    base = build_system(frozen, stream.items, serve=False, learn=False)
    assert base.scorer is None and base.learner is None and base.encoder.lora_config is None
    shared = {"encoder": base.encoder, "table": base.table}
    f = build_system(frozen, stream.items, learn=False, standby=False, **shared)
    assert f.scorer.model.encoder is base.encoder and f.table is base.table
    n = build_system(frozen, stream.items, standby=False, trainer=None, background=False, **shared)
    assert n.learner.encoder is None and n.table is base.table
    d = build_system(spec, stream.items, standby=False, trainer="serving", table=base.table)
    assert d.trainer is d.encoder and d.learner.encoder is d.encoder and d.encoder is not base.encoder
    assert d.encoder.lora_config is not None and d.table is base.table


def test_base_vectors_are_cached(spec: SystemSpec, stream, tmp_path: Path) -> None:
    sp = replace(spec, cache_dir=str(tmp_path))
    calls: list[int] = []
    a = build_system(sp, stream.items, serve=False, learn=False, progress=calls.append)
    assert sum(calls) == len(stream.items)
    calls.clear()
    b = build_system(sp, stream.items, serve=False, learn=False, progress=calls.append)
    assert calls == [] and np.array_equal(a.table.text, b.table.text)


def test_embedded_pipeline_runs_a_few_events(spec: SystemSpec, stream, tmp_path: Path) -> None:
    s = build_system(replace(spec, scorer=ScorerConfig(batch_size=32)), stream.items)
    pipe = s.embedded(MemoryStateStore(), str(tmp_path / "artifacts"), TopicNames("t"), batch_ms=5)
    assert isinstance(pipe, EmbeddedPipeline) and pipe.batch_size == 32
    assert pipe.scorer_worker.scorer is s.scorer and pipe.learner_worker.learner is s.learner
    assert s.swaps.store == str(tmp_path / "artifacts")
    pipe.publish_items(stream.items)
    pipe.start()
    events = stream.events[:120]
    pipe.publish_events(events)
    pipe.publish_raw("t.events.likes", [b"{oops"], b"k")
    assert pipe.wait_idle(timeout=60, learner_too=True)
    pipe.stop()
    summary = pipe.summary()
    assert summary["events_processed"] == len(events) and summary["dead_lettered"] == 1
    assert summary["counts_reconcile"] and summary["learner_events"] == len(events)
    assert summary["serving_version"] == "base"


def test_publication_times(spec: SystemSpec) -> None:
    s = build_system(spec, [Item("a", "goal", 0), Item("b", "pasta", 5)], serve=False)
    assert s.item_ts == {"a": 0, "b": 5}  # an item is a candidate only from its ts on
    assert build_system(spec, [Item("a", "goal", 0)], serve=False).item_ts is None
