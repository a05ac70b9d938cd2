"""The compiled middle of the candidate path (numba): per user, the distinct candidate
columns of its own sources and their exact dot products.

A user's own candidates are its co-engagement entries (in the order the exact path adds
them, so that a column's sum is the same) and its index results, less its seen items and
less the columns every user of the batch scores anyway (``shared``: popular, fresh and
changed items, ranked as one dense product; their co-engagement goes to ``sh_add``). Each
thread marks the columns of the row it works on in its own ``[N]`` stamp array, so that
nothing is reset between rows or batches.

The function releases the GIL (``nogil``): :func:`gather` splits the rows between threads.
It is compiled once per machine and cached on disk. Item rows held in float16
(``ScorerConfig.item_storage``) are read through a table of their 65,536 values as float32
(exact), by a second function that takes the dot products once the columns are chosen.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import numba as _nb
except ImportError:  # pragma: no cover - numba is a dependency
    _nb = None

_SIG = (
    "void(int64, int64, int64, float32[:, ::1], float32[:, ::1], int64[:, ::1], int64[::1], int64[::1], "
    "float32[::1], int64[::1], int64[::1], int32[::1], int64[::1], int32[::1], int64[:, ::1], "
    "float32[:, ::1], float32[:, ::1], float32[:, ::1])"
)


def _rows(
    r0,
    r1,
    stamp0,
    U,
    V,
    ann,
    cptr,
    ccols,
    cvals,
    sptr,
    scols,
    shared,
    mark,
    slot,
    out_c,
    out_d,
    out_a,
    sh_add,
):  # pragma: no cover - compiled
    """Rows ``r0:r1``. ``out_c[b]``: the row's own candidate columns (-1 after the last),
    ``out_d``: their dot products with ``U[b]`` (-inf after the last), ``out_a``: their
    co-engagement sums; ``sh_add[b, s]``: co-engagement of shared column ``s`` (-inf: seen)."""
    N = V.shape[0]
    D = V.shape[1]
    A = ann.shape[1]
    for b in range(r0, r1):
        stamp = stamp0 + b
        for e in range(sptr[b], sptr[b + 1]):
            c = scols[e]
            mark[c] = stamp
            slot[c] = -2
            if shared[c] >= 0:
                sh_add[b, shared[c]] = -np.inf
        n = 0
        for e in range(cptr[b], cptr[b + 1]):
            c = ccols[e]
            s = shared[c]
            if s >= 0:
                sh_add[b, s] += cvals[e]
            elif mark[c] == stamp:
                q = slot[c]
                if q >= 0:
                    out_a[b, q] += cvals[e]
            else:
                mark[c] = stamp
                slot[c] = n
                out_c[b, n] = c
                out_a[b, n] = cvals[e]
                n += 1
        for a in range(A):
            c = ann[b, a]
            if c < 0 or c >= N or shared[c] >= 0 or mark[c] == stamp:
                continue
            mark[c] = stamp
            slot[c] = n
            out_c[b, n] = c
            out_a[b, n] = 0.0
            n += 1
        u = U[b]
        for q in range(n):
            x = V[out_c[b, q]]
            acc = np.float32(0.0)
            for t in range(D):
                acc += u[t] * x[t]
            out_d[b, q] = acc
        for q in range(n, out_c.shape[1]):
            out_c[b, q] = -1
            out_d[b, q] = -np.inf
            out_a[b, q] = 0.0


_SIG16 = "void(int64, int64, float32[:, ::1], uint16[:, ::1], float32[::1], int64[:, ::1], float32[:, ::1])"


def _dots16(r0, r1, U, V, lut, out_c, out_d):  # pragma: no cover - compiled
    """``out_d[b, q] = U[b] . V[out_c[b, q]]`` for rows ``r0:r1`` (up to the first -1), with
    ``V`` the bits of float16 rows and ``lut`` each bit pattern's float32 value: the same
    sums, in the same order, as :func:`_rows` over the rows converted to float32."""
    D = V.shape[1]
    for b in range(r0, r1):
        u = U[b]
        for q in range(out_c.shape[1]):
            c = out_c[b, q]
            if c < 0:
                break
            x = V[c]
            acc = np.float32(0.0)
            for t in range(D):
                acc += u[t] * lut[x[t]]
            out_d[b, q] = acc


_compiled = None
_compiled16 = None
_LUT16: np.ndarray | None = None
_lock = threading.Lock()
_lock16 = threading.Lock()  # its own: compiling it never holds up the pool or the row function
_pool: ThreadPoolExecutor | None = None


def kernel():
    """The compiled row function (compiled, or loaded from numba's cache, on first use)."""
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                if _nb is None:  # pragma: no cover - numba is a dependency
                    raise RuntimeError("the candidate path needs numba: pip install numba")
                # reassociation lets the dot product use vector registers; no 'ninf'/'nnan':
                # seen items are -inf
                _compiled = _nb.njit(
                    _SIG, nogil=True, cache=True, fastmath={"reassoc", "nsz", "contract", "arcp"}
                )(_rows)
    return _compiled


def kernel16():
    """The compiled dot products over float16 rows, and its table of their values."""
    global _compiled16, _LUT16
    if _compiled16 is None:
        with _lock16:
            if _compiled16 is None:
                if _nb is None:  # pragma: no cover - numba is a dependency
                    raise RuntimeError("the candidate path needs numba: pip install numba")
                _LUT16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
                _compiled16 = _nb.njit(
                    _SIG16, nogil=True, cache=True, fastmath={"reassoc", "nsz", "contract", "arcp"}
                )(_dots16)
    assert _LUT16 is not None
    return _compiled16, _LUT16


def warm() -> None:
    """Compile (or load from the cache) the row function on a background thread, so that
    the first batch on the candidate path does not wait for it."""
    if (_compiled is None or _compiled16 is None) and _nb is not None:
        threading.Thread(target=_compile_both, name="driftrec-cand-compile", daemon=True).start()


def _compile_both() -> None:
    kernel()
    kernel16()  # the dot products over float16 rows


class Marks:
    """Per-thread stamp arrays over the catalog's columns, kept from batch to batch."""

    def __init__(self) -> None:
        self.n = -1
        self.mark: list[np.ndarray] = []
        self.slot: list[np.ndarray] = []
        self.stamp = 1  # the next row's stamp: never reused, so nothing is ever cleared

    def get(self, N: int, threads: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if N != self.n or len(self.mark) < threads:
            self.n = N
            self.mark = [np.zeros(N, np.int64) for _ in range(threads)]
            self.slot = [np.zeros(N, np.int32) for _ in range(threads)]
        return self.mark, self.slot


def gather(
    U: np.ndarray,
    V: np.ndarray,
    ann: np.ndarray,
    cptr: np.ndarray,
    ccols: np.ndarray,
    cvals: np.ndarray,
    sptr: np.ndarray,
    scols: np.ndarray,
    shared: np.ndarray,
    n_shared: int,
    marks: Marks,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(columns, dots, cooc, shared_add)``: ``[B, C]`` each for the rows' own candidates
    (``C``: the most any row can have) and ``[B, n_shared]``. ``U [B, d]``: user vectors
    over the temperature; ``V [N, d]``: item vectors; ``ann [B, A]``: index results (-1:
    none); ``cptr, ccols, cvals``: co-engagement by row (CSR); ``sptr, scols``: seen columns
    by row; ``shared [N]``: each column's place among the shared ones, -1 if not shared."""
    global _pool
    f = kernel()
    B, N = U.shape[0], V.shape[0]
    half = V.dtype == np.float16
    if half:  # the columns first (no dot products: rows of width 0), then their dots
        V16, V = V, np.empty((N, 0), np.float32)
    C = max(1, int(np.max(np.diff(cptr), initial=0)) + ann.shape[1])
    out_c = np.empty((B, C), np.int64)
    out_d = np.empty((B, C), np.float32)
    out_a = np.empty((B, C), np.float32)
    sh_add = np.zeros((B, n_shared), np.float32)
    threads = max(1, min(threads, B // 32))
    mark, slot = marks.get(N, threads)
    stamp0 = marks.stamp
    marks.stamp += B
    args = (U, V, ann, cptr, ccols, cvals, sptr, scols, shared)
    outs = (out_c, out_d, out_a, sh_add)
    if threads == 1:
        f(0, B, stamp0, *args, mark[0], slot[0], *outs)
        if half:
            f16, lut = kernel16()
            f16(0, B, U, V16.view(np.uint16), lut, out_c, out_d)
        return outs
    with _lock:
        if _pool is None or _pool._max_workers < threads:
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="driftrec-cand")
        pool = _pool
    cuts = np.linspace(0, B, threads + 1).astype(np.int64).tolist()
    futs = [
        pool.submit(f, cuts[i], cuts[i + 1], stamp0, *args, mark[i], slot[i], *outs) for i in range(threads)
    ]
    for fu in futs:
        fu.result()
    if half:
        f16, lut = kernel16()
        bits = V16.view(np.uint16)
        futs = [pool.submit(f16, cuts[i], cuts[i + 1], U, bits, lut, out_c, out_d) for i in range(threads)]
        for fu in futs:
            fu.result()
    return outs
