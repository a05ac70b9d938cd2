"""The gate (:mod:`driftrec.learner.gate`): how tables are scored on the validation pairs,
what may be seen when they are, and the rules that decide what is kept."""

from __future__ import annotations

import numpy as np

from driftrec.learner import Learner, LearnerConfig
from driftrec.learner.gate import better, means, paired_gain, rank_each, unseen
from driftrec.learner.pairs import Pair
from driftrec.model import ItemTable, Representation
from driftrec.stream import Event

SEC = 1000.0


def test_rank_each_ranks_the_target_among_the_unseen_published_items() -> None:
    # four items on a line: the user's history is item 0, which scores 1 with itself, 0.8
    # with item 1, and so on; ties are broken at random (expected values)
    V = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.6, 0.8]], np.float32)
    t = ItemTable.from_text(["a", "b", "c", "d"], V)
    hist, w = np.array([[0], [0], [0]]), np.ones((3, 1), np.float32)
    tgt = np.array([1, 2, 3])
    hr, rr = rank_each(t, hist, w, tgt, np.zeros(4), 1.0, k=1)
    # "a" is seen (never ranked): "b" first, then "c" and "d" tied for the second place
    assert hr.tolist() == [1.0, 0.0, 0.0] and rr.tolist() == [1.0, 0.4, 0.4]
    hr, rr = rank_each(t, hist, w, tgt, np.zeros(4), 1.0, k=2)
    assert hr.tolist() == [1.0, 0.5, 0.5]
    # "b" published after the pairs' time: not ranked, so "c" and "d" share the first place
    pub, ts = np.array([0.0, 50.0, 0.0, 0.0]), np.array([10.0, 10.0, 10.0])
    hr, rr = rank_each(t, hist, w, tgt, np.zeros(4), 1.0, pub, ts, k=1)
    assert hr.tolist()[1:] == [0.5, 0.5] and rr.tolist()[1:] == [2 / 3, 2 / 3]
    # an addition to the scores (the freshness prior's, say) reorders them
    extra = np.zeros((3, 4), np.float32)
    extra[:, 3] = 1.0
    assert rank_each(t, hist, w, tgt, np.zeros(4), 1.0, k=1, extra=extra)[0].tolist() == [0.0, 0.0, 1.0]


def test_better_and_means() -> None:
    assert means((np.zeros(0), np.zeros(0))) == {"hr": 0.0, "mrr": 0.0}
    assert better({"hr": 0.31, "mrr": 0.0}, {"hr": 0.3, "mrr": 0.9}, 0.0)  # HR first
    assert not better({"hr": 0.31, "mrr": 0.0}, {"hr": 0.3, "mrr": 0.9}, 0.02)  # within the gain
    assert not better({"hr": 0.3, "mrr": 0.2}, {"hr": 0.3, "mrr": 0.2}, 0.0)  # a tie is no win


def test_unseen_pairs_are_those_newer_than_the_serving_version() -> None:
    ps = [Pair((), np.zeros(0, np.float32), "a", ts) for ts in (5, 10, 15, 20)]
    assert unseen(ps, 12).tolist() == [False, False, True, True]
    assert unseen(ps, None).all() and unseen(ps, 25).all()  # unknown, or nothing newer
    assert unseen([], 3).tolist() == []


def test_adapter_gate_wants_a_win_beyond_noise() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(800) < 0.2).astype(float)
    noisy = base.copy()
    noisy[np.flatnonzero(base == 0)[:20]] = 1.0  # 20 pairs gained, 16 lost: +4 of 800
    noisy[np.flatnonzero(base == 1)[:16]] = 0.0
    rr = np.zeros(800)
    assert noisy.mean() > base.mean()
    assert not paired_gain((noisy, rr), (base, rr), 1.64)  # within noise: not taken
    assert paired_gain((noisy, rr), (base, rr), 0.0)  # z = 0: any win
    clear = base.copy()
    clear[np.flatnonzero(base == 0)[:60]] = 1.0  # 60 more hits, none lost
    assert paired_gain((clear, rr), (base, rr), 1.64)
    assert not paired_gain((base, rr), (clear, rr), 1.64)
    # equal HR on every pair: reciprocal ranks decide, by the same rule
    better_rr = rng.random(800) * 0.1 + 0.5
    assert paired_gain((base, better_rr), (base, better_rr - 0.05), 1.64)
    assert not paired_gain((base, rr), (base, rr), 0.0)  # no difference at all: no win


def test_the_freshness_weight_is_judged_without_the_validation_events_co_engagement() -> None:
    """Validation must not see its own events through the co-engagement neighbours. Each
    user engages two back-catalog items, one after the other: half the time one of 50
    recurring pairs (co-engagement learns those honestly), otherwise a pair nobody engaged
    before, which only neighbours built from the validation events themselves could
    rank. The candidate's validation figure must not count those hits (the freshness
    weight was once chosen on the shipped neighbours, which have seen them)."""
    ln, events = _pairs_learner(n_items=4000, n_pairs=1500)
    ln.observe_many(events)
    res = ln.train("test")
    m = res.metrics
    # co-engagement earns its weight on the recurring pairs (a quarter of the validation
    # targets); a leak would add the fresh pairs' y targets, another quarter
    assert m["cooc_weight"] > 0 and 0.15 < m["val_hr_candidate"] < 0.35, m


