"""Announcements and artifacts are untrusted input (issue 15, build 2; DESIGN.md hot-swap
protocol item 5): every forged case is refused with a reason, serving goes on, and
``driftrec_artifacts_rejected_total{reason}`` counts it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from driftrec.app.metrics import Metrics
from driftrec.model import (
    REJECT_REASONS,
    ArtifactError,
    ItemTable,
    Representation,
    load_artifact,
    sha256_file,
    sign_manifest,
    write_artifact,
)
from driftrec.scorer import Scorer, ScorerConfig, ServingModel, SwapManager
from driftrec.stream import Event

IDS = [f"i{j}" for j in range(20)]
KEY = b"0123456789abcdef-shared-key"
WINDOW = {"from_ts": 0, "to_ts": 1, "n_events": 2}


def table(seed: int = 1, **change: np.ndarray) -> ItemTable:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(len(IDS), 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    parts = dict(
        text=v, residual=np.zeros_like(v) + 0.1, bias=np.zeros(len(IDS), np.float32), context=v.copy()
    )
    parts.update(change)
    return ItemTable(
        IDS,
        parts["text"],
        parts["residual"],
        parts["bias"],
        parts["context"],
        change.get("nbr_idx"),
        change.get("nbr_w"),
        0.5 if "nbr_idx" in change else 0.0,
    )


def publish(store: Path, version: str, t: ItemTable | None = None, key: bytes | None = None) -> dict:
    return write_artifact(
        store, version, {}, None, t or table(), "none", WINDOW, {"val_hr_candidate": 0.5}, key=key
    )


@pytest.fixture
def serving(tmp_path: Path):
    """A scorer serving ``base`` with a swap manager on the store ``tmp_path/store``, its
    rejections counted by the services' metrics."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(len(IDS), 8)).astype(np.float32)
    model = ServingModel(
        "base",
        ItemTable.from_text(IDS, v / np.linalg.norm(v, axis=1, keepdims=True)),
        Representation(pop_weight=0.0),
        None,
        {"base_model": "none"},
    )
    scorer = Scorer(ScorerConfig(top_k=5), model)
    store = tmp_path / "store"
    store.mkdir()
    swaps = SwapManager(scorer, background=False, store=str(store))
    metrics = Metrics("scorer")
    swaps.on_reject = metrics.artifact_rejected
    return scorer, swaps, store, metrics


def refused(serving, record: dict, reason: str) -> str:
    scorer, swaps, _, metrics = serving
    before = metrics.artifacts_rejected.labels(reason)._value.get()
    swaps.submit(record)
    assert swaps.maybe_swap() is None, "a forged artifact was swapped in"
    assert scorer.version == "base"
    assert swaps.rejected_reasons[-1] == reason, swaps.rejected[-1]
    assert metrics.artifacts_rejected.labels(reason)._value.get() == before + 1
    assert f'driftrec_artifacts_rejected_total{{reason="{reason}"}}' in metrics.text()
    # serving continues
    r = scorer.learn_many([Event(f"e-{reason}", "like", "u1", "i1", 1_000)], {})
    assert r.applied == 1 and r.version == "base" and r.recs
    assert all(np.isfinite(x["score"]) for x in r.recs[0]["items"])
    return swaps.rejected[-1][1]


def test_every_reason_is_documented():
    assert {
        "missing_sha256",
        "bad_version",
        "uri_outside_store",
        "missing_signature",
        "bad_signature",
        "bad_tensor",
        "bad_index",
        "checksum_mismatch",
    } <= set(REJECT_REASONS)


def test_a_good_artifact_in_the_store_is_swapped_in(serving):
    scorer, swaps, store, _ = serving
    swaps.submit(publish(store, "v1"))
    assert swaps.maybe_swap() is not None and scorer.version == "v1"


def test_announcement_without_sha256(serving):
    _, _, store, _ = serving
    rec = publish(store, "v1")
    rec.pop("sha256")
    assert "sha256" in refused(serving, rec, "missing_sha256")
    refused(serving, dict(rec, sha256=""), "missing_sha256")


def test_uri_outside_the_store(serving, tmp_path: Path):
    _, _, store, _ = serving
    elsewhere = tmp_path / "elsewhere"
    rec = publish(elsewhere, "v1")  # a valid artifact, checksums and all, outside ARTIFACT_DIR
    assert "ARTIFACT_DIR" in refused(serving, rec, "uri_outside_store")
    # the same through '..' from inside the store, and as a plain absolute path
    refused(serving, dict(rec, uri=(store / ".." / "elsewhere" / "v1").as_uri()), "uri_outside_store")
    refused(serving, dict(rec, uri=str(elsewhere / "v1")), "uri_outside_store")
    refused(serving, dict(rec, uri="http://evil.example/v1"), "uri_outside_store")


def test_symlink_escape(serving, tmp_path: Path):
    _, _, store, _ = serving
    rec = publish(tmp_path / "elsewhere", "v1")
    os.symlink(tmp_path / "elsewhere" / "v1", store / "v1")
    refused(serving, dict(rec, uri=(store / "v1").as_uri()), "uri_outside_store")


