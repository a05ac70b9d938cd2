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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from driftrec.model import ItemTable

from .config import LearnerConfig
from .gate import better, means, paired_gain, popularity_only
from .pairs import Pair
from .popularity import PooledEvidence, PopAt, PopularityLog

__all__ = ["PopularityLog", "Validation", "best_blend", "best_text_weight", "calibrate"]

if TYPE_CHECKING:
    from .core import Learner
    from .training import RoundLog

EvaluateEach = Callable[[ItemTable], tuple[np.ndarray, np.ndarray]]


def best_blend(
    each: EvaluateEach,
    cand: ItemTable,
    values: Sequence[float],
    z: float,
    field: str = "text_weight",
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """The value of the blend's ``field`` (``text_weight`` or ``pop_recent_share``) that
    ``cand`` is served with, and its per-pair validation metrics: the best of ``values``
    on validation (HR@10, then MRR) where it beats ``cand``'s own value by ``z`` standard
    errors of the per-pair difference (:func:`~driftrec.learner.gate.paired_gain`), else
    ``cand``'s own."""
    own = getattr(cand, field)
    e_own = each(cand)
    best_v, best_e = own, e_own
    m_best = means(e_own)
    for v in values:
        if v == own:
            continue
        e = each(replace(cand, **{field: float(v)}))
        m = means(e)
        if better(m, m_best, 0.0):
            best_v, best_e, m_best = float(v), e, m
    if best_v != own and not paired_gain(best_e, e_own, z):
        return own, e_own
    return best_v, best_e


def best_text_weight(
    each: EvaluateEach,
    cand: ItemTable,
    weights: Sequence[float],
    z: float,
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """:func:`best_blend` of the text weight."""
    return best_blend(each, cand, weights, z, "text_weight")


def fit_blend(
    each: EvaluateEach,
    cand: ItemTable,
    config: LearnerConfig,
    pooled: tuple[PooledEvidence, Sequence[int]] | None = None,
) -> tuple[ItemTable, tuple[np.ndarray, np.ndarray] | None]:
    """``cand`` with the text weight that wins on validation beyond noise
    (:func:`best_blend`), then the popularity mix (``pop_recent_share``) that does, on
    the pairs pooled over rounds where ``pooled`` is given (the pool and this round's
    pair times: :meth:`PooledEvidence.fit`), and its per-pair metrics (None where
    neither is tried)."""
    e = None
    if config.text_weights:
        w, e = best_blend(each, cand, config.text_weights, config.blend_gate_z)
        cand = cand.with_text_weight(w)
    if config.pop_recent_shares:
        shares, z = config.pop_recent_shares, config.blend_gate_z
        if pooled is None:
            s, e = best_blend(each, cand, shares, z, "pop_recent_share")
        else:
            s, e = pooled[0].fit(each, cand, shares, z, pooled[1])
        cand = cand.with_pop_recent_share(s)
    return cand, e


def calibrate(cur: ItemTable, val: Validation, config: LearnerConfig, log: RoundLog) -> ItemTable:
    """A calibration round's verdict (:meth:`Learner.train` with reason ``day_one``): the
    serving table ``cur`` with the text weight and popularity mix that win on ``val``
    beyond noise, or live popularity alone (:func:`~driftrec.learner.gate.popularity_only`)
    where that table does not beat it beyond noise, as a training's gate does (then
    ``log.accepted`` where it differs from ``cur``), else ``cur``; ``log`` gets what was
    measured."""
    cand, e = fit_blend(val.each, cur, config, val.pooled())
    e_cand = e if e is not None else val.each(cand)
    pop_t = popularity_only(cand)
    e_pop = val.each(pop_t)
    log.m_cur = log.m_items = val.evaluate(cur)
    log.m_new, log.m_pop = means(e_cand), means(e_pop)
    if cand.text_weight and not paired_gain(e_cand, e_pop, config.blend_gate_z):
        cand, log.m_new, log.popularity = cand.with_text_weight(0.0), log.m_pop, True
    log.val_pairs_unseen, log.text_weight = len(val.pairs), cand.text_weight
    log.pop_recent_share = cand.pop_recent_share
    log.accepted = (cand.text_weight, cand.pop_recent_share) != (cur.text_weight, cur.pop_recent_share)
    return cand if log.accepted else cur


@dataclass
class Validation:
    """A round's validation pairs, scored by ``learner`` with the round's popularity:
    ``pop`` (the long term's log accumulators) now, ``lp`` both terms as each pair saw
    them (None: now)."""

    learner: Learner
    pairs: list[Pair]
    pop: np.ndarray
    lp: PopAt | None = None

    def each(self, table: ItemTable, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-pair (HR@10, reciprocal rank) of ``table`` (:meth:`Learner.evaluate_each`)."""
        return self.learner.evaluate_each(self.pairs, table, self.pop, extra=extra, pop_at=self.lp)

    def pooled(self) -> tuple[PooledEvidence, list[int]]:
        """The learner's pool of the popularity mixes' evidence, and these pairs' times."""
        return self.learner.popularity.evidence, [p.ts for p in self.pairs]

    def evaluate(self, table: ItemTable) -> dict[str, float]:
        """Mean HR@10 and MRR of ``table``."""
        return means(self.each(table))
