"""Co-engagement neighbours as the learner ships them (:mod:`driftrec.learner.neighbours`)."""

from __future__ import annotations

import numpy as np

from driftrec.learner.neighbours import Neighbours
from driftrec.model import ItemTable

IDS = ["a", "b", "c", "d"]


def _mined() -> Neighbours:
    nb = Neighbours(history=10, m=2, log_events=100)
    for ts, (u, i) in enumerate(
        [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "c"), ("u3", "d")]
    ):
        nb.observe(u, i, ts)
    return nb


def test_neighbours_before_a_time_leave_its_engagements_out_and_the_counts_as_they_were() -> None:
    nb = _mined()
    full = nb.neighbours(IDS)
    assert full[0][IDS.index("c")].tolist() == [3, -1]  # c: d
    before = nb.before(IDS, cut_ts=5)  # without u3's "d"
    assert before[0][IDS.index("c")].tolist() == [-1, -1]
    assert before[0][0].tolist() == [1, -1]  # a: b, untouched
    after = nb.neighbours(IDS)
    assert np.array_equal(after[0], full[0]) and np.array_equal(after[1], full[1])
    assert np.array_equal(nb.before(IDS, None)[0], full[0])


def test_a_forgotten_user_starts_a_fresh_history() -> None:
    nb = _mined()
    nb.forget_user("u3")
    nb.observe("u3", "a", 6)  # not paired with c or d
    assert nb.neighbours(IDS)[0][IDS.index("c")].tolist() == [3, -1]
    assert 2 not in nb.neighbours(IDS)[0][0].tolist() and 3 not in nb.neighbours(IDS)[0][0].tolist()


def test_the_weight_that_wins_on_validation_ships_with_fresh_neighbours() -> None:
    nb = _mined()
    cand = ItemTable.from_text(IDS, np.eye(4, dtype=np.float32))
    seen = []

    def evaluate(t: ItemTable) -> dict[str, float]:  # the validation neighbours, weighted
        seen.append((t.cooc_weight, t.nbr_idx[IDS.index("c")].tolist()))
        return {"hr": 1.0 if t.cooc_weight == 2.0 else 0.2, "mrr": 0.0}

    shipped, m, w, val_table = nb.with_weight(cand, {"hr": 0.5, "mrr": 0.0}, 5, (1.0, 2.0, 4.0), evaluate)
    assert w == 2.0 and m == {"hr": 1.0, "mrr": 0.0}
    assert seen == [(1.0, [-1, -1]), (2.0, [-1, -1]), (4.0, [-1, -1])]  # built before ts 5
    assert shipped.cooc_weight == 2.0 and shipped.nbr_idx[IDS.index("c")].tolist() == [3, -1]
    assert val_table.cooc_weight == 2.0 and val_table.nbr_idx[IDS.index("c")].tolist() == [-1, -1]
    # no weight beats the table without neighbours: 0
    _, m0, w0, _ = nb.with_weight(cand, {"hr": 0.5, "mrr": 0.0}, 5, (1.0, 4.0), evaluate)
    assert w0 == 0.0 and m0 == {"hr": 0.5, "mrr": 0.0}
