from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from driftrec.model import (
    ArtifactError,
    ItemTable,
    Representation,
    TextEncoder,
    load_artifact,
    write_artifact,
)
from driftrec.scorer import Scorer, ScorerConfig, ServingModel, SwapManager
from driftrec.state import MemoryStateStore, StateWrite
from driftrec.stream import Event

IDS = [f"i{j}" for j in range(20)]


def base_table(d: int = 8, seed: int = 0) -> ItemTable:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(len(IDS), d)).astype(np.float32)
    return ItemTable.from_text(IDS, v / np.linalg.norm(v, axis=1, keepdims=True))


def publish(store: Path, version: str, seed: int) -> dict:
    t = base_table(seed=seed)
    t = ItemTable(t.item_ids, t.text, t.residual + 0.1, t.bias + 0.01, t.context)
    return write_artifact(
        store,
        version,
        {},
        None,
        t,
        "none",
        {"from_ts": 0, "to_ts": 1, "n_events": 2},
        {"val_hr_candidate": 0.5},
    )


def make_scorer() -> tuple[Scorer, SwapManager]:
    model = ServingModel("base", base_table(), Representation(pop_weight=0.0), None, {"base_model": "none"})
    s = Scorer(ScorerConfig(top_k=5), model)
    return s, SwapManager(s, background=True)


def test_artifact_roundtrip_and_layout(tmp_path: Path) -> None:
    rec = publish(tmp_path, "v1", seed=1)
    files = sorted(p.name for p in (tmp_path / "v1").iterdir())
    assert files == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "item_ids.json",
        "items.safetensors",
        "manifest.json",
    ]
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())  # atomic rename
    art = load_artifact(rec, expect_dim=8)
    assert art.version == "v1" and art.items.item_ids == IDS
    assert np.allclose(art.items.vectors, base_table(seed=1).text + 0.1)
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    assert set(manifest["files"]) == set(files) - {"manifest.json"}


def test_artifact_arrays_come_back_exact_and_writable(tmp_path: Path) -> None:
    t = base_table(seed=3)
    rng = np.random.default_rng(3)
    t = ItemTable(
        t.item_ids, t.text, t.residual + 0.1, rng.normal(size=len(IDS)).astype(np.float32), t.context
    )
    t = t.with_cooc(
        rng.integers(0, len(IDS), (len(IDS), 4)).astype(np.int32),
        rng.random((len(IDS), 4)).astype(np.float32),
        2.5,
    )
    rec = write_artifact(tmp_path, "v1", {}, None, t, "none", {"from_ts": 0, "to_ts": 1, "n_events": 2}, {})
    back = load_artifact(rec).items
    for name in ("text", "residual", "bias", "context", "nbr_idx", "nbr_w"):
        a, b = getattr(t, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert b.flags.writeable, name  # copies, not views of the file's bytes
    assert back.cooc_weight == 2.5


def test_a_truncated_items_file_is_an_artifact_error(tmp_path: Path) -> None:
    rec = publish(tmp_path, "v1", seed=1)
    f = tmp_path / "v1" / "items.safetensors"
    f.write_bytes(f.read_bytes()[:-8])
    manifest_path = tmp_path / "v1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    manifest["files"]["items.safetensors"] = hashlib.sha256(f.read_bytes()).hexdigest()  # checksums agree
    manifest_path.write_text(json.dumps(manifest))
    rec = dict(rec, sha256=hashlib.sha256(manifest_path.read_bytes()).hexdigest())
    with pytest.raises(ArtifactError, match="cannot load"):
        load_artifact(rec)


def test_tampered_artifact_is_rejected_and_old_version_keeps_serving(tmp_path: Path) -> None:
    s, swaps = make_scorer()
    rec = publish(tmp_path, "v1", seed=1)
    f = tmp_path / "v1" / "items.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch for items.safetensors"):
        load_artifact(rec)
    swaps.submit(rec)
    swaps.wait()
    assert swaps.maybe_swap() is None
    assert s.version == "base"
    assert swaps.rejected and "checksum" in swaps.rejected[0][1]
    r = s.learn_many([Event("e1", "like", "u1", "i1", 1)], {})
    assert r.version == "base" and r.applied == 1


def test_wrong_shape_and_incompatible_base_are_rejected(tmp_path: Path) -> None:
    rec = publish(tmp_path, "v1", seed=1)
    with pytest.raises(ArtifactError, match="dims"):
        load_artifact(rec, expect_dim=16)
    with pytest.raises(ArtifactError, match="base model"):
        load_artifact(rec, expect_base="all-MiniLM-L6-v2")
    bad = dict(rec, sha256="0" * 64)
    with pytest.raises(ArtifactError, match="announcement"):
        load_artifact(bad)