def test_the_serving_version_is_judged_on_validation_pairs_it_has_not_seen() -> None:
    """A candidate is compared with the serving version on validation pairs newer than the
    serving version's data. Its co-engagement neighbours were built from every event up
    to its training, so on the older validation pairs it ranks pairs that nobody could
    have predicted (the setup of the test above: half the pairs are new random pairs). A
    training 500 events after the last one has such pairs among its validation pairs;
    judged on all of them, the serving version read HR@10 0.36 (0.28 on the 500 pairs it
    had not seen) and turned down candidates as good as it on the events it had not seen."""
    ln, events = _pairs_learner(n_items=6000, n_pairs=1950)
    ln.observe_many(events[:3400])
    first = ln.train("test")
    assert first.accepted and first.metrics["cooc_weight"] > 0, first.metrics
    ln.accept(first)
    ln.observe_many(events[3400:3900])
    m = ln.train("test").metrics
    assert 0 < m["val_pairs_unseen"] < m["val_pairs"], m
    # honest: a quarter of the targets (the recurring pairs' y) can be ranked
    assert m["val_hr_current"] < 0.32, m


def _pairs_learner(n_items: int, n_pairs: int) -> tuple[Learner, list[Event]]:
    """A no-adapter learner with co-engagement over ``n_items`` back-catalog items, and
    ``n_pairs`` users who each engage two of them, one after the other: half the time one
    of 50 recurring pairs (items 0-99; co-engagement learns those honestly), otherwise a
    pair nobody engaged before."""
    rng = np.random.default_rng(3)
    ids = [f"i{j}" for j in range(n_items)]
    pub = {i: int(rng.uniform(0, 30 * 24 * 3600 * SEC)) for i in ids}  # a month of back catalog
    t0 = int(31 * 24 * 3600 * SEC)
    fresh = iter(rng.permutation(np.arange(100, n_items)))
    events = []
    for k in range(n_pairs):  # one user per pair
        if rng.random() < 0.5:
            m = int(rng.integers(0, 50))
            x, y = ids[2 * m], ids[2 * m + 1]
        else:
            x, y = ids[next(fresh)], ids[next(fresh)]
        events.append(Event(f"e{k}x", "like", f"u{k}", x, t0 + k * 2000))
        events.append(Event(f"e{k}y", "like", f"u{k}", y, t0 + k * 2000 + 1000))
    V = rng.normal(size=(n_items, 8)).astype(np.float32)
    table = ItemTable.from_text(ids, V / np.linalg.norm(V, axis=1, keepdims=True))
    cfg = LearnerConfig(
        min_pairs=16, use_lora=False, item_max_steps=4, drift=None, window_events=4096, cooc_neighbours=20
    )
    return Learner(cfg, Representation(pop_weight=0.0), table, {i: i for i in ids}, None, pub), events


def test_live_popularity_is_a_candidate_the_gate_compares_with() -> None:
    from driftrec.learner.gate import popular_instead, popularity_only
    from driftrec.learner.training import RoundLog

    t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32)).with_cooc(
        np.array([[1], [0]]), np.ones((2, 1), np.float32), 2.0
    )
    pop = popularity_only(t)
    assert pop.text_weight == 0.0 and pop.cooc_weight == 0.0 and not pop.bias.any()
    assert not pop.vectors.any() and np.array_equal(pop.text, t.text)  # the item parts are kept
    hr_pop = np.zeros(200)
    hr_pop[:40] = 1.0

    def each(table: ItemTable) -> tuple[np.ndarray, np.ndarray]:
        assert table.text_weight == 0.0
        return hr_pop, hr_pop

    def log() -> RoundLog:
        lg = RoundLog("t", 0, 0, 0, "cpu", False)
        lg.m_new, lg.cooc_weight = {"hr": 0.0, "mrr": 0.0}, 2.0
        return lg

    # pairs won and lost against popularity: a clear win, noise, a loss
    for won, lost, served in ((40, 0, t), (4, 2, pop), (0, 10, pop)):
        hr = hr_pop.copy()
        hr[40 : 40 + won] = 1.0
        hr[:lost] = 0.0
        lg = log()
        out = popular_instead(t, (hr, hr), each, 1.64, lg)
        assert out is served or (served is pop and out.text_weight == 0.0), (won, lost)
        assert lg.m_pop == {"hr": 0.2, "mrr": 0.2}
        assert lg.popularity == (served is pop) and lg.cooc_weight == (2.0 if served is t else 0.0)