def test_a_file_linked_out_of_the_artifact(serving, tmp_path: Path):
    _, _, store, _ = serving
    rec = publish(store, "v1")
    outside = tmp_path / "item_ids.json"
    outside.write_text(json.dumps(IDS))
    (store / "v1" / "item_ids.json").unlink()
    os.symlink(outside, store / "v1" / "item_ids.json")
    refused(serving, rec, "uri_outside_store")


@pytest.mark.parametrize(
    "version", ["../../../tmp/x/evil", "..", "a/b", "", "-v1", "v" * 65, "v1\nforged log"]
)
def test_version_names(serving, version):
    _, _, store, _ = serving
    rec = publish(store, "v1")
    refused(serving, dict(rec, version=version), "bad_version")
    with pytest.raises(ArtifactError):
        write_artifact(store, version, {}, None, table(), "none", WINDOW, {})


def test_version_must_match_the_manifest(serving):
    _, _, store, _ = serving
    rec = publish(store, "v1")
    os.rename(store / "v1", store / "v2")
    refused(serving, dict(rec, version="v2", uri=(store / "v2").as_uri()), "bad_manifest")


def test_nan_values_with_matching_checksums(serving):
    _, _, store, _ = serving
    bias = np.zeros(len(IDS), np.float32)
    bias[3] = np.nan
    assert "NaN" in refused(serving, publish(store, "v1", table(bias=bias)), "bad_tensor")
    res = np.zeros((len(IDS), 8), np.float32)
    res[0, 0] = np.inf
    refused(serving, publish(store, "v2", table(residual=res)), "bad_tensor")


def test_neighbour_index_out_of_range(serving):
    _, _, store, _ = serving
    idx = np.tile(np.arange(3, dtype=np.int32), (len(IDS), 1))
    idx[5, 1] = 10**6
    t = table(nbr_idx=idx, nbr_w=np.full((len(IDS), 3), 0.5, np.float32))
    assert "1000000" in refused(serving, publish(store, "v1", t), "bad_index")
    idx[5, 1] = -7
    t = table(nbr_idx=idx, nbr_w=np.full((len(IDS), 3), 0.5, np.float32))
    refused(serving, publish(store, "v2", t), "bad_index")


def test_shapes_against_the_catalog(serving):
    scorer, _, store, _ = serving
    rng = np.random.default_rng(3)
    v = rng.normal(size=(len(IDS), 16)).astype(np.float32)  # 16 dims; the serving table has 8
    refused(serving, publish(store, "v1", ItemTable.from_text(IDS, v)), "incompatible")


def test_signed_artifacts(serving, tmp_path: Path):
    scorer, swaps, store, _ = serving
    swaps.key = KEY
    unsigned = publish(store, "v1")
    assert "not signed" in refused(serving, unsigned, "missing_signature")
    forged = publish(store, "v2", key=b"not-the-shared-key-at-all")
    refused(serving, forged, "bad_signature")
    refused(serving, dict(unsigned, signature="hmac-sha256:" + "0" * 64), "bad_signature")
    good = publish(store, "v3", key=KEY)
    assert good["signature"] == sign_manifest((store / "v3" / "manifest.json").read_bytes(), KEY)
    swaps.submit(good)
    assert swaps.maybe_swap() is not None and scorer.version == "v3"


def test_a_manifest_rewritten_after_signing_is_refused(serving):
    _, swaps, store, _ = serving
    swaps.key = KEY
    rec = publish(store, "v1", key=KEY)
    m = json.loads((store / "v1" / "manifest.json").read_text())
    m["metrics"] = {"val_hr_candidate": 0.99}
    (store / "v1" / "manifest.json").write_text(json.dumps(m))
    # whoever rewrote it also announces the new checksum, but cannot sign it
    refused(serving, dict(rec, sha256=sha256_file(store / "v1" / "manifest.json")), "bad_signature")


def test_load_artifact_checks_without_a_store_too(tmp_path: Path):
    rec = publish(tmp_path, "v1")
    assert load_artifact(rec).version == "v1"
    with pytest.raises(ArtifactError) as ei:
        load_artifact({k: v for k, v in rec.items() if k != "sha256"})
    assert ei.value.reason == "missing_sha256"


def test_checks_by_blocks_of_rows_find_a_bad_row_past_the_first_block() -> None:
    """The row norms and the finiteness are checked a block of rows at a time (no float64
    copy of a whole table): a bad row in a later block is still found, and named."""
    from driftrec.model import ArtifactError
    from driftrec.model.trust import CHECK_ROWS, all_finite, check_ranges, row_norms

    rng = np.random.default_rng(0)
    a = rng.standard_normal((CHECK_ROWS + 37, 8)).astype(np.float16)
    assert np.allclose(row_norms(a), np.linalg.norm(a.astype(np.float64), axis=1))
    assert all_finite(a)
    b = a.copy()
    b[CHECK_ROWS + 5, 3] = np.nan
    assert not all_finite(b)
    c = a.copy()
    c[CHECK_ROWS + 9] = 1000.0
    with pytest.raises(ArtifactError, match=f"row {CHECK_ROWS + 9}"):
        check_ranges("v1", {"text": c})
