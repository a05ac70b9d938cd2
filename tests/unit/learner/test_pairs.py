"""The pairs a round learns from (:mod:`driftrec.learner.pairs`)."""

from __future__ import annotations

import numpy as np

from driftrec.learner.pairs import Pair, pair_arrays, pair_tensors, split
from driftrec.model import ItemTable


def _pairs(n: int) -> list[Pair]:
    return [Pair((), np.zeros(0, np.float32), f"i{j}", j) for j in range(n)]


def test_the_newest_share_validates_and_at_least_one_pair() -> None:
    train, val = split(_pairs(100), 0.2)
    assert [p.ts for p in val] == list(range(80, 100)) and [p.ts for p in train] == list(range(80))
    train, val = split(_pairs(3), 0.2)
    assert [p.ts for p in val] == [2] and len(train) == 2
    assert split([], 0.2) == ([], [])


def test_pairs_become_rows_of_the_table() -> None:
    t = ItemTable.from_text(["a", "b", "c"], np.eye(3, dtype=np.float32))
    ps = [
        Pair(("a", "c"), np.array([0.5, 2.0], np.float32), "b", 1),
        Pair(("gone",), np.ones(1, np.float32), "a", 2),  # an item the table does not hold
        Pair((), np.zeros(0, np.float32), "c", 3),
    ]
    idx, w, tgt = pair_arrays(ps, t)
    assert idx.tolist() == [[0, 2], [-1, -1], [-1, -1]]
    assert w.tolist() == [[0.5, 2.0], [1.0, 0.0], [0.0, 0.0]]
    assert tgt.tolist() == [1, 0, 2] and idx.dtype == tgt.dtype == np.int64 and w.dtype == np.float32
    ti, tw, tt = pair_tensors(ps, t)
    assert ti.tolist() == idx.tolist() and tw.tolist() == w.tolist() and tt.tolist() == tgt.tolist()
