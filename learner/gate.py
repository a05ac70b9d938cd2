"""The gate: how a round's tables are scored on the validation pairs, and the rules that
decide what is kept.

Every choice of a round is made on validation: whether the adapter update is kept
(:func:`paired_gain`, a win beyond noise over the item parts alone), the weights of
co-engagement and freshness, whether the candidate or live popularity alone is what is
offered (:func:`popular_instead`: a candidate that does not beat popularity beyond noise is
not served), and whether that replaces the serving version (:func:`better`), judged on the
pairs the serving version has not seen (:func:`unseen`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from driftrec.model import ItemTable, add_cooc, scores, user_vectors

from .pairs import Pair

if TYPE_CHECKING:
    from .training import RoundLog


def rank_each(
    table: ItemTable,
    ctx_idx: np.ndarray,
    ctx_w: np.ndarray,
    tgt: np.ndarray,
    prior: np.ndarray,
    temperature: float,
    pub: np.ndarray | None = None,
    ts: np.ndarray | None = None,
    k: int = 10,
    extra: np.ndarray | None = None,
    sampled: tuple[int, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (rows of :func:`~driftrec.learner.pairs.pair_arrays`): HR@k (expected over
    ties) and reciprocal rank of the target under ``table``, the pair's seen items
    excluded. With publication times ``pub`` and pair times ``ts``, each pair ranks the
    items published by its time, with ``table``'s freshness prior of their age then;
    ``extra``: a ``[pairs, items]`` addition to the scores; ``sampled``: ``(f, w)`` where
    ``table`` is a sample of the catalog whose rows from ``f`` on are drawn uniformly, each
    standing for ``w`` items (:mod:`.sample`): a row that outranks the target counts ``w``
    (the rank estimated against the whole catalog).

    >>> V = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], np.float32)
    >>> t = ItemTable.from_text(["a", "b", "c"], V)
    >>> hist, w = np.array([[0], [0]]), np.ones((2, 1), np.float32)
    >>> hr, rr = rank_each(t, hist, w, np.array([1, 2]), np.zeros(3), 0.1, k=1)
    >>> hr.tolist(), rr.tolist()  # "a" is seen: "b" ranks first, "c" second
    ([1.0, 0.0], [1.0, 0.5])

    Pairs are ranked in blocks of at most :data:`RANK_CELLS` scores (each pair's numbers
    are its own: the same in a block as in one pass over all of them).
    """
    n, step = len(tgt), max(1, RANK_CELLS // max(len(table.item_ids), 1))
    if n <= step:
        return _rank_block(table, ctx_idx, ctx_w, tgt, prior, temperature, pub, ts, k, extra, sampled)
    parts = [
        _rank_block(
            table,
            ctx_idx[s : s + step],
            ctx_w[s : s + step],
            tgt[s : s + step],
            prior,
            temperature,
            pub,
            None if ts is None else ts[s : s + step],
            k,
            None if extra is None else extra[s : s + step],
            sampled,
        )
        for s in range(0, n, step)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


#: Scores (pairs x items) :func:`rank_each` holds at a time: 16M float32 scores and their
#: float64 ages, ~200 MB (all of a round's ~800 validation pairs against a million items
#: took over 20 GB at once).
RANK_CELLS = 1 << 24


def _rank_block(
    table: ItemTable,
    ctx_idx: np.ndarray,
    ctx_w: np.ndarray,
    tgt: np.ndarray,
    prior: np.ndarray,
    temperature: float,
    pub: np.ndarray | None,
    ts: np.ndarray | None,
    k: int,
    extra: np.ndarray | None,
    sampled: tuple[int, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank_each` of a block of pairs."""
    assert table.context is not None
    U = user_vectors(ctx_idx, ctx_w, table.context)
    S = scores(U, table.vectors, table.bias, prior, temperature)
    if extra is not None:
        S += extra
    if pub is not None and ts is not None:
        age = ts[:, None] - pub[None, :]
        if table.has_age_prior:
            S += table.age_prior(age.ravel()).reshape(S.shape)
        S[age < 0] = -np.inf  # not yet published
    if table.cooc_weight and table.nbr_idx is not None and table.nbr_w is not None:
        add_cooc(S, ctx_idx, ctx_w, table.nbr_idx, table.nbr_w, table.cooc_weight)
    rows = np.arange(len(tgt))
    for b in range(len(tgt)):  # seen items cannot be recommended
        ex = ctx_idx[b][ctx_idx[b] >= 0]
        S[b, ex] = -np.inf
    tsc = S[rows, tgt][:, None]
    greater, equal = _count(S > tsc, sampled), _count(S == tsc, sampled)
    equal = np.maximum(equal, 1)  # ties are broken at random: expected values
    hr = np.clip((k - greater) / equal, 0.0, 1.0)
    mrr = 1.0 / (greater + (equal + 1) / 2.0)
    return hr, mrr


def _count(hit: np.ndarray, sampled: tuple[int, float] | None) -> np.ndarray:
    """Per row of ``hit`` (bool ``[pairs, items]``): the items it marks, those of a uniform
    sample (``sampled``: from column ``f`` on, each standing for ``w`` items) weighted."""
    out: np.ndarray
    if sampled is None:
        out = np.count_nonzero(hit, axis=1)
    else:
        f, w = sampled
        out = np.count_nonzero(hit[:, :f], axis=1) + w * np.count_nonzero(hit[:, f:], axis=1)
    return out


def means(each: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """``{"hr", "mrr"}``: the means of per-pair metrics (0 for no pairs).

    >>> means((np.array([1.0, 0.0]), np.array([1.0, 0.5])))
    {'hr': 0.5, 'mrr': 0.75}
    """
    hr, mrr = each
    return {"hr": float(hr.mean()) if hr.size else 0.0, "mrr": float(mrr.mean()) if mrr.size else 0.0}


def better(a: Mapping[str, float], b: Mapping[str, float], gain: float) -> bool:
    """``a`` beats ``b`` on validation: higher HR@10, or equal HR@10 and higher MRR.

    >>> better({"hr": 0.3, "mrr": 0.1}, {"hr": 0.3, "mrr": 0.2}, 0.0)
    False
    >>> better({"hr": 0.3, "mrr": 0.3}, {"hr": 0.3, "mrr": 0.2}, 0.0)
    True
    """
    return a["hr"] > b["hr"] + gain or (a["hr"] >= b["hr"] and a["mrr"] > b["mrr"] + gain)


def paired_gain(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], z: float) -> bool:
    """``a`` beats ``b`` on the same validation pairs by more than ``z`` standard errors of
    the per-pair difference: HR@10, or reciprocal rank where no pair's HR@10 differs. A
    win of a few pairs out of hundreds is noise; taking it costs on the events that follow.
    ``z = 0``: any win."""
    for x, y in zip(a, b):
        d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
        if d.size == 0 or not d.any():
            continue
        se = float(d.std(ddof=1)) / np.sqrt(d.size) if d.size > 1 else 0.0
        return float(d.mean()) > z * se and float(d.mean()) > 0
    return False


def unseen(val_p: Sequence[Pair], served_to_ts: int | None) -> np.ndarray:
    """Which validation pairs the serving version has not seen (bool ``[val]``): those
    newer than the newest event it was built from (all of them when that is unknown, or
    when none is newer: then they are the only evidence there is).

    The serving version's co-engagement neighbours and freshness curve were built from
    every event up to its training, and a training soon after the last one has many of
    its validation pairs among those: judged on them, the serving version would look
    better than it is and fresh candidates would be turned down.

    >>> ps = [Pair((), np.zeros(0, np.float32), "a", ts) for ts in (5, 10, 15)]
    >>> unseen(ps, 10).tolist(), unseen(ps, 20).tolist(), unseen(ps, None).tolist()
    ([False, False, True], [True, True, True], [True, True, True])
    """
    out = np.ones(len(val_p), bool)
    if served_to_ts is not None:
        out = np.array([p.ts > served_to_ts for p in val_p], bool)
        if not out.any():  # nothing newer: the only evidence there is
            out[:] = True
    return out


def popularity_only(table: ItemTable) -> ItemTable:
    """``table`` as live popularity alone: no text term, no bias, no co-engagement, no
    freshness (the candidate the gate compares every version with)."""
    return replace(
        table,
        bias=np.zeros_like(table.bias),
        nbr_idx=None,
        nbr_w=None,
        cooc_weight=0.0,
        age_edges=None,
        age_lograte=None,
        age_weight=0.0,
        text_weight=0.0,
    )


def popular_instead(
    cand: ItemTable,
    e_cand: tuple[np.ndarray, np.ndarray],
    each: Callable[[ItemTable], tuple[np.ndarray, np.ndarray]],
    z: float,
    log: RoundLog,
) -> ItemTable:
    """``cand``, where it beats live popularity alone (:func:`popularity_only`) beyond noise
    on the pairs ``each`` judges (``e_cand``: its per-pair metrics there; ``z`` standard
    errors, :func:`~driftrec.learner.gate.paired_gain`), else popularity: a version is not
    served below popularity, nor on a win over it too small to tell from chance (which
    costs on the events that follow, where the popularity is live and the candidate's
    learned parts are frozen). ``log`` gets popularity's metrics and which won."""
    pop_t = popularity_only(cand)
    e_pop = each(pop_t)
    log.m_pop = means(e_pop)
    if paired_gain(e_cand, e_pop, z):
        return cand
    log.m_new, log.popularity = log.m_pop, True
    log.cooc_weight = log.age_weight = 0.0
    return pop_t
