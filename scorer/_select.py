"""The compiled middle of the bfloat16 ranking (numba): candidates and their exact scores.

One pass per row over the bfloat16 product instead of five over a float32 copy of it
(copy, co-engagement, seen items, block maxima, candidates) and a gather of the
candidates' vectors: the row is widened to float32 in a per-thread buffer that stays in
cache, its additions applied, and only the ``C`` best columns leave it, with their exact
dot products. In a ``driftrec bench scorer`` batch (1,024 x 10,000) this part took ~18 ms
in torch and numpy and takes ~10 ms here on 2 threads (6 ms when the product and the
item vectors are still in cache); the float32 score buffer (40 MB) is gone.

The function releases the GIL (``nogil``): :func:`select` splits the rows between threads.
It is compiled once per machine and cached on disk (the first use takes ~15 s).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import numba as _nb
except ImportError:  # pragma: no cover - numba is a dependency
    _nb = None

#: columns per block: the block maxima pick which blocks hold the candidates
BLOCK = 64

_SIG = (
    "void(uint16[:, ::1], int64, int64, int64[::1], int64[::1], float32[::1], int64[::1], int64[::1], "
    "int64, float32[:, ::1], float32[:, ::1], int64[:, ::1], float32[:, ::1], float32[:, ::1])"
)


def _rows(
    A16, r0, r1, cptr, ccols, cvals, sptr, scols, C, Ua, X, out_i, out_a, out_e
):  # pragma: no cover - compiled
    """Rows ``r0:r1``: per row, the ``C`` best columns of ``bf16 product + additions``
    (``out_i``, best first; ties by column), their approximate scores (``out_a``) and
    exact ones (``out_e``: the float32 dot product plus the same additions)."""
    N = A16.shape[1]
    D = X.shape[1]
    nblk = N // BLOCK
    m = nblk * BLOCK
    buf = np.empty(N, np.float32)
    bits = buf.view(np.uint32)
    bm = np.empty(nblk, np.float32)
    cidx = np.empty(N, np.int64)
    raw = np.empty(1, np.float32)
    rawb = raw.view(np.uint32)
    for b in range(r0, r1):
        row = A16[b]
        for j in range(N):  # bfloat16 -> float32 is a shift of the bits
            bits[j] = np.uint32(row[j]) << np.uint32(16)
        for e in range(cptr[b], cptr[b + 1]):
            buf[ccols[e]] += cvals[e]
        for e in range(sptr[b], sptr[b + 1]):
            buf[scols[e]] = -np.inf
        for q in range(nblk):
            mx = buf[q * BLOCK]
            for j in range(q * BLOCK + 1, (q + 1) * BLOCK):
                mx = max(mx, buf[j])
            bm[q] = mx
        # tau: the C-th largest block maximum. C distinct elements are >= tau, so every
        # element of the row's top C is too (with fewer than C blocks: every element).
        tau = -np.inf
        if nblk >= C:
            tau = -np.partition(-bm, C - 1)[C - 1]
        n = 0
        for q in range(nblk):
            if bm[q] >= tau:
                for j in range(q * BLOCK, (q + 1) * BLOCK):
                    if buf[j] >= tau:
                        cidx[n] = j
                        n += 1
        for j in range(m, N):  # the columns past the last whole block
            if buf[j] >= tau:
                cidx[n] = j
                n += 1
        cv = np.empty(n, np.float32)
        for q in range(n):
            cv[q] = buf[cidx[q]]
        order = np.argsort(-cv, kind="mergesort")  # stable: equal scores by column
        for q in range(C):
            j = cidx[order[q]]
            a = cv[order[q]]
            out_i[b, q] = j
            out_a[b, q] = a
            if a == -np.inf:
                out_e[b, q] = a
                continue
            s = np.float32(0.0)
            u, x = Ua[b], X[j]
            for t in range(D):
                s += u[t] * x[t]
            rawb[0] = np.uint32(row[j]) << np.uint32(16)
            out_e[b, q] = (a - raw[0]) + s  # the additions, as the approximate score got them


_compiled = None
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_threads = 0  # the workers _pool was made with


def kernel():
    """The compiled row function (compiled, or loaded from numba's cache, on first use)."""
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                if _nb is None:  # pragma: no cover - numba is a dependency
                    raise RuntimeError(
                        "the bfloat16 ranking needs numba: pip install numba "
                        "(or set SCORER_RANK_PRECISION=float32)"
                    )
                # reassociation lets the maxima and the dot product use vector registers;
                # no 'ninf'/'nnan': seen items are -inf
                _compiled = _nb.njit(
                    _SIG, nogil=True, cache=True, fastmath={"reassoc", "nsz", "contract", "arcp"}
                )(_rows)
    return _compiled


def warm() -> None:
    """Compile (or load from the cache) the row function on a background thread, so that
    the first large batch does not wait for it (~15 s the first time on a machine)."""
    if _compiled is None and _nb is not None:
        threading.Thread(target=kernel, name="driftrec-rank-compile", daemon=True).start()


def compiled_in_cache() -> bool:
    """Whether the row function is loaded, or numba's disk cache has it (no compiling)."""
    if _compiled is not None:
        return True
    import pathlib

    return any(pathlib.Path(__file__).parent.glob("__pycache__/_select._rows-*.nbi"))


def select(
    A16: np.ndarray,
    cptr: np.ndarray,
    ccols: np.ndarray,
    cvals: np.ndarray,
    sptr: np.ndarray,
    scols: np.ndarray,
    C: int,
    Ua: np.ndarray,
    X: np.ndarray,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(columns, approximate, exact)``, each ``[B, C]``, over rows split between
    ``threads`` threads. ``A16``: the bfloat16 product's bits ``[B, N]``; ``cptr, ccols,
    cvals``: co-engagement additions by row (CSR); ``sptr, scols``: seen columns by row;
    ``Ua [B, D]``, ``X [N, D]``: the float32 operands of the exact scores."""
    global _pool, _pool_threads
    f = kernel()
    B = A16.shape[0]
    out_i = np.empty((B, C), np.int64)
    out_a = np.empty((B, C), np.float32)
    out_e = np.empty((B, C), np.float32)
    args = (cptr, ccols, cvals, sptr, scols, C, Ua, X, out_i, out_a, out_e)
    threads = max(1, min(threads, B // 64))
    if threads == 1:
        f(A16, 0, B, *args)
        return out_i, out_a, out_e
    with _lock:
        if _pool is None or _pool_threads < threads:
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="driftrec-rank")
            _pool_threads = threads
        pool = _pool
    cuts = np.linspace(0, B, threads + 1).astype(np.int64).tolist()
    futs = [pool.submit(f, A16, cuts[i], cuts[i + 1], *args) for i in range(threads)]
    for fu in futs:
        fu.result()
    return out_i, out_a, out_e
