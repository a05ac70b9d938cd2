"""Items are candidates only from their publication ``ts`` on; the learned freshness prior."""

from __future__ import annotations

import numpy as np
import pytest

from driftrec.model import ItemTable, Representation
from driftrec.scorer import Scorer, ScorerConfig, ServingModel
from driftrec.state import UserState
from driftrec.stream import Event, Item


def _scorer(n: int = 6, d: int = 6, item_ts: dict[str, int] | None = None, **cfg: object) -> Scorer:
    t = ItemTable.from_text([f"i{j}" for j in range(n)], np.eye(n, d, dtype=np.float32))
    return Scorer(
        ScorerConfig(top_k=3, **cfg),
        ServingModel("v0", t, Representation(pop_weight=0.0)),  # type: ignore[arg-type]
        item_ts=item_ts,
    )


def test_an_item_published_later_is_never_recommended_before_its_ts() -> None:
    # the user's history points at i1; i1 is the best match, but is published at 1000
    s = _scorer(item_ts={f"i{j}": 0 for j in range(6)} | {"i1": 1000})
    r = s.learn_many([Event("e1", "like", "u", "i0", 10)], {})
    st = r.users["u"]
    for now in (10, 500, 999):
        ranked = [i for i, _ in s.rank_many([st], now, k=5)[0]]
        assert "i1" not in ranked and len(ranked) == 4
    assert "i1" in [i for i, _ in s.rank_many([st], 1000, k=5)[0]]
    assert "i1" not in r.users["u"].topk  # the published top-k (at ts 10) neither


def test_only_unpublished_items_left_gives_a_short_list() -> None:
    s = _scorer(n=3, d=3, item_ts={"i0": 0, "i1": 50, "i2": 60})
    assert [i for i, _ in s.rank_many([UserState("u")], 10, k=3)[0]] == ["i0"]


def test_add_items_records_publication_times() -> None:
    from driftrec.model import TextEncoder

    class Enc:  # the two calls add_items makes
        def encode(self, texts, base=False):  # type: ignore[no-untyped-def]
            return np.ones((len(texts), 6), np.float32)

    t = ItemTable.from_text([f"i{j}" for j in range(6)], np.eye(6, dtype=np.float32))
    s = Scorer(ScorerConfig(top_k=3), ServingModel("v0", t, Representation(pop_weight=0.0), Enc()))  # type: ignore[arg-type]
    assert isinstance(TextEncoder, type)
    s.add_items([Item("new", "x", ts=5_000)])
    assert "new" not in [i for i, _ in s.rank_many([UserState("u")], 4_999, k=10)[0]]
    assert "new" in [i for i, _ in s.rank_many([UserState("u")], 5_000, k=10)[0]]


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_future_items_are_masked_on_both_ranking_paths(precision: str) -> None:
    # large enough for the bfloat16 first pass (rows x items >= MIN_CELLS)
    n, d, B = 20_000, 16, 256
    rng = np.random.default_rng(0)
    V = rng.normal(size=(n, d)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    ids = [f"i{j}" for j in range(n)]
    ts = {i: (10_000 if j % 2 else 0) for j, i in enumerate(ids)}  # odd items: later
    t = ItemTable.from_text(ids, V)
    s = Scorer(
        ScorerConfig(top_k=10, rank_precision=precision), ServingModel("v0", t, Representation()), item_ts=ts
    )
    users = [UserState(f"u{b}") for b in range(B)]
    r = s.learn_many([Event(f"e{b}", "like", f"u{b}", ids[2 * b + 1], 20_000) for b in range(B)], {})
    states = [r.users[f"u{b}"] for b in range(B)]
    before = s.rank_many(states, 5_000, k=10)
    assert all(int(i[1:]) % 2 == 0 for row in before for i, _ in row)
    assert all(len(row) == 10 for row in before)
    if precision == "bfloat16":  # taken, and the masked items do not spoil its bound
        st = s.rank_stats
        assert st is not None and st.batches >= 2 and st.fallback_rows <= 0.05 * st.rows
    after = s.rank_many(states, 20_000, k=10)
    assert any(int(i[1:]) % 2 for row in after for i, _ in row)
    del users


def test_a_learned_freshness_prior_surfaces_a_fresh_item_before_any_engagement() -> None:
    ts = {f"i{j}": 0 for j in range(6)} | {"i5": 9_000}
    s = _scorer(item_ts=ts)
    st = UserState("u")
    assert [i for i, _ in s.rank_many([st], 10_000, k=1)[0]] == ["i0"]  # all tie: catalog order
    m = s.model
    fresh = m.table.with_age(np.array([0.0, 5_000.0]), np.array([2.0, -1.0]), 1.0)
    s.swap(ServingModel("v1", fresh, m.rep, m.encoder, m.manifest))
    assert [i for i, _ in s.rank_many([st], 10_000, k=1)[0]] == ["i5"]  # 1 s old
    assert "i5" not in [i for i, _ in s.rank_many([st], 8_000, k=6)[0]]  # not yet published
