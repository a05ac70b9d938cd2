"""Co-engagement counts mined from the stream, shipped as each item's top neighbours.

Two items co-occur when one user engaged with both (each user-item pair counted once,
within the user's last ``history`` distinct items). The learner counts them over every
event it observes, and each training ships, per item, its ``M`` nearest neighbours by
cosine, ``count(i, j) / sqrt(n_i n_j)``. The scorer adds
``weight * sum_h w_h * cos(h, j)`` over the user's history ``h`` (the same weights as the
user vector) to the score of ``j``; the learner picks ``weight`` on validation, so it is
0 where co-engagement does not help.

Examples
--------
>>> c = CoEngagement(history=10)
>>> for u, i in [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c")]:
...     _ = c.observe(u, i)
>>> idx, w = c.neighbours(["a", "b", "c"], 2)
>>> idx[0].tolist(), [round(float(x), 3) for x in w[0]]  # a: b (2 users of 2), then c
([1, 2], [1.0, 0.707])
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np


class CoEngagement:
    """Pair counts over the stream (bounded: ``max_pairs`` distinct pairs; beyond it the
    pairs seen once are dropped, which keeps the ones with evidence)."""

    def __init__(self, history: int = 50, max_pairs: int = 4_000_000) -> None:
        self.history = history
        self.max_pairs = max_pairs
        self.pairs: dict[tuple[str, str], float] = {}
        self.n: dict[str, float] = {}
        self._recent: dict[str, deque[str]] = {}

    def observe(self, user_id: str, item_id: str) -> tuple[str, ...] | None:
        """Count one engagement; returns the items it was paired with (None: a repeat)."""
        r = self._recent.get(user_id)
        if r is None:
            r = self._recent[user_id] = deque(maxlen=self.history)
        elif item_id in r:
            return None
        pairs = self.pairs
        for h in r:
            k = (h, item_id) if h < item_id else (item_id, h)
            pairs[k] = pairs.get(k, 0.0) + 1.0
        self.n[item_id] = self.n.get(item_id, 0.0) + 1.0
        before = tuple(r)
        r.append(item_id)
        if len(pairs) > self.max_pairs:
            self.pairs = {k: v for k, v in pairs.items() if v > 1.0}
        return before

    def forget(self, item_id: str, paired: Iterable[str], sign: float = -1.0) -> None:
        """Undo (or, with ``sign=1``, redo) one counted engagement: validation builds its
        neighbours without the events it scores."""
        for h in paired:
            k = (h, item_id) if h < item_id else (item_id, h)
            if k in self.pairs:
                self.pairs[k] += sign
        if item_id in self.n:
            self.n[item_id] += sign

    def forget_user(self, user_id: str) -> None:
        """Drop a user's recent items (the counts they added stay: they are no one's).
        The user's next engagement starts a fresh history.

        >>> c = CoEngagement()
        >>> _ = c.observe("u", "a")
        >>> c.forget_user("u")
        >>> c.observe("u", "b")  # not paired with "a" any more
        ()
        """
        self._recent.pop(user_id, None)

    def neighbours(self, item_ids: Sequence[str], m: int) -> tuple[np.ndarray, np.ndarray]:
        """``[N, m]`` row indices (-1 = none) and cosine weights of each item's top ``m``."""
        N = len(item_ids)
        idx = np.full((N, m), -1, np.int32)
        w = np.zeros((N, m), np.float32)
        if not self.pairs or m == 0:
            return idx, w
        row = {i: k for k, i in enumerate(item_ids)}
        a, b, c = [], [], []
        for (x, y), v in self.pairs.items():
            if v <= 0:
                continue
            i, j = row.get(x, -1), row.get(y, -1)
            if i >= 0 and j >= 0:
                a.append(i)
                b.append(j)
                c.append(v)
        if not a:
            return idx, w
        n = np.zeros(N, np.float64)
        for item, v in self.n.items():
            k = row.get(item, -1)
            if k >= 0:
                n[k] = v
        ai, bi, cv = np.array(a), np.array(b), np.array(c, np.float64)
        cos = cv / np.sqrt(np.maximum(n[ai], 1.0) * np.maximum(n[bi], 1.0))
        rows = np.concatenate([ai, bi])
        cols = np.concatenate([bi, ai])
        vals = np.concatenate([cos, cos])
        order = np.lexsort((-vals, rows))
        rows, cols, vals = rows[order], cols[order], vals[order]
        start = np.searchsorted(rows, np.arange(N))
        rank = np.arange(len(rows)) - start[rows]
        keep = rank < m
        idx[rows[keep], rank[keep]] = cols[keep]
        w[rows[keep], rank[keep]] = vals[keep]
        return idx, w