def test_hot_swap_mid_stream_drops_and_duplicates_nothing(tmp_path: Path) -> None:
    s, swaps = make_scorer()
    state = MemoryStateStore()
    rng = np.random.default_rng(0)
    events = [
        Event(f"e{n}", "like", f"u{rng.integers(0, 30)}", IDS[rng.integers(0, 20)], n) for n in range(3000)
    ]
    recs = [publish(tmp_path, f"v{k}", seed=k) for k in range(1, 4)]
    versions_per_batch: list[set[str]] = []
    applied = 0
    submitted = 0
    for b in range(0, len(events), 50):
        batch = events[b : b + 50]
        r = s.learn_many(batch, state.get_many([e.user_id for e in batch]))
        state.commit(StateWrite(r.users, r.item_pop, {"t:0": b + len(batch)}))
        applied += r.applied
        assert r.duplicates == 0
        versions_per_batch.append({r.version} | {x["model_version"] for x in r.recs})
        if b in (500, 1500, 2500):
            swaps.submit(recs[submitted])
            submitted += 1
        swaps.maybe_swap()
    swaps.wait()
    swaps.maybe_swap()
    assert applied == len(events)  # nothing dropped
    users = state.users()
    assert sum(u.n_events for u in users.values()) == len(events)  # nothing applied twice
    assert all(len(v) == 1 for v in versions_per_batch)  # one version per batch
    assert [e.version for e in swaps.swaps] == ["v1", "v2", "v3"]
    assert s.version == "v3"


def test_swap_waits_for_the_running_batch() -> None:
    s, swaps = make_scorer()
    new = ServingModel("v9", base_table(seed=9), s.model.rep, None, {})
    started, release = threading.Event(), threading.Event()
    orig = s._learn_many

    def slow(events, users):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(5)
        return orig(events, users)

    s._learn_many = slow  # type: ignore[method-assign]
    out: list = []
    t = threading.Thread(target=lambda: out.append(s.learn_many([Event("e", "like", "u", "i1", 1)], {})))
    t.start()
    started.wait(5)
    swapper = threading.Thread(target=s.swap, args=(new,))
    swapper.start()
    swapper.join(0.2)
    assert swapper.is_alive()  # blocked until the batch ends
    release.set()
    t.join(5)
    swapper.join(5)
    assert out[0].version == "base" and s.version == "v9"


def test_swap_loads_lora_into_the_standby_encoder(tmp_path: Path, tiny_model: str) -> None:
    serving = TextEncoder(tiny_model, lora_r=2)
    standby = TextEncoder(tiny_model, lora_r=2)
    trainer = TextEncoder(tiny_model, lora_r=2)
    texts = {i: f"goal pasta {i}" for i in IDS}
    table = ItemTable.from_text(IDS, serving.encode([texts[i] for i in IDS]))
    with_lora = {k: v + 0.05 for k, v in trainer.lora_state().items()}
    rec = write_artifact(
        tmp_path,
        "v1",
        with_lora,
        trainer.lora_config,
        table,
        serving.base_model,
        {"from_ts": 0, "to_ts": 0, "n_events": 0},
        {},
    )
    model = ServingModel("base", table, Representation(), serving, {"base_model": serving.base_model})
    s = Scorer(ScorerConfig(), model)
    swaps = SwapManager(s, texts, standby)
    swaps.submit(rec)
    swaps.wait()
    ev = swaps.maybe_swap()
    assert ev is not None and s.version == "v1"
    assert s.model.encoder is standby and swaps._standby is serving
    got = standby.lora_state()
    assert all(np.allclose(got[k].numpy(), with_lora[k].numpy()) for k in with_lora)
    window = {"from_ts": 0, "to_ts": 0, "n_events": 0}
    # an artifact with a different LoRA rank is incompatible, and so is one of the same rank
    # scaled otherwise (its update would be served at the serving encoder's scale: another
    # model than the one validated)
    for version, other, why in (
        ("v2", TextEncoder(tiny_model, lora_r=4), "not compatible"),
        ("v3", TextEncoder(tiny_model, lora_r=2, lora_alpha=16), "lora_alpha=16"),
    ):
        rec = write_artifact(
            tmp_path, version, other.lora_state(), other.lora_config, table, serving.base_model, window, {}
        )
        swaps.submit(rec)
        swaps.wait()
        assert swaps.maybe_swap() is None and s.version == "v1"
        assert why in swaps.rejected[-1][1]


def test_rollback_to_an_earlier_version_and_to_base(tmp_path: Path) -> None:
    from driftrec.scorer import BASE_RECORD

    s, swaps = make_scorer()
    v1, v2 = publish(tmp_path, "v1", seed=1), publish(tmp_path, "v2", seed=2)
    for rec in (v1, v2, v1, BASE_RECORD):
        swaps.submit(rec)
        swaps.wait()
        assert swaps.maybe_swap() is not None
    assert [e.version for e in swaps.swaps] == ["v1", "v2", "v1", "base"]
    assert s.version == "base" and np.array_equal(s.model.table.vectors, base_table().vectors)


