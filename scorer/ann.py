"""An approximate maximum-inner-product index over a catalog's target side (faiss).

The score's item part that does not move with time is ``v_j . u / temperature + bias_j``:
one inner product between ``[u / temperature | 1]`` and ``[v_j | bias_j]``, which is what
the index holds (zero-padded to a width the product quantizer divides). Rows with a
non-finite vector or bias are never indexed. The index's ids are the table's rows.

Which index, by catalog size (``spec="auto"``): an exact flat product below
``FLAT_BELOW`` rows; an inverted file of ``nlist`` lists with the vectors as they are
below ``PQ_FROM`` rows; above, the lists hold 4-bit product-quantised codes scanned with
SIMD (faiss "fast scan"), ``DIM_PER_CODE`` dimensions a code. The index only proposes
candidates: the scorer ranks them again with the full score.

How many lists a query scans (``nprobe``) is chosen by a curve measured at build time:
pseudo-queries (the mean of one to five random items, over the temperature, with those
items left out as a user's seen items are) are ranked exactly and by the index; the
smallest ``nprobe`` whose recall@10 (the exact ten among the index's ``k``) reaches
``recall`` is taken, within ``scan`` rows scanned per query, unless doubling it stops
paying first (less than ``MIN_GAIN`` more recall). :attr:`AnnIndex.curve` keeps
the measurements (nprobe, rows scanned, recall@10, microseconds a query). A batch's
lists are chosen by one bfloat16 product with the lists' centres (faiss's float32 one
cost ~20 us a query on the project's 2-core machine), then scanned by faiss.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: Below this many rows the index is an exact flat product.
FLAT_BELOW = 4096
#: From this many rows the lists hold product-quantised codes (fast scan).
PQ_FROM = 50_000
#: Dimensions per 4-bit code of the product quantiser. One: at a million items of a topical
#: catalog (``driftrec bench catalog --catalog topics``) the served recall@10 was 0.992
#: against 0.918 with two, at the same events/s; the codes take 193 bytes an item.
DIM_PER_CODE = 1
#: Rows added to faiss at a time (bounds the float32 copy made for it).
CHUNK = 65_536
#: Pseudo-queries of the recall curve.
CURVE_QUERIES = 256
#: Rows of the curve's exact truth scored at a time: its ``[CURVE_QUERIES, rows]`` scores
#: and their sort order stay ~40 MB (with CHUNK rows they were ~270 MB at every build).
CURVE_ROWS = 16_384
#: How many 4-bit codes a query scans for the time it takes to scan one float32 row
#: (measured on this project's 2-core machine: ~10 against ~45 ns): the ``scan`` budget in
#: rows allows this many times as many codes.
CODES_PER_ROW = 2


#: Doubling ``nprobe`` must add this much recall@10 to be worth it (where the curve is flat,
#: as on a catalog of random vectors, the index scans one list).
MIN_GAIN = 0.02


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise RuntimeError("the candidate index needs faiss: pip install faiss-cpu") from exc
    return faiss


def padded_dim(d: int) -> int:
    """The index's width for ``d``-dimensional vectors: ``d + 1`` (the bias), rounded up to
    a multiple of ``2 * DIM_PER_CODE``."""
    step = 2 * DIM_PER_CODE
    return -(-(d + 1) // step) * step


def item_side(vectors: np.ndarray, bias: np.ndarray, rows: np.ndarray, D: int) -> np.ndarray:
    """``[v | bias | 0]`` of ``rows``, float32 ``[len(rows), D]``."""
    d = vectors.shape[1]
    X = np.zeros((len(rows), D), np.float32)
    X[:, :d] = vectors[rows]
    X[:, d] = bias[rows]
    return X


def query_side(U: np.ndarray, D: int) -> np.ndarray:
    """``[u | 1 | 0]`` of user rows already over the temperature, float32 ``[B, D]``."""
    B, d = U.shape
    Q = np.zeros((B, D), np.float32)
    Q[:, :d] = U
    Q[:, d] = 1.0
    return Q


def finite_rows(vectors: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Whether each row's vector and bias are finite (the others are never candidates)."""
    ok: np.ndarray = np.isfinite(bias)
    for s in range(0, len(ok), CHUNK):  # no [N, d] temporary at once
        ok[s : s + CHUNK] &= np.isfinite(vectors[s : s + CHUNK]).all(1)
    return ok


