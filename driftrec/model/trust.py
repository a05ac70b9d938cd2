"""Trust: announcements and artifacts are untrusted input (DESIGN.md, hot-swap protocol, item 5).

:func:`driftrec.model.load_artifact` loads nothing before these checks pass: the
announcement carries a ``sha256`` of the manifest and a version name matching
:data:`VERSION_PATTERN`; its ``uri`` resolves (symlinks followed) to ``<store>/<version>``
(:func:`resolve_in_store`); every file is a regular file inside the artifact whose sha256
is the manifest's (:func:`read_verified`); every tensor is finite, with neighbour indices
inside the table and shapes that agree with the catalog (:func:`check_arrays`); and, given
a shared key (``ARTIFACT_KEY``), the announcement's ``signature`` is the HMAC-SHA256 of the
manifest (:func:`sign_manifest`). Each refusal is an :class:`ArtifactError` whose
``reason`` is one of :data:`REJECT_REASONS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError

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
    "out_of_range": "a value is beyond what training can produce (VALUE_RANGES: biases, row norms, "
    "co-engagement and freshness weights, the age curve, the context shift, the blend)",
    "load_error": "a file cannot be parsed or loaded",
}

SIGNATURE_PREFIX = "hmac-sha256:"

#: What training can produce, with a wide margin: ``name -> (low, high)`` of every value
#: (``bias``, ``nbr_w``, the weights, ``age_lograte``, ``age_edges``, ``context_shift``) or
#: of the L2 norm of every row (``text``, ``residual``, ``context``). :func:`check_arrays`
#: refuses an artifact with a value outside (``out_of_range``), signed or not: finite values
#: like a bias of 1e30 behind correct checksums would otherwise put one item first for
#: everyone. Where they come from (learner/core.py, learner/config.py, driftrec.model.cooc):
#:
#: - ``text``: the encoder's output is L2-normalised (norm 1);
#: - ``bias``, ``residual``, ``context``: Adam at ``lr_items`` (3e-3) for at most
#:   ``item_max_steps`` (512) steps a training, no decay, from 0 (residual, bias) and the
#:   unit text vectors (context, plus ``context_shift`` times a difference of two unit
#:   vectors, <= 8); a full-catalog softmax stops pushing a logit that already wins. Sixty
#:   trainings on the synthetic stream ended at |bias| <= 0.37 and row norms <= 1.9;
#: - ``nbr_w``: cosines of co-engagement counts, ``count(i, j) / sqrt(n_i n_j)`` > 0 and
#:   about 1 (a pair is counted at most about twice per engagement of either item: < 3);
#: - ``cooc_weight``, ``age_weight``: 0 or one of ``LearnerConfig.cooc_weights`` /
#:   ``age_weights`` (default at most 16 and 8; the config refuses more than this bound);
#: - ``age_lograte``: ``log((n_b + 1) / (exposure_b + 1/r0) / r0)``, within
#:   +-log(pairs + 1) (about 16 for a window of 10 million);
#: - ``age_edges``: bin starts in ms from 0 (the learner's reach 30 days);
#: - ``context_shift``: ``LearnerConfig.context_shift``, 0 to 4;
#: - ``text_weight``: one of ``LearnerConfig.text_weights`` (the config allows 0 to 16);
#: - ``pop_recent_share``: 0 or one of ``LearnerConfig.pop_recent_shares``, a share: 0 to 1.
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "text": (0.0, 100.0),
    "residual": (0.0, 100.0),
    "context": (0.0, 100.0),
    "bias": (-100.0, 100.0),
    "nbr_w": (0.0, 10.0),
    "cooc_weight": (0.0, 100.0),
    "age_weight": (0.0, 100.0),
    "age_lograte": (-50.0, 50.0),
    "age_edges": (0.0, 1e14),
    "context_shift": (0.0, 4.0),
    "text_weight": (0.0, 16.0),
    "pop_recent_share": (0.0, 1.0),
}
#: The arrays whose rows' L2 norms :data:`VALUE_RANGES` bounds (the others: every value).
_ROW_NORMS = ("text", "residual", "context")


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


def path_from_uri(uri: str) -> Path:
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return Path(uri)


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


def verified_manifest(
    record: Mapping[str, Any],
    store: str | os.PathLike[str] | None = None,
    key: bytes | str | None = None,
) -> tuple[str, Path, dict[str, Any]]:
    """Check an announcement against the manifest it names: ``(version, artifact
    directory, manifest)``. The version name, the ``sha256`` of the manifest, the ``uri``
    inside ``store`` (``None``: not checked), the signature under ``key`` (when given), and
    a manifest that is a JSON object with ``files`` for the announced version.
    """
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
        mbytes = read_inside(path, "manifest.json")
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
    return version, path, manifest


def read_verified(
    path: Path,
    version: str,
    manifest: Mapping[str, Any],
    names: Sequence[str],
    tensors: str | None = None,
    narrow: Narrow | None = None,
) -> dict[str, Any]:
    """The bytes of each file ``names`` of the artifact at ``path``, each a regular file
    inside it whose sha256 is the one ``manifest`` lists. The file named ``tensors`` (a
    safetensors file) comes as a :class:`TensorFile` instead: read once into arrays of
    its own, checksummed over the same bytes (no copy of the file is held besides them)."""
    # Each file is read once, checksummed and parsed from the same bytes. Reading and
    # hashing release the interpreter lock; safetensors' load_file (mmap) held it for
    # ~23 ms per 10,000 x 384 table, and this runs in the scorer's background thread.
    data: dict[str, Any] = {}
    for f in names:
        want = manifest["files"].get(f)
        h = hashlib.sha256()
        try:
            if f == tensors:
                data[f] = read_tensors(_inside(path, f), h, narrow)
            else:
                data[f] = read_inside(path, f)
                h.update(data[f])
        except FileNotFoundError:
            raise ArtifactError(f"artifact {version}: file {f} is missing", "missing_file") from None
        if not isinstance(want, str) or not hmac.compare_digest(want, h.hexdigest()):
            raise ArtifactError(f"artifact {version}: checksum mismatch for {f}", "checksum_mismatch")
    return data


def _inside(path: Path, name: str) -> str:
    """The real path of ``path/name``, a regular file that is not a link out of ``path``."""
    f = path / name
    real = os.path.realpath(f)
    if os.path.dirname(real) != os.path.realpath(path) or not os.path.isfile(real):
        if not os.path.lexists(f):
            raise FileNotFoundError(str(f))
        raise ArtifactError(
            f"artifact {path.name}: {name} is not a regular file inside the artifact", "uri_outside_store"
        )
    return real


def read_inside(path: Path, name: str) -> bytes:
    """The bytes of ``path/name``, a regular file that is not a link out of ``path``."""
    return Path(_inside(path, name)).read_bytes()


class TensorFile:
    """The arrays of a safetensors file (:func:`read_tensors`), or why it could not be
    parsed: :meth:`arrays` raises that ``ValueError`` (where the file's checksum was
    right, the caller asks for them at the point it parses)."""

    def __init__(self, arrays: dict[str, np.ndarray] | None, error: ValueError | None = None) -> None:
        self._arrays, self._error = arrays, error

    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            raise self._error or ValueError("no arrays")
        return self._arrays


#: bytes read (and hashed) at a time by :func:`read_tensors`
READ_CHUNK = 1 << 24
#: the largest safetensors header read (the JSON that names the tensors)
MAX_HEADER = 1 << 26


#: ``narrow(name, shape)``: whether a float32 tensor is kept in float16 once read
Narrow = Callable[[str, tuple[int, ...]], bool]


def read_tensors(path: str, h: Any, narrow: Narrow | None = None) -> TensorFile:
    """The tensors of the safetensors file at ``path``, each read straight into a writable
    array of its own while ``h`` (a hashlib object) hashes the same bytes, the file's
    every byte: the arrays are exactly the bytes hashed, and the file is in memory once
    (its bytes and then copies of them took twice its size). A float32 tensor that
    ``narrow(name, shape)`` names is kept in float16 as soon as it is read (a scorer that
    holds its rows so never holds the whole float32 table). Where the file is not what
    :func:`safetensors_views` reads, the rest of it is still hashed and the
    :class:`TensorFile` holds the error.

    >>> import safetensors.numpy, tempfile
    >>> p = tempfile.mkdtemp() + "/t.safetensors"
    >>> x = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "y": np.ones(2, np.uint8)}
    >>> safetensors.numpy.save_file(x, p)
    >>> h = hashlib.sha256()
    >>> got = read_tensors(p, h).arrays()
    >>> got["x"].tolist(), got["y"].tolist(), h.hexdigest() == hashlib.sha256(open(p, "rb").read()).hexdigest()
    ([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], [1, 1], True)
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        arrays: dict[str, np.ndarray] | None = None
        error: ValueError | None = None
        try:
            arrays = _read_tensors(fh, size, h, narrow)
        except ValueError as exc:  # (json's errors are ValueErrors too)
            error = exc
        except (KeyError, TypeError, RecursionError, OverflowError) as exc:
            error = ValueError(f"not a safetensors file: {type(exc).__name__} {str(exc)[:200]}")
        while chunk := fh.read(READ_CHUNK):  # whatever was not read: hashed all the same
            h.update(chunk)
    return TensorFile(arrays, error)


