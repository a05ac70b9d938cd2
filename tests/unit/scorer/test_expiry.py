"""Item expiry (ITEM_MAX_AGE_DAYS, scorer.expiry): by the stream's own clock, on both
ranking paths, through compaction and swaps, the fresh channel and a restart."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from item_vectors import HashEncoder, unit_rows

from driftrec.model import ItemTable, Representation
from driftrec.model.expiry import ItemClock, without_rows
from driftrec.scorer import Scorer, ScorerConfig, ScorerConfigError, ServingModel, SwapManager
from driftrec.scorer import candidates as cand_mod
from driftrec.state import UserState
from driftrec.stream import Event, Item

DAY = 86_400_000


def _scorer(n: int, mode: str, max_age: int = 10 * DAY, seed: int = 0, **cfg: object) -> Scorer:
    """``n`` items, item ``i{j}`` published on day ``j``."""
    rng = np.random.default_rng(seed)
    ids = [f"i{j}" for j in range(n)]
    t = ItemTable.from_text(ids, unit_rows(rng, n))
    t = ItemTable(ids, t.text, t.residual, rng.normal(0, 0.3, n).astype(np.float32), t.context)
    config = ScorerConfig(top_k=10, candidates=mode, item_max_age_ms=max_age, **cfg)  # type: ignore[arg-type]
    rep = Representation(pop_weight=0.0)
    return Scorer(
        config, ServingModel("v0", t, rep, HashEncoder()), None, {i: j * DAY for j, i in enumerate(ids)}
    )  # type: ignore[arg-type]


def _events(tag: str, day: float, n_users: int = 6, item: str = "i0") -> list[Event]:
    return [Event(f"{tag}-{u}", "click", f"u{u}", item, int(day * DAY) + u) for u in range(n_users)]


def _live(sc: Scorer, ids: list[str]) -> bool:
    ts = sc._ts_by_id
    return all(not -np.inf < ts.get(i, -np.inf) < sc.expiry_cutoff for i in ids)


def _servable(sc: Scorer, out: set[str], now: int) -> int:
    """Items of the served table published by ``now``, not expired, not in ``out``."""
    ts, cut = sc._ts_by_id, sc.expiry_cutoff
    return sum(
        i not in out and ts.get(i, -np.inf) <= now and not -np.inf < ts.get(i, -np.inf) < cut
        for i in sc.model.table.item_ids
    )


def test_item_clock_and_without_rows() -> None:
    c = ItemClock(10, {"a": 0, "b": 5, "c": 30})
    assert c.advance(12) == ["a"] and c.advance(5) == [] and c.cutoff == 2
    c.forget(["b"])
    assert c.advance(100) == ["c"]  # b was deleted: not expired
    t = ItemTable.from_text(["a", "b", "c"], np.eye(3, dtype=np.float32))
    t = t.with_cooc(np.array([[1, 2], [2, -1], [0, 1]]), np.ones((3, 2), np.float32), 0.5)
    u, kept = without_rows(t, np.array([False, True, False]))
    assert u.item_ids == ["a", "c"] and kept.tolist() == [0, 2]
    assert u.nbr_idx.tolist() == [[-1, 1], [0, -1]] and u.nbr_w.tolist() == [[0, 1], [1, 0]]


@pytest.mark.parametrize("mode", ["exact", "index"])
def test_expiry_by_the_stream_clock_never_served(mode: str) -> None:
    sc = _scorer(40, mode)
    users: dict[str, UserState] = {}
    r = sc.learn_many(_events("a", 12), users)
    assert sc.expiry_cutoff == 2 * DAY + 5  # the stream's time (day 12), not the wall clock's
    served = {i for rec in r.recs for i in (x["item_id"] for x in rec["items"])}
    assert served and _live(sc, list(served)) and {"i0", "i1"}.isdisjoint(served)
    # a record far ahead of the stream does not expire the catalog
    users.update(r.users)
    many = [Event(f"b{j}", "click", f"w{j}", f"i{j}", 12 * DAY + j) for j in range(35)]
    sc.learn_many(many, {})
    sc.learn_many([Event("far", "click", "u0", "i39", 400 * DAY)], users)
    assert 2 * DAY <= sc.expiry_cutoff < 3 * DAY  # the 32nd newest item time, not 400 days
    got = sc.rank_many(list(users.values()), 12 * DAY, 10)
    assert all(_live(sc, [i for i, _ in row]) and row for row in got)


def test_fresh_channel_skips_expired() -> None:
    sc = _scorer(20, "index", max_age=3 * DAY, fresh_ms=30 * DAY, ann_k=0, popular_k=0)
    r = sc.learn_many(_events("a", 19), {})
    ids = [x["item_id"] for rec in r.recs for x in rec["items"]]
    assert ids and _live(sc, ids)  # only the fresh channel proposes: the live ones


def test_off_by_default_and_config_error() -> None:
    assert ScorerConfig().item_max_age_ms == 0
    with pytest.raises(ScorerConfigError, match="ITEM_MAX_AGE_DAYS"):
        ScorerConfig(item_max_age_ms=-1)
    sc = _scorer(10, "exact", max_age=0)
    sc.learn_many(_events("a", 400), {})
    assert sc.expiry_cutoff == -np.inf


def test_compaction_releases_rows_off_the_serving_thread() -> None:
    sc = _scorer(40, "index", max_age=5 * DAY)
    swaps = SwapManager(sc, {f"i{j}": f"t{j}" for j in range(40)}, background=False)
    users = sc.learn_many(_events("a", 20), {}).users  # i0..i15 expired: over a quarter
    before = sc.model.table
    swaps.maybe_swap()
    t = sc.model.table
    assert t is not before and len(t.item_ids) == 24 and t.item_ids[0] == "i16"
    assert swaps.compactions[0][0] == 16 and "i0" not in swaps.texts
    assert sc.publication_times.tolist() == [j * DAY for j in range(16, 40)]  # gathered by row
    got = sc.rank_many(list(users.values()), 20 * DAY, 10)
    assert all(row and _live(sc, [i for i, _ in row]) for row in got)


def test_restarted_scorer_replaying_the_items_topic_expires_at_once() -> None:
    """A compacted items topic keeps every item: a restarted scorer gets the old ones
    again (build, then records on the topic) and expires them in its first batch."""
    sc = _scorer(10, "exact", max_age=5 * DAY)
    sc.add_items([Item("old", "an old post", 0), Item("new", "a new post", 30 * DAY)])
    r = sc.learn_many(_events("a", 31, item="i9"), {})
    served = {x["item_id"] for rec in r.recs for x in rec["items"]}
    assert served == {"new"}  # i0..i9 (days 0-9) and "old" expired at once


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(-8, 40)),  # published that many days ago (< 0: ahead)
        st.tuples(st.just("time"), st.integers(0, 6)),  # the stream moves on that many days
        st.tuples(st.just("remove"), st.integers(0, 10_000)),
        st.tuples(st.just("swap"), st.booleans()),  # a new version (prepared or not)
        st.tuples(st.just("compact"), st.booleans()),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, seed=st.integers(0, 2**16))
def test_index_and_table_agree_through_add_expire_remove_swap(
    ops: list[tuple[str, object]], seed: int
) -> None:
    """After every step the index path serves the exact path's top-10 over live items,
    and never an expired, removed, unknown or not yet published one; nobody gets fewer than
    min(10, the live published items they have not seen). The catalog is known up front:
    i40..i99 are published as the stream's days pass, and items are added ahead of it."""
    rng = np.random.default_rng(seed)
    sc = _scorer(100, "index", max_age=30 * DAY, seed=seed, ann_k=24, popular_k=0, fresh_ms=0)
    swaps = SwapManager(sc, {f"i{j}": f"t{j}" for j in range(100)}, background=False)
    old_side, old_drop = cand_mod.SIDE_MAX, cand_mod.EXPIRED_DROP
    cand_mod.SIDE_MAX, cand_mod.EXPIRED_DROP = 3, 1  # fold and take out often
    try:
        day, users, removed, k = 40, {}, set(), 0  # items i0..i9 expired at once
        users.update(sc.learn_many(_events("w", day, 8, "i10"), users).users)
        for op, arg in ops:
            cur = sc.model.table
            if op == "add":
                k += 1
                sc.add_items([Item(f"n{k}", f"text {seed} {k}", (day - int(arg)) * DAY)])
            elif op == "time":
                day += int(arg)
                users.update(sc.learn_many(_events(f"t{day}{k}", day, 8, "i10"), users).users)
            elif op == "remove":
                iid = cur.item_ids[int(arg) % len(cur.item_ids)]
                sc.remove_items([iid])
                removed.add(iid)
            elif op == "swap":
                vec = cur.vectors + rng.normal(0, 0.2, cur.vectors.shape).astype(np.float32)
                new = ItemTable(list(cur.item_ids), vec, np.zeros_like(vec), cur.bias, cur.context)
                model = ServingModel(f"v{k}", new, sc.model.rep, HashEncoder())  # type: ignore[arg-type]
                if arg:
                    sc.prepare(model)
                sc.swap(model)
            else:
                swaps.compact_every_s = 0.0
                swaps.maybe_swap()
            states = list(users.values())
            served = sc.rank_many(states, day * DAY, 10)
            sc.candidates.mode = "exact"
            try:
                exact = sc.rank_many(states, day * DAY, 10)
            finally:
                sc.candidates.mode = "index"
            table = sc.model.table
            for s, g, e in zip(states, served, exact):
                ids = [i for i, _ in g]
                assert all(table.index(i) >= 0 for i in ids) and not set(ids) & removed
                assert _live(sc, ids) and _live(sc, [i for i, _ in e])
                assert all(sc._ts_by_id[i] <= day * DAY for i in ids)
                assert len(g) == len(e) == min(10, _servable(sc, set(s.seen) | removed, day * DAY))
                assert [s for _, s in g] == pytest.approx([s for _, s in e], abs=1e-4)
    finally:
        cand_mod.SIDE_MAX, cand_mod.EXPIRED_DROP = old_side, old_drop
