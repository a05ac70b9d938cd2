"""The scorer core bounds what one record adds to popularity (DESIGN.md: event time is
untrusted; the ingestion bound, ts_out_of_range, is the first line; this is the second)."""

from __future__ import annotations

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


def test_records_far_ahead_add_no_popularity():
    """Records more than three popularity half-lives ahead of the stream's clock add nothing
    to popularity (unbounded: 2**(lead / half-life) each, e.g. 1e21)."""
    clean, poisoned = _scorer(), _scorer()
    _normal(clean)
    _normal(poisoned)
    poison = [
        Event(f"p{n}", "like", f"attacker{n}", "i39", ts)
        for n, ts in enumerate([2**63 - 1, 10**20, T0 + 30 * DAY] * 10)
    ]
    for i in range(0, len(poison), 5):
        poisoned.learn_many(poison[i : i + 5], {})
    assert poisoned._pop_by_id["i39"] == clean._pop_by_id["i39"]


def test_one_record_far_ahead_does_not_move_the_clock():
    s = _scorer()
    _normal(s)
    newest = T0 + 599 * 60_000
    old = s._pop_by_id["i1"]
    s.learn_many([Event("far", "like", "x", "i1", 10**20)], {})
    assert s._pop_clock <= newest + 3 * DAY  # one record does not move the bound
    assert s._pop_by_id["i1"] == old  # and adds nothing


def test_a_burst_ahead_of_a_replayed_stream_changes_no_fresh_users_top10():
    """A replayed log runs days behind the wall clock: 50 likes on one item from 50 users
    stamped "50 minutes from now" (wall clock) are weeks ahead of the stream. They change no
    fresh user's top-10 (before: score ~400 against ~12 for the next item)."""
    clean, poisoned = _scorer(), _scorer()
    _normal(clean)
    _normal(poisoned)
    wall_soon = T0 + 30 * DAY + 50 * 60_000
    burst = [Event(f"b{n}", "like", f"fan{n}", "i39", wall_soon + n) for n in range(50)]
    for i in range(0, len(burst), 10):
        poisoned.learn_many(burst[i : i + 10], {})
    for n in range(5):  # fresh users, each with one click
        e = Event(f"fresh-e{n}", "click", f"fresh{n}", f"i{n}", T0 + 700 * 60_000 + n)
        got = [x["item_id"] for x in poisoned.learn_many([e], {}).recs[0]["items"]]
        want = [x["item_id"] for x in clean.learn_many([e], {}).recs[0]["items"]]
        assert got == want


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
