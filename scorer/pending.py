"""The candidate index's state for one table, and the items it holds back until their
publication time.

An item published after the ranking time scores ``-inf`` on both paths (not yet a
candidate). If the index held it, it would take one of the ``ann_k`` slots of a published
item, and a user could get fewer than ``top_k`` items (a replay whose catalog is known up
front publishes most of it later). So the index leaves those rows out: they are *pending*,
in time order. Once the ranking time passes an item's time it becomes a changed row
(scored for every user) and is folded into the index with the others.

Every finite row is in the index, the changed rows or the pending rows. A row may be both
changed and pending (an edit, or an item added with a later time): it is scored, masked by
its time, until the fold puts it where its time says. The index never holds a row
published after :attr:`IndexState.until` (a ranking at an earlier time than that finds
fewer candidates, never a wrong one: the full score masks them).

Per batch this is a binary search in the pending times; the full pass over the rows is
made once per index built without a time (before the first batch).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from driftrec.model import ItemTable

from .ann import AnnIndex


def _no_rows() -> np.ndarray:
    return np.zeros(0, np.int64)


def no_pending() -> tuple[np.ndarray, np.ndarray]:
    return _no_rows(), np.zeros(0, np.float64)


@dataclass
class IndexState:
    """The index and what goes with it for one table. Replaced, not changed, between
    batches (a version is derived from it on another thread); only the faiss index is
    changed in place, under the candidate path's index lock."""

    table: ItemTable
    index: AnnIndex | None
    ok: np.ndarray  # rows with a finite vector and bias
    side: np.ndarray = field(default_factory=_no_rows)  # changed rows
    #: rows held out of the index until they are published, and their times (ascending)
    pend: tuple[np.ndarray, np.ndarray] = field(default_factory=no_pending)
    #: the index holds no row published after this time (None: not split by time yet)
    until: float | None = None


def held(ok: np.ndarray, pub: np.ndarray | None, clock: float | None) -> np.ndarray | None:
    """Rows of a table to build the index without: finite ones published after ``clock``
    (None: none, or no time to split by).

    >>> held(np.array([True, True, False]), np.array([1.0, 9.0, 9.0]), 5).tolist()
    [False, True, False]
    """
    if pub is None or clock is None or len(pub) != len(ok):
        return None
    out: np.ndarray = ok & (pub > clock)
    return out


def with_pending(
    pend: tuple[np.ndarray, np.ndarray], rows: np.ndarray, pub: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``pend`` with ``rows`` (at their times in ``pub``; any earlier entry of them
    replaced), in time order.

    >>> with_pending((np.array([4, 7]), np.array([1.0, 5.0])), np.array([7, 2]), np.arange(10.0))
    (array([4, 2, 7]), array([1., 2., 7.]))
    """
    r0, t0 = pend
    keep = ~np.isin(r0, rows)
    r = np.concatenate([r0[keep], rows.astype(np.int64, copy=False)])
    t = np.concatenate([t0[keep], pub[rows]])
    order = np.argsort(t, kind="stable")
    return r[order], t[order]


def publish(
    st: IndexState, pub: np.ndarray | None, now: float, lock: AbstractContextManager[Any]
) -> IndexState:
    """``st`` at ranking time ``now``: the pending rows published by then become changed
    rows. An index not split by time yet (built before the first batch) first loses the
    rows published after ``now`` (one faiss removal), which become pending."""
    if pub is None or st.index is None or len(pub) != len(st.ok):
        return st
    if st.until is None:
        hold = held(st.ok, pub, now)
        rows = np.flatnonzero(hold) if hold is not None else _no_rows()
        if rows.size:
            with lock:
                st.index.remove(rows)
        return replace(st, pend=with_pending(no_pending(), rows, pub), until=float(now))
    if now <= st.until:
        return st
    r, t = st.pend
    j = int(np.searchsorted(t, now, "right"))
    side = np.union1d(st.side, r[:j]) if j else st.side
    return replace(st, side=side, pend=(r[j:], t[j:]), until=float(now))


def fold(st: IndexState, pub: np.ndarray | None, lock: AbstractContextManager[Any]) -> IndexState:
    """``st`` with its changed rows folded into its index (changed in place, under
    ``lock``): the finite ones published by ``st.until`` indexed, the others taken out,
    the finite ones published later pending."""
    t, side = st.table, st.side
    ok = st.ok[side]
    ahead = np.zeros(len(side), bool)
    if pub is not None and st.until is not None and len(pub) == len(st.ok):
        ahead = pub[side] > st.until
    put = ok & ~ahead
    assert st.index is not None
    with lock:
        st.index.add(side[put], t.vectors, t.bias)
        st.index.remove(side[~put])
    pend = with_pending(st.pend, side[ok & ahead], pub) if ahead.any() and pub is not None else st.pend
    return IndexState(t, st.index, st.ok, _no_rows(), pend, st.until)
