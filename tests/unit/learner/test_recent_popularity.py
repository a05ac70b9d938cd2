"""The recent popularity term (:mod:`driftrec.learner.popularity`): decayed by events, not
by the clock; counted per validation pair as each saw it; its share of the popularity
term fitted on validation where it helps and left at 0 where it does not; shipped in the
item table, range-checked, and served by the scorer from its memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftrec.learner import Learner, LearnerConfig, LearnerConfigError
from driftrec.learner.popularity import LivePopularity, PopularityLog
from driftrec.model import ArtifactError, ItemTable, Representation, load_artifact, write_artifact
from driftrec.model.trust import check_ranges
from driftrec.scorer import Scorer, ScorerConfig, ServingModel
from driftrec.scorer.popularity import StreamPopularity
from driftrec.stream import Event

N_ITEMS, N_USERS = 120, 60


def _table(seed: int = 0) -> ItemTable:
    """Item vectors that say nothing about what users engage."""
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(N_ITEMS, 16)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return ItemTable.from_text([f"i{j}" for j in range(N_ITEMS)], V)


def _events(n: int, churn: int | None, seed: int = 0, gap_ms: int = 1_000) -> list[Event]:
    """Users pick by a Zipf popularity over the items; ``churn``: every this many events
    the popularity order is drawn again (hits come and go), None: one order throughout."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, N_ITEMS + 1) ** 1.2
    p = w[rng.permutation(N_ITEMS)]
    seen: dict[int, set[int]] = {}
    out = []
    for k in range(n):
        if churn and k and k % churn == 0:
            p = w[rng.permutation(N_ITEMS)]
        u = int(rng.integers(N_USERS))
        s = seen.setdefault(u, set())
        for _ in range(50):
            j = int(rng.choice(N_ITEMS, p=p / p.sum()))
            if j not in s:
                break
        s.add(j)
        out.append(Event(f"e{k}", "like", f"u{u}", f"i{j}", gap_ms * k))
    return out


def _learner(**kw) -> Learner:
    cfg = LearnerConfig(
        **{"min_pairs": 16, "drift": None, "use_lora": False, "calibrate_every": 0, "lr_items": 0.0, **kw}
    )
    rep = Representation(pop_recent_half_life_events=200.0)
    return Learner(cfg, rep, _table(), {f"i{j}": f"i{j}" for j in range(N_ITEMS)})


def test_the_recent_term_halves_every_half_life_of_events_whatever_the_clock() -> None:
    rep = Representation(pop_recent_half_life_events=4.0)
    t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
    for gap in (1, 3_600_000):  # a replay in milliseconds, a stream an hour apart: the same
        sp = StreamPopularity()
        sp.update([Event("e0", "click", "u", "a", 0)], rep)
        got = [float(np.exp(sp.recent_log(t, rep)[0]))]
        for k in range(1, 9):
            sp.update([Event(f"e{k}", "click", "u", "b", gap * k)], rep)
            got.append(float(np.exp(sp.recent_log(t, rep)[0])))
        # counted at the first event (weight 1), half of it 4 events later, a quarter 8 later
        np.testing.assert_allclose(got[0], 1.0)
        np.testing.assert_allclose(got[4], 0.5)
        np.testing.assert_allclose(got[8], 0.25)
    # realigned to another table's rows, and kept up to date per event
    t2 = ItemTable.from_text(["b", "c"], np.eye(2, dtype=np.float32))
    before = sp.recent_log(t2, rep).copy()
    sp.update([Event("e9", "like", "u", "c", 9)], rep)
    after = sp.recent_log(t2, rep)
    assert after[1] > before[1] == -np.inf and after[0] < before[0]


def test_the_validation_log_counts_the_recent_term_as_each_time_saw_it() -> None:
    rep = Representation(pop_recent_half_life_events=7.0)
    rng = np.random.default_rng(2)
    ids = ["a", "b", "c", "d"]
    live = LivePopularity(rep, 16)  # the log holds the last 16 of 40 events
    evs = [
        Event(f"e{k}", str(rng.choice(["click", "like"])), "u", str(rng.choice(ids)), int(ts))
        for k, ts in enumerate(np.sort(rng.choice(20_000, 40, replace=False)))
    ]
    for e in evs:
        live.add(e)
    assert live.n == 40
    t = ItemTable.from_text(ids, np.eye(4, dtype=np.float32))
    times = [int(evs[30].ts), int(evs[35].ts) + 1, 30_000]
    lp = live.at(times, t, live.vector(t))
    for row, time in zip(lp.recent, times):  # recounted: the events before, by events back
        n = sum(e.ts < time for e in evs)
        want = [
            np.log1p(
                sum(
                    rep.type_weights[e.type] * 0.5 ** ((n - k - 1) / 7.0)
                    for k, e in enumerate(evs)
                    if e.item_id == i and e.ts < time
                )
            )
            for i in ids
        ]
        np.testing.assert_allclose(row, want, rtol=1e-4, atol=1e-5)
    assert isinstance(live.log, PopularityLog) and len(live.log) == 16


def test_the_share_is_fitted_where_hits_come_and_go() -> None:
    ln = _learner()
    ln.observe_many(_events(1600, churn=300))
    res = ln.train("every_n")
    m = res.metrics
    assert res.accepted and res.table.pop_recent_share > 0, m
    assert m["pop_recent_share"] == res.table.pop_recent_share


