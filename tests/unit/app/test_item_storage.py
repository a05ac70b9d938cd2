"""SCORER_ITEM_STORAGE: how the served item rows are held (float32, float16, or auto:
float16 from ``exact_below`` items on). A catalog below that is served exactly as with
float32: the very table, the same rankings."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from driftrec.app.settings import ConfigError, Settings
from driftrec.app.system import SystemSpec, build_scorer, build_swaps
from driftrec.model import ItemTable, Representation, write_artifact
from driftrec.scorer import ScorerConfig, ScorerConfigError
from driftrec.stream import Event


def test_the_setting_parses_and_reaches_the_scorer_config() -> None:
    assert Settings.from_env({}).scorer.item_storage == "auto"
    st = Settings.from_env({"SCORER_ITEM_STORAGE": "float16"})
    assert SystemSpec.from_settings(st).scorer.item_storage == "float16"
    with pytest.raises(ConfigError) as e:
        Settings.from_env({"SCORER_ITEM_STORAGE": "half"})
    assert (
        str(e.value) == "SCORER_ITEM_STORAGE='half': not one of the choices; allowed: auto, float32, float16"
    )
    with pytest.raises(ScorerConfigError, match="SCORER_ITEM_STORAGE"):
        ScorerConfig(item_storage="bfloat16")


def _table(n: int, seed: int = 0) -> ItemTable:
    x = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return ItemTable.from_text([f"i{j}" for j in range(n)], x / np.linalg.norm(x, axis=1, keepdims=True))


def _events(n: int, n_items: int) -> list[Event]:
    rng = np.random.default_rng(3)
    return [
        Event(f"e{k}", "like", f"u{rng.integers(30)}", f"i{rng.integers(n_items)}", 1000 + k)
        for k in range(n)
    ]


def _serve(config: ScorerConfig, table: ItemTable, store: str, swap: bool) -> tuple[list, str, str]:
    """Rankings of 30 users after 300 events (a version swapped in half way with ``swap``),
    and the dtypes of the base and the swapped-in tables."""
    sc = build_scorer(config, table, Representation(), base_model="t")
    base_dtype = sc.model.table.text.dtype.name
    mgr = build_swaps(sc, background=False)
    users: dict = {}
    evs = _events(300, len(table.item_ids))
    users.update(sc.learn_many(evs[:150], users).users)
    if swap:
        r = np.random.default_rng(5)
        n = len(table.item_ids)
        v1 = ItemTable(
            list(table.item_ids),
            table.text,
            0.05 * r.standard_normal((n, 8)).astype(np.float32),
            0.1 * r.standard_normal(n).astype(np.float32),
        )
        rec = write_artifact(store, "v1", {}, None, v1, "t", {"from_ts": 0, "to_ts": 0, "n_events": 0}, {})
        mgr.submit(rec)
        assert mgr.maybe_swap() is not None
    users.update(sc.learn_many(evs[150:], users).users)
    ranks = sc.rank_many([users[u] for u in sorted(users)], 2000, 10)
    return ranks, base_dtype, sc.model.table.text.dtype.name


def test_auto_serves_a_small_catalog_as_float32(tmp_path) -> None:
    t = _table(400)
    sc = build_scorer(ScorerConfig(), t, Representation(), base_model="t")
    assert sc.model.table is t  # not a copy: the very rows
    for swap in (False, True):
        auto = _serve(ScorerConfig(), t, str(tmp_path / f"a{swap}"), swap)
        f32 = _serve(ScorerConfig(item_storage="float32"), t, str(tmp_path / f"b{swap}"), swap)
        assert auto[1:] == f32[1:] == ("float32", "float32")
        assert auto[0] == f32[0]  # the same items, the same scores


def test_auto_stores_float16_from_exact_below_items_on(tmp_path) -> None:
    t = _table(400)
    cfg = ScorerConfig(item_storage="auto", exact_below=400, candidates="exact")
    ranks, base, swapped = _serve(cfg, t, str(tmp_path), True)
    assert (base, swapped) == ("float16", "float16")
    ref, *_ = _serve(replace(cfg, item_storage="float16"), t, str(tmp_path / "f16"), True)
    assert ranks == ref
