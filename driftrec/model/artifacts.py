"""Versioned adapter artifacts: the format (DESIGN.md, "Hot-swap protocol", step 1).

An artifact is a directory::

    <store>/<version>/
        adapter_model.safetensors   LoRA tensors (safetensors only, never pickle)
        adapter_config.json         the LoRA config (checked before a swap)
        items.safetensors           text vectors, residuals, biases, context vectors and
                                    co-engagement neighbours of the catalog
        item_ids.json               row order of items.safetensors
        manifest.json               version, base model, window, metrics, sha256 of every file

:func:`write_artifact` writes it under a temporary name and makes it visible by one atomic
rename; the announcement's ``sha256`` is the manifest's own checksum. :func:`load_artifact`
reads it back into an :class:`ItemTable` and the LoRA tensors once every check of
:mod:`driftrec.model.trust` has passed, and refuses a version the serving encoder cannot
use (base model, LoRA config, dimensions: ``incompatible``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError
from .table import ItemTable, zero_rows
from .trust import (
    CHECK_ROWS,
    check_arrays,
    check_version,
    read_verified,
    sign_manifest,
    verified_manifest,
)

FILES = ("adapter_model.safetensors", "adapter_config.json", "items.safetensors", "item_ids.json")


@dataclass
class Artifact:
    """A loaded, verified artifact."""

    version: str
    path: Path
    manifest: dict[str, Any]
    lora: dict[str, Any]
    lora_config: dict[str, Any] | None
    items: ItemTable


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_version(prefix: str = "v") -> str:
    """A sortable, unique version name: ``v<epoch ms>-<4 hex>``."""
    return f"{prefix}{int(time.time() * 1000)}-{os.urandom(2).hex()}"


def write_artifact(
    store: str | os.PathLike[str],
    version: str,
    lora: Mapping[str, Any],
    lora_config: Mapping[str, Any] | None,
    items: ItemTable,
    base_model: str,
    window: Mapping[str, int],
    metrics: Mapping[str, Any],
    key: bytes | str | None = None,
) -> dict[str, Any]:
    """Write an artifact and make it visible atomically; return its announcement record.

    ``key`` (``ARTIFACT_KEY``): the record carries ``signature``, the HMAC-SHA256 of the
    manifest, which a scorer holding the same key verifies."""
    check_version(version)
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_torch

    root = Path(store)
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise ArtifactError(f"artifact {final} already exists; versions are immutable")
    tmp = root / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_torch({k: v.contiguous() for k, v in lora.items()}, str(tmp / FILES[0]))
    (tmp / FILES[1]).write_text(json.dumps(dict(lora_config) if lora_config else {}, sort_keys=True))
    assert items.context is not None
    # the arrays as they are where they are float32 already (safetensors writes from their
    # memory: no copy); a zero residual is written as zeros the process never touches
    arrays = {
        "text": _f32(items.text),
        "residual": _f32(items.residual) if items.has_residual else np.zeros(items.text.shape, np.float32),
        "bias": _f32(items.bias),
        "context": _f32(items.context),
        "cooc_weight": np.array([items.cooc_weight], np.float32),
    }
    if items.nbr_idx is not None and items.nbr_w is not None:
        arrays["nbr_idx"] = items.nbr_idx.astype(np.int32)
        arrays["nbr_w"] = items.nbr_w.astype(np.float32)
    if items.age_edges is not None and items.age_lograte is not None:
        arrays["age_edges"] = items.age_edges.astype(np.float64)
        arrays["age_lograte"] = items.age_lograte.astype(np.float32)
        arrays["age_weight"] = np.array([items.age_weight], np.float64)
    if items.context_shift:
        arrays["context_shift"] = np.array([items.context_shift], np.float64)
    if items.text_weight != 1.0:
        arrays["text_weight"] = np.array([items.text_weight], np.float64)
    if items.pop_recent_share:
        arrays["pop_recent_share"] = np.array([items.pop_recent_share], np.float64)
    if items.stale is not None:
        arrays["stale"] = items.stale.astype(np.uint8)
    save_np(arrays, str(tmp / FILES[2]))
    (tmp / FILES[3]).write_text(json.dumps(items.item_ids))
    created = int(time.time() * 1000)
    manifest = {
        "version": version,
        "base_model": base_model,
        "created_ts": created,
        "window": dict(window),
        "metrics": dict(metrics),
        "dim": items.dim,
        "n_items": len(items.item_ids),
        "lora_config": dict(lora_config) if lora_config else None,
        "files": {f: sha256_file(tmp / f) for f in FILES},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for f in tmp.iterdir():  # durable before visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    os.rename(tmp, final)
    mbytes = (final / "manifest.json").read_bytes()
    record = {
        "version": version,
        "uri": final.resolve().as_uri(),
        "sha256": hashlib.sha256(mbytes).hexdigest(),
        "base_model": base_model,
        "created_ts": created,
        "window": dict(window),
        "metrics": dict(metrics),
    }
    if key:
        record["signature"] = sign_manifest(mbytes, key)
    return record


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32)


def _all_zero(a: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether ``a`` is a float32 (or narrowed float16) array of ``shape`` whose every
    element is zero."""
    return a.dtype in (np.float32, np.float16) and a.shape == shape and not a.any()


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` are float arrays of one dtype (float32, or float16 where
    they were narrowed as read), of equal shape and values.

    >>> x = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> _same(x, x.copy()), _same(x, x + 1), _same(x, x.astype(np.float64))
    (True, False, False)
    """
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float16) or a.shape != b.shape:
        return False
    return all(
        np.array_equal(a[s : s + CHECK_ROWS], b[s : s + CHECK_ROWS]) for s in range(0, len(a), CHECK_ROWS)
    )


def load_artifact(
    record: Mapping[str, Any],
    expect_dim: int | None = None,
    expect_base: str | None = None,
    expect_lora: Mapping[str, Any] | None = None,
    store: str | os.PathLike[str] | None = None,
    key: bytes | str | None = None,
    storage: Callable[[int], str] | None = None,
) -> Artifact:
    """Verify the announcement, checksums, signature, shapes, values and compatibility,
    then load. Raises :class:`ArtifactError` with a ``reason`` of
    :data:`~driftrec.model.trust.REJECT_REASONS`.

    ``storage(n_items)``: how the caller holds the item rows (``float32`` or ``float16``,
    :meth:`driftrec.scorer.ScorerConfig.storage_for`); float16 rows are narrowed as each
    is read, so the float32 table is never in memory whole (checked in float16: a row
    norm within ``VALUE_RANGES`` is exact enough there).

    ``store``: the artifact store (``ARTIFACT_DIR``); the ``uri`` must resolve to
    ``<store>/<version>`` (every service passes it; ``None`` skips only that check, for
    callers that made the record themselves). ``key``: when given, the record's
    ``signature`` must be the manifest's HMAC under it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_torch

    version, path, manifest = verified_manifest(record, store, key)
    narrow = None
    if storage is not None:

        def narrow(name: str, shape: tuple[int, ...]) -> bool:
            rows = name in ("text", "residual", "context") and len(shape) == 2
            return rows and storage(shape[0]) == "float16"

    data = read_verified(path, version, manifest, FILES, tensors=FILES[2], narrow=narrow)
    if expect_base and manifest.get("base_model") != expect_base:
        raise ArtifactError(
            f"artifact {version}: base model {str(manifest.get('base_model'))[:200]!r} "
            f"is not the serving base {expect_base!r}",
            "incompatible",
        )
    try:
        lora_config = json.loads(data[FILES[1]]) or None
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(
            f"artifact {version}: adapter config is not JSON: {str(exc)[:200]}", "bad_manifest"
        ) from None
    if lora_config is not None and not isinstance(lora_config, dict):
        raise ArtifactError(f"artifact {version}: adapter config is not an object", "bad_manifest")
    if expect_lora is not None or lora_config is not None:
        for k in ("r", "lora_alpha", "target_modules"):
            a = (lora_config or {}).get(k)
            b = (expect_lora or {}).get(k)
            if lora_config and expect_lora is not None and a != b:
                raise ArtifactError(
                    f"artifact {version}: LoRA {k}={a!r} is not compatible with the serving encoder's {b!r}",
                    "incompatible",
                )
    try:
        lora = load_torch(data[FILES[0]])
        # read straight into writable arrays of their own, without the interpreter lock
        # (safetensors.numpy.load held it for ~15 ms copying a 10,000-item table)
        arrays = data.pop(FILES[2]).arrays()
        ids = json.loads(data[FILES[3]])
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"artifact {version}: cannot load: {str(exc)[:300]}") from exc
    check_arrays(version, arrays, ids, lora, manifest)
    try:
        cw = arrays.get("cooc_weight")
        aw = arrays.get("age_weight")
        cs = arrays.get("context_shift")
        tw = arrays.get("text_weight")
        rs = arrays.get("pop_recent_share")
        text, residual, context = arrays["text"], arrays["residual"], arrays["context"]
        table = ItemTable(
            ids,
            text,
            zero_rows(text.shape) if _all_zero(residual, text.shape) else residual,  # nothing learned
            arrays["bias"],
            None if _same(context, text) else context,  # the text itself: held once
            arrays.get("nbr_idx"),
            arrays.get("nbr_w"),
            float(cw[0]) if cw is not None else 0.0,
            arrays.get("age_edges"),
            arrays.get("age_lograte"),
            float(aw[0]) if aw is not None else 0.0,
            None if arrays.get("stale") is None else arrays["stale"] != 0,
            float(cs[0]) if cs is not None else 0.0,
            float(tw[0]) if tw is not None else 1.0,
            float(rs[0]) if rs is not None else 0.0,
        )
    except ArtifactError as exc:
        raise ArtifactError(str(exc), "bad_tensor") from exc
    except (KeyError, ValueError, IndexError) as exc:
        raise ArtifactError(f"artifact {version}: cannot load: {str(exc)[:300]}") from exc
    if expect_dim is not None and table.dim != expect_dim:
        raise ArtifactError(
            f"artifact {version}: item vectors have {table.dim} dims, the encoder {expect_dim}",
            "incompatible",
        )
    return Artifact(version, path, manifest, lora, lora_config, table)