@dataclass
class AnnIndex:
    """A faiss index over the rows of one table (ids = rows) and its chosen ``nprobe``."""

    index: Any  # a faiss index (ids: the table's rows)
    D: int
    n_rows: int
    spec: str
    nprobe: int = 1
    nlist: int = 1
    curve: list[tuple[int, int, float, float]] = field(default_factory=list)
    build_s: float = 0.0
    #: the lists' centres (float32, and bfloat16 for choosing the lists of a batch)
    centres: np.ndarray | None = None
    _centres16: Any = None
    #: each row's list (-1: not indexed), for the popular items of a user's lists
    list_of: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        bias: np.ndarray,
        temperature: float,
        spec: str = "auto",
        k: int = 64,
        recall: float = 0.95,
        scan: int = 8192,
        seed: int = 0,
        ok: np.ndarray | None = None,
        held: np.ndarray | None = None,
    ) -> AnnIndex:
        """Index the rows of ``vectors``/``bias`` (``ok``: the rows that may be indexed;
        default: the finite ones) and choose ``nprobe`` on the measured curve. ``held``:
        rows left out for now (items not yet published); the lists, the index type and
        the curve are those of all the ``ok`` rows, which the index will hold."""
        faiss = _faiss()
        t0 = time.perf_counter()
        N, d = vectors.shape
        D = padded_dim(d)
        if ok is None:
            ok = finite_rows(vectors, bias)
        rows = np.flatnonzero(ok)
        n = len(rows)
        if spec == "auto":
            if n < FLAT_BELOW:
                spec = "Flat"
            else:
                nlist = max(16, min(int(round(2 * math.sqrt(n))), n // 40))
                codes = f"PQ{D // DIM_PER_CODE}x4fs" if n >= PQ_FROM else "Flat"
                spec = f"IVF{nlist},{codes}"
        m = re.search(r"PQ(\d+)", spec)
        if m and (D % int(m.group(1)) or ("fs" in spec and int(m.group(1)) % 2)):
            raise ValueError(
                f"index {spec!r}: the product quantiser's {m.group(1)} codes must divide the "
                f"index's width {D} (an even count for x4fs), e.g. PQ{D // DIM_PER_CODE}x4fs"
            )
        rng = np.random.default_rng(seed)
        base = faiss.index_factory(D, spec, faiss.METRIC_INNER_PRODUCT)
        index = base if "IVF" in spec else faiss.IndexIDMap(base)
        ivf = faiss.extract_index_ivf(index) if "IVF" in spec else None
        out = cls(index, D, N, spec, nlist=ivf.nlist if ivf is not None else 1)
        if ivf is not None:
            import torch

            ivf.cp.niter = 10
            ivf.cp.max_points_per_centroid = 48
            sample = np.sort(rng.choice(rows, min(n, 48 * ivf.nlist), replace=False))
            index.train(item_side(vectors, bias, sample, D))
            out.centres = ivf.quantizer.reconstruct_n(0, ivf.nlist)
            out._centres16 = torch.from_numpy(out.centres).bfloat16()
        elif not index.is_trained:  # pragma: no cover - a spec without lists that needs training
            index.train(item_side(vectors, bias, rows, D))
        for s in range(0, n, CHUNK):
            r = rows[s : s + CHUNK].astype(np.int64)
            X = item_side(vectors, bias, r, D)
            if ivf is None or "fs" in spec:  # fast-scan lists pack their codes in add_with_ids
                index.add_with_ids(X, r)
            else:  # each row to its list by a bfloat16 product (faiss's float32 one is slower)
                lists = torch.argmax(torch.from_numpy(X).bfloat16() @ out._centres16.T, dim=1).numpy()
                lists = np.ascontiguousarray(lists, np.int64)
                index.add_core(len(r), faiss.swig_ptr(X), faiss.swig_ptr(r), faiss.swig_ptr(lists))
        if ivf is not None:
            out.list_of = np.full(N, -1, np.int32)
            inv = ivf.invlists
            for lst in range(ivf.nlist):
                size = inv.list_size(lst)
                if size:
                    out.list_of[faiss.rev_swig_ptr(inv.get_ids(lst), size)] = lst
            if "PQ" in spec:
                scan *= CODES_PER_ROW
            out._choose(vectors, bias, rows, temperature, k, recall, scan, rng)
        if held is not None:
            out.remove(np.flatnonzero(held & ok))
        out.build_s = time.perf_counter() - t0
        return out

    def _choose(
        self,
        vectors: np.ndarray,
        bias: np.ndarray,
        rows: np.ndarray,
        temperature: float,
        k: int,
        recall: float,
        scan: int,
        rng: np.random.Generator,
    ) -> None:
        """Measure recall@10 and time against ``nprobe``; keep the smallest ``nprobe``
        that reaches ``recall`` within ``scan`` rows a query (else the largest within it)."""
        n, nlist = len(rows), self.nlist
        nq = min(CURVE_QUERIES, n)
        hist = rng.integers(1, 6, nq)
        picks = [rng.choice(rows, h, replace=False) for h in hist]
        U = np.stack([vectors[p].mean(0) for p in picks]).astype(np.float32) * np.float32(1 / temperature)
        Q = query_side(U, self.D)
        gone = np.ones(self.n_rows, bool)
        gone[rows] = False
        # exact over the indexed rows, the picked ones left out: by blocks of CURVE_ROWS rows (the
        # rows as float32 one block at a time, never the whole catalog), the best ten of
        # each block kept and merged
        best_s = np.full((nq, 10), -np.inf, np.float32)
        best_i = np.zeros((nq, 10), np.int64)
        for c in range(0, self.n_rows, CURVE_ROWS):
            S = U @ np.asarray(vectors[c : c + CURVE_ROWS], np.float32).T
            S += bias[c : c + CURVE_ROWS]
            S[:, gone[c : c + CURVE_ROWS]] = -np.inf
            for i, p in enumerate(picks):
                p = p[(p >= c) & (p < c + CURVE_ROWS)]
                S[i, p - c] = -np.inf
            m = min(10, S.shape[1])
            top = np.argpartition(-S, m - 1, axis=1)[:, :m]
            cand_s = np.concatenate([best_s, np.take_along_axis(S, top, 1)], 1)
            cand_i = np.concatenate([best_i, top + c], 1)
            keep = np.argpartition(-cand_s, 9, axis=1)[:, :10]
            best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
        truth = best_i
        per_list = n / nlist
        best = 1
        p = 1
        while True:
            self.nprobe = p
            t = time.perf_counter()
            got = self.search(Q, k + 5)
            us = (time.perf_counter() - t) / nq * 1e6
            rec = float(
                np.mean(
                    [
                        len(set(truth[i].tolist()) & (set(got[i].tolist()) - set(picks[i].tolist()))) / 10
                        for i in range(nq)
                    ]
                )
            )
            self.curve.append((p, int(round(p * per_list)), round(rec, 4), round(us, 1)))
            if len(self.curve) > 1 and rec - self.curve[-2][2] < MIN_GAIN:
                break  # the knee: twice the scan for next to nothing
            if p * per_list <= scan or p == 1:
                best = p
            if rec >= recall or p >= nlist or 2 * p * per_list > max(scan, per_list):
                break
            p = min(2 * p, nlist)
        self.nprobe = best

    def copy(self) -> AnnIndex:
        """An independent copy (faiss's index cloned), to change off the serving thread."""
        return replace(
            self,
            index=_faiss().clone_index(self.index),
            curve=list(self.curve),
            list_of=None if self.list_of is None else self.list_of.copy(),
        )

    def search(self, Q: np.ndarray, k: int) -> np.ndarray:
        """Rows of the ``k`` best items of each query row of ``Q`` (``[B, D]``, see
        :func:`query_side`), best first; -1 where there are fewer."""
        return self.search_lists(Q, k)[0]

    def search_lists(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`search`, and the lists each query scanned, best first (None: no lists)."""
        lists = None
        if self.index.ntotal == 0 or len(Q) == 0:
            return np.full((len(Q), k), -1, np.int64), lists
        Q = np.ascontiguousarray(Q, np.float32)
        if self.centres is None:
            _, idx = self.index.search(Q, k)
        else:  # the lists by a bfloat16 product (faiss's float32 one costs ~20 us a query)
            import torch

            p = min(self.nprobe, self.nlist)
            A = torch.from_numpy(Q).bfloat16() @ self._centres16.T
            lists = torch.topk(A, p, dim=1, sorted=True).indices.numpy()
            dis = np.einsum("bd,bpd->bp", Q, self.centres[lists])
            faiss = _faiss()
            faiss.extract_index_ivf(self.index).nprobe = p
            _, idx = self.index.search_preassigned(Q, k, lists, dis)
        out: np.ndarray = idx.astype(np.int64, copy=False)
        return out, lists

    def add(self, rows: np.ndarray, vectors: np.ndarray, bias: np.ndarray) -> None:
        """(Re)index ``rows`` with their current vector and bias: rows of a longer table,
        or rows whose vector changed. Non-finite rows are removed and not added back."""
        rows = np.asarray(rows, np.int64)
        if rows.size == 0:
            return
        self.remove(rows)
        ok = rows[finite_rows(vectors[rows], bias[rows])]
        if ok.size:
            X = item_side(vectors, bias, ok, self.D)
            self.index.add_with_ids(X, ok)
        self.n_rows = max(self.n_rows, int(rows.max()) + 1)
        if self.list_of is not None:
            if len(self.list_of) < self.n_rows:
                self.list_of = np.concatenate(
                    [self.list_of, np.full(self.n_rows - len(self.list_of), -1, np.int32)]
                )
            if ok.size:
                faiss = _faiss()
                _, assign = faiss.extract_index_ivf(self.index).quantizer.search(X, 1)
                self.list_of[ok] = assign[:, 0]

    def remove(self, rows: np.ndarray) -> None:
        """Take ``rows`` out of the index (rows not in it are ignored)."""
        rows = np.asarray(rows, np.int64)
        if rows.size:
            faiss = _faiss()
            self.index.remove_ids(faiss.IDSelectorBatch(rows))
            if self.list_of is not None:
                self.list_of[rows[rows < len(self.list_of)]] = -1
