"""A round's candidate table under a trained adapter: which rows are re-encoded before the
gate (the encode budget), and how its context vectors follow their text (the context shift).

The learner encodes at most ``encode_budget`` items under a candidate adapter, the newest
and most engaged first (:func:`~driftrec.model.reencode.priority_order`); the others keep
the serving version's text vectors, marked stale, and the scorer re-encodes them after the
swap. The gate thus sees what is served right after it.

A version with a kept adapter update may move each item's context vector (the history
side of a user vector) by ``beta`` times (its text under the adapter - its text under the
base encoder), so that a history of posts named by a word the adapter has learned says
that word's topic (``LearnerConfig.context_shift``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from driftrec.model import ItemTable, TextEncoder


def encode_rows(
    encoder: TextEncoder,
    cur: ItemTable,
    texts: Sequence[str],
    budget: int,
    pub_pop: Callable[[], tuple[np.ndarray | None, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray | None]:
    """``cur``'s text vectors with the rows within ``budget`` (0: all) re-encoded by
    ``encoder`` (``texts``: the text of each row), and which rows were not (None: none
    stale). ``pub_pop()``: the publication times (None: unknown) and popularity of
    ``cur``'s rows, which pick the rows when the budget is short."""
    from driftrec.model import priority_order

    n = len(cur.item_ids)
    if budget == 0 or n <= budget:
        rows = np.arange(n)
    else:
        pub, pop = pub_pop()
        rows = np.sort(priority_order(pub, pop, n)[:budget])
    text = cur.text.copy()
    text[rows] = encoder.encode([texts[int(j)] for j in rows])
    stale = None
    if len(rows) < n:
        stale = np.ones(n, bool)
        stale[rows] = False
    return text, stale


def shifted(
    cur: ItemTable,
    items_only: ItemTable,
    text: np.ndarray,
    beta: float,
    stale: np.ndarray | None,
    base_rows: Callable[[Sequence[str]], np.ndarray],
) -> ItemTable:
    """``items_only`` with the text vectors ``text`` and every context vector holding
    ``beta * (its text - its base text)`` on top of what was trained
    (:class:`ItemTable`): ``items_only``'s contexts hold ``cur.context_shift`` times
    ``cur``'s texts' shift, taken out here, so no shift is counted twice. Rows whose
    text did not change (stale) move too when ``beta`` differs from the serving one.
    ``base_rows(ids)``: the base encoder's text vectors of ``ids`` (asked only when a
    shift is involved).

    >>> cur = ItemTable.from_text(["a"], np.array([[1.0, 0.0]], np.float32))
    >>> base = lambda ids: np.array([[0.0, 1.0]], np.float32)
    >>> t = shifted(cur, cur, cur.text, 0.5, None, base)
    >>> (t.context - cur.context).tolist(), t.context_shift  # half of (text - base text)
    ([[0.5, -0.5]], 0.5)
    """
    context = items_only.context
    if context is not None and (beta > 0 or cur.context_shift > 0):
        base = base_rows(cur.item_ids)
        context = (
            context + np.float32(beta) * (text - base) - np.float32(cur.context_shift) * (cur.text - base)
        ).astype(np.float32, copy=False)
    return ItemTable(
        list(cur.item_ids),
        text,
        items_only.residual,
        items_only.bias,
        context,
        stale=stale,
        context_shift=float(beta),
        text_weight=items_only.text_weight,
    )
