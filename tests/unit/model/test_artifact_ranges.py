"""Absurd but finite values are refused before a swap, signed or not: a bias of 1e30 behind
correct checksums made one item top-1 for nearly every user. The bounds are generous
(what training produces is far inside them: a trained artifact passes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftrec.learner import Learner, LearnerConfig, LearnerConfigError
from driftrec.model import (
    REJECT_REASONS,
    VALUE_RANGES,
    ArtifactError,
    ItemTable,
    Representation,
    TextEncoder,
    load_artifact,
    write_artifact,
)
from driftrec.scorer import Scorer, ScorerConfig, ServingModel, SwapManager
from driftrec.stream import generate

IDS = [f"i{j}" for j in range(20)]
WINDOW = {"from_ts": 0, "to_ts": 1, "n_events": 2}


def _table(**change) -> ItemTable:
    rng = np.random.default_rng(1)
    v = rng.normal(size=(len(IDS), 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    parts = dict(
        text=v, residual=np.zeros_like(v) + 0.1, bias=np.zeros(len(IDS), np.float32), context=v.copy()
    )
    nbr = np.tile(np.arange(1, 4, dtype=np.int32), (len(IDS), 1))
    kw = dict(nbr_idx=nbr, nbr_w=np.full(nbr.shape, 0.5, np.float32), cooc_weight=2.0)
    for k in list(change):
        if k in parts:
            parts[k] = change.pop(k)
    kw.update(change)
    return ItemTable(IDS, parts["text"], parts["residual"], parts["bias"], parts["context"], **kw)


def _row(a: np.ndarray, i: int, value: float) -> np.ndarray:
    a = a.copy()
    a[i, 0] = value
    return a


def _absurd() -> dict[str, ItemTable]:
    base = _table()
    bias = np.zeros(len(IDS), np.float32)
    bias[3] = 1e30
    edges = np.array([0.0, 3.6e6, 8.64e7], np.float64)
    return {
        "bias": _table(bias=bias),
        "negative bias": _table(bias=-bias),
        "residual": _table(residual=_row(base.residual, 4, 1e6)),
        "context": _table(context=_row(base.context, 5, -1e6)),
        "text": _table(text=_row(base.text, 6, 1e6)),
        "nbr_w": _table(nbr_w=np.full(base.nbr_w.shape, 1e9, np.float32)),
        "negative nbr_w": _table(nbr_w=np.full(base.nbr_w.shape, -0.5, np.float32)),
        "cooc_weight": _table(cooc_weight=1e9),
        "age_lograte": _table(
            age_edges=edges, age_lograte=np.array([0.0, 1e9, 0.0], np.float32), age_weight=1.0
        ),
        "age_weight": _table(
            age_edges=edges, age_lograte=np.array([0.5, 0.0, -0.5], np.float32), age_weight=1e12
        ),
        "age_edges": _table(
            age_edges=np.array([0.0, 1.0, 1e300]),
            age_lograte=np.array([0.5, 0.0, -0.5], np.float32),
            age_weight=1.0,
        ),
    }


@pytest.mark.parametrize("case", list(_absurd()))
def test_absurd_values_are_refused_without_a_key(case: str, tmp_path: Path) -> None:
    t = _absurd()[case]
    rec = write_artifact(tmp_path, "v1", {}, None, t, "none", WINDOW, {})
    with pytest.raises(ArtifactError) as e:
        load_artifact(rec, store=tmp_path)
    assert e.value.reason == "out_of_range", str(e.value)
    assert "out_of_range" in REJECT_REASONS


def test_the_scorer_keeps_serving_and_the_registry_is_not_moved(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(len(IDS), 8)).astype(np.float32)
    model = ServingModel(
        "base",
        ItemTable.from_text(IDS, v / np.linalg.norm(v, axis=1, keepdims=True)),
        Representation(pop_weight=0.0),
        None,
        {"base_model": "none"},
    )
    scorer = Scorer(ScorerConfig(top_k=5), model)
    swapped: list[str] = []
    swaps = SwapManager(scorer, background=False, store=str(tmp_path))
    swaps.on_swap = lambda ev: swapped.append(ev.version)
    swaps.submit(write_artifact(tmp_path, "v1", {}, None, _absurd()["bias"], "none", WINDOW, {}))
    assert swaps.maybe_swap() is None and scorer.version == "base" and not swapped
    assert swaps.rejected_reasons[-1] == "out_of_range"


def test_the_edges_of_the_ranges_pass(tmp_path: Path) -> None:
    base = _table()
    r = VALUE_RANGES
    bias = np.full(len(IDS), r["bias"][1], np.float32)
    edge = _table(
        bias=bias,
        residual=_row(np.zeros_like(base.residual), 0, r["residual"][1] * 0.99),
        nbr_w=np.full(base.nbr_w.shape, r["nbr_w"][1], np.float32),
        cooc_weight=r["cooc_weight"][1],
    )
    rec = write_artifact(tmp_path, "v1", {}, None, edge, "none", WINDOW, {})
    assert load_artifact(rec, store=tmp_path).items.cooc_weight == r["cooc_weight"][1]


def test_a_trained_artifact_passes(tiny_model: str, tmp_path: Path) -> None:
    s = generate("abrupt", n_events=3000, n_users=60, n_items=120, seed=2)
    enc = TextEncoder(tiny_model, lora_r=8, lora_alpha=16)
    enc.reset_lora()
    texts = {i.item_id: i.text for i in s.items}
    ids = sorted(texts)
    table = ItemTable.from_text(ids, enc.encode([texts[i] for i in ids]))
    cfg = LearnerConfig(use_lora=False, drift=None, min_pairs=16, item_max_steps=512, lr_items=0.01)
    ln = Learner(cfg, Representation(), table, texts, None)
    events = sorted(s.events, key=lambda e: e.ts)
    for k in range(0, len(events), 500):
        ln.observe_many(events[k : k + 500])
        res = ln.train("schedule")
        ln.accept(res)
    t = ln.table
    assert t.nbr_w is not None and t.cooc_weight >= 0
    rec = write_artifact(tmp_path, "v1", {}, None, t, "none", WINDOW, {})
    assert load_artifact(rec, store=tmp_path).items.bias.shape == (len(ids),)


@pytest.mark.parametrize("field", ["cooc_weights", "age_weights"])
def test_the_learner_cannot_choose_a_weight_the_scorer_refuses(field: str) -> None:
    too_much = VALUE_RANGES["cooc_weight" if field == "cooc_weights" else "age_weight"][1] * 2
    with pytest.raises(LearnerConfigError, match=field):
        LearnerConfig(**{field: (1.0, too_much)})
