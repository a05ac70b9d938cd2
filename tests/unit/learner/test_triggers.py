"""When to train (:mod:`driftrec.learner.triggers`): every ``train_every`` events, on a
drop of the live hit rate, when engagement moves to new items, and on a wave of new words;
each rise is measured against its value at the last training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from driftrec.learner import Learner, LearnerConfig
from driftrec.learner.triggers import Triggers
from driftrec.model import ItemTable, Representation
from driftrec.stream import Event


def test_due_counts_events_and_waits_for_min_pairs() -> None:
    t = Triggers(LearnerConfig(train_every=100, min_pairs=50, drift=None))
    for n in range(99):
        t.observe(f"i{n % 7}", {})
    assert t.due(n_pairs=99) is None  # 99 events since the start
    t.observe("i0", {})
    assert t.due(n_pairs=49) is None  # too few pairs
    assert t.due(n_pairs=50) == "every_n"
    t.started()
    assert t.since_train == 0 and t.due(n_pairs=50) is None


def test_a_new_words_round_the_gate_dropped_doubles_the_jump_up_to_the_back_off() -> None:
    t = Triggers(LearnerConfig(new_word_jump=0.1, new_word_backoff=2))
    t.adapter_outcome(False, "every_n")  # a scheduled round: no back-off
    assert t.new_word_jump() == pytest.approx(0.1)
    for want in (0.2, 0.4, 0.4):
        t.adapter_outcome(False, "new_words")
        assert t.new_word_jump() == pytest.approx(want)
    t.adapter_outcome(True, "every_n")  # a kept update sets it back
    assert t.new_word_jump() == pytest.approx(0.1)


def test_only_an_adapter_round_learns_the_words_of_its_training_pairs() -> None:
    cfg = LearnerConfig(new_word_min=1, novelty_events=10, window_events=50, val_share=0.2)
    t = Triggers(cfg)
    texts = {f"z{j}": "zorblax clip" for j in range(30)}
    for j in range(30):  # the first 10 are older than the validation share: counted
        t.observe(f"z{j}", texts)
    assert t.words_trained(False, ["zorblax clip"]) == 1.0 and t.new_words_at_train == 1.0
    assert t.words_trained(True, ["zorblax clip"]) == 1.0 and t.new_words_at_train == 0.0
    assert Triggers(replace(cfg, new_word_jump=0.0)).words_trained(True, ["x"]) is None


def test_triggers_every_n_and_min_pairs() -> None:
    ids = [f"i{j}" for j in range(20)]
    t = ItemTable.from_text(ids, np.eye(20, dtype=np.float32))
    cfg = LearnerConfig(train_every=100, min_pairs=50, drift=None, use_lora=False)
    ln = Learner(cfg, Representation(), t, {i: i for i in ids})
    events = [Event(f"e{n}", "like", f"u{n % 9}", ids[n % 20], n) for n in range(100)]
    ln.observe_many(events[:40])
    assert ln.due() is None  # too few pairs
    ln.observe_many(events[40:100])
    assert ln.due() == "every_n"


def test_drift_trigger() -> None:
    t = ItemTable.from_text(["a"], np.ones((1, 4), np.float32))
    ln = Learner(
        LearnerConfig(min_pairs=8, train_every=10_000, drift="adwin", drift_cooldown=0, use_lora=False),
        Representation(),
        t,
        {"a": "x"},
    )
    ln.observe_many([Event(f"e{n}", "like", "u", "a", n) for n in range(20)])
    ln.observe_hits([True] * 1000 + [False] * 1000)
    assert ln.due() == "drift"


def test_a_drift_detected_within_the_cooldown_trains_when_the_cooldown_ends() -> None:
    """A detection shortly after a training is deferred, not forgotten (the detector fires
    once per change: dropping it left the model stale until the next scheduled training)."""
    t = ItemTable.from_text(["a"], np.ones((1, 4), np.float32))
    ln = Learner(
        LearnerConfig(min_pairs=8, train_every=10_000, drift="adwin", drift_cooldown=50, use_lora=False),
        Representation(),
        t,
        {"a": "x"},
    )
    ln.observe_many([Event(f"e{n}", "like", "u", "a", n) for n in range(20)])
    assert ln.observe_hits([True] * 1000 + [False] * 1000)  # 20 events since the start < 50
    assert ln.due() is None
    ln.observe_many([Event(f"f{n}", "like", "u", "a", 100 + n) for n in range(30)])
    assert ln.due() == "drift"


def test_engagement_moving_to_new_items_triggers_a_training() -> None:
    """A back catalog engaged over and over, then engagement moves to items nobody engaged
    before (fresh posts, new names): the novelty trigger asks for a training once the
    cooldown since the last one has passed, long before ``train_every``; a steady share of
    new items (a feed that always has fresh posts) does not, nor does a catalog being
    discovered (a falling share)."""
    old = [f"o{j}" for j in range(50)]
    t = ItemTable.from_text(old, np.ones((50, 4), np.float32))
    cfg = LearnerConfig(
        min_pairs=8,
        train_every=10_000,
        drift=None,
        drift_cooldown=300,
        use_lora=False,
        item_max_steps=2,
        calibrate_every=0,
    )
    ln = Learner(cfg, Representation(), t, {i: i for i in old})
    rng = np.random.default_rng(0)
    ln.observe_many([Event(f"b{n}", "like", f"u{n % 30}", old[rng.integers(0, 50)], n) for n in range(1000)])
    assert ln.due() is None  # the catalog's first engagements: a falling share
    ln.train("test")
    ln.observe_many(
        [Event(f"c{n}", "like", f"u{n % 30}", old[rng.integers(0, 50)], 1000 + n) for n in range(500)]
    )
    assert ln.due() is None
    fresh = [
        Event(f"a{n}", "like", f"u{n % 30}", f"new{n}" if n % 2 else old[0], 2000 + n) for n in range(400)
    ]
    ln.observe_many(fresh[:100])
    assert ln.triggers.drift_pending and ln.due() == "novelty"  # 600 events since the training
    ln.observe_many(fresh[100:300])
    ln.train("novelty")
    ln.observe_many(fresh[300:])
    assert ln.due() is None  # the new share is the one it was trained under
    ln.observe_many([Event(f"d{n}", "like", "u1", f"newer{n}", 3000 + n) for n in range(100)])
    assert ln.triggers.drift_pending and ln.due() is None  # a further rise, within the cooldown
    # a feed where half of all engagement goes to new items all along: no trigger
    steady = Learner(cfg, Representation(), t, {i: i for i in old})
    evs = [Event(f"s{n}", "like", f"u{n % 30}", f"n{n}" if n % 2 else old[n % 50], n) for n in range(4000)]
    steady.observe_many(evs[:1000])
    steady.train("test")
    steady.observe_many(evs[1000:])
    assert steady.due() is None and not steady.triggers.drift_pending
    # off
    cfg_off = replace(cfg, novelty_jump=0.0)
    off = Learner(cfg_off, Representation(), t, {i: i for i in old})
    off.observe_many([Event(f"b{n}", "like", "u", old[n % 50], n) for n in range(2000)])
    off.triggers.novel_at_train = 0.0
    off.observe_many(fresh)
    assert off.due() is None


def test_a_wave_of_new_words_asks_for_an_adapter_round() -> None:
    """Engagement moves to posts carrying a new name (no topic word): once those
    engagements are older than the validation share (a round trains on them), the
    new-words trigger asks for a training, an adapter round, ``new_word_gap`` events after
    the last one, long before ``train_every`` or ``lora_every``; the round learns the name
    (engaged ``new_word_min`` times in its training pairs) and the share falls back. A
    feed whose long tail always brings unseen words keeps a steady share and never fires
    it, and a training that is no adapter round learns no word."""
    old = [f"o{j}" for j in range(50)]
    new = [f"n{j}" for j in range(50)]
    texts = {i: "football match goal" for i in old} | {i: f"zorblax clip {i}" for i in new}
    t = ItemTable.from_text(old + new, np.ones((100, 4), np.float32))
    cfg = LearnerConfig(
        min_pairs=8,
        window_events=250,
        train_every=10_000,
        drift=None,
        novelty_jump=0.0,
        novelty_events=100,
        new_word_gap=100,
        lora_every=1,
        use_lora=False,
        item_max_steps=2,
        calibrate_every=0,
    )  # validation: the newest 50 pairs of 250
    ln = Learner(cfg, Representation(), t, texts)
    ev = [Event(f"b{n}", "like", f"u{n % 97}", old[n % 50], n) for n in range(500)]
    ln.observe_many(ev)
    assert ln.due() is None  # no training yet: nothing to rise above
    res = ln.train("test")
    assert res.metrics["new_word_share"] == 1.0 and ln.triggers.new_words_at_train == 0.0
    wave = [
        Event(f"w{n}", "like", f"v{n}", new[n % 5] if n % 2 else old[n % 50], 500 + n) for n in range(110)
    ]
    ln.observe_many(wave[:50])
    assert not ln.triggers.new_words_pending  # the wave is all in the validation share yet
    ln.observe_many(wave[50:70])
    assert ln.triggers.new_words_pending and ln.due() is None  # 0.1 above, but within the gap
    ln.observe_many(wave[70:])
    assert ln.due() == "new_words"  # 110 events on, not 10,000
    res = ln.train(ln.due())
    assert res.metrics["new_word_share"] == 0.3 and ln.triggers.new_words_at_train == 0.0  # zorblax learned
    ln.observe_many([Event(f"x{n}", "like", "u1", new[n % 5], 610 + n) for n in range(200)])
    assert ln.due() is None
    # after a round it fired was dropped, the trigger needs twice the jump: 0.2, 40 events
    shy = Learner(cfg, Representation(), t, texts)
    shy.observe_many(ev)
    shy.train("test")
    shy.triggers.new_words_misses = 1
    assert shy.new_word_jump() == pytest.approx(0.2)
    shy.observe_many(wave[:70])
    assert not shy.triggers.new_words_pending
    shy.observe_many(wave[70:90])
    assert shy.triggers.new_words_pending
    # a training that is no adapter round (lora_every) learns nothing
    rounds = Learner(replace(cfg, lora_every=5), Representation(), t, texts)
    rounds.observe_many(ev + wave)
    rounds.train("test")
    assert rounds.triggers.new_words_at_train == 1.0
    # a long tail of unseen words all along: a steady share, no trigger
    rare = [f"r{j}" for j in range(1000)]  # each engaged once, each with its own word
    tt = ItemTable.from_text(old + rare, np.ones((1050, 4), np.float32))
    words = {
        i: f"tail{chr(97 + j % 26)}{chr(97 + j // 26 % 26)}{chr(97 + j // 676)} clip"
        for j, i in enumerate(rare)
    }
    tail = Learner(cfg, Representation(), tt, {**texts, **words})
    evs = [
        Event(f"s{n}", "like", f"u{n % 97}", rare[n // 2] if n % 2 else old[n % 50], n) for n in range(2000)
    ]
    tail.observe_many(evs[:1000])
    tail.train("test")
    tail.observe_many(evs[1000:])
    assert tail.due() is None and not tail.triggers.new_words_pending
    # off
    off = Learner(replace(cfg, new_word_jump=0.0), Representation(), t, texts)
    off.observe_many(ev)
    off.train("test")
    off.observe_many(wave)
    assert off.due() is None and off.train("test").metrics["new_word_share"] is None


def test_a_caller_may_lower_the_count_since_training() -> None:
    """A learner worker that re-reads events it trained on before a restart takes them back
    out of the count (``Learner.since_train``), so they do not bring the next training closer."""
    ids = [f"i{j}" for j in range(20)]
    t = ItemTable.from_text(ids, np.eye(20, dtype=np.float32))
    ln = Learner(
        LearnerConfig(train_every=100, min_pairs=10, drift=None, use_lora=False, calibrate_every=0),
        Representation(),
        t,
        {},
    )
    ln.observe_many([Event(f"e{n}", "like", f"u{n % 9}", ids[n % 20], n) for n in range(100)])
    assert ln.since_train == 100 and ln.due() == "every_n"
    ln.since_train = 60
    ln.skip_day_one()  # what the worker does after a restart: no calibration round either
    assert ln.triggers.since_train == 60 and ln.due() is None
