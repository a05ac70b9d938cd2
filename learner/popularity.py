"""The learner's live popularity, counted as the scorer counts it: the long term (decayed
by the clock, ``Representation.pop_half_life_ms``) and the recent term (decayed by events,
``pop_recent_half_life_events``), and, for validation, both as each pair saw them.

A version's popularity term is ``pop_weight * ((1 - s) * log1p(long) + s * log1p(recent))``
with ``s = ItemTable.pop_recent_share``. The long term is all-time popularity on a stream
that lasts less than its half-life; the recent term follows what is engaged now (a
launch, a fading hit) at any pace. Which mix ranks better is the stream's to say, and it
says so slowly: the two terms rank alike on most pairs, and one round's validation pairs
rarely tell them apart beyond noise. So each round scores every mix on its validation
pairs and :class:`PooledEvidence` keeps those per-pair metrics over rounds (each pair
once, the newest ``LearnerConfig.pop_recent_evidence`` of them): a mix replaces the
serving one when the pooled pairs say it wins beyond noise.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from driftrec.model import LN2, ItemTable, Representation, logaddexp
from driftrec.stream import Event

from .gate import better, means, paired_gain

Metrics = tuple[np.ndarray, np.ndarray]


@dataclass
class PopAt:
    """``log1p`` of each item's long (``long``) and recent (``recent``) popularity as
    each validation pair saw it (float32 ``[pairs, items]``)."""

    long: np.ndarray
    recent: np.ndarray

    def __getitem__(self, rows: np.ndarray) -> PopAt:
        return PopAt(self.long[rows], self.recent[rows])

    def term(self, weight: float, share: float) -> np.ndarray:
        """The popularity term of a table whose ``pop_recent_share`` is ``share``.

        >>> p = PopAt(np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 2.0]], np.float32))
        >>> p.term(0.5, 0.0).tolist(), p.term(0.5, 0.5).tolist()
        ([[0.5, 0.0]], [[0.25, 0.5]])
        """
        w = np.float32(weight)
        if not share:
            return w * self.long
        s = np.float32(share)
        return w * ((np.float32(1.0) - s) * self.long + s * self.recent)


class PopularityLog:
    """The live popularity's increments of the last ``maxlen`` events (time, item, log
    increment of the long term, log increment of the recent term), so that popularity can
    be counted as it was at an earlier time.

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
        self._ev: deque[tuple[int, str, float, float]] = deque(maxlen=maxlen)

    def add(self, ts: int, item: str, inc: float, acc: float, recent_inc: float = -math.inf) -> float:
        """Record one event of ``item`` (log increment ``inc``; ``recent_inc``: of the
        recent term) and return the item's new log accumulator (``acc``: the previous one)."""
        self._ev.append((ts, item, inc, recent_inc))
        return logaddexp(acc, inc)

    def __len__(self) -> int:
        return len(self._ev)

    def before(
        self,
        times: Sequence[int],
        item_ids: Sequence[str],
        acc_now: np.ndarray,
        rep: Representation,
        recent: tuple[np.ndarray, int] | None = None,
    ) -> np.ndarray:
        """``log1p(popularity)`` ``[len(times), len(item_ids)]`` (float32) of each item at
        each time, from the events strictly before it (``acc_now``: the items' log
        accumulators now, every logged event included). Times older than the log's oldest
        event count what the log cannot take back (the older events) as if they were
        before them. ``recent``: (the recent term's log accumulators now, the events
        counted so far): that term instead, at each time as many events back as were
        logged from it on."""
        n_t, n = len(times), len(item_ids)
        out = np.zeros((n_t, n), np.float32)
        if n_t == 0 or n == 0:
            return out
        col = 2 if recent is None else 3
        order = np.argsort(np.asarray(times, np.int64), kind="stable")
        t_sorted = np.asarray(times, np.int64)[order]
        row = {i: k for k, i in enumerate(item_ids)}
        later = [(x[0], row.get(x[1], -1), x[col]) for x in self._ev if x[0] >= t_sorted[0]]
        later.sort(key=lambda x: x[0])
        acc = np.asarray(acc_now if recent is None else recent[0], np.float64).copy()
        if later:  # take the later events back out: acc * (1 - their share of it)
            rows = np.array([r for _, r, _ in later], np.int64)
            incs = np.array([x for _, _, x in later], np.float64)
            ok = (rows >= 0) & (incs > -np.inf)
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
        for b, t in zip(order.tolist(), t_sorted.tolist()):
            while j < len(later) and later[j][0] < t:
                _, r, inc = later[j]
                if r >= 0:
                    acc[r] = np.logaddexp(acc[r], inc)
                j += 1
            if recent is None:
                now = acc - LN2 * t / rep.pop_half_life_ms
            else:  # the events counted before t: all but the later ones not added back
                now = rep.pop_recent_now(acc, recent[1] - len(later) + j)
            out[b] = np.logaddexp(0.0, now)
        return out


