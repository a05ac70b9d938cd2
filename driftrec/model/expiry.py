"""Item expiry (``ITEM_MAX_AGE_DAYS``): what the scorer and the learner share.

An item whose publication time is more than the maximum age behind the stream's own
clock has expired: it is never served, never a training target, and its table row is
released when the table is next compacted (:func:`without_rows`). Items without a known
publication time never expire. The clock is the stream's, never the wall clock's, so a
replay of a recorded log expires what the live run did.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from .table import ItemTable

#: A table is compacted (its expired rows released) once they are this share of its rows.
COMPACT_SHARE = 0.25


def expired_mask(pub: np.ndarray | None, cutoff: float) -> np.ndarray | None:
    """Rows published before ``cutoff`` (``pub``: publication times, -inf: unknown, never
    expires); ``None`` where none is.

    >>> expired_mask(np.array([5.0, -np.inf, 20.0]), 10).tolist()
    [True, False, False]
    >>> expired_mask(np.array([5.0]), -np.inf) is None
    True
    """
    if pub is None or cutoff == -np.inf:
        return None
    m: np.ndarray = (pub < cutoff) & (pub > -np.inf)
    return m if m.any() else None


def without_rows(table: ItemTable, drop: np.ndarray) -> tuple[ItemTable, np.ndarray]:
    """``table`` without the rows where ``drop`` (bool ``[n]``) is set, and the rows of
    ``table`` the new one keeps (its row ``j`` is the old row ``kept[j]``). The arrays are
    new (the old table's memory goes with it); co-engagement neighbours pointing at a
    dropped row are dropped too.

    >>> t = ItemTable.from_text(["a", "b", "c"], np.eye(3, dtype=np.float32))
    >>> u, kept = without_rows(t, np.array([False, True, False]))
    >>> u.item_ids, kept.tolist(), u.vectors.tolist(), u.index("c")
    (['a', 'c'], [0, 2], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], 1)
    """
    kept = np.flatnonzero(~np.asarray(drop, bool))
    ids = table.item_ids
    text = np.ascontiguousarray(table.text[kept])
    ctx = table.context
    assert ctx is not None
    context = text if ctx is table.text else np.ascontiguousarray(ctx[kept])
    residual = table.residual[kept] if table.has_residual else None
    ni, nw = table.nbr_idx, table.nbr_w
    if ni is not None and nw is not None:
        new_row = np.full(len(ids) + 1, -1, np.int64)  # old row -> new row; [-1] stays -1
        new_row[kept] = np.arange(len(kept))
        ni = new_row[ni[kept]].astype(ni.dtype, copy=False)
        nw = np.where(ni >= 0, nw[kept], 0).astype(nw.dtype, copy=False)
    out = replace(
        table,
        item_ids=[ids[j] for j in kept.tolist()],
        text=text,
        residual=residual if residual is not None else np.zeros((0, text.shape[1]), np.float32),
        bias=table.bias[kept],
        context=context,
        nbr_idx=ni,
        nbr_w=nw,
        stale=None if table.stale is None else table.stale[kept],
        _index={},
    )
    return out, kept


class ItemClock:
    """The publication times of the items still live, in time order (a heap), and the
    stream time they are expired against: :meth:`advance` returns the items that have
    expired since the last call, each once (a later :meth:`publish` of an item lets it
    expire again).

    >>> c = ItemClock(100, {"a": 0, "b": 50})
    >>> c.advance(120), c.advance(160), c.advance(10)
    (['a'], ['b'], [])
    >>> c.publish("a", 0); c.advance(160)  # published again with its old time: at once
    ['a']
    """

    def __init__(self, max_age_ms: int, times: Mapping[str, int] | None = None) -> None:
        self.max_age_ms = int(max_age_ms)
        self.cutoff = -np.inf  # items published before this have expired
        self._times: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        for i, ts in (times or {}).items():
            self._times[i] = ts
            self._heap.append((ts, i))
        heapq.heapify(self._heap)

    def publish(self, item_id: str, ts: int) -> None:
        """An item added or edited, published at ``ts``."""
        self._times[item_id] = ts
        heapq.heappush(self._heap, (ts, item_id))

    def forget(self, item_ids: Iterable[str]) -> None:
        """Items deleted (a tombstone): nothing to expire."""
        for i in item_ids:
            self._times.pop(i, None)

    def advance(self, now: int) -> list[str]:
        """Move the stream time to ``now`` (never back); the items expired since."""
        self.cutoff = max(self.cutoff, float(now - self.max_age_ms))
        out: list[str] = []
        heap, times = self._heap, self._times
        while heap and heap[0][0] < self.cutoff:
            ts, i = heapq.heappop(heap)
            if times.get(i) == ts:
                del times[i]
                out.append(i)
        return out
