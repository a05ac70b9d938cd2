"""The scorer core bounds what one record adds to popularity (DESIGN.md: event time is
untrusted; the ingestion bound, ts_out_of_range, is the first line; this is the second)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftrec.model import ItemTable, Representation
from driftrec.scorer import Scorer, ScorerConfig, ServingModel
from driftrec.stream import Event

DAY = 24 * 3600 * 1000
T0 = 1_700_000_000_000


def _scorer() -> Scorer:
    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(40)]
    t = ItemTable.from_text(ids, rng.normal(size=(40, 8)).astype(np.float32))
    return Scorer(ScorerConfig(top_k=10), ServingModel("v0", t, Representation(pop_weight=1.0)))


def _normal(s: Scorer) -> None:
    rng = np.random.default_rng(1)
    evs = [
        Event(f"e{n}", "like", f"u{n % 25}", f"i{int(rng.integers(0, 40))}", T0 + n * 60_000)
        for n in range(600)
    ]
    for i in range(0, len(evs), 50):
        s.learn_many(evs[i : i + 50], {})


def _newcomer_top(s: Scorer) -> list[str]:
    r = s.learn_many([Event("new-e", "click", "newcomer", "i0", T0 + 700 * 60_000)], {})
    return [x["item_id"] for x in r.recs[0]["items"]]


@pytest.mark.parametrize("ts", [2**63 - 1, 10**20, T0 + 30 * DAY])
def test_a_record_far_ahead_changes_no_other_users_top10(ts):
    clean, poisoned = _scorer(), _scorer()
    _normal(clean)
    _normal(poisoned)
    poisoned.learn_many([Event("p", "like", "attacker", "i39", ts)], {})
    assert _newcomer_top(poisoned) == _newcomer_top(clean)


def test_poison_popularity_is_bounded():
    """Fewer than POP_BOUND_RANK records far ahead add at most 2**3 times their weight
    each, at the newest events' time (unbounded: 2**(lead / half-life), e.g. 1e21)."""
    clean, poisoned = _scorer(), _scorer()
    _normal(clean)
    _normal(poisoned)
    poison = [
        Event(f"p{n}", "like", f"attacker{n}", "i39", ts)
        for n, ts in enumerate([2**63 - 1, 10**20, T0 + 30 * DAY] * 10)
    ]
    for i in range(0, len(poison), 5):
        poisoned.learn_many(poison[i : i + 5], {})
    rep = Representation(pop_weight=1.0)
    now = T0 + 599 * 60_000
    at_now = {s: math.exp(s._pop_by_id["i39"] - rep.pop_increment("like", now)) for s in (clean, poisoned)}
    assert math.isfinite(at_now[poisoned])
    assert at_now[poisoned] - at_now[clean] <= len(poison) * 2**3 * 1.0001


def test_one_record_counts_at_most_three_half_lives_ahead():
    s = _scorer()
    _normal(s)
    newest = T0 + 599 * 60_000
    old = s._pop_by_id["i1"]
    s.learn_many([Event("far", "like", "x", "i1", 10**20)], {})
    assert s._pop_clock <= newest + 3 * DAY  # one record does not move the bound
    inc = Representation(pop_weight=1.0).pop_increment("like", s._pop_clock)
    assert s._pop_by_id["i1"] == float(np.logaddexp(old, inc))  # counted at the bound


def test_a_normal_stream_is_unchanged():
    """Without gaps longer than the half-life, the bound changes nothing."""
    s = _scorer()
    _normal(s)
    rep = Representation(pop_weight=1.0)
    rng = np.random.default_rng(1)
    want: dict[str, float] = {}
    for n in range(600):
        item = f"i{int(rng.integers(0, 40))}"
        want[item] = float(np.logaddexp(want.get(item, -np.inf), rep.pop_increment("like", T0 + n * 60_000)))
    assert s._pop_by_id == want
