from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from driftrec.learner import Learner, LearnerConfig, LearnerConfigError, RollingWindow
from driftrec.model import ItemTable, Representation, TextEncoder, load_artifact, write_artifact
from driftrec.stream import Event
from driftrec.stream.synthetic import VOCAB


def planted(n_users: int = 240, per_topic: int = 60, seed: int = 0) -> tuple[dict[str, str], list[Event]]:
    """Every user engages with a football item, then with a cooking item: a text-level
    pattern that text similarity alone ranks badly (football texts are near football texts)."""
    rng = np.random.default_rng(seed)
    texts = {}
    for topic in ("football", "cooking", "music", "travel"):
        for j in range(per_topic):
            texts[f"{topic}-{j}"] = " ".join(rng.choice(VOCAB[topic], 5))
    events, ts = [], 0
    for u in range(n_users):
        for topic in ("football", "cooking"):
            item = f"{topic}-{rng.integers(0, per_topic)}"
            events.append(Event(f"e{len(events)}", "like", f"u{u}", item, ts))
            ts += 1000
    return texts, events


#: adapters alone, trained long enough on the planted pattern to pass the gate
ADAPTERS_ONLY = LearnerConfig(
    window_events=4096,
    min_pairs=16,
    train_items=False,
    use_lora=True,
    lr_lora=1e-2,
    epochs=10,
    max_steps=200,
    batch_size=64,
    drift=None,
)


@pytest.fixture()
def setup(tiny_model: str):
    texts, events = planted()
    enc = TextEncoder(tiny_model, lora_r=8, lora_alpha=16)
    enc.reset_lora()
    ids = sorted(texts)
    table = ItemTable.from_text(ids, enc.encode([texts[i] for i in ids]))
    return texts, events, enc, table


def test_lora_fine_tune_lowers_loss_on_planted_pattern_and_passes_gate(setup) -> None:
    texts, events, enc, table = setup
    rep = Representation(pop_weight=0.0, position_decay=0.5)
    ln = Learner(ADAPTERS_ONLY, rep, table, texts, enc)
    ln.observe_many(events)
    before = {n: p.detach().clone() for n, p in enc.model.named_parameters() if "lora_B" in n}
    res = ln.train("test")
    m = res.metrics
    assert m["loss_after"] < m["loss_before"] - 0.1, m
    assert res.accepted, m
    # engagement here crosses topics: validation keeps the history side out of the
    # adapter's space (LearnerConfig.context_shift), else the update would lose
    assert res.table.context_shift == 0.0
    assert m["val_mrr_candidate"] > m["val_mrr_current"]
    assert res.lora and all(k.startswith("base_model") or "lora_" in k for k in res.lora)
    changed = [n for n, p in enc.model.named_parameters() if "lora_B" in n and not (p == before[n]).all()]
    assert changed, "LoRA weights did not move"
    # residuals were not trained in this configuration
    assert np.all(res.table.residual == 0)


def test_item_residuals_learn_co_engagement_without_lora(setup) -> None:
    texts, events, _, table = setup
    cfg = LearnerConfig(min_pairs=16, use_lora=False, epochs=4, drift=None)
    ln = Learner(cfg, Representation(pop_weight=0.0), table, texts, None)
    ln.observe_many(events)
    res = ln.train("test")
    assert res.metrics["loss_after"] < res.metrics["loss_before"]
    assert res.lora == {} and np.abs(res.table.residual).sum() > 0


def test_gate_rejects_a_useless_candidate(setup) -> None:
    texts, events, enc, table = setup
    # learning rate zero: the candidate equals the current version, so it is not better
    cfg = LearnerConfig(min_pairs=16, lr_lora=0.0, lr_items=0.0, drift=None, epochs=1, cooc_neighbours=0)
    ln = Learner(cfg, Representation(pop_weight=0.0), table, texts, enc)
    ln.observe_many(events)
    res = ln.train("test")
    assert not res.accepted
    assert ln.table is table  # the current version is unchanged