def cooc_entries(
    hist_idx: np.ndarray,
    hist_w: np.ndarray,
    nbr_idx: np.ndarray,
    nbr_w: np.ndarray,
    weight: float,
    recent: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`add_cooc` adds, as ``(rows, columns, values)`` in row order (float32
    values; a column may repeat within a row: the additions are summed in this order).

    Examples
    --------
    >>> r, c, v = cooc_entries(np.array([[0, -1]]), np.array([[2.0, 5.0]]),
    ...                        np.array([[1, 2], [0, -1], [0, -1]]),
    ...                        np.array([[0.5, 0.25], [0.5, 0], [0.25, 0]], np.float32), 2.0)
    >>> r.tolist(), c.tolist(), v.tolist()
    ([0, 0], [1, 2], [1.0, 0.5])
    """
    valid = (hist_idx >= 0) & (hist_idx < nbr_idx.shape[0])
    w = np.where(valid, hist_w, 0.0)
    if w.shape[1] > recent:  # the user's newest (heaviest) items carry the signal
        sel = np.argpartition(-w, recent - 1, axis=1)[:, :recent]
        hist_idx = np.take_along_axis(hist_idx, sel, 1)
        w = np.take_along_axis(w, sel, 1)
        valid = np.take_along_axis(valid, sel, 1) & (w > 0)
    den = w.sum(1, keepdims=True)
    w = w / np.maximum(den, 1e-9)
    b_of, h_of = np.nonzero(valid)
    if b_of.size == 0 or weight == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    items = hist_idx[b_of, h_of]
    ni = nbr_idx[items]  # [K, m]
    nv = nbr_w[items] * (weight * w[b_of, h_of])[:, None]
    ok = (ni >= 0) & (ni < nbr_idx.shape[0])  # -1 pads; nothing outside the catalog
    rows = np.broadcast_to(b_of[:, None], ni.shape)[ok]
    return rows.astype(np.int64, copy=False), ni[ok].astype(np.int64), nv[ok].astype(np.float32)


def add_cooc(
    S: np.ndarray,
    hist_idx: np.ndarray,
    hist_w: np.ndarray,
    nbr_idx: np.ndarray,
    nbr_w: np.ndarray,
    weight: float,
    recent: int = 10,
) -> np.ndarray:
    """``S[b, j] += weight * sum_h w_bh cos(h, j)`` over the ``recent`` heaviest history
    items ``h`` of row ``b`` (``w`` normalised over them), in place.

    Examples
    --------
    >>> S = np.zeros((1, 3), np.float32)
    >>> add_cooc(S, np.array([[0, -1]]), np.array([[2.0, 5.0]]), np.array([[1, 2], [0, -1], [0, -1]]),
    ...          np.array([[0.5, 0.25], [0.5, 0], [0.25, 0]], np.float32), 2.0).tolist()
    [[0.0, 1.0, 0.5]]
    """
    if weight == 0 or S.size == 0:
        return S
    if not S.flags.c_contiguous:
        raise ValueError("add_cooc writes into S in place: S must be C-contiguous")
    rows, cols, vals = cooc_entries(hist_idx, hist_w, nbr_idx, nbr_w, weight, recent)
    if rows.size:
        add_entries(S, rows, cols, vals)
    return S


def add_entries(S: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
    """``S[rows[e], cols[e]] += vals[e]`` for every ``e`` in order (repeats add up), in place."""
    import torch  # index_add_ is several times faster than np.add.at

    flat = rows * S.shape[1] + cols
    torch.from_numpy(S).view(-1).index_add_(
        0, torch.from_numpy(flat), torch.from_numpy(vals.astype(S.dtype, copy=False))
    )
