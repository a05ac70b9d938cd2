"""A batch of users' histories as flat arrays, and a user state's copy: the scorer's hot
path over many users at once (the arithmetic is :class:`~driftrec.model.Representation`'s)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from itertools import chain, repeat

import numpy as np

from driftrec.model import LN2, Representation
from driftrec.state import Interaction, UserState

type_of, item_of, ts_of = (operator.itemgetter(k) for k in (1, 2, 3))  # Interaction fields, at C speed


def flat_weights(
    rep: Representation, states: Sequence[UserState], now: int
) -> tuple[list[Interaction], np.ndarray, np.ndarray, np.ndarray] | None:
    """:meth:`Representation.weights` of every user's history in one pass over the
    concatenated histories: ``(interactions, rows, cols, weights)``, or ``None`` where the
    caller must ask ``rep.weights`` per user: a representation whose ``weights`` is not
    the stock one, or a result that differs from it on the first history (checked every
    batch, so a change to the formula can only make the scorer slower, never different).
    The arithmetic is that of ``Representation.weights``, element by element.
    """
    if type(rep).weights is not Representation.weights or len(states) < 2:
        return None
    lens = [len(s.history) for s in states]
    hist = list(chain.from_iterable(s.history for s in states))
    if not hist:
        return None
    n = np.asarray(lens, np.int64)
    rows = np.repeat(np.arange(len(states)), n)
    cols = np.arange(len(hist)) - np.repeat(np.cumsum(n) - n, n)
    tww = rep.type_weights
    tw = np.fromiter(map(tww.get, map(type_of, hist), repeat(1.0)), np.float64, count=len(hist))
    age = np.maximum(0, now - np.fromiter(map(ts_of, hist), np.float64, count=len(hist)))
    pos = rep.position_decay ** (np.repeat(n, n) - 1 - cols).astype(np.float64)
    wf = (tw * np.exp(-LN2 * age / rep.half_life_ms) * pos).astype(np.float32)
    b0 = next(b for b, k in enumerate(lens) if k)
    h0 = states[b0].history
    if not np.array_equal(wf[: len(h0)], rep.weights([x.type for x in h0], [x.ts for x in h0], now)):
        return None
    return hist, rows, cols, wf


def copy_state(st: UserState) -> UserState:
    return UserState(
        st.user_id,
        list(st.history),
        st.vector,
        st.version,
        list(st.topk),
        st.n_events,
        st.last_event_id,
        list(st.seen),
    )
