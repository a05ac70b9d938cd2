"""The blend (:mod:`driftrec.learner.blend`): the text term's weight against popularity,
picked on validation; popularity as each validation pair saw it; the day-one calibration
before the first training; live popularity as a candidate the gate compares with."""

from __future__ import annotations

import numpy as np

from driftrec.learner import Learner, LearnerConfig
from driftrec.learner.blend import PopularityLog, best_text_weight
from driftrec.learner.gate import popularity_only
from driftrec.model import ItemTable, Representation, load_artifact, write_artifact
from driftrec.stream import Event

N_ITEMS, N_USERS = 120, 60


def _table(informative: bool, seed: int = 0) -> ItemTable:
    """Items in 6 clusters; their vectors say the cluster (``informative``) or are noise."""
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(N_ITEMS, 16)).astype(np.float32)
    if informative:
        V[:, :6] += 4.0 * np.eye(6, dtype=np.float32)[np.arange(N_ITEMS) % 6]
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    return ItemTable.from_text([f"i{j}" for j in range(N_ITEMS)], V)


def _events(kind: str, n: int, seed: int = 0) -> list[Event]:
    """``popular``: every user picks by a Zipf popularity over the items, whatever the
    cluster; ``clusters``: each user picks uniformly within their own cluster."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, N_ITEMS + 1) ** 1.1
    w = w[rng.permutation(N_ITEMS)]
    seen: dict[int, set[int]] = {}
    out = []
    for k in range(n):
        u = int(rng.integers(N_USERS))
        s = seen.setdefault(u, set())
        for _ in range(50):
            if kind == "popular":
                j = int(rng.choice(N_ITEMS, p=w / w.sum()))
            else:
                j = int(u % 6 + 6 * rng.integers(N_ITEMS // 6))
            if j not in s:
                break
        s.add(j)
        out.append(Event(f"e{k}", "like", f"u{u}", f"i{j}", 1_000 * k))
    return out


def _learner(table: ItemTable, **kw) -> Learner:
    cfg = LearnerConfig(**{"min_pairs": 16, "drift": None, "use_lora": False, "calibrate_every": 200, **kw})
    return Learner(cfg, Representation(), table, {i: i for i in table.item_ids})


def test_popularity_log_counts_what_each_time_saw() -> None:
    rep = Representation(pop_half_life_ms=5_000.0)
    rng = np.random.default_rng(1)
    ids = ["a", "b", "c", "d"]
    log, acc = PopularityLog(64), {}
    evs = [
        (int(t), str(rng.choice(ids)), str(rng.choice(["click", "like"])))
        for t in np.sort(rng.integers(0, 20_000, 40))
    ]
    for ts, item, typ in evs:
        acc[item] = log.add(ts, item, rep.pop_increment(typ, ts), acc.get(item, -np.inf))
    times = [3_000, 9_000, 9_000, 19_999]
    lp = log.before(times, ids, np.array([acc.get(i, -np.inf) for i in ids]), rep)
    for row, t in zip(lp, times):  # recounted from scratch: the events strictly before t
        want = [
            np.log1p(
                sum(
                    rep.type_weights[typ] * 0.5 ** ((t - ts) / 5_000.0)
                    for ts, it, typ in evs
                    if it == i and ts < t
                )
            )
            for i in ids
        ]
        np.testing.assert_allclose(row, want, rtol=1e-4, atol=1e-5)


def test_a_text_weight_needs_a_win_beyond_noise() -> None:
    t = _table(True)
    hr = {1.0: np.zeros(200), 0.5: np.zeros(200), 0.0: np.zeros(200)}
    hr[1.0][10:13] = hr[0.0][10:13] = 1.0
    hr[0.5][:6] = 1.0  # wins 6 pairs, loses 3: noise
    hr[0.0][:60] = 1.0  # many: a real win

    def each(table: ItemTable) -> tuple[np.ndarray, np.ndarray]:
        h = hr[table.text_weight]
        return h, h

    assert best_text_weight(each, t, (0.5,), 1.64)[0] == 1.0
    assert best_text_weight(each, t, (0.5,), 0.0)[0] == 0.5
    assert best_text_weight(each, t, (0.0, 0.5), 1.64)[0] == 0.0


def test_day_one_serves_popularity_where_the_text_says_nothing() -> None:
    ln = _learner(_table(False))
    ln.observe_many(_events("popular", 199))
    assert ln.due() is None
    ln.observe_many(_events("popular", 200)[199:])
    assert ln.due() == "day_one"  # 200 events, no training yet
    res = ln.train(ln.due())
    m = res.metrics
    assert res.accepted and res.table.text_weight < 1.0 and res.reason == "day_one", m
    assert m["val_hr_candidate"] > m["val_hr_current"] and m["train_s"] > 0
    assert m["steps"] == 0 and ln.trainings == 0  # nothing trained: the schedule is untouched
    ln.accept(res)
    assert ln.due() is None  # the next calibration at twice as many events, 400
    evs = _events("popular", 1400)
    ln.observe_many(evs[200:400])
    assert ln.due() == "day_one"
    ln.train("day_one")
    ln.observe_many(evs[400:600])
    assert ln.due() is None  # then at 800
    ln.observe_many(evs[600:800])
    assert ln.due() == "day_one"
    ln.train("every_n")
    ln.observe_many(evs[800:])
    assert ln.due() != "day_one"  # a training ran: no more calibration rounds


def test_day_one_keeps_the_text_where_it_is_informative() -> None:
    ln = _learner(_table(True))
    ln.observe_many(_events("clusters", 200))
    res = ln.train(ln.due())
    assert not res.accepted and res.table.text_weight == 1.0, res.metrics


def test_a_candidate_below_popularity_is_not_served() -> None:
    # nothing moves (lr 0, no blend to choose): the candidate is the text-only base version,
    # which popularity beats; popularity alone is served instead
    ln = _learner(_table(False), lr_items=0.0, text_weights=(), cooc_neighbours=0, calibrate_every=0)
    ln.observe_many(_events("popular", 800))
    res = ln.train("every_n")
    m = res.metrics
    assert m["popularity"] and res.accepted, m
    assert m["val_hr_candidate"] == m["val_hr_popularity"] > m["val_hr_current"]
    t = res.table
    assert t.text_weight == 0.0 and not t.bias.any() and t.cooc_weight == 0.0
    # where the text carries the taste, the candidate beats popularity and is what is served
    ln = _learner(_table(True), lr_items=0.0, text_weights=(), cooc_neighbours=0, calibrate_every=0)
    ln.observe_many(_events("clusters", 800))
    m = ln.train("every_n").metrics
    assert not m["popularity"] and m["val_hr_current"] > m["val_hr_popularity"], m


def test_the_blend_travels_with_the_version_and_the_scorer_serves_it(tmp_path) -> None:
    from driftrec.scorer import Scorer, ScorerConfig, ServingModel

    t = _table(False).with_text_weight(0.25)
    rec = write_artifact(str(tmp_path), "v1", {}, None, t, "tiny", {}, {})
    back = load_artifact(rec).items
    assert back.text_weight == 0.25 and np.allclose(back.vectors, t.vectors)
    # popularity alone: the scorer ranks by the live counts, whatever the text says
    pop = popularity_only(_table(False))
    sc = Scorer(ScorerConfig(top_k=3), ServingModel("p", pop, Representation()))
    warm = [Event(f"w{k}", "like", f"x{k}", f"i{j}", k) for k, j in enumerate([5] * 3 + [7] * 2 + [9])]
    sc.learn_many(warm, {})
    r = sc.learn_many([Event("n1", "like", "new", "i0", 100)], {})
    assert [x["item_id"] for x in r.recs[0]["items"]] == ["i5", "i7", "i9"]


def test_a_restarted_learner_has_no_day_one(tmp_path) -> None:
    # a learner that trained before its restart (the worker's counters say so) may have a
    # trained version serving: a calibrated base version must not replace it
    from driftrec.app.runtime import LearnerWorker
    from driftrec.state import MemoryStateStore, StateWrite
    from driftrec.stream import MemoryBroker

    for before, calibrating in ((0, True), (3, False)):
        store = MemoryStateStore()
        if before:
            store.commit(StateWrite(offsets={"seen": 10, "trainings": before}, group="g/counters"))
        ln = _learner(_table(False))
        w = LearnerWorker(ln, MemoryBroker(), str(tmp_path), store, "m", time_bounds=None, group="g")
        w.restore()
        ln.observe_many(_events("popular", 200))
        assert (ln.due() == "day_one") is calibrating
        if calibrating:  # a calibration round is no training in the worker's counts
            w.train("day_one")
            assert len(w.results) == 1 and w.trainings == 0
