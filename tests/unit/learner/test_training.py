"""A round's optimisation (:mod:`driftrec.learner.training`): the item stage, the adapter
stage and the catch-up share one generator of random draws and one step count."""

from __future__ import annotations

import numpy as np
import torch

from driftrec.learner import Learner, LearnerConfig
from driftrec.learner.pairs import Pair, pair_tensors
from driftrec.learner.training import Round, RoundLog
from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.stream import Event

SEC = 1000.0


def _round(cfg: LearnerConfig, n_pairs: int = 10, seed: int = 0, encoder_dim: int = 4) -> Round:
    """A round over 6 items where every pair's history is item ``k`` and its target ``k + 3``."""
    ids = [f"i{j}" for j in range(6)]
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(6, encoder_dim)).astype(np.float32)
    cur = ItemTable.from_text(ids, V / np.linalg.norm(V, axis=1, keepdims=True))
    pairs = [Pair((ids[k % 3],), np.ones(1, np.float32), ids[k % 3 + 3], k) for k in range(n_pairs)]
    idx, w, tgt = pair_tensors(pairs, cur)
    ts = torch.tensor([p.ts for p in pairs], dtype=torch.float64)
    return Round(cfg, 0.1, cur, (idx, w, tgt, ts), torch.zeros(6), None, np.zeros(0, np.float32), rng)


def test_batches_draw_one_order_per_epoch_and_stop_at_the_cap() -> None:
    run = _round(LearnerConfig(batch_size=4, epochs=2), n_pairs=10)
    want = np.random.default_rng(0)
    want.normal(size=(6, 4))  # what _round drew for the vectors
    got = [b.tolist() for b in run.batches(cap=100)]
    orders = [want.permutation(10), want.permutation(10)]
    assert got == [o[s : s + 4].tolist() for o in orders for s in (0, 4, 8)]
    assert len(list(_round(LearnerConfig(batch_size=4, epochs=2)).batches(cap=4))) == 4


def test_the_item_stage_learns_the_planted_pairs_and_freezes_the_item_parts() -> None:
    steps = []
    run = _round(LearnerConfig(batch_size=8, epochs=50, item_max_steps=60, lr_items=0.05), n_pairs=30)
    run.progress = steps.append
    before = run.loss(run.cur)
    n = run.item_stage()
    after = run.items_table()
    assert n == 60 == run.steps and steps == list(range(1, 61))
    assert run.loss(after) < before - 0.5
    assert not any(p.requires_grad for p in (run.R, run.bias, run.C))
    assert np.array_equal(after.text, run.cur.text) and np.abs(after.residual).max() > 0


def test_off_the_item_stage_takes_no_step() -> None:
    run = _round(LearnerConfig(train_items=False))
    assert run.item_stage() == 0 and run.steps == 0
    assert np.array_equal(run.items_table().residual, run.cur.residual)


def test_the_adapter_stage_moves_the_adapters_and_leaves_the_encoder_in_eval_mode(tiny_model: str) -> None:
    enc = TextEncoder(tiny_model, lora_r=2)
    enc.reset_lora()
    ids = [f"i{j}" for j in range(6)]
    texts = [
        "goal match team",
        "pasta sauce oven",
        "guitar song band",
        "beach flight hotel",
        "goal oven",
        "band hotel",
    ]
    cur = ItemTable.from_text(ids, enc.encode(texts))
    pairs = [Pair((ids[k % 3],), np.ones(1, np.float32), ids[k % 3 + 3], k) for k in range(12)]
    idx, w, tgt = pair_tensors(pairs, cur)
    ts = torch.tensor([p.ts for p in pairs], dtype=torch.float64)
    cfg = LearnerConfig(batch_size=4, max_steps=3, lora_epochs=1, lr_lora=0.05, grad_items=2, lora_catchup=1)
    run = Round(
        cfg,
        0.1,
        cur,
        (idx, w, tgt, ts),
        torch.zeros(6),
        None,
        np.zeros(0, np.float32),
        np.random.default_rng(0),
    )
    before = {k: v.clone() for k, v in enc.lora_state().items()}
    assert run.adapter_stage(enc, texts) == 3 and run.steps == 3
    assert not enc.model.training
    assert any(not torch.equal(before[k], v) for k, v in enc.lora_state().items())
    # the catch-up: one pass over 6 validation pairs in batches of 4 (4 + 2)
    v = pairs[:6]
    assert run.catch_up((*pair_tensors(v, cur), torch.tensor([p.ts for p in v], dtype=torch.float64))) == 2
    assert run.steps == 5 and not enc.model.training


def test_the_round_log_reports_its_metrics_rounded() -> None:
    log = RoundLog("drift", 10, 8, 2, "cpu", use_lora=False, loss_before=1.234567, train_s=0.12345)
    log.m_cur = log.m_new = log.m_items = {"hr": 0.1234567, "mrr": 0.5}
    m = log.metrics(steps=7)
    assert m["reason"] == "drift" and m["steps"] == 7 and m["loss_before"] == 1.23457
    assert m["train_s"] == 0.123 and m["val_hr_current"] == 0.12346 and m["val_hr_lora"] is None
    assert list(m)[:3] == ["reason", "new_word_share", "new_word_jump"] and list(m)[-1] == "accepted"


def test_items_published_after_a_pair_are_no_negatives_of_it() -> None:
    """Training ranks each pair's target against the items it could have been shown. A post
    published after every training pair was a negative of all of them: each step pushed
    its residual away from the users and its bias down (Adam moves even a tiny gradient at
    full step), and it was served that way exactly when the next events go to it."""
    rng = np.random.default_rng(0)
    old = [f"o{j}" for j in range(60)]
    late = [f"n{j}" for j in range(5)]
    t0 = int(10 * 24 * 3600 * SEC)
    pub = {i: 0 for i in old}
    n = 400
    pub.update({i: t0 + n * 1000 + 10 for i in late})  # after the last event
    events = [
        Event(f"e{k}", "like", f"u{k % 40}", old[int(rng.integers(0, 30))], t0 + k * 1000) for k in range(n)
    ]
    ids = old + late
    V = rng.normal(size=(len(ids), 8)).astype(np.float32)
    table = ItemTable.from_text(ids, V / np.linalg.norm(V, axis=1, keepdims=True))
    cfg = LearnerConfig(min_pairs=16, use_lora=False, drift=None, cooc_neighbours=0, age_weights=())
    ln = Learner(cfg, Representation(pop_weight=0.0), table, {i: i for i in ids}, None, pub)
    ln.observe_many(events)
    res = ln.train("test")
    rows = [res.table.index(i) for i in late]
    assert not res.table.residual[rows].any() and not res.table.bias[rows].any()
    # the old items nobody engaged were negatives all along: they moved
    never = [res.table.index(i) for i in old[30:]]
    assert np.abs(res.table.residual[never]).max() > 0.01
