"""Exact top-k of a large score matrix with a bfloat16 first pass.

The score matrix ``S = Ua @ X.T (+ co-engagement, seen items at -inf)`` dominates a batch.
On CPUs that multiply bfloat16 natively (x86 ``avx512_bf16`` / ``amx_bf16``) the product
takes half the time of the float32 one. Its results are rounded, so they only *select*
candidates; the ranking is exact:

1. ``A = bf16(Ua) @ bf16(X).T`` (float32 accumulation, bfloat16 result); per row, widened
   to float32, co-engagement added, seen items set to ``-inf`` (:class:`RowAdds`).
2. The ``C = k + margin`` best columns of each row by these approximate scores.
3. Their exact scores: the float32 dot products of those ``C`` items, plus the
   co-engagement part, which is the approximate score minus ``A`` (the same addition).
4. A row is *certified* when its k-th best exact score exceeds the largest score any other
   item could have: the C-th approximate score plus a bound on the rounding error of step 1
   (below). Rows that are not certified are ranked again in float32, in full.

Steps 1-3 after the product run compiled, one row at a time (:mod:`driftrec.scorer._select`).

The bound, for an item ``j`` outside the candidates (``S_j <= S_C``): with ``Uh, Xh`` the
bfloat16 roundings, ``Ul = Ua - Uh``, ``Xl = X - Xh`` and ``acc`` the float32 sum,

- ``|Ua.X_j - acc_j| <= |Uh||Xl_j| + |Ul||X_j| + gamma (|Uh||Xh_j|)`` (Cauchy-Schwarz on
  the rounding residuals; ``gamma = 2 D 2^-24`` covers float32 accumulation), computed
  apart for the item columns and the ``bias + prior`` column (whose user entry is 1,
  exact in bfloat16);
- ``|acc_j - A_j| <= eps |A_j|`` with ``eps = 1.01 * 2^-8`` (one rounding to bfloat16);
  ``A_j`` is at most ``|S_C| + max(cmin, cmax)`` in size where ``cmin``/``cmax`` bound the
  co-engagement part below/above.

The result is the float32 ranking up to float32 rounding: scores agree with the float32
path to ~1e-6 and items within that of each other may swap places, as they may between
two BLAS builds.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from driftrec.model import ItemTable, Representation

EPS_BF16 = 1.01 * 2.0**-8
#: The smallest score matrix (rows x columns) worth a bfloat16 pass.
MIN_CELLS = 1 << 22
#: Rows of the item side whose norms are taken at a time (:meth:`Bf16Ranker._build`):
#: two float32 copies of the whole side were made at once (3 GB at a million items).
SIDE_ROWS = 1 << 16
#: Candidates beyond k to start with; doubled (up to MAX_MARGIN) while more than
#: 2 % of a batch's rows are not certified.
MARGIN, MAX_MARGIN = 6, 64


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (Linux x86: ``avx512_bf16`` or
    ``amx_bf16`` in ``/proc/cpuinfo``). Elsewhere bfloat16 may be emulated, and slower."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False
    return False


def resolve_precision(setting: str) -> str:
    """``auto`` -> ``bfloat16`` where :func:`native_bf16`, else ``float32``."""
    if setting == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return setting


@dataclass
class RowAdds:
    """What a batch adds to its rows of the product: co-engagement (``cptr, ccols,
    cvals``: by row, CSR, added in order) and seen items (``sptr, scols``: set to
    ``-inf`` after). Both ranking passes apply the same additions, so their scores agree."""

    cptr: np.ndarray
    ccols: np.ndarray
    cvals: np.ndarray
    sptr: np.ndarray
    scols: np.ndarray

    @classmethod
    def build(
        cls,
        B: int,
        cooc: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        seen: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> RowAdds:
        """From ``(rows, columns, values)`` and ``(rows, columns)``, each in row order."""

        def ptr(rows: np.ndarray) -> np.ndarray:
            p = np.zeros(B + 1, np.int64)
            np.cumsum(np.bincount(rows, minlength=B), out=p[1:])
            return p

        z = np.zeros(0, np.int64)
        cr, cc, cv = cooc if cooc is not None else (z, z, np.zeros(0, np.float32))
        sr, sc = seen if seen is not None else (z, z)
        return cls(
            ptr(cr),
            np.ascontiguousarray(cc, np.int64),
            np.ascontiguousarray(cv, np.float32),
            ptr(sr),
            np.ascontiguousarray(sc, np.int64),
        )

    def apply(self, S: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Into the float32 rows ``rows`` of the batch (all when None), held by ``S`` in
        that order, in place."""
        from driftrec.model import add_entries

        def take(ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray | slice]:  # (row in S, entries)
            if rows is None:  # every entry, in order
                return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr)), slice(None)
            sel = np.asarray(rows, np.int64)
            lens = ptr[sel + 1] - ptr[sel]
            first = np.repeat(ptr[sel] - np.cumsum(lens) + lens, lens)
            return np.repeat(np.arange(len(sel)), lens), first + np.arange(int(lens.sum()))

        r, e = take(self.cptr)
        if r.size:
            add_entries(S, r, self.ccols[e], self.cvals[e])
        r, e = take(self.sptr)
        if r.size:
            S[r, self.scols[e]] = -np.inf


