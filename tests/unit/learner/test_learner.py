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
    # learning rate zero and no blend to choose: the candidate equals the current version,
    # so it is not better (text similarity ranks this pattern below chance: the blend would
    # rightly turn the text term off, see test_blend.py)
    cfg = LearnerConfig(
        min_pairs=16, lr_lora=0.0, lr_items=0.0, drift=None, epochs=1, cooc_neighbours=0, text_weights=()
    )
    ln = Learner(cfg, Representation(pop_weight=0.0), table, texts, enc)
    ln.observe_many(events)
    res = ln.train("test")
    assert not res.accepted
    assert ln.table is table  # the current version is unchanged


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
    # nothing trainable moves (lr 0) and the blend stays: only the mined co-engagement can
    # lift validation
    cfg = LearnerConfig(min_pairs=16, use_lora=False, lr_items=0.0, epochs=1, drift=None, text_weights=())
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