class LivePopularity:
    """Both popularity terms of every item the learner has seen, and the window's
    increments (:class:`PopularityLog` of ``maxlen`` events)."""

    def __init__(self, rep: Representation, maxlen: int, evidence_pairs: int = 4096) -> None:
        self.rep = rep
        #: the popularity mixes' per-pair validation metrics, pooled over rounds
        self.evidence = PooledEvidence(evidence_pairs)
        #: item id -> the long term's log accumulator
        self.acc: dict[str, float] = {}
        #: item id -> the recent term's log accumulator
        self.recent: dict[str, float] = {}
        #: events counted (the recent term's clock)
        self.n = 0
        self.log = PopularityLog(maxlen)

    def add(self, e: Event) -> None:
        """Count one event (events in time order)."""
        rep, item = self.rep, e.item_id
        self.n += 1
        rinc = rep.pop_recent_increment(e.type, self.n)
        self.recent[item] = logaddexp(self.recent.get(item, -math.inf), rinc)
        self.acc[item] = self.log.add(
            e.ts, item, rep.pop_increment(e.type, e.ts), self.acc.get(item, -math.inf), rinc
        )

    def remove(self, item_ids: Iterable[str]) -> None:
        """Items deleted from the catalog: not counted as popular any more."""
        for i in item_ids:
            self.acc.pop(i, None)
            self.recent.pop(i, None)

    def vector(self, table: ItemTable) -> np.ndarray:
        """The long term's log accumulators of ``table``'s rows (-inf: never seen)."""
        return np.array([self.acc.get(i, -np.inf) for i in table.item_ids], np.float64)

    def recent_now(self, table: ItemTable) -> np.ndarray:
        """The log of the recent popularity of ``table``'s rows now."""
        acc = np.array([self.recent.get(i, -np.inf) for i in table.item_ids], np.float64)
        return self.rep.pop_recent_now(acc, self.n)

    def prior(self, table: ItemTable, acc: np.ndarray, now: int) -> np.ndarray:
        """``table``'s popularity term at ``now`` (``acc``: its rows' long accumulators)."""
        share = table.pop_recent_share
        if not share:
            return self.rep.pop_prior(acc, now)
        return self.rep.pop_prior(acc, now, self.recent_now(table), share)

    def at(self, times: Sequence[int], table: ItemTable, acc: np.ndarray) -> PopAt:
        """Both terms as each of ``times`` saw them (``acc``: the long accumulators now)."""
        ids, rep = table.item_ids, self.rep
        racc = np.array([self.recent.get(i, -np.inf) for i in ids], np.float64)
        return PopAt(
            self.log.before(times, ids, acc, rep), self.log.before(times, ids, acc, rep, (racc, self.n))
        )


class PooledEvidence:
    """Per-pair validation metrics (HR@10, reciprocal rank) of each value of the popularity
    mix (``ItemTable.pop_recent_share``), pooled over rounds: the newest ``max_pairs``
    pairs, each counted once (a calibration round validates on every pair of the window,
    and rounds soon after one another share pairs).

    >>> ev = PooledEvidence(100)
    >>> hr = {0.0: np.zeros(40), 1.0: np.r_[np.ones(12), np.zeros(28)]}
    >>> each = lambda t: (hr[t.pop_recent_share], hr[t.pop_recent_share])
    >>> t = ItemTable.from_text(["a"], np.ones((1, 2), np.float32))
    >>> ev.fit(each, t, (0.0, 1.0), 1.64, list(range(40)))[0]  # 12 pairs of 40 win: beyond noise
    1.0
    >>> ev.fit(each, t, (0.0, 1.0), 1.64, list(range(40)))[0]  # the same pairs: counted once
    1.0
    >>> len(ev.by_value[1.0][0])
    40
    """

    def __init__(self, max_pairs: int) -> None:
        self.max_pairs = max_pairs
        #: share -> (HR@10, reciprocal rank) of the pooled pairs, oldest first
        self.by_value: dict[float, Metrics] = {}
        #: the newest pair time recorded (later rounds add only newer pairs)
        self.newest: float = -math.inf

    def fit(
        self,
        each: Callable[[ItemTable], Metrics],
        cand: ItemTable,
        values: Sequence[float],
        z: float,
        times: Sequence[int],
    ) -> tuple[float, Metrics]:
        """The share ``cand`` is served with, and its per-pair metrics on this round's pairs
        (``times``: theirs): each of ``values`` (and ``cand``'s own) is scored by ``each``
        and its metrics of the pairs not recorded before are added to the pool; the best on
        the pool (HR@10, then MRR) where it beats ``cand``'s own there by ``z`` standard
        errors of the per-pair difference, else ``cand``'s own."""
        own = cand.pop_recent_share
        fresh = np.asarray(times, np.float64) > self.newest
        e = {}
        for v in dict.fromkeys([own, *map(float, values)]):
            e[v] = each(cand if v == own else replace(cand, pop_recent_share=v))
            self._add(v, (e[v][0][fresh], e[v][1][fresh]))
        if fresh.any():
            self.newest = float(np.max(np.asarray(times, np.float64)[fresh]))
        n = min(len(self.by_value[v][0]) for v in e)  # the pairs every value was scored on
        pool = {v: (self.by_value[v][0][-n:], self.by_value[v][1][-n:]) for v in e} if n else {}
        if not pool:
            return own, e[own]
        best = own
        for v in e:
            if v != own and better(means(pool[v]), means(pool[best]), 0.0):
                best = v
        if best != own and not paired_gain(pool[best], pool[own], z):
            best = own
        return best, e[best]

    def _add(self, v: float, m: Metrics) -> None:
        old = self.by_value.get(v)
        if old is not None:
            m = (np.concatenate([old[0], m[0]]), np.concatenate([old[1], m[1]]))
        self.by_value[v] = (m[0][-self.max_pairs :], m[1][-self.max_pairs :])
