"""The ``popular`` scenario (:func:`driftrec.stream.synthetic.popular`): a shop catalog
known by product codes and variant strings, heavy-tailed engagement that mostly follows
popularity, some taste of each user's own, new products launched at the shift."""

from __future__ import annotations

from collections import Counter

import numpy as np

from driftrec.stream import SCENARIOS, generate
from driftrec.stream.synthetic import VARIANTS


def _stream(seed: int = 2):
    return generate("popular", n_events=6000, n_users=120, n_items=800, seed=seed)


def test_popular_is_a_scenario_and_deterministic_per_seed() -> None:
    assert "popular" in SCENARIOS
    a, b, c = _stream(), _stream(), _stream(seed=3)
    assert a.events == b.events and a.items == b.items
    assert a.events != c.events
    assert a.scenario == "popular" and a.params["launched"] == 8


def test_engagement_is_heavy_tailed() -> None:
    s = _stream()
    counts = np.array(sorted(Counter(e.item_id for e in s.events).values(), reverse=True))
    share = counts.cumsum() / counts.sum()
    # the top 1 % of the catalog takes over 10 % of the engagement (ten times its share),
    # the top 10 % over 40 %; the tail still gets some: most items are engaged at least once
    assert share[7] > 0.1 and share[79] > 0.4
    assert len(counts) > 0.6 * len(s.items)


def test_texts_are_codes_and_variant_strings() -> None:
    s = _stream()
    variants = {v for vs in VARIANTS.values() for v in vs}
    for it in s.items:
        code, rest = it.text.split(" ", 1)
        assert code.startswith("B0") and len(code) == 10
        assert rest.split(": ", 1)[-1] in variants
    # variants of one product share its code
    codes = Counter(it.text.split()[0] for it in s.items)
    assert max(codes.values()) > 1 and len(codes) < len(s.items)


def test_new_products_launch_at_the_shift() -> None:
    s = _stream()
    launched = [it for it in s.items if it.ts == s.shift_ts]
    assert len(launched) == s.params["launched"]
    ids = {it.item_id for it in launched}
    first = min(e.ts for e in s.events if e.item_id in ids)
    assert first >= s.shift_ts - 1000  # engaged from their launch on (event times jitter 1 s)
    assert all(e.item_id not in ids for e in s.events if e.ts < s.shift_ts - 1000)


def test_users_follow_popularity_more_than_their_own_history() -> None:
    # the most popular items reach most users: popularity is what most engagement follows
    s = _stream()
    top = [i for i, _ in Counter(e.item_id for e in s.events).most_common(5)]
    users = {e.user_id for e in s.events}
    reached = {e.user_id for e in s.events if e.item_id in top}
    assert len(reached) > 0.5 * len(users)


def test_the_truth_is_kept_for_reference_experiments() -> None:
    s = _stream()
    t = s.truth
    assert set(t["department"]) == {it.item_id for it in s.items}
    assert set(t["departments"]) >= {e.user_id for e in s.events}
    # the launches weigh nothing before the shift
    launched = [it.item_id for it in s.items if it.ts == s.shift_ts]
    assert all(t["weight"][i] == 0 < t["weight_after"][i] for i in launched)
    # a user's own share of engagement lands in their departments more often than chance
    mine = [t["department"][e.item_id] in t["departments"][e.user_id] for e in s.events]
    chance = np.mean([len(v) for v in t["departments"].values()]) / s.params["departments"]
    assert np.mean(mine) > chance + 0.1
