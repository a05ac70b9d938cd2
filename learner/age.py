"""The freshness prior: how engagement varies with an item's age, learned from the window.

A version may ship a log engagement rate by item age (:func:`fit_age_curve`, binned by
:data:`AGE_EDGES_MS`); the scorer adds ``weight`` times it to every score. The curve is
fitted on every pair of the window; its weight is picked on the validation pairs
(:func:`best_age_weight`), each scored with a curve that was fitted without it
(:func:`cross_fit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from driftrec.model import ItemTable

from .gate import RANK_CELLS, better, means
from .pairs import Pair

#: Left edges (ms) of the age bins of the freshness prior: 0, then 1 s to a year, about x2 apart.
AGE_EDGES_MS = np.concatenate([[0.0], np.geomspace(1_000.0, 365 * 24 * 3600 * 1000.0, 25)])

#: (the log-rate curve to ship ``[bins]``, its cross-fitted value for every validation pair
#: and item ``[val, items]``)
AgeFit = tuple[np.ndarray, np.ndarray]
#: scores a table on the validation pairs, with an optional ``[val, items]`` addition to
#: the scores: per-pair (HR@10, reciprocal rank)
EvaluateEach = Callable[[ItemTable, "np.ndarray | None"], tuple[np.ndarray, np.ndarray]]


def fit_age_curve(
    ages: np.ndarray, pub: np.ndarray, lo: float, hi: float, edges: np.ndarray, pseudo: float = 1.0
) -> np.ndarray:
    """Log engagement rate by item age, relative to the average, over the span ``[lo, hi]``.

    ``ages``: the age (ms) of the engaged item at each engagement; ``pub``: publication
    times of the catalog (-inf: unknown, left out). The rate of bin ``b`` is its
    engagements over its exposure (item-milliseconds spent at an age in the bin during the
    span), shrunk towards the average rate by ``pseudo`` engagements; the result is
    ``log(rate_b / average)``, 0 for bins without exposure.

    Examples
    --------
    >>> edges = np.array([0.0, 10.0])  # two bins: younger and older than 10 ms
    >>> pub = np.array([0.0, 0.0, 50.0, 90.0])  # items published over the span 0..100
    >>> r = fit_age_curve(np.array([1.0, 2.0, 3.0, 5.0, 4.0, 60.0]), pub, 0.0, 100.0, edges)
    >>> bool(r[0] > 0 > r[1])  # young items are engaged at a higher rate
    True
    """
    ages = np.asarray(ages, np.float64)
    known = np.isfinite(ages)
    ages = ages[known]
    p = pub[np.isfinite(pub)]
    nb = len(edges)
    if hi <= lo or not p.size or not ages.size:
        return np.zeros(nb, np.float32)
    right = np.append(edges[1:], np.inf)
    start = np.maximum(lo, p[:, None] + edges[None, :])
    end = np.minimum(hi, p[:, None] + right[None, :])
    exposure = np.maximum(0.0, end - start).sum(0)
    b = np.maximum(np.searchsorted(edges, ages, side="right") - 1, 0)
    n = np.bincount(b, minlength=nb).astype(np.float64)
    r0 = n.sum() / max(exposure.sum(), 1e-12)
    out = np.zeros(nb, np.float64)
    has = exposure > 0
    out[has] = np.log((n[has] + pseudo) / (exposure[has] + pseudo / r0) / r0)
    return out.astype(np.float32)


def cross_fit(
    table: ItemTable,
    pub: np.ndarray,
    train_p: Sequence[Pair],
    val_p: Sequence[Pair],
    catalog_pub: np.ndarray | None = None,
) -> AgeFit | None:
    """How engagement varies with an item's age (:func:`fit_age_curve`): the log-rate
    curve to ship, fitted on every pair of the window, and, for judging its weight, its
    value (weight 1) for every validation pair and item, ``[val, items]``, cross-fitted:
    each validation pair is scored with a curve fitted on the training pairs and the
    *other* half of the validation pairs (every second one), never on itself. After a
    shift towards fresh posts only the newest pairs (the validation share) show it: a
    curve fitted on the training pairs alone lags the shift by the whole validation share.
    ``pub``: publication times of ``table``'s items (-inf: unknown); ``catalog_pub``: of
    the whole catalog where ``table`` holds a sample of it (the exposure by age is the
    catalog's). None when the window shows no curve.
    """
    exposed = pub if catalog_pub is None else catalog_pub

    def fit(ps: Sequence[Pair]) -> np.ndarray:
        tgt = np.array([table.index(p.target) for p in ps], np.int64)
        ts = np.array([p.ts for p in ps], np.float64)
        ok = tgt >= 0
        return fit_age_curve(ts[ok] - pub[tgt[ok]], exposed, float(ts.min()), float(ts.max()), AGE_EDGES_MS)

    lograte = fit([*train_p, *val_p])
    if not np.any(lograte):
        return None
    vts = np.array([p.ts for p in val_p], np.float64)
    curve = np.zeros((len(val_p), len(table.item_ids)), np.float32)
    for half in (0, 1):
        idx = np.arange(half, len(val_p), 2)
        if not idx.size:
            continue
        lr = fit([*train_p, *val_p[1 - half :: 2]])
        aged = table.with_age(AGE_EDGES_MS, lr, 1.0)
        step = max(1, RANK_CELLS // max(len(table.item_ids), 1))  # its float64 ages a block at a time
        for s in range(0, idx.size, step):
            rows = idx[s : s + step]
            curve[rows] = aged.age_prior((vts[rows, None] - pub[None, :]).ravel()).reshape(len(rows), -1)
    return lograte, curve


def best_age_weight(
    evaluate_each: EvaluateEach, table: ItemTable, fit: AgeFit | None, weights: Sequence[float]
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """The freshness weight (0 or one of ``weights``) that serves ``table`` best on
    validation (:func:`~driftrec.learner.gate.better`), and the per-pair metrics with it.
    ``table``'s own freshness prior, if any, is left out.

    >>> t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
    >>> def each(table, extra):  # one pair, won by item 1 once the prior lifts it enough
    ...     s = np.zeros(2) if extra is None else extra[0]
    ...     hit = float(s[1] > s[0])
    ...     return np.array([hit]), np.array([hit])
    >>> fit = (np.zeros(26, np.float32), np.array([[0.0, 1.0]], np.float32))
    >>> best_age_weight(each, t, fit, (0.5, 2.0))[0]
    0.5
    >>> best_age_weight(each, t, None, (0.5, 2.0))[0]
    0.0
    """
    base = table.with_age(None, None, 0.0) if table.has_age_prior else table
    best_w, best = 0.0, evaluate_each(base, None)
    if fit is None:
        return best_w, best
    for wgt in weights:
        e = evaluate_each(base, np.float32(wgt) * fit[1])
        if better(means(e), means(best), 0.0):
            best_w, best = float(wgt), e
    return best_w, best


def with_age(
    cand: ItemTable,
    val_table: ItemTable,
    m_cand: dict[str, float],
    fit: AgeFit | None,
    evaluate_each: EvaluateEach,
    weights: Sequence[float],
) -> tuple[ItemTable, dict[str, float], float]:
    """Pick the freshness prior's weight on validation (0 unless one wins), ship it with
    ``cand``: (the table, its validation metrics, the weight). Judged on ``val_table``
    (``cand``'s parts with co-engagement neighbours built without the validation events:
    the shipped ones have seen them)."""
    base = cand.with_age(None, None, 0.0)
    if fit is None:
        return base, m_cand, 0.0
    w, e = best_age_weight(evaluate_each, val_table.with_age(None, None, 0.0), fit, weights)
    if w == 0.0:
        return base, means(e), 0.0
    return base.with_age(AGE_EDGES_MS, fit[0], w), means(e), w
