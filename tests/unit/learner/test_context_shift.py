"""``LearnerConfig.context_shift``: a version's context vectors move with its text vectors,
once, whatever happened before (no shift counted twice; new and re-encoded items too)."""

from __future__ import annotations

import numpy as np
import torch

from driftrec.learner import Learner, LearnerConfig
from driftrec.learner.core import TrainResult
from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.stream import Item

TEXTS = {
    f"i{j}": t
    for j, t in enumerate(["goal match team", "pasta sauce oven", "guitar song band", "beach flight hotel"])
}


def _nudge(enc: TextEncoder, by: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in enc.model.named_parameters():
            if "lora_" in n:
                p.add_(by * torch.randn(p.shape, generator=g))


def _version(ln: Learner) -> ItemTable:
    ids = ln.table.item_ids
    table = ln._encode_candidate(ln.table, ln.table, [ln.texts[i] for i in ids])
    ln.accept(TrainResult(True, table, {}, {}, {"to_ts": 0}, "test"))
    return table


def test_context_vectors_follow_the_text_under_the_adapter(tiny_model: str) -> None:
    enc = TextEncoder(tiny_model, lora_r=2)
    ids = sorted(TEXTS)
    base = {i: v for i, v in zip(ids, enc.encode([TEXTS[i] for i in ids], base=True))}
    table = ItemTable.from_text(ids, np.stack([base[i] for i in ids]))
    ctx0 = table.context.copy()
    ln = Learner(LearnerConfig(context_shift=1.0), Representation(), table, TEXTS, enc)

    _nudge(enc, 0.2, 0)  # a first kept adapter
    t1 = _version(ln)
    assert t1.context_shift == 1.0
    assert np.abs(t1.text - table.text).max() > 1e-3  # the adapter moved the texts
    assert np.allclose(t1.context - ctx0, t1.text - table.text, atol=1e-5)

    ln.add_items([Item("new", "goal team song", 5)])  # arrives with its shift
    new_base = enc.encode(["goal team song"], base=True)[0]
    j = ln.table.index("new")
    assert np.allclose(ln.table.context[j], ln.table.text[j], atol=1e-5)
    assert np.abs(ln.table.text[j] - new_base).max() > 1e-3

    _nudge(enc, 0.2, 1)  # a second one: every context holds the newest shift, once
    t2 = _version(ln)
    for i in ids:
        j = t2.index(i)
        assert np.allclose(t2.context[j] - ctx0[j], t2.text[j] - base[i], atol=1e-5)
    j = t2.index("new")
    assert np.allclose(t2.context[j], t2.text[j], atol=1e-5)

    # the scorer re-encoding a stale row moves its context with its text
    moved = t2.with_text(np.array([0]), t2.text[[0]] + 0.5)
    assert np.allclose(moved.context[0] - t2.context[0], 0.5, atol=1e-5)


def test_off_the_context_side_stays_in_the_base_space(tiny_model: str) -> None:
    enc = TextEncoder(tiny_model, lora_r=2)
    ids = sorted(TEXTS)
    table = ItemTable.from_text(ids, enc.encode([TEXTS[i] for i in ids], base=True))
    ln = Learner(LearnerConfig(context_shift=0.0), Representation(), table, TEXTS, enc)
    _nudge(enc, 0.2, 0)
    t1 = _version(ln)
    assert np.abs(t1.text - table.text).max() > 1e-3 and t1.context_shift == 0.0
    assert np.array_equal(t1.context, table.context)
    assert np.array_equal(t1.with_text(np.array([0]), t1.text[[0]] + 0.5).context, t1.context)


def test_the_shift_travels_with_the_version(tmp_path) -> None:
    import pytest

    from driftrec.model import ArtifactError, load_artifact, write_artifact

    t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
    t = ItemTable(t.item_ids, t.text, t.residual, t.bias, t.context, context_shift=0.5)
    rec = write_artifact(tmp_path, "v1", {}, None, t, "base", {"from_ts": 0, "to_ts": 0, "n_events": 0}, {})
    back = load_artifact(rec).items
    assert back.context_shift == 0.5
    # a scorer adding an item to the served version: its context half-way to its text
    added = back.with_items(["c"], np.array([[1.0, 1.0]], np.float32), np.array([[1.0, 0.0]], np.float32))
    assert np.allclose(added.context[2], [1.0, 0.5])
    with pytest.raises(ArtifactError, match="context_shift"):
        ItemTable(t.item_ids, t.text, t.residual, t.bias, t.context, context_shift=float("nan"))


def test_an_edited_item_keeps_what_was_learned_and_takes_its_new_texts_shift(tiny_model: str) -> None:
    """An edited post's context is what was learned plus the shift of its *new* text: the
    next round takes out exactly what was put in."""
    enc = TextEncoder(tiny_model, lora_r=2)
    ids = sorted(TEXTS)
    table = ItemTable.from_text(ids, enc.encode([TEXTS[i] for i in ids], base=True))
    table = ItemTable(table.item_ids, table.text, table.residual, table.bias, table.context + 0.25)
    ln = Learner(LearnerConfig(context_shift=1.0), Representation(), table, dict(TEXTS), enc)
    _nudge(enc, 0.5, 0)
    t1 = _version(ln)
    j = t1.index("i0")
    learned = t1.context[j] - (t1.text[j] - enc.encode([TEXTS["i0"]], base=True)[0])
    assert np.allclose(learned, table.context[j], atol=1e-5)

    ln.add_items([Item("i0", "guitar song band beach", 7)])  # the post is edited
    t2 = ln.table
    new_base = enc.encode(["guitar song band beach"], base=True)[0]
    assert np.abs(t2.text[j] - t1.text[j]).max() > 1e-2  # its text vector moved
    assert np.allclose(t2.context[j] - (t2.text[j] - new_base), learned, atol=1e-5)
    assert np.allclose(ln._base_rows(["i0"])[0], new_base, atol=1e-6)  # the cache holds the new text's
    k = t2.index("i1")  # the other rows are untouched
    assert np.array_equal(t2.context[k], t1.context[k])


def test_training_learns_from_contexts_without_the_shift(tiny_model: str) -> None:
    """The shift is how a version is served, not what the next round trains from: the
    item parts a shifted learner trains are those of the same learner without the shift."""
    from dataclasses import replace

    from driftrec.stream import Event
    from driftrec.stream.synthetic import VOCAB

    rng = np.random.default_rng(0)
    topics = ("football", "cooking", "music", "travel")
    texts = {f"{t}-{j}": " ".join(rng.choice(VOCAB[t], 4)) for t in topics for j in range(12)}
    events, ts = [], 0
    for u in range(120):
        for t in ("football", "cooking"):
            events.append(Event(f"e{len(events)}", "like", f"u{u}", f"{t}-{rng.integers(0, 12)}", ts))
            ts += 1000
    enc = TextEncoder(tiny_model, lora_r=2)
    ids = sorted(texts)
    base = enc.encode([texts[i] for i in ids], base=True)
    cfg = LearnerConfig(
        context_shift=1.0,
        min_pairs=16,
        drift=None,
        lora_every=1000,
        cooc_neighbours=0,
        epochs=3,
        lr_items=0.05,
    )
    shifted = Learner(cfg, Representation(pop_weight=0.0), ItemTable.from_text(ids, base), texts, enc)
    _nudge(enc, 0.5, 0)
    served = _version(shifted)
    assert np.abs(served.context - base).max() > 0.05  # the contexts carry a shift
    plain_table = replace(served, context=served.context - (served.text - base), context_shift=0.0)
    plain = Learner(replace(cfg, context_shift=0.0), Representation(pop_weight=0.0), plain_table, texts, enc)
    shifted.observe_many(events)
    plain.observe_many(events)
    a, b = shifted.train("test"), plain.train("test")
    assert a.metrics["adapter_update"] == b.metrics["adapter_update"] == "skipped"
    assert a.metrics["item_steps"] > 0 and np.abs(b.table.residual).max() > 1e-3
    assert np.allclose(a.table.residual, b.table.residual, atol=1e-5)
    assert np.allclose(a.table.context - (a.table.text - base), b.table.context, atol=1e-5)
    assert a.table.context_shift == 1.0  # and it is served shifted again
