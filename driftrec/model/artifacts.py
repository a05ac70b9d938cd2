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

Announcements and artifacts are untrusted input (DESIGN.md, hot-swap protocol, item 5):
:func:`load_artifact` requires ``sha256``, a version name matching :data:`VERSION_PATTERN`,
a ``uri`` that resolves (symlinks followed) to ``<store>/<version>``, checks every tensor
(finite values, neighbour indices inside the table, shapes) and, given a shared key
(``ARTIFACT_KEY``), the announcement's HMAC-SHA256 ``signature`` of the manifest. Each
refusal is an :class:`ArtifactError` whose ``reason`` is one of :data:`REJECT_REASONS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError

FILES = ("adapter_model.safetensors", "adapter_config.json", "items.safetensors", "item_ids.json")

#: What a version name may look like: a directory name of the store, never a path.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: Every reason an announcement or artifact is refused with, and what it means.
REJECT_REASONS: dict[str, str] = {
    "bad_version": "version is not a name matching ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ (no '..')",
    "missing_sha256": "the announcement carries no sha256 (64 hex digits) of the manifest",
    "uri_outside_store": "uri does not resolve to <ARTIFACT_DIR>/<version> (a path, '..' or symlink outside)",
    "missing_signature": "ARTIFACT_KEY is set and the announcement carries no signature",
    "bad_signature": "the signature is not the HMAC-SHA256 of the manifest under ARTIFACT_KEY",
    "missing_file": "the manifest or a file it lists is missing",
    "checksum_mismatch": "a file's sha256 differs from the announcement's or the manifest's",
    "bad_manifest": "the manifest or the item ids are not what write_artifact writes",
    "incompatible": "base model, LoRA config or dimensions differ from the serving encoder's",
    "bad_tensor": "a tensor holds NaN/inf or has a shape that disagrees with the catalog",
    "bad_index": "a co-engagement neighbour index is outside the item table",
    "load_error": "a file cannot be parsed or loaded",
}

SIGNATURE_PREFIX = "hmac-sha256:"


def sign_manifest(manifest: bytes, key: bytes | str) -> str:
    """The announcement's ``signature``: HMAC-SHA256 of the manifest's bytes under ``key``.

    >>> sign_manifest(b"{}", "k")[:20]
    'hmac-sha256:add853b1'
    """
    k = key.encode() if isinstance(key, str) else key
    return SIGNATURE_PREFIX + hmac.new(k, manifest, hashlib.sha256).hexdigest()


def check_version(version: Any) -> str:
    """``version`` if it is a safe version name; :class:`ArtifactError` (``bad_version``) if not.

    >>> check_version("v1700000000000-ab12")
    'v1700000000000-ab12'
    >>> check_version("../../../tmp/x/evil")
    Traceback (most recent call last):
    ...
    driftrec.model.errors.ArtifactError: version '../../../tmp/x/evil' is not a version name (^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$, no '..')
    """
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version) or ".." in version:
        raise ArtifactError(
            f"version {str(version)[:80]!r} is not a version name "
            f"(^[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}$, no '..')",
            "bad_version",
        )
    return version


def resolve_in_store(uri: str, version: str, store: str | os.PathLike[str]) -> Path:
    """The artifact directory that ``uri`` names, if it is ``<store>/<version>`` once every
    symlink and ``..`` is resolved; :class:`ArtifactError` (``uri_outside_store``) if not.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> resolve_in_store(Path(d, "v1").as_uri(), "v1", d) == Path(d, "v1").resolve()
    True
    >>> resolve_in_store("file:///etc", "v1", d)
    Traceback (most recent call last):
    ...
    driftrec.model.errors.ArtifactError: artifact 'v1': uri file:///etc is not <ARTIFACT_DIR>/v1 (resolves to /etc)
    """
    if (
        not isinstance(uri, str)
        or not uri
        or "\x00" in uri
        or ("://" in uri and not uri.startswith("file://"))
    ):
        raise ArtifactError(
            f"artifact {version!r}: uri {str(uri)[:200]!r} is not a file:// URI or path "
            f"in the artifact store",
            "uri_outside_store",
        )
    root = Path(os.path.realpath(store))
    path = Path(os.path.realpath(path_from_uri(uri)))
    if path != root / version:
        raise ArtifactError(
            f"artifact {version!r}: uri {uri[:200]} is not <ARTIFACT_DIR>/{version} (resolves to {path})",
            "uri_outside_store",
        )
    return path


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
      co-engagement counts, see :mod:`driftrec.model.cooc`), added to scores with ``cooc_weight``;
    - freshness: optional, how engagement varies with an item's age (time since its
      publication ``ts``), learned from the window: ``age_lograte[b]`` is the log engagement
      rate of items whose age is in ``[age_edges[b], age_edges[b + 1])`` (ms; the last bin
      open), relative to the average; ``age_weight`` times it is added to scores
      (:meth:`age_prior`);
    - re-encoding: optional ``stale`` (bool ``[n]``): rows whose ``text`` is still a
      previous version's (the learner encoded only the newest and most engaged items under
      this version's adapter); the scorer re-encodes them in the background after a swap;
    - ``context_shift`` (``LearnerConfig.context_shift``): each context vector carries this
      much of (its text vector - its base-encoder text vector), so that a history of posts
      named by a word the adapter has learned says that word's topic. Items added to the
      table (:meth:`with_items`) and rows re-encoded (:meth:`with_text`) keep that so.
    """

    item_ids: list[str]
    text: np.ndarray
    residual: np.ndarray
    bias: np.ndarray
    context: np.ndarray | None = None
    nbr_idx: np.ndarray | None = None
    nbr_w: np.ndarray | None = None
    cooc_weight: float = 0.0
    age_edges: np.ndarray | None = None
    age_lograte: np.ndarray | None = None
    age_weight: float = 0.0
    stale: np.ndarray | None = None
    context_shift: float = 0.0
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if self.context is None:
            self.context = np.asarray(self.text, np.float32).copy()
        if (
            self.text.shape[0] != n
            or self.residual.shape != self.text.shape
            or self.bias.shape != (n,)
            or self.context.shape != self.text.shape
        ):
            raise ArtifactError(
                f"item table shapes disagree: {n} ids, text {self.text.shape}, "
                f"residual {self.residual.shape}, bias {self.bias.shape}, "
                f"context {self.context.shape}"
            )
        if (self.nbr_idx is None) != (self.nbr_w is None) or (
            self.nbr_idx is not None
            and self.nbr_w is not None
            and (self.nbr_idx.shape != self.nbr_w.shape or self.nbr_idx.shape[0] != n)
        ):
            raise ArtifactError("item table neighbours: nbr_idx and nbr_w must both be [n_items, m]")
        e, g = self.age_edges, self.age_lograte
        if (e is None) != (g is None) or (
            e is not None
            and g is not None
            and (
                e.ndim != 1
                or e.shape != g.shape
                or e.size == 0
                or e[0] != 0
                or not (np.all(np.isfinite(e)) and np.all(np.isfinite(g)) and np.all(np.diff(e) > 0))
                or not math.isfinite(self.age_weight)
            )
        ):
            raise ArtifactError(
                "item table freshness: age_edges (increasing from 0, ms) and "
                "age_lograte must both be finite [n_bins], age_weight finite"
            )
        if not (math.isfinite(self.context_shift) and 0.0 <= self.context_shift <= 4.0):
            raise ArtifactError(f"item table context_shift {self.context_shift!r} is not in [0, 4]")
        if e is not None:
            self.age_edges = np.asarray(e, np.float64)
            self.age_lograte = np.asarray(g, np.float32)
        if self.stale is not None:
            if np.shape(self.stale) != (n,):
                raise ArtifactError(
                    f"item table stale rows: a [{n}] mask expected, got {np.shape(self.stale)}"
                )
            self.stale = np.asarray(self.stale, bool)
            if not self.stale.any():
                self.stale = None
        self._index = {i: k for k, i in enumerate(self.item_ids)}
        self.vectors = (self.text + self.residual).astype(np.float32)
        self.context = np.ascontiguousarray(self.context, np.float32)

    @classmethod
    def from_text(cls, item_ids: list[str], text: np.ndarray) -> ItemTable:
        """The base version: text vectors on both sides, nothing learned yet."""
        text = np.asarray(text, np.float32)
        return cls(
            list(item_ids), text, np.zeros_like(text), np.zeros(len(item_ids), np.float32), text.copy()
        )

    @property
    def has_age_prior(self) -> bool:
        """Whether :meth:`age_prior` adds anything (a curve with a weight)."""
        return bool(self.age_weight) and self.age_lograte is not None

    def age_prior(self, age_ms: np.ndarray) -> np.ndarray:
        """``age_weight`` times the learned log rate at ``age_ms`` (float32; negative ages,
        not yet published, count as age 0): linear in log age between the bins' centres
        (the first bin's at half its width, the last's at 1.41x its left edge), flat beyond
        the first and last centre. So of two items in one bin the younger one scores
        higher where engagement decays with age, as it would with a curve that has no
        bins: on a fast feed the newest posts of a bin are the likeliest.

        Examples
        --------
        >>> t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32)).with_age(
        ...     np.array([0.0, 1000.0]), np.array([1.0, -1.0]), 0.5)
        >>> t.age_prior(np.array([10.0, 5000.0, -3.0])).tolist()
        [0.5, -0.5, 0.5]
        >>> a, b = t.age_prior(np.array([600.0, 900.0]))  # between the centres (500, 1414)
        >>> bool(0.5 > a > b > -0.5)
        True
        """
        if not self.has_age_prior:
            return np.zeros(len(age_ms), np.float32)
        assert self.age_edges is not None and self.age_lograte is not None
        e = self.age_edges.astype(np.float64)
        right = np.append(e[1:], e[-1] * 2.0)
        centres = np.where(e > 0, np.sqrt(np.maximum(e, 1.0) * right), right / 2.0)
        x = np.log1p(np.maximum(np.asarray(age_ms, np.float64), 0.0))
        out: np.ndarray = (
            np.float32(self.age_weight) * np.interp(x, np.log1p(centres), self.age_lograte)
        ).astype(np.float32)
        return out

    def with_age(self, edges: np.ndarray | None, lograte: np.ndarray | None, weight: float) -> ItemTable:
        """The same item parts with another freshness curve and weight."""
        return replace(self, age_edges=edges, age_lograte=lograte, age_weight=float(weight))

    @property
    def dim(self) -> int:
        return int(self.text.shape[1])

    def index(self, item_id: str) -> int:
        return self._index.get(item_id, -1)

    def with_items(
        self,
        item_ids: list[str],
        text: np.ndarray,
        base_text: np.ndarray | None = None,
        prev_base: Mapping[str, np.ndarray] | None = None,
    ) -> ItemTable:
        """A copy with new items appended (nothing learned for them yet) or texts replaced.

        ``text`` is under this version's adapter (target side), ``base_text`` under the base
        encoder (context side; defaults to ``text``); a new item's context is
        ``base_text + context_shift * (text - base_text)``. An edited item keeps its context
        (what was learned for it), but with ``prev_base`` (item id -> the base-encoder
        vector of its text before the edit) the shift its old text put there is swapped for
        the new text's, so that ``context - context_shift * (text - base_text)`` stays what
        was learned."""
        base_text = text if base_text is None else base_text
        prev = dict(prev_base) if prev_base is not None and self.context_shift else {}
        ids = list(self.item_ids)
        assert self.context is not None
        t, r, b, c = self.text.copy(), self.residual.copy(), self.bias.copy(), self.context.copy()
        st = None if self.stale is None else self.stale.copy()
        new_t, new_c = [], []
        for iid, vec, cvec in zip(item_ids, text, base_text):
            k = self._index.get(iid, -1)
            if k >= 0:
                if iid in prev:
                    c[k] += np.float32(self.context_shift) * ((vec - cvec) - (t[k] - prev[iid]))
                    prev[iid] = np.asarray(cvec, np.float32)  # an id twice in one call
                t[k] = vec
                if st is not None:
                    st[k] = False  # encoded now, under this version's adapter
            else:
                ids.append(iid)
                new_t.append(vec)
                new_c.append(cvec + np.float32(self.context_shift) * (np.asarray(vec) - cvec))
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
        if st is not None and len(ids) > len(st):
            st = np.concatenate([st, np.zeros(len(ids) - len(st), bool)])
        return ItemTable(
            ids,
            t,
            r,
            b,
            c,
            ni,
            nw,
            self.cooc_weight,
            self.age_edges,
            self.age_lograte,
            self.age_weight,
            st,
            self.context_shift,
        )

    def with_text(self, rows: np.ndarray, text: np.ndarray) -> ItemTable:
        """A copy whose ``text`` rows ``rows`` are replaced (encoded under this version's
        adapter: no longer stale); every learned part stays.

        >>> t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
        >>> t = ItemTable(t.item_ids, t.text, t.residual, t.bias, t.context, stale=np.array([True, True]))
        >>> u = t.with_text(np.array([1]), np.array([[0.0, 2.0]], np.float32))
        >>> u.stale.tolist(), u.vectors[1].tolist(), t.vectors[1].tolist()
        ([True, False], [0.0, 2.0], [0.0, 1.0])
        """
        t = self.text.copy()
        t[rows] = text
        st = None if self.stale is None else self.stale.copy()
        if st is not None:
            st[rows] = False
        c = self.context
        if self.context_shift and c is not None:  # the context moves with the text
            c = c.copy()
            c[rows] += np.float32(self.context_shift) * (t[rows] - self.text[rows])
        return replace(self, text=t, stale=st, context=c)

    def with_cooc(self, nbr_idx: np.ndarray | None, nbr_w: np.ndarray | None, weight: float) -> ItemTable:
        """The same item parts with other co-engagement neighbours and weight."""
        return replace(self, nbr_idx=nbr_idx, nbr_w=nbr_w, cooc_weight=float(weight))


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
    arrays = {
        "text": items.text.astype(np.float32),
        "residual": items.residual.astype(np.float32),
        "bias": items.bias.astype(np.float32),
        "context": items.context.astype(np.float32),
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


def path_from_uri(uri: str) -> Path:
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return Path(uri)


#: safetensors dtype codes of the arrays ``write_artifact`` stores (and a few more).
_ST_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


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
    header = json.loads(buf[8 : 8 + n])
    mv = memoryview(buf)[8 + n :]
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


def load_artifact(
    record: Mapping[str, Any],
    expect_dim: int | None = None,
    expect_base: str | None = None,
    expect_lora: Mapping[str, Any] | None = None,
    store: str | os.PathLike[str] | None = None,
    key: bytes | str | None = None,
) -> Artifact:
    """Verify the announcement, checksums, signature, shapes, values and compatibility,
    then load. Raises :class:`ArtifactError` with a ``reason`` of :data:`REJECT_REASONS`.

    ``store``: the artifact store (``ARTIFACT_DIR``); the ``uri`` must resolve to
    ``<store>/<version>`` (every service passes it; ``None`` skips only that check, for
    callers that made the record themselves). ``key``: when given, the record's
    ``signature`` must be the manifest's HMAC under it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_torch

    version = check_version(record.get("version"))
    want_sha = record.get("sha256")
    if not isinstance(want_sha, str) or not re.fullmatch(r"[0-9a-f]{64}", want_sha):
        raise ArtifactError(
            f"artifact {version}: the announcement carries no sha256 of its manifest", "missing_sha256"
        )
    uri = record.get("uri", "")
    if store is not None:
        path = resolve_in_store(uri, version, store)
    else:
        path = path_from_uri(str(uri))
    mpath = path / "manifest.json"
    try:
        mbytes = _read_inside(path, "manifest.json")
    except FileNotFoundError:
        raise ArtifactError(f"artifact {version}: {mpath} does not exist", "missing_file") from None
    if not hmac.compare_digest(hashlib.sha256(mbytes).hexdigest(), want_sha):
        raise ArtifactError(
            f"artifact {version}: manifest checksum does not match the announcement", "checksum_mismatch"
        )
    if key:
        sig = record.get("signature")
        if not isinstance(sig, str) or not sig:
            raise ArtifactError(
                f"artifact {version}: ARTIFACT_KEY is set and the announcement is not signed",
                "missing_signature",
            )
        if not hmac.compare_digest(sig.encode(), sign_manifest(mbytes, key).encode()):
            raise ArtifactError(
                f"artifact {version}: the signature does not match the manifest under ARTIFACT_KEY",
                "bad_signature",
            )
    try:
        manifest = json.loads(mbytes)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(
            f"artifact {version}: manifest is not JSON: {str(exc)[:200]}", "bad_manifest"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"artifact {version}: manifest is not an object with files", "bad_manifest")
    if manifest.get("version") != version:
        raise ArtifactError(
            f"artifact {version}: the manifest names version {str(manifest.get('version'))[:80]!r}",
            "bad_manifest",
        )
    # Each file is read once, checksummed and parsed from the same bytes. Reading and
    # hashing release the interpreter lock; safetensors' load_file (mmap) held it for
    # ~23 ms per 10,000 x 384 table, and this runs in the scorer's background thread.
    data: dict[str, bytes] = {}
    for f in FILES:
        want = manifest["files"].get(f)
        try:
            data[f] = _read_inside(path, f)
        except FileNotFoundError:
            raise ArtifactError(f"artifact {version}: file {f} is missing", "missing_file") from None
        if not isinstance(want, str) or not hmac.compare_digest(want, hashlib.sha256(data[f]).hexdigest()):
            raise ArtifactError(f"artifact {version}: checksum mismatch for {f}", "checksum_mismatch")
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
        # writable copies of views into the file's bytes (numpy copies without holding the
        # interpreter lock; safetensors.numpy.load held it for ~15 ms copying a 10,000-item
        # table)
        arrays = {k: np.array(v) for k, v in _safetensors_views(data.pop(FILES[2])).items()}
        ids = json.loads(data[FILES[3]])
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"artifact {version}: cannot load: {str(exc)[:300]}") from exc
    _check_arrays(version, arrays, ids, lora, manifest)
    try:
        cw = arrays.get("cooc_weight")
        aw = arrays.get("age_weight")
        cs = arrays.get("context_shift")
        table = ItemTable(
            ids,
            arrays["text"],
            arrays["residual"],
            arrays["bias"],
            arrays["context"],
            arrays.get("nbr_idx"),
            arrays.get("nbr_w"),
            float(cw[0]) if cw is not None else 0.0,
            arrays.get("age_edges"),
            arrays.get("age_lograte"),
            float(aw[0]) if aw is not None else 0.0,
            None if arrays.get("stale") is None else arrays["stale"] != 0,
            float(cs[0]) if cs is not None else 0.0,
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


def _read_inside(path: Path, name: str) -> bytes:
    """The bytes of ``path/name``, a regular file that is not a link out of ``path``."""
    f = path / name
    real = os.path.realpath(f)
    if os.path.dirname(real) != os.path.realpath(path) or not os.path.isfile(real):
        if not os.path.lexists(f):
            raise FileNotFoundError(str(f))
        raise ArtifactError(
            f"artifact {path.name}: {name} is not a regular file inside the artifact", "uri_outside_store"
        )
    return f.read_bytes()


_TABLE_FLOATS = (
    "text",
    "residual",
    "bias",
    "context",
    "nbr_w",
    "cooc_weight",
    "age_edges",
    "age_lograte",
    "age_weight",
    "context_shift",
)


def _check_arrays(
    version: str,
    arrays: Mapping[str, np.ndarray],
    ids: Any,
    lora: Mapping[str, Any],
    manifest: Mapping[str, Any],
) -> None:
    """Refuse what would poison serving: non-finite values, neighbour indices outside the
    table, shapes that disagree with the item ids or the manifest (reasons ``bad_tensor``,
    ``bad_index``, ``bad_manifest``)."""
    import torch

    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
        raise ArtifactError(
            f"artifact {version}: item ids are not a list of distinct strings", "bad_manifest"
        )
    n = len(ids)
    missing = [k for k in ("text", "residual", "bias", "context") if k not in arrays]
    if missing:
        raise ArtifactError(f"artifact {version}: items.safetensors lacks {missing}", "bad_tensor")
    text = arrays["text"]
    if text.ndim != 2 or text.shape[0] != n:
        raise ArtifactError(f"artifact {version}: text vectors {text.shape} for {n} item ids", "bad_tensor")
    if manifest.get("n_items") not in (None, n) or manifest.get("dim") not in (None, text.shape[1]):
        raise ArtifactError(
            f"artifact {version}: {n} items of {text.shape[1]} dims, the manifest says "
            f"{manifest.get('n_items')} of {manifest.get('dim')}",
            "bad_tensor",
        )
    for k in _TABLE_FLOATS:
        a = arrays.get(k)
        if a is None:
            continue
        if a.dtype.kind != "f":
            raise ArtifactError(f"artifact {version}: {k} has dtype {a.dtype}, not float", "bad_tensor")
        if not np.isfinite(a).all():
            raise ArtifactError(f"artifact {version}: {k} holds NaN or infinite values", "bad_tensor")
    for k in ("cooc_weight", "age_weight", "context_shift"):
        if arrays.get(k) is not None and arrays[k].size != 1:
            raise ArtifactError(f"artifact {version}: {k} must hold one value", "bad_tensor")
    sm = arrays.get("stale")
    if sm is not None and (sm.dtype.kind not in "iub" or sm.shape != (n,)):
        raise ArtifactError(
            f"artifact {version}: stale {sm.dtype}{sm.shape} is not a [{n}] mask", "bad_tensor"
        )
    ni = arrays.get("nbr_idx")
    if ni is not None:
        if ni.dtype.kind not in "iu" or ni.ndim != 2 or ni.shape[0] != n:
            raise ArtifactError(
                f"artifact {version}: nbr_idx {ni.dtype}{ni.shape} is not an integer [{n}, m] table",
                "bad_tensor",
            )
        if ni.size and (int(ni.min()) < -1 or int(ni.max()) >= n):
            raise ArtifactError(
                f"artifact {version}: neighbour indices span {int(ni.min())}..{int(ni.max())}, "
                f"outside -1..{n - 1}",
                "bad_index",
            )
    for name, t in lora.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ArtifactError(
                f"artifact {version}: LoRA tensor {name} holds NaN or infinite values", "bad_tensor"
            )
