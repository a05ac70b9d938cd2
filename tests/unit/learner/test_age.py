"""The freshness prior (:mod:`driftrec.learner.age`): learned from the window, its weight
chosen on validation, used by the scorer."""

from __future__ import annotations

import numpy as np

from driftrec.learner import Learner, LearnerConfig
from driftrec.learner.age import AGE_EDGES_MS, best_age_weight, cross_fit, fit_age_curve, with_age
from driftrec.learner.pairs import Pair
from driftrec.model import ItemTable, Representation
from driftrec.stream import Event

SEC = 1000.0


def test_age_curve_decays_where_engagement_decays_with_age() -> None:
    rng = np.random.default_rng(0)
    pub = np.sort(rng.uniform(0, 3600 * SEC, size=400))  # an item every ~9 s for an hour
    ages = []
    for p in pub:  # each item is engaged a few times, at ages of about 20 s
        for a in rng.exponential(20 * SEC, size=3):
            if p + a <= 3600 * SEC:
                ages.append(a)
    r = fit_age_curve(np.array(ages), pub, 0.0, 3600 * SEC, AGE_EDGES_MS)
    b = lambda age: int(np.searchsorted(AGE_EDGES_MS, age, side="right") - 1)  # noqa: E731
    # young posts are engaged at a higher rate than average, old ones at a lower one
    assert r[b(5 * SEC)] > r[b(40 * SEC)] > r[b(200 * SEC)] > r[b(1200 * SEC)]
    assert r[b(5 * SEC)] > 1.0 and r[b(1200 * SEC)] < -1.0
    # nothing to learn: no publication times, or no span
    assert not fit_age_curve(np.array(ages), np.full(3, -np.inf), 0.0, 1.0, AGE_EDGES_MS).any()


