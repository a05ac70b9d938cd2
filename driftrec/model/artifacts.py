"""Versioned adapter artifacts (DESIGN.md, "Hot-swap protocol", step 1).

An artifact is a directory::

    <store>/<version>/
        adapter_model.safetensors   LoRA tensors (safetensors only, never pickle)
        adapter_config.json         the LoRA config (checked before a swap)
        items.safetensors           text vectors, residuals, biases, context vectors and
                                    co-engagement neighbours of the catalog
        item_ids.json               row order of items.safetensors
        manifest.json               version, base model, window, metrics, sha256 of every file

It is written under a temporary name and made visible by one atomic rename. The
announcement's ``sha256`` is the manifest's own checksum.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ArtifactError

FILES = ("adapter_model.safetensors", "adapter_config.json", "items.safetensors", "item_ids.json")


@dataclass
class ItemTable:
    """The catalog as one model version sees it.

    Two sides, so that "users of A go on to B" is expressible (a single shared vector per
    item can only say "A is like A"):

    - target side: ``vectors = text + residual`` (text under this version's adapter plus a
      learned residual) and a learned ``bias``: what is ranked;
    - context side: ``context`` (base-encoder text plus a learned context residual): what a
      user's history is made of;
    - co-engagement: optional top neighbours per item (``nbr_idx``, ``nbr_w``: cosine of
      co-engagement counts, see :mod:`driftrec.model.cooc`), added to scores with ``cooc_weight``.
    """

    item_ids: list[str]
    text: np.ndarray
    residual: np.ndarray
    bias: np.ndarray
    context: np.ndarray | None = None
    nbr_idx: np.ndarray | None = None
    nbr_w: np.ndarray | None = None
    cooc_weight: float = 0.0
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if self.context is None:
            self.context = np.asarray(self.text, np.float32).copy()
        if (self.text.shape[0] != n or self.residual.shape != self.text.shape
                or self.bias.shape != (n,) or self.context.shape != self.text.shape):
            raise ArtifactError(f"item table shapes disagree: {n} ids, text {self.text.shape}, "
                                f"residual {self.residual.shape}, bias {self.bias.shape}, "
                                f"context {self.context.shape}")
        if (self.nbr_idx is None) != (self.nbr_w is None) or (
                self.nbr_idx is not None and self.nbr_w is not None
                and (self.nbr_idx.shape != self.nbr_w.shape or self.nbr_idx.shape[0] != n)):
            raise ArtifactError("item table neighbours: nbr_idx and nbr_w must both be [n_items, m]")
        self._index = {i: k for k, i in enumerate(self.item_ids)}
        self.vectors = (self.text + self.residual).astype(np.float32)
        self.context = np.ascontiguousarray(self.context, np.float32)

    @classmethod
    def from_text(cls, item_ids: list[str], text: np.ndarray) -> "ItemTable":
        """The base version: text vectors on both sides, nothing learned yet."""
        text = np.asarray(text, np.float32)
        return cls(list(item_ids), text, np.zeros_like(text), np.zeros(len(item_ids), np.float32),
                   text.copy())

    @property
    def dim(self) -> int:
        return int(self.text.shape[1])

    def index(self, item_id: str) -> int:
        return self._index.get(item_id, -1)

    def with_items(self, item_ids: list[str], text: np.ndarray,
                   base_text: np.ndarray | None = None) -> "ItemTable":
        """A copy with new items appended (nothing learned for them yet) or texts replaced.

        ``text`` is under this version's adapter (target side), ``base_text`` under the base
        encoder (context side; defaults to ``text``)."""
        base_text = text if base_text is None else base_text
        ids = list(self.item_ids)
        assert self.context is not None
        t, r, b, c = self.text.copy(), self.residual.copy(), self.bias.copy(), self.context.copy()
        new_t, new_c = [], []
        for iid, vec, cvec in zip(item_ids, text, base_text):
            k = self._index.get(iid, -1)
            if k >= 0:
                t[k] = vec
            else:
                ids.append(iid)
                new_t.append(vec)
                new_c.append(cvec)
        if new_t:
            nv = np.asarray(new_t, np.float32)
            t = np.vstack([t, nv])
            r = np.vstack([r, np.zeros_like(nv)])
            b = np.concatenate([b, np.zeros(len(nv), np.float32)])
            c = np.vstack([c, np.asarray(new_c, np.float32)])
        ni, nw = self.nbr_idx, self.nbr_w
        if ni is not None and nw is not None and len(ids) > ni.shape[0]:
            pad = len(ids) - ni.shape[0]
            ni = np.vstack([ni, np.full((pad, ni.shape[1]), -1, ni.dtype)])
            nw = np.vstack([nw, np.zeros((pad, nw.shape[1]), nw.dtype)])
        return ItemTable(ids, t, r, b, c, ni, nw, self.cooc_weight)

    def with_cooc(self, nbr_idx: np.ndarray | None, nbr_w: np.ndarray | None, weight: float) -> "ItemTable":
        """The same item parts with other co-engagement neighbours and weight."""
        return ItemTable(self.item_ids, self.text, self.residual, self.bias, self.context,
                         nbr_idx, nbr_w, float(weight))


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


def write_artifact(store: str | os.PathLike[str], version: str, lora: Mapping[str, Any],
                   lora_config: Mapping[str, Any] | None, items: ItemTable, base_model: str,
                   window: Mapping[str, int], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Write an artifact and make it visible atomically; return its announcement record."""
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
    arrays = {"text": items.text.astype(np.float32), "residual": items.residual.astype(np.float32),
              "bias": items.bias.astype(np.float32), "context": items.context.astype(np.float32),
              "cooc_weight": np.array([items.cooc_weight], np.float32)}
    if items.nbr_idx is not None and items.nbr_w is not None:
        arrays["nbr_idx"] = items.nbr_idx.astype(np.int32)
        arrays["nbr_w"] = items.nbr_w.astype(np.float32)
    save_np(arrays, str(tmp / FILES[2]))
    (tmp / FILES[3]).write_text(json.dumps(items.item_ids))
    created = int(time.time() * 1000)
    manifest = {"version": version, "base_model": base_model, "created_ts": created,
                "window": dict(window), "metrics": dict(metrics), "dim": items.dim,
                "n_items": len(items.item_ids), "lora_config": dict(lora_config) if lora_config else None,
                "files": {f: sha256_file(tmp / f) for f in FILES}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    for f in tmp.iterdir():  # durable before visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    os.rename(tmp, final)
    return {"version": version, "uri": final.resolve().as_uri(), "sha256": sha256_file(final / "manifest.json"),
            "base_model": base_model, "created_ts": created, "window": dict(window), "metrics": dict(metrics)}


def _path_from_uri(uri: str) -> Path:
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return Path(uri)


#: safetensors dtype codes of the arrays ``write_artifact`` stores (and a few more).
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U8": "u1", "BOOL": "?"}


def _safetensors_views(buf: bytes) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file's bytes as read-only views (no copy): an 8-byte
    little-endian header size, a JSON header (name -> dtype, shape, data offsets), the data.

    >>> import safetensors.numpy
    >>> b = safetensors.numpy.save({"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    >>> _safetensors_views(b)["x"].tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    if len(buf) < 8:
        raise ValueError("not a safetensors file: shorter than its header size")
    n = int.from_bytes(buf[:8], "little")
    if 8 + n > len(buf):
        raise ValueError("not a safetensors file: header runs past the end")
    header = json.loads(buf[8:8 + n])
    mv = memoryview(buf)[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = _ST_DTYPES.get(meta.get("dtype"))
        if dt is None:
            raise ValueError(f"tensor {name!r}: dtype {meta.get('dtype')!r} is not supported here")
        begin, end = meta["data_offsets"]
        shape = tuple(meta["shape"])
        if not 0 <= begin <= end <= len(mv) or end - begin != int(np.prod(shape)) * np.dtype(dt).itemsize:
            raise ValueError(f"tensor {name!r}: data offsets {begin}..{end} do not fit shape {shape}")
        out[name] = np.frombuffer(mv[begin:end], dtype=dt).reshape(shape)
    return out


def load_artifact(record: Mapping[str, Any], expect_dim: int | None = None,
                  expect_base: str | None = None,
                  expect_lora: Mapping[str, Any] | None = None) -> Artifact:
    """Verify checksums, shapes and compatibility, then load. Raises :class:`ArtifactError`."""
    from safetensors import SafetensorError  # type: ignore[attr-defined]
    from safetensors.torch import load as load_torch

    version = str(record.get("version", "?"))
    path = _path_from_uri(str(record.get("uri", "")))
    mpath = path / "manifest.json"
    if not mpath.exists():
        raise ArtifactError(f"artifact {version}: {mpath} does not exist")
    if record.get("sha256") and sha256_file(mpath) != record["sha256"]:
        raise ArtifactError(f"artifact {version}: manifest checksum does not match the announcement")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise ArtifactError(f"artifact {version}: manifest is not JSON: {exc}") from exc
    # Each file is read once, checksummed and parsed from the same bytes. Reading and
    # hashing release the interpreter lock; safetensors' load_file (mmap) held it for
    # ~23 ms per 10,000 x 384 table, and this runs in the scorer's background thread.
    data: dict[str, bytes] = {}
    for f in FILES:
        want = manifest.get("files", {}).get(f)
        try:
            data[f] = (path / f).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"artifact {version}: file {f} is missing") from None
        if want != hashlib.sha256(data[f]).hexdigest():
            raise ArtifactError(f"artifact {version}: checksum mismatch for {f}")
    if expect_base and manifest.get("base_model") != expect_base:
        raise ArtifactError(f"artifact {version}: base model {manifest.get('base_model')!r} "
                            f"is not the serving base {expect_base!r}")
    lora_config = json.loads(data[FILES[1]]) or None
    if expect_lora is not None or lora_config is not None:
        for key in ("r", "target_modules"):
            a = (lora_config or {}).get(key)
            b = (expect_lora or {}).get(key)
            if lora_config and expect_lora is not None and a != b:
                raise ArtifactError(f"artifact {version}: LoRA {key}={a!r} is not compatible with "
                                    f"the serving encoder's {b!r}")
    try:
        lora = load_torch(data[FILES[0]])
        # writable copies of views into the file's bytes (numpy copies without holding the
        # interpreter lock; safetensors.numpy.load held it for ~15 ms copying a 10,000-item
        # table)
        arrays = {k: np.array(v) for k, v in _safetensors_views(data.pop(FILES[2])).items()}
        ids = json.loads(data[FILES[3]])
        cw = arrays.get("cooc_weight")
        table = ItemTable(ids, arrays["text"], arrays["residual"], arrays["bias"], arrays["context"],
                          arrays.get("nbr_idx"), arrays.get("nbr_w"), float(cw[0]) if cw is not None else 0.0)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"artifact {version}: cannot load: {exc}") from exc
    if expect_dim is not None and table.dim != expect_dim:
        raise ArtifactError(f"artifact {version}: item vectors have {table.dim} dims, the encoder {expect_dim}")
    return Artifact(version, path, manifest, lora, lora_config, table)