def test_swap_keeps_popularity_only_for_the_catalog_it_was_checked_against() -> None:
    s, _ = make_scorer()
    s.learn_many([Event("e1", "like", "u", "i3", 1_000)], {})
    live = s.popularity.copy()
    assert np.isfinite(live[3])
    same = ServingModel("v1", base_table(seed=1), s.model.rep, None, {})
    s.swap(same, same_catalog_as=s.model.table)  # checked off the serving thread: kept as is
    assert s.popularity is not None and np.array_equal(s.popularity, live)
    # a claim about a table that is no longer served is not trusted: the ids are compared
    other_ids = IDS[::-1]
    v = base_table(seed=2)
    other = ServingModel("v2", ItemTable.from_text(other_ids, v.text), s.model.rep, None, {})
    stale = ItemTable.from_text(IDS, v.text)
    s.swap(other, same_catalog_as=stale)
    assert s.popularity[other_ids.index("i3")] == live[3] and np.isneginf(s.popularity[3])


def test_swap_manager_compares_ids_off_the_serving_thread(tmp_path: Path) -> None:
    s, swaps = make_scorer()
    calls: list = []
    orig = s.swap
    s.swap = lambda model, same_catalog_as=None: (
        calls.append(same_catalog_as),
        orig(model, same_catalog_as),
    )[1]  # type: ignore[method-assign]
    served = s.model.table
    swaps.submit(publish(tmp_path, "v1", seed=1))
    swaps.wait()
    assert swaps.maybe_swap() is not None
    assert len(calls) == 1 and calls[0] is served and s.version == "v1"


def test_a_replaced_version_is_freed_off_the_serving_thread(tmp_path: Path, monkeypatch) -> None:
    import time
    import weakref

    import driftrec.scorer.swap as swap_mod

    freed_on: list[str] = []
    real = swap_mod.SwapManager._free_retired

    def spy(self):  # the timer thread frees what it holds
        freed_on.append(threading.current_thread().name)
        real(self)

    # patched before the first swap: its timer (base replaced by v1) may also free v1 when
    # the second swap comes within RETIRE_AFTER_S of it
    monkeypatch.setattr(swap_mod.SwapManager, "_free_retired", spy)
    s, swaps = make_scorer()
    for n, seed in ((1, 1), (2, 2)):
        swaps.submit(publish(tmp_path, f"v{n}", seed=seed))
        swaps.wait()
        if n == 1:
            assert swaps.maybe_swap() is not None
            v1 = weakref.ref(s.model.table)
    assert swaps.maybe_swap() is not None  # v1 replaced by v2
    assert v1() is not None  # not freed by the swap itself
    deadline = time.monotonic() + 10
    while v1() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert v1() is None and freed_on
    assert threading.current_thread().name not in freed_on  # only timer threads freed


def test_an_announcement_during_a_slow_prepare_never_blocks_serving(tmp_path: Path, monkeypatch) -> None:
    """At a large catalog a version takes minutes to prepare (its index): announcements
    that arrive meanwhile return at once, the newest waits and is prepared after the one
    in progress has served; the ones in between are superseded, never served."""
    s, swaps = make_scorer()
    gate = threading.Event()
    real = s.prepare

    def slow_prepare(model: ServingModel) -> None:
        if model.version == "v1":
            assert gate.wait(10)
        real(model)

    monkeypatch.setattr(s, "prepare", slow_prepare)
    recs = [publish(tmp_path, f"v{k}", seed=k) for k in range(1, 4)]
    swaps.submit(recs[0])
    for rec in recs[1:]:
        t0 = time.perf_counter()
        swaps.submit(rec)  # v1 still preparing: returns at once
        assert time.perf_counter() - t0 < 0.05
    assert swaps.pending == "v3" and swaps.superseded == ["v2"] and swaps.busy
    assert swaps.maybe_swap() is None and s.version == "base"  # serving goes on meanwhile
    gate.set()
    swaps.wait()
    assert swaps.maybe_swap().version == "v1"  # the one in progress serves, then the newest starts
    swaps.wait()
    assert swaps.maybe_swap().version == "v3"
    assert [e.version for e in swaps.swaps] == ["v1", "v3"] and not swaps.busy


def test_wait_starts_the_waiting_announcement_when_nothing_is_ready(tmp_path: Path) -> None:
    s, swaps = make_scorer()
    rec = publish(tmp_path, "v1", seed=1)
    swaps._compactor = threading.Thread(target=time.sleep, args=(0.2,))
    swaps._compactor.start()  # a compaction being built occupies the preparation
    swaps.submit(rec)
    assert swaps.pending == "v1"
    swaps.wait()
    assert swaps.maybe_swap().version == "v1"