def _fresh_stream(
    n_items: int = 300, n_users: int = 40, seed: int = 1
) -> tuple[list[str], dict[str, int], list[Event]]:
    """Items are published every 10 s; users engage one of the 3 newest (vectors say nothing)."""
    rng = np.random.default_rng(seed)
    ids = [f"p{j}" for j in range(n_items)]
    pub = {i: int(j * 10 * SEC) for j, i in enumerate(ids)}
    events = []
    for n in range(3 * n_items):
        now = int(n * 10 * SEC / 3) + 1
        newest = min(n_items - 1, now // int(10 * SEC))
        j = max(0, newest - int(rng.integers(0, 3)))
        events.append(Event(f"e{n}", "like", f"u{rng.integers(0, n_users)}", ids[j], max(now, pub[ids[j]])))
    return ids, pub, events


def test_the_learner_ships_a_decaying_prior_where_engagement_goes_to_fresh_items() -> None:
    ids, pub, events = _fresh_stream()
    rng = np.random.default_rng(0)
    V = rng.normal(size=(len(ids), 8)).astype(np.float32)
    table = ItemTable.from_text(ids, V / np.linalg.norm(V, axis=1, keepdims=True))
    cfg = LearnerConfig(
        min_pairs=16, use_lora=False, train_items=True, item_max_steps=8, drift=None, cooc_neighbours=0
    )
    ln = Learner(cfg, Representation(pop_weight=0.0), table, {i: i for i in ids}, None, pub)
    ln.observe_many(events)
    res = ln.train("test")
    assert res.metrics["age_weight"] > 0 and res.accepted, res.metrics
    t = res.table
    young, old = t.age_prior(np.array([5 * SEC])), t.age_prior(np.array([600 * SEC]))
    assert young[0] > old[0]
    assert res.metrics["val_hr_candidate"] > 0.5  # the prior alone finds the 3 newest
    # without publication times nothing is learned about age
    ln2 = Learner(cfg, Representation(pop_weight=0.0), table, {i: i for i in ids}, None)
    ln2.observe_many(events)
    r2 = ln2.train("test")
    assert r2.metrics["age_weight"] == 0.0 and not r2.table.has_age_prior


def test_a_shift_to_fresh_posts_in_the_newest_pairs_is_learned_at_once() -> None:
    """For 85 % of the window users engage the back catalog (all published long ago); in the
    newest 15 % (inside the validation share) they engage one of the 3 newest posts, one
    published every 10 s. Only validation pairs show the shift: a curve fitted on the
    training pairs alone had no post-shift engagement and shipped no prior (the shift was
    followed ~800 events late). Cross-fitted, each validation pair is judged by a curve
    learned from the other half of them."""
    rng = np.random.default_rng(5)
    old = [f"o{j}" for j in range(200)]
    new = [f"n{j}" for j in range(100)]
    t0 = int(90 * 24 * 3600 * SEC)  # the back catalog is 0-90 days old
    pub = {i: int(rng.uniform(0, t0 - 24 * 3600 * SEC)) for i in old}
    n_before, n_after = 1700, 300
    shift = t0 + n_before * 2000
    pub.update({i: shift + int(j * 10 * SEC) for j, i in enumerate(new)})
    events = []
    for n in range(n_before):
        events.append(
            Event(f"b{n}", "like", f"u{rng.integers(0, 60)}", old[rng.integers(0, 200)], t0 + n * 2000)
        )
    for n in range(n_after):
        now = shift + int(n * 10 * SEC / 3) + 1
        newest = min(len(new) - 1, (now - shift) // int(10 * SEC))
        j = max(0, newest - int(rng.integers(0, 3)))
        events.append(Event(f"a{n}", "like", f"u{rng.integers(0, 60)}", new[j], max(now, pub[new[j]])))
    ids = old + new
    V = rng.normal(size=(len(ids), 8)).astype(np.float32)
    table = ItemTable.from_text(ids, V / np.linalg.norm(V, axis=1, keepdims=True))
    cfg = LearnerConfig(
        min_pairs=16, use_lora=False, item_max_steps=4, drift=None, cooc_neighbours=0, val_share=0.2
    )
    ln = Learner(cfg, Representation(pop_weight=0.0), table, {i: i for i in ids}, None, pub)
    ln.observe_many(events)
    res = ln.train("test")
    m = res.metrics
    assert m["age_weight"] > 0 and res.table.has_age_prior, m
    young, aged = res.table.age_prior(np.array([5 * SEC, 30 * 24 * 3600 * SEC]))
    assert young > aged
    # the post-shift validation pairs (3 of 4 of them) are found by the prior
    assert m["val_hr_candidate"] > 0.5, m


def test_cross_fit_scores_each_validation_pair_with_a_curve_fitted_without_it() -> None:
    """Training pairs engage items of every age; the validation pairs engage only the
    newest posts. The shipped curve is fitted on every pair; each validation pair's values
    come from a curve fitted on the training pairs and the *other* half of the validation
    pairs, which lifts young items for every one of them."""
    rng = np.random.default_rng(0)
    n = 221
    ids = [f"i{j}" for j in range(n)]
    table = ItemTable.from_text(ids, np.eye(n, dtype=np.float32))
    pub = np.arange(n, dtype=np.float64) * 10 * SEC  # one post every 10 s, until 2200 s
    z = np.zeros(0, np.float32)
    train = []
    for k in range(400):  # 2000-2200 s: any published item, whatever its age
        ts = int(2000 * SEC + k * 500)
        train.append(Pair((), z, ids[int(rng.integers(0, ts // (10 * SEC) + 1))], ts))
    val = [Pair((), z, ids[n - 1 - k % 3], int(2200 * SEC + 10 * k)) for k in range(20)]
    fit = cross_fit(table, pub, train, val)
    assert fit is not None
    lograte, curve = fit
    assert lograte.shape == AGE_EDGES_MS.shape and curve.shape == (20, n)
    assert (curve[:, n - 1] > curve[:, 0] + 1.0).all()  # the newest lifted, for every pair
    # the curve of a validation pair is fitted without it: the even pairs' on the odd ones
    ages = lambda ps: np.array([p.ts for p in ps], float) - pub[[table.index(p.target) for p in ps]]  # noqa: E731
    span = lambda ps: (float(min(p.ts for p in ps)), float(max(p.ts for p in ps)))  # noqa: E731
    other = [*train, *val[1::2]]
    lr = fit_age_curve(ages(other), pub, *span(other), AGE_EDGES_MS)
    want = table.with_age(AGE_EDGES_MS, lr, 1.0).age_prior(val[0].ts - pub)
    assert np.allclose(curve[0], want)
    assert np.array_equal(lograte, fit_age_curve(ages(train + val), pub, *span(train + val), AGE_EDGES_MS))
    # nothing to learn: no publication times
    assert cross_fit(table, np.full(n, -np.inf), train, val) is None


def test_the_freshness_weight_is_the_one_that_wins_on_validation() -> None:
    ids = ["old", "new"]
    table = ItemTable.from_text(ids, np.eye(2, dtype=np.float32))
    fit = (np.linspace(1, -1, len(AGE_EDGES_MS)).astype(np.float32), np.array([[0.0, 1.0]], np.float32))

    def each(t, extra):  # one pair whose target is "new": won once the prior lifts it by > 0.7
        s = np.array([0.7, 0.0]) if extra is None else np.array([0.7, 0.0]) + extra[0]
        hit = float(s[1] > s[0])
        return np.array([hit]), np.array([hit])

    assert best_age_weight(each, table, fit, (0.5, 1.0, 2.0))[0] == 1.0  # the first that wins
    assert best_age_weight(each, table, fit, (0.5,))[0] == 0.0  # none wins: 0
    shipped, m, w = with_age(table, table, {"hr": 0.0, "mrr": 0.0}, fit, each, (0.5, 1.0))
    assert w == 1.0 and m == {"hr": 1.0, "mrr": 1.0} and shipped.has_age_prior
    assert shipped.age_weight == 1.0 and np.array_equal(shipped.age_lograte, fit[0])
    unfit, m0, w0 = with_age(table, table, {"hr": 0.5, "mrr": 0.5}, None, each, (1.0,))
    assert w0 == 0.0 and m0 == {"hr": 0.5, "mrr": 0.5} and not unfit.has_age_prior
