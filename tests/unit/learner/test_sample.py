"""A round on a sample of a large catalog (learner/sample.py): which rows it takes, what it
trains, how it ranks, and the whole catalog it gives back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from driftrec.learner import Learner, LearnerConfig, LearnerConfigError
from driftrec.learner.gate import rank_each
from driftrec.learner.pairs import Pair
from driftrec.learner.sample import sample_round
from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.stream import Event

D = 16


def _table(n: int, seed: int = 0) -> ItemTable:
    v = np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)
    return ItemTable.from_text([f"i{j}" for j in range(n)], v / np.linalg.norm(v, axis=1, keepdims=True))


def _pair(hist: tuple[str, ...], target: str, ts: int = 0) -> Pair:
    return Pair(hist, np.ones(len(hist), np.float32), target, ts)


def test_the_sample_takes_every_touched_newest_and_popular_row_and_stands_for_the_rest() -> None:
    n, size = 10_000, 2_000
    full = _table(n)
    pub = np.arange(n, dtype=np.float64)  # the highest rows are the newest
    pop = np.zeros(n)
    pop[:300] = np.arange(300, 0, -1)  # the lowest rows the most popular
    pairs = [_pair(("i5000", "i5001"), "i7000"), _pair(("i7000",), "i42")]
    s = sample_round(full, pairs, pub, pop, size, np.random.default_rng(0))
    ids = set(s.table.item_ids)
    assert {"i5000", "i5001", "i7000", "i42"} <= ids
    assert {f"i{j}" for j in range(n - 250, n)} <= ids  # the newest eighth of the sample
    assert {f"i{j}" for j in range(250)} <= ids  # the most popular eighth
    f, w = s.sampled
    assert s.weight[:f].tolist() == [1.0] * f
    assert f + (len(s.rows) - f) * w == pytest.approx(n)  # the draw stands for every other row
    assert len(s.rows) == pytest.approx(size, abs=5)
    assert s.trained.sum() == 4 and set(np.asarray(s.table.item_ids)[s.trained]) == {
        "i5000",
        "i5001",
        "i7000",
        "i42",
    }
    assert np.array_equal(s.table.text, full.text[s.rows])


def test_a_sampled_rank_counts_each_drawn_row_for_the_rows_it_stands_for() -> None:
    # the target (row 0) is outranked by one row taken for itself and one drawn row
    V = np.array([[1.0, 0.0], [1.0, 0.5], [0.0, 1.0], [1.0, 0.4]], np.float32)
    t = ItemTable.from_text(["t", "a", "b", "c"], V)
    hist, w = np.array([[-1]]), np.ones((1, 1), np.float32)
    t = replace(t, bias=np.array([0.0, 1.0, -5.0, 1.0], np.float32))
    hr, rr = rank_each(t, hist, w, np.array([0]), np.zeros(4), 1.0, k=10)
    assert rr.tolist() == [pytest.approx(1 / 3)]  # exact: two above it
    hr, rr = rank_each(t, hist, w, np.array([0]), np.zeros(4), 1.0, k=10, sampled=(2, 20.0))
    assert rr.tolist() == [pytest.approx(1 / 22)]  # a (1) + c standing for 20 rows
    assert hr.tolist() == [0.0]


def _stream(n_items: int, n_events: int, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 60, n_events)
    # each user keeps to a block of 40 items: something to learn
    items = (users * 40 + rng.integers(0, 40, n_events)) % n_items
    return [Event(f"e{k}", "like", f"u{u}", f"i{i}", 1_000 * k) for k, (u, i) in enumerate(zip(users, items))]


def test_a_learner_above_round_items_trains_the_window_rows_and_ships_the_whole_catalog() -> None:
    n = 6_000
    full = _table(n)
    cfg = LearnerConfig(window_events=2_000, min_pairs=16, drift=None, use_lora=False, round_items=1_000)
    ln = Learner(cfg, Representation(), full, {f"i{j}": f"item {j}" for j in range(n)})
    events = _stream(n, 1_500)
    ln.observe_many(events)
    res = ln.train("test")
    t = res.table
    assert t.item_ids == full.item_ids and res.metrics["round_items"] < n
    touched = {e.item_id for e in events}
    rows = np.array([full.index(i) for i in sorted(touched)])
    other = np.setdiff1d(np.arange(n), rows)
    assert np.abs(t.bias[rows]).max() > 0 and np.abs(t.residual[rows]).max() > 0
    assert not t.bias[other].any() and not np.asarray(t.residual[other]).any()  # negatives only
    assert np.array_equal(t.context[other], full.context[other])
    assert np.array_equal(t.text, full.text)
    # below the setting: the whole catalog, as before
    small = Learner(replace(cfg, round_items=0), Representation(), full, {})
    small.observe_many(events)
    assert "round_items" not in small.train("test").metrics


def test_the_calibration_round_on_a_sample_changes_only_the_blend() -> None:
    n = 6_000
    full = _table(n)
    cfg = LearnerConfig(window_events=2_000, drift=None, use_lora=False, round_items=1_000)
    ln = Learner(cfg, Representation(), full, {})
    ln.observe_many(_stream(n, 600))
    res = ln.train("day_one")
    assert res.table.item_ids == full.item_ids
    assert res.table.text is full.text and res.table.bias is full.bias


def test_a_new_adapter_on_a_sample_marks_the_rows_it_did_not_encode_stale(tiny_model: str) -> None:
    n = 3_000
    enc = TextEncoder(tiny_model, lora_r=4, lora_alpha=8)
    enc.reset_lora()
    texts = {f"i{j}": f"post {j} about topic {j // 40}" for j in range(n)}
    full = ItemTable.from_text(list(texts), enc.encode(list(texts.values())))
    cfg = LearnerConfig(window_events=2_000, min_pairs=16, drift=None, round_items=1_000)
    ln = Learner(cfg, Representation(), full, texts, enc)
    ln.observe_many(_stream(n, 400))
    smp = sample_round(full, ln._window_pairs()[0], None, np.zeros(n), 1_000, np.random.default_rng(0))
    cand = replace(smp.table, text=smp.table.text + 0.01, stale=None)
    out = smp.expand(cand)
    assert out.stale is not None and out.stale.sum() == n - len(smp.rows)
    assert not out.stale[smp.rows].any()
    assert np.allclose(out.text[smp.rows], full.text[smp.rows] + 0.01)
    # the rows the learner encodes within its budget: no longer stale, their context moved
    outside = np.setdiff1d(np.arange(n), smp.rows)[:5]
    vecs = full.text[outside] + 1.0
    cand = replace(cand, context_shift=0.5)
    out = smp.expand(cand, encode=lambda stale: (outside[stale[outside]], vecs[stale[outside]]))
    assert out.stale.sum() == n - len(smp.rows) - 5 and not out.stale[outside].any()
    assert np.allclose(out.text[outside], vecs)
    assert np.allclose(out.context[outside], full.context[outside] + 0.5)


def test_round_items_refuses_a_negative_size() -> None:
    with pytest.raises(LearnerConfigError, match="round_items"):
        LearnerConfig(round_items=-1)