def test_the_share_stays_at_zero_where_popularity_holds() -> None:
    ln = _learner()
    ln.observe_many(_events(1600, churn=None))
    assert ln.train("every_n").table.pop_recent_share == 0.0


def test_day_one_can_pick_the_recent_term() -> None:
    ln = _learner(calibrate_every=400)
    evs = _events(1600, churn=300, seed=1)
    ln.observe_many(evs[:800])
    assert ln.due() == "day_one"
    res = ln.train("day_one")
    assert res.accepted and res.table.pop_recent_share > 0 and ln.trainings == 0, res.metrics


def test_a_share_outside_0_1_is_refused(tmp_path: Path) -> None:
    t = _table()
    with pytest.raises(ArtifactError, match="pop_recent_share"):
        t.with_pop_recent_share(1.5)
    with pytest.raises(LearnerConfigError, match="pop_recent_shares"):
        LearnerConfig(pop_recent_shares=(0.0, 2.0))
    with pytest.raises(ArtifactError) as e:
        check_ranges("v1", {"pop_recent_share": np.array([1.5])})
    assert e.value.reason == "out_of_range"
    rec = write_artifact(tmp_path, "v1", {}, None, t.with_pop_recent_share(0.5), "none", {}, {})
    assert load_artifact(rec, store=tmp_path).items.pop_recent_share == 0.5
    # an artifact that says more than a share (behind correct checksums or not) is refused
    from driftrec.model.artifacts import FILES
    from driftrec.model.trust import check_arrays

    arrays = {"text": t.text, "residual": t.residual, "bias": t.bias, "context": t.text}
    with pytest.raises(ArtifactError) as e:
        check_arrays("v2", {**arrays, "pop_recent_share": np.array([3.0])}, t.item_ids, {}, {})
    assert e.value.reason == "out_of_range" and FILES


def test_the_scorer_serves_the_share() -> None:
    rep = Representation(pop_recent_half_life_events=3.0)
    t = _table()
    old = [Event(f"o{k}", "like", f"x{k}", "i1", k) for k in range(12)]  # long ago a hit
    new = [Event(f"n{k}", "like", f"y{k}", "i2", 100 + k) for k in range(4)]  # now
    for share, top in ((0.0, "i1"), (1.0, "i2")):
        sc = Scorer(
            ScorerConfig(top_k=1),
            ServingModel("p", t.with_text_weight(0.0).with_pop_recent_share(share), rep),
        )
        sc.learn_many(old + new, {})
        r = sc.learn_many([Event("q", "like", "new", "i0", 200)], {})
        assert r.recs[0]["items"][0]["item_id"] == top, share
        # share 0 is the long term alone, as before the recent term existed
        if share == 0.0:
            np.testing.assert_array_equal(
                sc.pop_prior(sc.model.table, rep, 200), rep.pop_prior(sc.popularity, 200)
            )


def test_a_small_steady_win_is_taken_once_the_pooled_pairs_show_it() -> None:
    from driftrec.learner.popularity import PooledEvidence

    t = _table()
    ev = PooledEvidence(4096)
    chosen = []
    for r in range(4):  # each round: 2 pairs of 200 won, none lost (alone: noise at z 1.64)
        hr = {0.0: np.zeros(200), 0.5: np.zeros(200), 1.0: np.zeros(200)}
        hr[1.0][:2] = 1.0

        def each(table: ItemTable, hr=hr) -> tuple[np.ndarray, np.ndarray]:
            h = hr[table.pop_recent_share]
            return h, h

        times = list(range(200 * r, 200 * (r + 1)))
        chosen.append(ev.fit(each, t, (0.0, 0.5, 1.0), 1.64, times)[0])
        ev.fit(each, t, (0.0, 0.5, 1.0), 1.64, times)  # the same pairs again: counted once
    assert chosen == [0.0, 1.0, 1.0, 1.0] and len(ev.by_value[1.0][0]) == 800


def test_a_restarted_scorer_starts_the_recent_term_from_the_long_terms_counts() -> None:
    rep = Representation(pop_recent_half_life_events=1000.0)
    t = _table()
    before = Scorer(ScorerConfig(top_k=3), ServingModel("p", t.with_text_weight(0.0), rep))
    hits = [Event(f"o{k}", "like", f"x{k}", f"i{5 + k % 3}", 1_000 * k) for k in range(30)]
    before.learn_many(hits, {})
    long_term = {f"i{j}": float(x) for j, x in enumerate(before.popularity)}
    # the restart: the long term comes back from the state backend, the recent term from nothing
    served = t.with_text_weight(0.0).with_pop_recent_share(1.0)
    after = Scorer(ScorerConfig(top_k=3), ServingModel("p", served, rep), item_pop=long_term)
    r = after.learn_many([Event("q", "like", "new", "i0", 31_000)], {})
    assert sorted(x["item_id"] for x in r.recs[0]["items"]) == ["i5", "i6", "i7"]
    # the recent term as it stands then: the long term's popularity at the first batch's time
    now = rep.pop_prior(before.popularity, 31_000) / rep.pop_weight
    got = np.logaddexp(0.0, after._popularity.recent_log(after.model.table, rep))
    np.testing.assert_allclose(got[[5, 6, 7]], now[[5, 6, 7]], rtol=1e-3)