def test_triggers_every_n_and_min_pairs(setup) -> None:
    texts, events, enc, table = setup
    ln = (
        Learner(
            LearnerConfig(train_every=100, min_pairs=50, drift=None), Representation(), table, texts, None
        )
        if False
        else Learner(
            LearnerConfig(train_every=100, min_pairs=50, drift=None, use_lora=False),
            Representation(),
            table,
            texts,
        )
    )
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
        min_pairs=8, train_every=10_000, drift=None, drift_cooldown=300, use_lora=False, item_max_steps=2
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
    assert ln._drift_pending and ln.due() == "novelty"  # 600 events since the training
    ln.observe_many(fresh[100:300])
    ln.train("novelty")
    ln.observe_many(fresh[300:])
    assert ln.due() is None  # the new share is the one it was trained under
    ln.observe_many([Event(f"d{n}", "like", "u1", f"newer{n}", 3000 + n) for n in range(100)])
    assert ln._drift_pending and ln.due() is None  # a further rise, within the cooldown
    # a feed where half of all engagement goes to new items all along: no trigger
    steady = Learner(cfg, Representation(), t, {i: i for i in old})
    evs = [Event(f"s{n}", "like", f"u{n % 30}", f"n{n}" if n % 2 else old[n % 50], n) for n in range(4000)]
    steady.observe_many(evs[:1000])
    steady.train("test")
    steady.observe_many(evs[1000:])
    assert steady.due() is None and not steady._drift_pending
    # off
    cfg_off = LearnerConfig(min_pairs=8, train_every=10_000, drift=None, novelty_jump=0.0, use_lora=False)
    off = Learner(cfg_off, Representation(), t, {i: i for i in old})
    off.observe_many([Event(f"b{n}", "like", "u", old[n % 50], n) for n in range(2000)])
    off._novel_at_train = 0.0
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
    )  # validation: the newest 50 pairs of 250
    ln = Learner(cfg, Representation(), t, texts)
    ev = [Event(f"b{n}", "like", f"u{n % 97}", old[n % 50], n) for n in range(500)]
    ln.observe_many(ev)
    assert ln.due() is None  # no training yet: nothing to rise above
    res = ln.train("test")
    assert res.metrics["new_word_share"] == 1.0 and ln._new_words_at_train == 0.0
    wave = [
        Event(f"w{n}", "like", f"v{n}", new[n % 5] if n % 2 else old[n % 50], 500 + n) for n in range(110)
    ]
    ln.observe_many(wave[:50])
    assert not ln._new_words_pending  # the wave is all in the validation share yet
    ln.observe_many(wave[50:70])
    assert ln._new_words_pending and ln.due() is None  # 0.1 above, but within the gap
    ln.observe_many(wave[70:])
    assert ln.due() == "new_words"  # 110 events on, not 10,000
    res = ln.train(ln.due())
    assert res.metrics["new_word_share"] == 0.3 and ln._new_words_at_train == 0.0  # zorblax learned
    ln.observe_many([Event(f"x{n}", "like", "u1", new[n % 5], 610 + n) for n in range(200)])
    assert ln.due() is None
    # after a round it fired was dropped, the trigger needs twice the jump: 0.2, 40 events
    shy = Learner(cfg, Representation(), t, texts)
    shy.observe_many(ev)
    shy.train("test")
    shy._new_words_misses = 1
    assert shy.new_word_jump() == pytest.approx(0.2)
    shy.observe_many(wave[:70])
    assert not shy._new_words_pending
    shy.observe_many(wave[70:90])
    assert shy._new_words_pending
    # a training that is no adapter round (lora_every) learns nothing
    rounds = Learner(replace(cfg, lora_every=5), Representation(), t, texts)
    rounds.observe_many(ev + wave)
    rounds.train("test")
    assert rounds._new_words_at_train == 1.0
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
    assert tail.due() is None and not tail._new_words_pending
    # off
    off = Learner(replace(cfg, new_word_jump=0.0), Representation(), t, texts)
    off.observe_many(ev)
    off.train("test")
    off.observe_many(wave)
    assert off.due() is None and off.train("test").metrics["new_word_share"] is None


