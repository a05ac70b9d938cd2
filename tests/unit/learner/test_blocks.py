"""Validation ranks pairs a block at a time (issue 26, item 4): a large catalog's scores,
ages and freshness values are never held for every validation pair at once, and every
number is the one a single pass gave."""

from __future__ import annotations

import numpy as np
import pytest

from driftrec.model import ItemTable
from learner import age, gate
from learner.pairs import Pair


def table(rng: np.random.Generator, n: int) -> ItemTable:
    v = rng.normal(size=(n, 16)).astype(np.float32)
    t = ItemTable(
        [f"i{j}" for j in range(n)],
        v,
        (rng.normal(size=v.shape) * 0.1).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        rng.normal(size=v.shape).astype(np.float32),
    )
    t = t.with_cooc(rng.integers(-1, n, (n, 6)).astype(np.int32), rng.random((n, 6)).astype(np.float32), 2.0)
    return t.with_age(np.array([0.0, 1e3, 1e5]), np.array([1.0, 0.0, -1.0], np.float32), 0.5)


@pytest.mark.parametrize("times", [False, True])
def test_rank_each_in_blocks_gives_the_numbers_of_one_pass(monkeypatch, times: bool) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    n, p = 2000, 301
    t = table(rng, n)
    ci, cw = rng.integers(-1, n, (p, 12)), rng.random((p, 12)).astype(np.float32)
    tg, prior = rng.integers(0, n, p), rng.normal(size=n)
    kw = {}
    if times:
        kw = {
            "pub": rng.integers(0, 10**6, n).astype(np.float64),
            "ts": rng.integers(0, 10**6, p).astype(np.float64),
            "extra": rng.normal(size=(p, n)).astype(np.float32),
        }
    monkeypatch.setattr(gate, "RANK_CELLS", 1 << 40)
    one = gate.rank_each(t, ci, cw, tg, prior, 0.1, **kw)
    monkeypatch.setattr(gate, "RANK_CELLS", 7 * n + 3)  # blocks of 7 pairs, the last of 0 < 7
    blocks = gate.rank_each(t, ci, cw, tg, prior, 0.1, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(one, blocks))


def test_cross_fit_in_blocks_gives_the_numbers_of_one_pass(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    n = 3000
    t = ItemTable.from_text([f"i{j}" for j in range(n)], rng.normal(size=(n, 4)).astype(np.float32))
    pub = rng.integers(0, 10**8, n).astype(np.float64)
    ps = sorted(
        (
            Pair((), np.zeros(0, np.float32), f"i{rng.integers(0, n)}", int(10**8 + rng.integers(0, 10**7)))
            for _ in range(500)
        ),
        key=lambda x: x.ts,
    )
    monkeypatch.setattr(age, "RANK_CELLS", 1 << 40)
    one = age.cross_fit(t, pub, ps[:400], ps[400:])
    monkeypatch.setattr(age, "RANK_CELLS", 3 * n + 1)
    blocks = age.cross_fit(t, pub, ps[:400], ps[400:])
    assert one is not None and blocks is not None and np.abs(one[1]).max() > 0
    assert np.array_equal(one[0], blocks[0]) and np.array_equal(one[1], blocks[1])
