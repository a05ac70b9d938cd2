"""The blend: how much a version's text term weighs against the rest of its score, and the
live popularity each validation pair saw.

A version's score adds the user-item term (text vectors plus learned residuals), a learned
bias, live popularity, freshness and co-engagement. Where the text says little about what
users engage (a shop known by product codes and variant strings), the text term only adds
noise to what counting engagements already says; where it is informative it decides.
``ItemTable.text_weight`` scales it, and each round picks it on validation
(:func:`best_text_weight`): a weight other than the serving one is taken only when it wins
beyond noise (:func:`~driftrec.learner.gate.paired_gain`). Before the first training, a
calibration round picks it for the base version from the events seen so far (the day one
of a platform: nothing trained yet, the live counts already there).

Popularity on validation is counted as each pair saw it, from the events before it
(:class:`PopularityLog`): counted at the end of the window instead, each pair's own
engagement (and every later one) would count for its target, and popularity would look
better than any live ranking can be.

The gate compares every candidate with live popularity alone
(:func:`~driftrec.learner.gate.popular_instead`): a candidate that does not beat it beyond
noise on the same pairs is not served; popularity is, if it beats the serving version.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from driftrec.model import LN2, ItemTable, Representation, logaddexp

from .config import LearnerConfig
from .gate import better, means, paired_gain, popularity_only
from .pairs import Pair

if TYPE_CHECKING:
    from .core import Learner
    from .training import RoundLog

EvaluateEach = Callable[[ItemTable], tuple[np.ndarray, np.ndarray]]


class PopularityLog:
    """The live popularity's increments of the last ``maxlen`` events (time, item, log
    increment), so that popularity can be counted as it was at an earlier time.

    >>> rep = Representation(pop_half_life_ms=1e12)
    >>> log = PopularityLog(8)
    >>> acc = {}
    >>> for ts, item in [(1, "a"), (2, "a"), (3, "b")]:
    ...     acc[item] = log.add(ts, item, rep.pop_increment("click", ts), acc.get(item, -np.inf))
    >>> lp = log.before([2, 4], ["a", "b"], np.array([acc["a"], acc["b"]]), rep)
    >>> np.round(np.expm1(lp), 3).tolist()  # "a" once before ts 2; twice and "b" once before 4
    [[1.0, 0.0], [2.0, 1.0]]
    """

    def __init__(self, maxlen: int) -> None:
        self._ev: deque[tuple[int, str, float]] = deque(maxlen=maxlen)

    def add(self, ts: int, item: str, inc: float, acc: float) -> float:
        """Record one event of ``item`` (log increment ``inc``) and return the item's new
        log accumulator (``acc``: the previous one)."""
        self._ev.append((ts, item, inc))
        return logaddexp(acc, inc)

    def __len__(self) -> int:
        return len(self._ev)

    def before(
        self, times: Sequence[int], item_ids: Sequence[str], acc_now: np.ndarray, rep: Representation
    ) -> np.ndarray:
        """``log1p(popularity)`` ``[len(times), len(item_ids)]`` (float32) of each item at
        each time, from the events strictly before it (``acc_now``: the items' log
        accumulators now, every logged event included). Times older than the log's oldest
        event count what the log cannot take back (the older events) as if they were
        before them."""
        n_t, n = len(times), len(item_ids)
        out = np.zeros((n_t, n), np.float32)
        if n_t == 0 or n == 0:
            return out
        order = np.argsort(np.asarray(times, np.int64), kind="stable")
        t_sorted = np.asarray(times, np.int64)[order]
        row = {i: k for k, i in enumerate(item_ids)}
        later = [(ts, row.get(item, -1), inc) for ts, item, inc in self._ev if ts >= t_sorted[0]]
        later.sort(key=lambda x: x[0])
        acc = np.asarray(acc_now, np.float64).copy()
        if later:  # take the later events back out: acc * (1 - their share of it)
            rows = np.array([r for _, r, _ in later], np.int64)
            incs = np.array([x for _, _, x in later], np.float64)
            ok = rows >= 0
            rows, incs = rows[ok], incs[ok]
            with np.errstate(invalid="ignore", over="ignore"):
                share = np.zeros(n)
                np.add.at(share, rows, np.exp(incs - acc[rows]))
            rest = 1.0 - share
            touched = share > 0
            gone = touched & (rest <= 1e-9)
            keep = touched & ~gone
            acc[keep] = acc[keep] + np.log(rest[keep])
            acc[gone] = -np.inf
        j = 0
        inv = LN2 / rep.pop_half_life_ms
        for b, t in zip(order.tolist(), t_sorted.tolist()):
            while j < len(later) and later[j][0] < t:
                _, r, inc = later[j]
                if r >= 0:
                    acc[r] = np.logaddexp(acc[r], inc)
                j += 1
            out[b] = np.logaddexp(0.0, acc - inv * t)
        return out


def best_text_weight(
    each: EvaluateEach,
    cand: ItemTable,
    weights: Sequence[float],
    z: float,
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """The text weight ``cand`` is served with, and its per-pair validation metrics: the
    best of ``weights`` on validation (HR@10, then MRR) where it beats ``cand``'s own
    weight by ``z`` standard errors of the per-pair difference
    (:func:`~driftrec.learner.gate.paired_gain`), else ``cand``'s own."""
    own = cand.text_weight
    e_own = each(cand)
    best_w, best_e = own, e_own
    m_best = means(e_own)
    for w in weights:
        if w == own:
            continue
        e = each(cand.with_text_weight(w))
        m = means(e)
        if better(m, m_best, 0.0):
            best_w, best_e, m_best = float(w), e, m
    if best_w != own and not paired_gain(best_e, e_own, z):
        return own, e_own
    return best_w, best_e


def calibrate(cur: ItemTable, val: Validation, config: LearnerConfig, log: RoundLog) -> ItemTable:
    """A calibration round's verdict (:meth:`Learner.train` with reason ``day_one``): the
    serving table ``cur`` with the text weight that wins on ``val`` beyond noise (then
    ``log.accepted``), else ``cur``; ``log`` gets what was measured."""
    w, e = best_text_weight(val.each, cur, config.text_weights, config.blend_gate_z)
    log.m_cur = log.m_items = val.evaluate(cur)
    log.m_new, log.m_pop = means(e), val.evaluate(popularity_only(cur))
    log.val_pairs_unseen, log.text_weight = len(val.pairs), w
    log.accepted = w != cur.text_weight
    return cur.with_text_weight(w) if log.accepted else cur


@dataclass
class Validation:
    """A round's validation pairs, scored by ``learner`` with the round's popularity:
    ``pop`` (log accumulators) now, ``lp`` as each pair saw it (None: ``pop``)."""

    learner: Learner
    pairs: list[Pair]
    pop: np.ndarray
    lp: np.ndarray | None = None

    def each(self, table: ItemTable, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-pair (HR@10, reciprocal rank) of ``table`` (:meth:`Learner.evaluate_each`)."""
        return self.learner.evaluate_each(self.pairs, table, self.pop, extra=extra, pop_at=self.lp)

    def evaluate(self, table: ItemTable) -> dict[str, float]:
        """Mean HR@10 and MRR of ``table``."""
        return means(self.each(table))