def test_spread_validation_trains_on_half_of_the_newest_pairs() -> None:
    """``val_spread`` 2: the validation pairs are every second pair of the newest 40 % of
    the window, the others train. An item engaged only in the newest pairs (a name that
    appeared since the last round) is then trained on before the gate; with 1 (the newest
    20 % held out whole) it is not."""
    ids = [f"i{j}" for j in range(40)] + ["late"]
    t = ItemTable.from_text(ids, np.random.default_rng(0).normal(size=(41, 8)).astype(np.float32))
    rng = np.random.default_rng(1)
    ev = [Event(f"e{n}", "like", f"u{n}", ids[rng.integers(0, 40)], n) for n in range(900)]
    ev += [Event(f"l{n}", "like", f"v{n}", "late", 900 + n) for n in range(100)]  # the newest 10 %
    bias = {}
    for k in (1, 2):
        cfg = LearnerConfig(min_pairs=8, drift=None, use_lora=False, val_spread=k, cooc_neighbours=0, seed=0)
        ln = Learner(cfg, Representation(pop_weight=0.0), t, {i: i for i in ids})
        ln.observe_many(ev)
        res = ln.train("test")
        assert (res.metrics["train_pairs"], res.metrics["val_pairs"]) == (800, 200)
        bias[k] = float(res.table.bias[t.index("late")])  # the candidate's, whether served or not
    assert bias[2] > 0.0 > bias[1], bias  # a positive target vs only ever a negative


def test_window_bounds_by_count_and_age() -> None:
    w: RollingWindow[int] = RollingWindow(max_events=5, max_age_ms=50)
    for t in range(10):
        w.add(t, t)
    assert [x.value for x in w] == [5, 6, 7, 8, 9]
    w.add(100, 100)
    assert [x.value for x in w] == [100]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(LearnerConfigError, match="val_share"):
        LearnerConfig(val_share=1.5)
    with pytest.raises(LearnerConfigError, match="nothing would be learned"):
        LearnerConfig(use_lora=False, train_items=False)


def test_a_harmful_adapter_update_is_dropped_and_item_parts_still_ship(setup) -> None:
    texts, events, enc, table = setup
    before = enc.lora_state()
    # a destructive adapter learning rate: the item parts alone must win the comparison
    cfg = LearnerConfig(min_pairs=16, lr_lora=3.0, lr_items=0.01, epochs=3, drift=None, lora_every=1)
    ln = Learner(cfg, Representation(pop_weight=0.0), table, texts, enc)
    ln.observe_many(events)
    res = ln.train("test")
    assert res.metrics["adapter_update"] == "dropped", res.metrics
    assert all(np.array_equal(res.lora[k].numpy(), before[k].numpy()) for k in before)
    assert all(np.array_equal(v.numpy(), before[k].numpy()) for k, v in enc.lora_state().items())
    assert np.array_equal(res.table.text, table.text)  # serving adapter's text vectors
    assert np.abs(res.table.residual).sum() > 0  # the item parts did train


def test_adapters_train_on_every_nth_training_and_on_drift(setup) -> None:
    texts, events, enc, table = setup
    cfg = LearnerConfig(min_pairs=16, lora_every=2, epochs=1, max_steps=2, drift=None, lora_catchup=0)
    ln = Learner(cfg, Representation(pop_weight=0.0), table, texts, enc)
    ln.observe_many(events)
    first = ln.train("every_n").metrics
    assert first["adapter_update"] == "skipped" and first["lora_steps"] == 0
    assert first["item_steps"] > 0
    second = ln.train("every_n").metrics
    assert second["adapter_update"] in ("kept", "dropped") and second["lora_steps"] == 2
    third = ln.train("drift").metrics  # a drift trigger always refits the adapters
    assert third["lora_steps"] == 2
    ln.train("every_n")  # the 4th: adapters by lora_every
    fifth = ln.train("new_words").metrics  # the 5th, off the schedule: a wave of new words refits them too
    assert ln.trainings == 5 and fifth["lora_steps"] == 2 and fifth["adapter_update"] in ("kept", "dropped")


