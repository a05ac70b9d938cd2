"""Which items to re-encode first under a new adapter.

After a version with a new adapter is accepted, every item's target-side text vector is
out of date. Neither the learner (before publishing) nor the scorer (after the swap)
encodes the whole catalog in one pass: the learner encodes the first
``LearnerConfig.encode_budget`` items of :func:`priority_order` and marks the rest stale
(``ItemTable.stale``); the scorer serves their previous vectors and re-encodes them in the
background in the same order (:class:`driftrec.scorer.swap.SwapManager`).
"""

from __future__ import annotations

import numpy as np


def priority_order(pub: np.ndarray | None, pop: np.ndarray | None, n: int) -> np.ndarray:
    """Row indices of ``n`` items, most urgent first: the newest published and the most
    engaged, taken in turn (one from each ranking, skipping rows already taken).

    ``pub``: publication times (ms; -inf or NaN: unknown, last), ``pop``: engagement (any
    increasing score, -inf: never engaged, last); either may be ``None``.

    Examples
    --------
    >>> pub = np.array([1.0, 5.0, 3.0, -np.inf])
    >>> pop = np.array([-np.inf, -np.inf, 0.0, 2.0])
    >>> priority_order(pub, pop, 4).tolist()  # newest (1), most engaged (3), then 2, 0
    [1, 3, 2, 0]
    """
    rankings = []
    for key in (pub, pop):
        if key is None:
            continue
        k = np.nan_to_num(np.asarray(key, np.float64), nan=-np.inf)
        if np.isfinite(k).any():
            rankings.append(np.argsort(-k, kind="stable"))
    if not rankings:
        return np.arange(n)
    if len(rankings) == 1:
        return rankings[0]
    a, b = rankings
    inter = np.empty(2 * n, np.int64)
    inter[0::2], inter[1::2] = a, b
    _, first = np.unique(inter, return_index=True)
    return inter[np.sort(first)]
