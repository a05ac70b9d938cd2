"""A round's candidate table (:mod:`driftrec.learner.candidate`): the rows encoded within
the budget, and the context shift counted once."""

from __future__ import annotations

import numpy as np

from driftrec.learner.candidate import encode_rows, shifted
from driftrec.model import ItemTable


class _Encoder:
    """Encodes a text as the vector ``[len(text), 1]``; counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def encode(self, texts, base=False):
        self.asked += list(texts)
        return np.array([[float(len(t)), 1.0] for t in texts], np.float32)


def test_within_the_budget_the_newest_and_most_engaged_rows_are_encoded_the_rest_stale() -> None:
    cur = ItemTable.from_text(["a", "b", "c", "d"], np.zeros((4, 2), np.float32))
    texts = ["x", "yy", "zzz", "wwww"]
    enc = _Encoder()
    text, stale = encode_rows(enc, cur, texts, 0, lambda: (None, np.zeros(4)))  # 0: every row
    assert stale is None and text[:, 0].tolist() == [1, 2, 3, 4]
    pub = np.array([0.0, 30.0, 10.0, 20.0])
    pop = np.array([-np.inf, -np.inf, 5.0, -np.inf])
    enc = _Encoder()
    text, stale = encode_rows(enc, cur, texts, 2, lambda: (pub, pop))
    assert sorted(enc.asked) == ["yy", "zzz"]  # the newest, and the most engaged
    assert stale.tolist() == [True, False, False, True]
    assert text[:, 0].tolist() == [0, 2, 3, 0]  # the others keep the serving vectors
    assert not cur.text.any()  # the serving table is untouched


def test_the_shift_moves_contexts_by_beta_times_text_less_base_counted_once() -> None:
    base = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    text0 = np.array([[1.0, 1.0], [1.0, 1.0]], np.float32)
    learned = np.array([[0.5, 0.5], [0.25, 0.0]], np.float32)
    # the serving version carries half of its text's shift on top of what was learned
    cur = ItemTable(
        ["a", "b"],
        text0,
        np.zeros((2, 2), np.float32),
        np.zeros(2, np.float32),
        learned + 0.5 * (text0 - base),
        context_shift=0.5,
    )
    asked = []

    def base_rows(ids):
        asked.append(list(ids))
        return base

    text1 = np.array([[2.0, 0.0], [0.0, 2.0]], np.float32)
    t = shifted(cur, cur, text1, 1.0, None, base_rows)
    assert np.allclose(t.context, learned + (text1 - base)) and t.context_shift == 1.0
    flat = shifted(cur, cur, text1, 0.0, np.array([True, False]), base_rows)
    assert np.allclose(flat.context, learned) and flat.stale.tolist() == [True, False]
    assert asked == [["a", "b"], ["a", "b"]]
    plain = ItemTable(["a", "b"], text0, np.zeros((2, 2), np.float32), np.zeros(2, np.float32), learned)
    assert np.array_equal(shifted(plain, plain, text1, 0.0, None, base_rows).context, learned)
    assert len(asked) == 2  # no shift anywhere: the base vectors are not asked for