@dataclass
class _Side:
    """The item side of one model version in bfloat16, and its norms for the bound."""

    vectors: np.ndarray  # the float32 vectors it was made from (identity = version)
    Xh: object  # torch bfloat16 [N, d + 1]; column d rewritten each batch
    n_x: float  # max |X_j[:d]|
    n_xh: float  # max |Xh_j[:d]|
    n_xl: float  # max |X_j[:d] - Xh_j[:d]|


@dataclass
class RankStats:
    """Counts of the bfloat16 first pass: batches, rows, and rows ranked again in float32."""

    batches: int = 0
    rows: int = 0
    fallback_rows: int = 0


class Bf16Ranker:
    """Certified exact top-k over ``[Ua | 1] @ [X | bias + prior].T`` plus the batch's
    :class:`RowAdds` (see the module doc)."""

    def __init__(self) -> None:
        self._side: _Side | None = None
        self._next: _Side | None = None  # prepared for the next version
        self._A = None  # torch bfloat16 buffer [rows, N]
        self.margin = MARGIN
        self.stats = RankStats()

    @staticmethod
    def _build(X: np.ndarray, vectors: np.ndarray) -> _Side:
        import torch

        d = X.shape[1] - 1
        Xt = torch.from_numpy(X)
        Xh = Xt.bfloat16()
        n_x = n_xh = n_xl = 0.0
        for s in range(0, max(len(X), 1), SIDE_ROWS):  # the float32 temporaries a block at a time
            v, vh = Xt[s : s + SIDE_ROWS, :d], Xh[s : s + SIDE_ROWS, :d].float()
            if len(v):
                n_x = max(n_x, float(v.norm(dim=1).max()))
                n_xh = max(n_xh, float(vh.norm(dim=1).max()))
                n_xl = max(n_xl, float((v - vh).norm(dim=1).max()))
        return _Side(vectors, Xh, n_x, n_xh, n_xl)

    def prepare(self, X: np.ndarray, vectors: np.ndarray) -> None:
        """Build the bfloat16 item side of a version about to be swapped in (~10 ms for
        10,000 x 384), off the serving thread; its first batch then finds it ready."""
        self._next = self._build(X, vectors)

    def _item_side(self, X: np.ndarray, vectors: np.ndarray) -> _Side:
        import torch

        side = self._side
        if side is None or side.vectors is not vectors or side.Xh.shape[0] != X.shape[0]:
            nxt = self._next
            ok = nxt is not None and nxt.vectors is vectors and nxt.Xh.shape[0] == X.shape[0]
            if ok:
                self._next = None  # used (one prepared for a later version stays)
            side = self._side = nxt if ok else self._build(X, vectors)
        d = X.shape[1] - 1
        side.Xh[:, d].copy_(torch.from_numpy(X[:, d]))  # bias + prior change every batch
        return side

    def topk(
        self,
        Ua: np.ndarray,
        X: np.ndarray,
        vectors: np.ndarray,
        k: int,
        adds: RowAdds,
        cooc_range: tuple[float, float] = (0.0, 0.0),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (indices, scores), best first, of every row. ``vectors``: the
        version's item vectors (``X``'s bfloat16 copy is kept while they stay the same);
        ``cooc_range``: how far the co-engagement additions can move a score down and up
        (``-cmin <= added <= cmax``)."""
        import torch

        from driftrec.model import top_k

        from ._select import select

        B, D = Ua.shape
        N = X.shape[0]
        d = D - 1
        C = min(k + self.margin, N)
        for cols in (adds.ccols, adds.scols):  # the compiled pass does not check its indices
            if cols.size and not 0 <= int(cols.min()) <= int(cols.max()) < N:
                raise ValueError(f"an addition's column is outside the {N:,}-item catalog")
        side = self._item_side(X, vectors)
        Ut = torch.from_numpy(Ua)
        Uh = Ut.bfloat16()
        A = self._A
        if A is None or A.shape[0] < B or A.shape[1] != N:
            A = self._A = torch.empty((max(B, 64), N), dtype=torch.bfloat16)
        A = A[:B]
        torch.matmul(Uh, side.Xh.T, out=A)
        cand, approx, exact = select(
            A.view(torch.int16).numpy().view(np.uint16),
            adds.cptr,
            adds.ccols,
            adds.cvals,
            adds.sptr,
            adds.scols,
            C,
            Ua,
            X,
            torch.get_num_threads(),
        )
        order = np.argsort(-exact, axis=1, kind="stable")
        idx = np.take_along_axis(cand, order[:, :k], 1)
        val = np.take_along_axis(exact, order[:, :k], 1)
        approx = torch.from_numpy(approx)
        # the bound on any other item's exact score
        uh = Uh[:, :d].float()
        n_uh = uh.norm(dim=1)
        n_ul = (Ut[:, :d] - uh).norm(dim=1)
        bp = torch.from_numpy(X[:, d])
        bph = side.Xh[:, d].float()
        fin = torch.isfinite(bp)
        if not bool(fin.all()):  # items not yet published (-inf) can beat nothing: out of the bound
            bp, bph = bp[fin], bph[fin]
            if not bp.numel():
                bp = bph = torch.zeros(1)
        alpha = (
            n_uh * side.n_xl
            + n_ul * side.n_x
            + float((bp - bph).abs().max())
            + 2 * D * 2.0**-24 * (n_uh * side.n_xh + float(bph.abs().max()))
        )
        s_c = approx[:, -1]
        cmin, cmax = cooc_range
        bound = s_c + alpha + EPS_BF16 * (s_c.abs() + max(cmin, cmax)) + 1e-5 * (s_c.abs() + cmax + 1.0)
        ok = (torch.from_numpy(val[:, -1]) > bound) | torch.isneginf(s_c) | (C >= N)
        idx_n, val_n = idx, val
        redo = np.flatnonzero(~ok.numpy())
        if redo.size:  # exact float32 ranking of these rows
            Sr = np.matmul(Ua[redo], X.T)
            adds.apply(Sr, redo)
            ri, rv = top_k(Sr, k, inplace=True)
            idx_n[redo], val_n[redo] = ri, rv
            if redo.size > 0.02 * B:
                self.margin = min(max(2 * self.margin, MARGIN), MAX_MARGIN)
        self.stats.batches += 1
        self.stats.rows += B
        self.stats.fallback_rows += int(redo.size)
        return idx_n, val_n


class CoocRange:
    """How far co-engagement can move a score (down, up), for the bfloat16 pass's bound;
    ``None`` where it is not bounded by the neighbour weights alone (a negative type
    weight: :func:`driftrec.model.add_cooc` normalises history weights by their sum).
    Kept for the table's neighbour weights it was computed from."""

    def __init__(self) -> None:
        self._cached: tuple[Any, float, float, float] | None = None  # (nbr_w, weight, down, up)

    def __call__(self, t: ItemTable, rep: Representation) -> tuple[float, float] | None:
        if any(v < 0 for v in rep.type_weights.values()):
            return None
        if t.nbr_w is None:
            return 0.0, 0.0
        w, cached = float(t.cooc_weight), self._cached
        if cached is None or cached[0] is not t.nbr_w or cached[1] != w:
            ends = (w * float(np.min(t.nbr_w)), w * float(np.max(t.nbr_w)))
            self._cached = cached = (t.nbr_w, w, max(0.0, -min(ends)), max(0.0, max(ends)))
        return cached[2], cached[3]
