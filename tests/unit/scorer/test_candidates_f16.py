"""The candidate path over float16 item rows (``item_storage="float16"``): the same ranking,
and the same scores, as over float32 rows holding the rounded values."""

from __future__ import annotations

import numpy as np

from driftrec.model import ItemTable, Representation
from driftrec.scorer import Scorer, ScorerConfig, ServingModel
from driftrec.state import UserState
from driftrec.stream import Event

D = 16


def _scorer(table: ItemTable, **cfg: object) -> Scorer:
    config = ScorerConfig(top_k=10, candidates="index", **cfg)  # type: ignore[arg-type]
    return Scorer(config, ServingModel("v0", table, Representation(), None))


def _run(sc: Scorer, n_items: int, batch: int) -> tuple[dict[str, UserState], list]:
    rng = np.random.default_rng(1)
    users: dict[str, UserState] = {}
    for s in range(0, 1500, batch):
        evs = [
            Event(f"e{s}-{k}", "like", f"u{rng.integers(200)}", f"i{rng.integers(n_items)}", 1000 + s + k)
            for k in range(batch)
        ]
        users.update(sc.learn_many(evs, users).users)
    some = [users[u] for u in sorted(users)[:40]]
    return users, sc.rank_many(some, 5000, 10)


def test_float16_rows_rank_as_their_float32_values_on_the_candidate_path() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.standard_normal((n, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"i{j}" for j in range(n)]
    half = ItemTable.from_text(ids, x).stored("float16")
    assert half.vectors.dtype == np.float16
    rounded = ItemTable.from_text(ids, x.astype(np.float16).astype(np.float32))
    for batch in (64, 256):  # one thread; the rows split between threads (where torch has 2+)
        _, got = _run(_scorer(half), n, batch)
        _, ref = _run(_scorer(rounded), n, batch)
        assert [[i for i, _ in r] for r in got] == [[i for i, _ in r] for r in ref]
        for g, e in zip(got, ref):
            np.testing.assert_allclose([s for _, s in g], [s for _, s in e], rtol=0, atol=1e-5)
