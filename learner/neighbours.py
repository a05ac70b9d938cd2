"""Co-engagement neighbours as the learner ships them: counted over every event it observes
(:class:`~driftrec.model.CoEngagement`), each item's top ``cooc_neighbours`` shipped with a
version, weighted by what wins on validation (0 where co-engagement does not help).

A validation pair must not be scored with neighbours built from its own engagement (they
would point at its target), so validation builds them without the engagements from the
first validation pair on (:meth:`Neighbours.before`); the shipped neighbours have seen
every event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from driftrec.model import CoEngagement, ItemTable

from .gate import better


class Neighbours:
    """The co-engagement counts (users' last ``history`` distinct items) and a log of the
    last ``log_events`` counted engagements, so that neighbours can be built without the
    newest of them; ``m``: the neighbours shipped per item.

    Examples
    --------
    >>> nb = Neighbours(history=10, m=1, log_events=100)
    >>> for ts, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c")]):
    ...     nb.observe(u, i, ts)
    >>> nb.neighbours(["a", "b", "c"])[0].ravel().tolist()  # a: b (tie with c: first), b: a, c: a
    [1, 0, 0]
    >>> nb.before(["a", "b", "c"], cut_ts=3)[0].ravel().tolist()  # without u2's "c"
    [1, 0, -1]
    """

    def __init__(self, history: int, m: int, log_events: int) -> None:
        self.counts = CoEngagement(history)
        self.m = m
        # (ts, item, items it was paired with) of recent engagements
        self._log: deque[tuple[int, str, tuple[str, ...]]] = deque(maxlen=log_events)

    def observe(self, user_id: str, item_id: str, ts: int) -> None:
        """Count one engagement (a repeat of one of the user's recent items counts nothing)."""
        paired = self.counts.observe(user_id, item_id)
        if paired is not None:
            self._log.append((ts, item_id, paired))

    def forget_user(self, user_id: str) -> None:
        """Drop the user's recent items (:meth:`CoEngagement.forget_user`)."""
        self.counts.forget_user(user_id)

    def neighbours(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``[N, m]`` rows (-1: none) and weights of the top ``m`` neighbours of ``ids``."""
        return self.counts.neighbours(ids, self.m)

    def before(self, ids: Sequence[str], cut_ts: int | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`neighbours` built without the logged engagements from ``cut_ts`` on (None:
        with all of them); the counts are left as they were."""
        co = self.counts
        undo = [x for x in self._log if x[0] >= cut_ts] if cut_ts is not None else []
        for _, item, paired in undo:
            co.forget(item, paired)
        out = co.neighbours(ids, self.m)
        for _, item, paired in undo:
            co.forget(item, paired, sign=1.0)
        return out

    def with_weight(
        self,
        cand: ItemTable,
        m_cand: dict[str, float],
        cut_ts: int | None,
        weights: Sequence[float],
        evaluate: Callable[[ItemTable], dict[str, float]],
    ) -> tuple[ItemTable, dict[str, float], float, ItemTable]:
        """Pick the co-engagement weight on validation (0 or one of ``weights``: the one
        ``evaluate`` finds :func:`~driftrec.learner.gate.better` than ``m_cand``, ``cand``
        without neighbours), with neighbours built :meth:`before` ``cut_ts`` (the first
        validation pair's time), and ship fresh neighbours. Returns (the table to ship, its
        validation metrics, the weight, the table with the validation neighbours: what
        later choices are judged on)."""
        ids = cand.item_ids
        v_idx, v_w = self.before(ids, cut_ts)
        best_w, best_m = 0.0, m_cand
        for wgt in weights:
            m = evaluate(cand.with_cooc(v_idx, v_w, wgt))
            if better(m, best_m, 0.0):
                best_w, best_m = float(wgt), m
        n_idx, n_w = self.neighbours(ids)
        return cand.with_cooc(n_idx, n_w, best_w), best_m, best_w, cand.with_cooc(v_idx, v_w, best_w)