def _read_tensors(fh: Any, size: int, h: Any, narrow: Narrow | None = None) -> dict[str, np.ndarray]:
    def exact(buf: memoryview) -> None:
        for s in range(0, len(buf), READ_CHUNK):
            part = buf[s : s + READ_CHUNK]
            got = fh.readinto(part) or 0
            h.update(part[:got])
            if got != len(part):
                raise ValueError("not a safetensors file: it ends inside a tensor")

    head = bytearray(8)
    exact(memoryview(head))
    n = int.from_bytes(head, "little")
    if 8 + n > size or n > MAX_HEADER:
        raise ValueError("not a safetensors file: header runs past the end")
    hb = bytearray(n)
    exact(memoryview(hb))
    header = json.loads(hb)
    if not isinstance(header, dict):
        raise ValueError("not a safetensors file: the header is not an object")
    specs = []
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = _ST_DTYPES.get(str(meta.get("dtype"))) if isinstance(meta, dict) else None
        if dt is None:
            raise ValueError(f"tensor {name!r}: dtype is not supported here")
        begin, end = meta["data_offsets"]
        shape = tuple(int(x) for x in meta["shape"])
        if (
            any(x < 0 for x in shape)
            or not 0 <= begin <= end <= size - 8 - n
            or end - begin != math.prod(shape) * np.dtype(dt).itemsize
        ):
            raise ValueError(f"tensor {name!r}: data offsets {begin}..{end} do not fit shape {shape}")
        specs.append((int(begin), int(end), name, dt, shape))
    pos, out = 0, {}
    for begin, end, name, dt, shape in sorted(specs):
        if begin < pos:
            raise ValueError(f"tensor {name!r}: its data overlaps another tensor's")
        if begin > pos:  # a gap: hashed, not kept
            exact(memoryview(bytearray(begin - pos)))
        a = np.empty(shape, dt)
        exact(memoryview(a.reshape(-1).view(np.uint8).data))
        if narrow is not None and a.dtype == np.float32 and narrow(name, shape):
            a = a.astype(np.float16)
        out[name], pos = a, end
    return out


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