def test_the_new_words_trigger_backs_off_after_rounds_the_gate_dropped(setup) -> None:
    """Each round the new-words trigger fired that the gate dropped doubles the jump it
    needs, up to ``new_word_backoff`` times; a dropped scheduled round does not count, and
    a kept adapter update sets it back."""
    texts, events, enc, table = setup
    rep = Representation(pop_weight=0.0, position_decay=0.5)
    good = replace(ADAPTERS_ONLY, new_word_backoff=2)  # keeps its update (the first test)
    # a destructive adapter learning rate (as in the test above): the gate drops every update
    bad = LearnerConfig(
        min_pairs=16, lr_lora=3.0, lr_items=0.01, epochs=3, drift=None, lora_every=1, new_word_backoff=2
    )
    ln = Learner(bad, rep, table, texts, enc)
    ln.observe_many(events)
    jumps = []
    for reason in ("new_words", "every_n", "new_words", "new_words"):
        m = ln.train(reason).metrics
        assert m["adapter_update"] == "dropped", m
        jumps.append(m["new_word_jump"])
    assert jumps == [0.2, 0.2, 0.4, 0.4]
    ln.config = good
    m = ln.train("every_n").metrics
    assert m["adapter_update"] == "kept" and m["new_word_jump"] == 0.1, m


def test_co_engagement_neighbours_ship_with_a_weight_picked_on_validation(setup, tmp_path) -> None:
    texts, events, _, table = setup
    # nothing trainable moves (lr 0): only the mined co-engagement can lift validation
    cfg = LearnerConfig(min_pairs=16, use_lora=False, lr_items=0.0, epochs=1, drift=None)
    ln = Learner(cfg, Representation(pop_weight=0.0), table, texts, None)
    ln.observe_many(events)
    res = ln.train("test")
    m = res.metrics
    assert m["cooc_weight"] > 0 and res.accepted, m
    assert m["val_hr_candidate"] > m["val_hr_items_only"]
    t = res.table
    assert t.nbr_idx is not None and t.nbr_idx.shape == (len(t.item_ids), cfg.cooc_neighbours)
    # it travels in the artifact
    rec = write_artifact(str(tmp_path), "v1", {}, None, t, "tiny", res.window, m)
    back = load_artifact(rec).items
    assert back.cooc_weight == t.cooc_weight
    assert np.array_equal(back.nbr_idx, t.nbr_idx) and np.array_equal(back.nbr_w, t.nbr_w)
    # the scorer uses it: after a football item, the neighbours (cooking items) rank first
    from driftrec.scorer import Scorer, ScorerConfig, ServingModel

    rep0 = Representation(pop_weight=0.0)
    plain = Scorer(ScorerConfig(top_k=10), ServingModel("v0", t.with_cooc(None, None, 0.0), rep0))
    mined = Scorer(ScorerConfig(top_k=10), ServingModel("v1", t, rep0))
    ev = [Event("x1", "like", "new-user", "football-0", events[-1].ts + 1)]
    share = [
        sum(r["item_id"].startswith("cooking") for r in s.learn_many(ev, {}).recs[0]["items"])
        for s in (plain, mined)
    ]
    assert share[1] > share[0], share
    off = LearnerConfig(min_pairs=16, use_lora=False, lr_items=0.0, epochs=1, drift=None, cooc_neighbours=0)
    ln0 = Learner(off, Representation(pop_weight=0.0), table, texts, None)
    ln0.observe_many(events)
    assert ln0.train("test").metrics["cooc_weight"] == 0.0


def test_adapter_gate_wants_a_win_beyond_noise() -> None:
    from driftrec.learner.core import _paired_gain

    rng = np.random.default_rng(0)
    base = (rng.random(800) < 0.2).astype(float)
    noisy = base.copy()
    noisy[np.flatnonzero(base == 0)[:20]] = 1.0  # 20 pairs gained, 16 lost: +4 of 800
    noisy[np.flatnonzero(base == 1)[:16]] = 0.0
    rr = np.zeros(800)
    assert noisy.mean() > base.mean()
    assert not _paired_gain((noisy, rr), (base, rr), 1.64)  # within noise: not taken
    assert _paired_gain((noisy, rr), (base, rr), 0.0)  # z = 0: any win
    clear = base.copy()
    clear[np.flatnonzero(base == 0)[:60]] = 1.0  # 60 more hits, none lost
    assert _paired_gain((clear, rr), (base, rr), 1.64)
    assert not _paired_gain((base, rr), (clear, rr), 1.64)
    # equal HR on every pair: reciprocal ranks decide, by the same rule
    better_rr = rng.random(800) * 0.1 + 0.5
    assert _paired_gain((base, better_rr), (base, better_rr - 0.05), 1.64)
    assert not _paired_gain((base, rr), (base, rr), 0.0)  # no difference at all: no win
