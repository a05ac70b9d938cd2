"""Builds the parts from settings: encoder, base item table (cached on disk), scorer,
swap manager and learner. Shared by the demo, the eval harness, the benchmarks and the
services."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from driftrec.learner import Learner, LearnerConfig
from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.scorer import Scorer, ScorerConfig, ServingModel, SwapManager
from driftrec.stream import Item

log = logging.getLogger("driftrec")

BASE_VERSION = "base"


def load_encoder(
    model: str | None, lora_r: int = 8, max_len: int = 32, device: str = "auto", seed: int = 0
) -> TextEncoder:
    return TextEncoder(model, max_len=max_len, lora_r=lora_r, device=device, seed=seed)


def base_table(
    encoder: TextEncoder,
    items: Sequence[Item],
    cache_dir: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ItemTable:
    """Text vectors of the catalog under the base encoder (no adapter), cached on disk by
    (model, texts) so that a second run does not re-encode."""
    ids = [it.item_id for it in items]
    texts = [it.text for it in items]
    key = hashlib.sha256()
    key.update(f"{encoder.path}|{encoder.max_len}|{encoder.dim}".encode())
    for i, t in zip(ids, texts):
        key.update(f"{i}\x00{t}\x01".encode())
    path = Path(cache_dir) / "vectors" / f"{key.hexdigest()[:24]}.npy" if cache_dir else None
    if path is not None and path.exists():
        vec = np.load(path)
        if vec.shape == (len(ids), encoder.dim):
            return ItemTable.from_text(ids, vec)
    if encoder.lora_config:
        encoder.reset_lora()
    vec = encoder.encode(texts, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.npy")
        np.save(tmp, vec)
        os.replace(tmp, path)
    return ItemTable.from_text(ids, vec)


def make_scorer(
    encoder: TextEncoder | None,
    table: ItemTable,
    rep: Representation,
    config: ScorerConfig,
    standby: TextEncoder | None = None,
    texts: dict[str, str] | None = None,
    item_pop: dict[str, float] | None = None,
    background: bool = True,
    item_ts: Mapping[str, int] | None = None,
) -> tuple[Scorer, SwapManager]:
    base = encoder.base_model if encoder is not None else "none"
    model = ServingModel(BASE_VERSION, table, rep, encoder, {"base_model": base, "version": BASE_VERSION})
    scorer = Scorer(config, model, item_pop, item_ts)
    if not scorer.ranking_ready():
        log.info("compiling the scorer's ranking pass (once per machine, ~15 s; cached after)")
    scorer.wait_ready()  # before the first batch, not during it
    return scorer, SwapManager(scorer, texts or {}, standby, background)


def make_learner(
    config: LearnerConfig,
    rep: Representation,
    table: ItemTable,
    texts: dict[str, str],
    encoder: TextEncoder | None,
    item_ts: Mapping[str, int] | None = None,
) -> Learner:
    return Learner(config, rep, table, texts, encoder, item_ts)


def publication_times(items: Sequence[Item]) -> dict[str, int] | None:
    """Item id -> publication ``ts`` where some item is published after another (then an
    item is a candidate only from its ts on); ``None`` where all share one time (nothing
    to mask, no age to learn from)."""
    ts = {it.item_id: it.ts for it in items}
    return ts if len(set(ts.values())) > 1 else None
