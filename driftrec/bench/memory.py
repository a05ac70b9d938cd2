"""Where a scorer's memory goes, by part: the serving item table's arrays, the item-side
operands of the exact ranking, the candidate path's index and buffers, the scorer's
per-item vectors, and an estimate of the item ids and their lookup dict (CPython objects).

An array is counted once however many parts hold it (a table's ``vectors`` that *are* its
``text``), and a broadcast view (a zero residual) counts nothing. The figures are MB
(10^6 bytes); ``total_mb`` is their sum, to read against the process's peak RSS.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: Item ids sampled for the ids' estimate.
ID_SAMPLE = 2000


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _held(a: Any, seen: set[int]) -> int:
    """The bytes ``a`` (a numpy array or a torch tensor) holds that no array counted
    before holds."""
    if a is None:
        return 0
    if not isinstance(a, np.ndarray):  # a torch tensor
        try:
            key = a.untyped_storage().data_ptr()
            n = a.untyped_storage().nbytes()
        except AttributeError:  # pragma: no cover - not an array
            return 0
        if key in seen:
            return 0
        seen.add(key)
        return int(n)
    if 0 in a.strides and a.size > 1:  # a broadcast view
        return 0
    r = _root(a)
    if id(r) in seen:
        return 0
    seen.add(id(r))
    return int(r.nbytes)


def index_bytes(index: Any) -> int:
    """The bytes of a candidate index (:class:`driftrec.scorer.ann.AnnIndex`): the faiss
    index as serialised (codes, ids, list centres: about what it holds in memory) and the
    row -> list map."""
    if index is None:
        return 0
    import faiss

    n = int(faiss.serialize_index(index.index).nbytes)
    for a in (index.list_of, index.centres):
        n += 0 if a is None else int(a.nbytes)
    return n


def ids_bytes(item_ids: list[str], row_index: Any) -> int:
    """An estimate of the item ids (the list and its strings, sampled) and the id -> row
    dict (its table and an int per row)."""
    n = len(item_ids)
    if not n:
        return 0
    step = max(1, n // ID_SAMPLE)
    per = float(np.mean([sys.getsizeof(s) for s in item_ids[::step]]))
    ints = 32 * max(0, n - 257)  # rows above the small ints CPython caches
    return int(sys.getsizeof(item_ids) + per * n + sys.getsizeof(row_index) + ints)


def memory_breakdown(sc: Any) -> dict[str, float]:
    """MB by part of scorer ``sc`` (see the module doc)."""
    seen: set[int] = set()
    t = sc.model.table
    out: dict[str, int] = {}
    for name in ("text", "vectors", "residual", "context", "bias", "nbr_idx", "nbr_w", "stale"):
        out[f"table_{name}"] = _held(getattr(t, name, None), seen)
    out["table_other"] = sum(_held(getattr(t, a, None), seen) for a in ("age_edges", "age_lograte"))
    aug = [a for p in (getattr(sc, "_aug", None), getattr(sc, "_next_aug", None)) if p for a in p]
    out["exact_operands"] = sum(_held(a, seen) for a in aug) + _held(getattr(sc, "_buf", None), seen)
    ranker = getattr(sc, "_ranker", None)
    sides = [getattr(ranker, a, None) for a in ("_side", "_next")] if ranker is not None else []
    out["bf16_operands"] = sum(_held(s.Xh, seen) for s in sides if s is not None)
    if ranker is not None:
        out["bf16_operands"] += _held(getattr(ranker, "_A", None), seen)
    out["scorer_per_item"] = sum(_held(getattr(sc, a, None), seen) for a in ("_pop", "_pub"))
    cand = sc.candidates
    st = getattr(cand, "_state", None)
    nxt = getattr(cand, "_next", None)
    idx = {id(s.index): s.index for s in (st, nxt) if s is not None and s.index is not None}
    out["index"] = sum(index_bytes(i) for i in idx.values())
    marks = getattr(cand, "_marks", None)
    bufs = [s.ok for s in (st, nxt) if s is not None] + [getattr(cand, "_slot", None)]
    if marks is not None:
        bufs += list(marks.mark) + list(marks.slot)
    out["candidate_buffers"] = sum(_held(a, seen) for a in bufs)
    out["ids_estimate"] = ids_bytes(t.item_ids, t.row_index)
    mb = {k + "_mb": round(v / 1e6, 1) for k, v in out.items() if v}
    mb["total_mb"] = round(sum(out.values()) / 1e6, 1)
    return mb
