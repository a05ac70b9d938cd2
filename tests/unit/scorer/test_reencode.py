"""Background re-encoding after a swap (issue 14, item 6): the scorer serves the previous
version's vectors for stale rows until their re-encoded block is swapped in, newest and
most engaged first, never a full-catalog pass on the serving thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftrec.model import (
    ItemTable,
    Representation,
    TextEncoder,
    load_artifact,
    make_tiny_model,
    priority_order,
    write_artifact,
)
from driftrec.scorer import Scorer, ScorerConfig, ServingModel, SwapManager
from driftrec.stream import Event

WORDS = [f"w{j}" for j in range(40)]
IDS = [f"i{j}" for j in range(40)]
TEXTS = {i: f"{w} {WORDS[(k + 7) % 40]}" for k, (i, w) in enumerate(zip(IDS, WORDS))}
PUB = {i: 1_000 * k for k, i in enumerate(IDS)}  # i39 is the newest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), WORDS)


def _trained_lora(enc: TextEncoder, seed: int = 1) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(t.shape, generator=g) * 0.5 for n, t in enc.lora_state().items()}


def _setup(model_dir: str, tmp_path: Path, stale_rows: np.ndarray, background: bool = True):
    serving = TextEncoder(model_dir, lora_r=2)
    standby = TextEncoder(model_dir, lora_r=2)
    texts = [TEXTS[i] for i in IDS]
    table = ItemTable.from_text(IDS, serving.encode(texts))
    scorer = Scorer(
        ScorerConfig(top_k=5),
        ServingModel("base", table, Representation(), serving, {"base_model": serving.base_model}),
        item_ts=PUB,
    )
    mgr = SwapManager(scorer, TEXTS, standby, background=background, store=str(tmp_path))
    mgr.reencode_chunk, mgr.reencode_patch = 4, 8
    lora = _trained_lora(standby)
    standby.load_lora_state(lora)
    new_text = standby.encode(texts)
    standby.reset_lora()
    cand_text = new_text.copy()
    stale = np.zeros(len(IDS), bool)
    stale[stale_rows] = True
    cand_text[stale] = table.text[stale]  # the learner left these with the previous vectors
    cand = ItemTable(IDS, cand_text, table.residual, table.bias, table.context, stale=stale)
    rec = write_artifact(
        tmp_path,
        "v1",
        lora,
        serving.lora_config,
        cand,
        serving.base_model,
        {"from_ts": 0, "to_ts": 1, "n_events": 2},
        {},
    )
    return scorer, mgr, rec, table, new_text, stale


def test_stale_mask_round_trips_through_the_artifact(model_dir: str, tmp_path: Path) -> None:
    _, _, rec, _, _, stale = _setup(model_dir, tmp_path, np.arange(10, 40))
    assert np.array_equal(load_artifact(rec, store=str(tmp_path)).items.stale, stale)


def test_old_vectors_served_until_reencoded_in_priority_order(model_dir: str, tmp_path: Path) -> None:
    scorer, mgr, rec, old, new_text, stale = _setup(model_dir, tmp_path, np.arange(10, 40))
    blocks: list[np.ndarray] = []
    mgr.on_reencode = lambda v, done, left: blocks.append(
        scorer.model.table.stale.copy() if scorer.model.table.stale is not None else np.zeros(len(IDS), bool)
    )
    mgr.submit(rec)
    mgr.wait()
    assert mgr.maybe_swap() is not None
    t = scorer.model.table
    # at the swap: the learner's rows are new, the stale ones still the previous version's
    assert np.allclose(t.text[:10], new_text[:10], atol=1e-6)
    assert np.array_equal(t.text[10:], old.text[10:])
    assert t.stale is not None and t.stale[10:].all()
    assert mgr.wait_reencoded(timeout=60)
    t = scorer.model.table
    assert t.stale is None and scorer.version == "v1"
    assert np.allclose(t.text, new_text, atol=1e-5)
    # blocks came newest first (publication time is the priority here; nothing engaged)
    assert len(blocks) >= 3
    first_done = np.flatnonzero(~blocks[0][10:]) + 10
    assert first_done.min() > np.flatnonzero(blocks[0][10:]).max() + 10  # the newest rows went first
    assert mgr.reencoded is not None and mgr.reencoded[1] == 30


def test_serving_goes_on_during_reencoding(model_dir: str, tmp_path: Path) -> None:
    scorer, mgr, rec, *_ = _setup(model_dir, tmp_path, np.arange(5, 40))
    mgr.submit(rec)
    mgr.wait()
    mgr.maybe_swap()
    users: dict = {}
    n = 0
    while scorer.model.table.stale is not None and n < 5000:
        r = scorer.learn_many([Event(f"e{n}", "click", f"u{n % 7}", IDS[n % 40], 40_000 + n)], users)
        users.update(r.users)
        mgr.maybe_swap()
        n += 1
    assert scorer.model.table.stale is None and len(users) == 7 and r.version == "v1"


def test_new_version_stops_the_previous_reencoding(model_dir: str, tmp_path: Path) -> None:
    scorer, mgr, rec, old, *_ = _setup(model_dir, tmp_path, np.arange(10, 40))
    mgr.submit(rec)
    mgr.wait()
    mgr.maybe_swap()
    base = {"version": "base", "uri": "base:"}
    mgr.submit(base)
    mgr.wait()
    assert mgr.maybe_swap().version == "base"
    for _ in range(20):
        mgr.maybe_swap()
    assert scorer.model.table is old or scorer.model.table.stale is None


def test_foreground_mode_encodes_stale_rows_before_the_swap(model_dir: str, tmp_path: Path) -> None:
    scorer, mgr, rec, _, new_text, _ = _setup(model_dir, tmp_path, np.arange(10, 40), background=False)
    mgr.submit(rec)
    mgr.maybe_swap()
    assert scorer.model.table.stale is None
    assert np.allclose(scorer.model.table.text, new_text, atol=1e-5)


def test_priority_interleaves_newest_and_most_engaged() -> None:
    pub = np.arange(6, dtype=np.float64)
    pop = np.array([9.0, 8.0, -np.inf, -np.inf, -np.inf, -np.inf])
    assert priority_order(pub, pop, 6).tolist() == [5, 0, 4, 1, 3, 2]
