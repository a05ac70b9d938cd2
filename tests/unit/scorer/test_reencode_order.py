"""The background re-encoding walks one priority order (issue 26, item 5): the chunks are the
ones ranking the stale rows again before every chunk gave, while popularity holds still;
items added, or time, make it rank them again."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from driftrec.model import priority_order
from scorer import swap


def old_chunk(sc, t, pending, n):  # type: ignore[no-untyped-def]
    """The chunk as it was chosen before: the whole order ranked again every time."""
    order = priority_order(sc.publication_times, sc.popularity, len(t.item_ids))
    order = [j for j in order[t.stale[order]].tolist() if t.item_ids[j] not in pending]
    return order[:n], len(order[:n]) == len(order)


def test_the_walk_gives_the_chunks_of_a_fresh_ranking_each_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    n = 500
    pop = np.where(rng.random(n) < 0.3, rng.normal(size=n), -np.inf)
    sc = SimpleNamespace(publication_times=rng.permutation(n).astype(np.float64), popularity=pop)
    ids = [f"i{j}" for j in range(n)]
    stale = rng.random(n) < 0.7
    t = SimpleNamespace(item_ids=ids, stale=stale.copy())
    q = swap._Priority(sc)  # type: ignore[arg-type]
    pending: dict[str, int] = {}
    for step in range(100):
        want = old_chunk(sc, t, pending, 16)
        got = q.next(t, pending, 16)
        assert got[0] == want[0], step
        pending.update((ids[j], 0) for j in got[0])
        if step % 3 == 2:  # a block served: its rows are no longer stale nor pending
            rows = [ids.index(i) for i in pending]
            t = SimpleNamespace(item_ids=ids, stale=t.stale.copy())
            t.stale[rows] = False
            pending.clear()
        if not got[0] and not pending:
            break
    assert not t.stale.any()


def test_new_items_or_time_rank_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pub = np.arange(10, dtype=np.float64)
    sc = SimpleNamespace(publication_times=pub, popularity=None)
    ids = [f"i{j}" for j in range(10)]
    t = SimpleNamespace(item_ids=ids, stale=np.ones(10, bool))
    q = swap._Priority(sc)  # type: ignore[arg-type]
    assert q.next(t, {}, 2)[0] == [9, 8]
    sc.publication_times = pub[::-1].copy()  # newer times, same catalog: the walk goes on
    assert q.next(t, {}, 2)[0] == [7, 6]
    monkeypatch.setattr(swap, "REORDER_S", -1.0)  # time to rank again
    assert q.next(t, {}, 2)[0] == [0, 1]
    monkeypatch.setattr(swap, "REORDER_S", 1e9)
    t2 = SimpleNamespace(item_ids=[*ids, "new"], stale=np.append(np.ones(10, bool), False))
    sc.publication_times = np.append(pub, 99.0)
    assert q.next(t2, {}, 2)[0] == [9, 8]  # another catalog: ranked again