def safetensors_views(buf: bytes) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file's bytes as read-only views (no copy): an 8-byte
    little-endian header size, a JSON header (name -> dtype, shape, data offsets), the data.

    >>> import safetensors.numpy
    >>> b = safetensors.numpy.save({"x": np.arange(6, dtype=np.float32).reshape(2, 3)})
    >>> safetensors_views(b)["x"].tolist()
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
    "text_weight",
    "pop_recent_share",
)


def check_arrays(
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
        if not all_finite(a):
            raise ArtifactError(f"artifact {version}: {k} holds NaN or infinite values", "bad_tensor")
    for k in ("cooc_weight", "age_weight", "context_shift", "text_weight", "pop_recent_share"):
        if arrays.get(k) is not None and arrays[k].size != 1:
            raise ArtifactError(f"artifact {version}: {k} must hold one value", "bad_tensor")
    check_ranges(version, arrays)
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


#: Rows checked or compared at a time: the temporaries stay a few MB however large the
#: table (whole, a 1M x 384 table's float64 copy alone is 3 GB).
CHECK_ROWS = 16_384


def row_norms(a: np.ndarray) -> np.ndarray:
    """The L2 norm of each row of ``a`` (float64), computed a block of rows at a time.

    >>> row_norms(np.array([[3.0, 4.0], [0.0, 0.0]], np.float16)).tolist()
    [5.0, 0.0]
    """
    out = np.empty(a.shape[0], np.float64)
    for s in range(0, a.shape[0], CHECK_ROWS):
        b = a[s : s + CHECK_ROWS].astype(np.float64)
        out[s : s + CHECK_ROWS] = np.sqrt(np.einsum("ij,ij->i", b, b))
    return out


def all_finite(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is finite, checked a block of rows at a time.

    >>> all_finite(np.ones((3, 2), np.float16)), all_finite(np.array([1.0, np.nan]))
    (True, False)
    """
    if a.ndim < 2:
        return bool(np.isfinite(a).all())
    return all(bool(np.isfinite(a[s : s + CHECK_ROWS]).all()) for s in range(0, a.shape[0], CHECK_ROWS))


def check_ranges(version: str, arrays: Mapping[str, np.ndarray]) -> None:
    """:class:`ArtifactError` (``out_of_range``) when a value, or a row's L2 norm for
    ``text``/``residual``/``context``, is outside :data:`VALUE_RANGES` (finite values only:
    :func:`check_arrays` refused the others first).

    >>> check_ranges("v1", {"bias": np.array([0.3, -1.2], np.float32)})
    >>> check_ranges("v1", {"bias": np.array([0.3, 1e30], np.float32)})
    Traceback (most recent call last):
    ...
    driftrec.model.errors.ArtifactError: artifact v1: bias holds 1e+30 (row 1), outside -100..100, beyond what training produces
    """
    for k, (lo, hi) in VALUE_RANGES.items():
        a = arrays.get(k)
        if a is None or a.size == 0:
            continue
        if k in _ROW_NORMS and a.ndim == 2:
            a = row_norms(a)
            what = f"a row of {k} has an L2 norm of"
        else:
            what = f"{k} holds"
            a = a.astype(np.float64).ravel()
        bad = np.flatnonzero((a < lo) | (a > hi))
        if bad.size:
            i = int(bad[0])
            row = f" (row {i})" if a.size > 1 else ""
            raise ArtifactError(
                f"artifact {version}: {what} {a[i]:.4g}{row}, outside {lo:g}..{hi:g}, "
                f"beyond what training produces",
                "out_of_range",
            )
