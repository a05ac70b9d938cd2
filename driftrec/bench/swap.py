"""``driftrec bench swap``: the serving pause and lost/duplicated events while versions are
hot-swapped, at any catalog size and on either ranking path.

A steady stream runs through the scorer in one thread while artifacts written with
:func:`driftrec.model.write_artifact` are prepared by :class:`scorer.SwapManager` in its
background thread (on the candidate path that includes building the version's index,
:meth:`scorer.Scorer.prepare`) and swapped in between two batches. Reported: the serving
pause (the largest gap between batches, at a swap and anywhere), events dropped or applied
twice (events in against applied), and for each version the time from its announcement
until it serves (``serves_after_s``) and how long it took to prepare. On the candidate path
the base version's index is built before the stream starts (as a scorer that prepares its
first table), and its build time reported.

A version is announced at its place in the stream, or as soon as the previous one serves;
a stream too short for a slow prepare reports fewer swaps than asked (``swaps`` against
``swaps_asked``). With ``at_once``, each is announced at its place whatever the previous
one is doing, as the scorer service submits every announcement it reads: one that comes
while another version is being prepared waits as the next one (:meth:`SwapManager.submit`
returns at once) and is prepared once the one in progress serves; a later one supersedes
it (``superseded``). ``memory``: what the scorer holds by part at the end
(:mod:`driftrec.bench.memory`). ``serving_peak_rss_mb``: the peak from the stream's start
(the scorer serving, loading and swapping versions; Linux), apart from the bench's writing
of the versions before it (``peak_rss_mb``).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import threading
import time
from typing import Any

import numpy as np

from .memory import memory_breakdown
from .speed import _events, _peak_rss_mb, _unit, peak_rss_since_reset_mb, reset_peak_rss


def _versions(table: Any, swaps: int, store: str) -> list[dict[str, Any]]:
    """Announcement records of ``swaps`` versions of ``table`` (small random residuals
    and biases), written to ``store``: the learner's side, done before the stream."""
    from driftrec.model import ItemTable, write_artifact

    n, dim = table.text.shape
    records = []
    for v in range(swaps):
        r = np.random.default_rng(v)
        res = _unit(r, n, dim)
        res *= np.float32(0.01)
        version = ItemTable(
            list(table.item_ids),
            table.text,
            res,
            r.standard_normal(n).astype(np.float32) * 0.01,
            table.context,
            table.nbr_idx,
            table.nbr_w,
            table.cooc_weight,
        )
        del res
        meta = {"from_ts": 0, "to_ts": 0, "n_events": 0}
        records.append(write_artifact(store, f"v{v + 1}", {}, None, version, "bench", meta, {}))
        del version
    return records


def bench_swap(
    n_items: int = 10_000,
    dim: int = 384,
    n_users: int = 10_000,
    n_events: int = 60_000,
    batch: int = 256,
    swaps: int = 5,
    rate: float = 4_000.0,
    seed: int = 0,
    precision: str = "auto",
    *,
    candidates: str = "auto",
    item_storage: str | None = None,
    cooc: int = 50,
    at_once: bool = False,
) -> dict[str, Any]:
    """The figures (see the module doc). The stream is steady: batch ``n`` is released at
    ``n * batch / rate`` seconds (or as soon as the previous one is done, when the scorer
    falls behind). A pause is the time a released batch waited while nothing was served
    (``max_pause_ms``; at a swap: ``max_pause_at_swap_ms``); ``max_gap_incl_idle_ms``
    also counts a scorer that was ahead of the stream idling until the next release.
    ``candidates``, ``item_storage``: the scorer's ``ScorerConfig`` fields of the same names."""
    from driftrec.model import ItemTable

    rng = np.random.default_rng(seed)
    table = ItemTable.from_text([f"i{j}" for j in range(n_items)], _unit(rng, n_items, dim))
    if cooc:  # as served after a training: co-engagement neighbours in the score
        nbr = rng.integers(0, n_items, (n_items, cooc)).astype(np.int32)
        table = table.with_cooc(nbr, rng.random((n_items, cooc)).astype(np.float32), 2.0)
        del nbr
    store = tempfile.mkdtemp(prefix="driftrec-bench-swap-")
    tables = [table]  # _run takes it: the base float32 table is not held while serving
    del table
    try:
        return _run(
            tables,
            store,
            swaps,
            n_users,
            n_events,
            batch,
            rate,
            seed,
            precision,
            candidates,
            item_storage,
            at_once,
        )
    finally:
        shutil.rmtree(store, ignore_errors=True)


def _run(
    tables: list[Any],
    store: str,
    swaps: int,
    n_users: int,
    n_events: int,
    batch: int,
    rate: float,
    seed: int,
    precision: str,
    candidates: str,
    item_storage: str | None,
    at_once: bool,
) -> dict[str, Any]:
    from dataclasses import replace

    from driftrec.app.system import build_scorer, build_swaps
    from driftrec.model import Representation
    from driftrec.scorer import ScorerConfig

    table = tables.pop()
    n_items, dim = table.text.shape
    records = _versions(table, swaps, store)
    cfg = ScorerConfig(rank_precision=precision, batch_size=batch, candidates=candidates)
    if item_storage is not None:
        cfg = replace(cfg, item_storage=item_storage)
    # the compiled ranking pass, if these batches take it, is loaded before the clock starts
    sc = build_scorer(cfg, table, Representation(), base_model="bench")
    del table
    path = "index" if sc.candidates.active(n_items) else "exact"
    first_build_s = None
    if path == "index":  # the base version's index, before the stream (not in a batch)
        t0 = time.perf_counter()
        sc.prepare(sc.model)
        first_build_s = time.perf_counter() - t0
    mgr = build_swaps(sc, background=True)
    evs = _events(np.random.default_rng(seed + 2), n_events, n_users, n_items)
    gc.collect()
    gc.freeze()  # the generated stream stays out of the collector's walks (as a service's input would)
    reset_peak_rss()  # from here on: the scorer serving and swapping (the versions' writing is the bench's)
    n_batches = -(-n_events // batch)
    due = [int((v + 1) * n_batches / (swaps + 1)) for v in range(swaps)]
    users: dict[str, Any] = {}
    ends: list[float] = []
    starts: list[float] = []
    released: list[float] = []  # each batch's release time (when its first event is due)
    preparing: list[bool] = []  # whether a version was being prepared as the batch ran
    announced: list[float] = []
    served: list[float] = []
    applied = dups = 0
    swap_at: list[int] = []

    def serve() -> None:
        nonlocal applied, dups
        t_start = time.perf_counter()
        for n, s in enumerate(range(0, n_events, batch)):
            v = len(announced)
            if v < swaps and n >= due[v] and (at_once or (len(served) == v and not mgr.busy)):
                announced.append(time.perf_counter())
                mgr.submit(records[v])  # returns at once; prepared in the background
            release = t_start + s / rate
            wait = release - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            released.append(release)
            if mgr.maybe_swap() is not None:
                served.append(time.perf_counter())
                swap_at.append(len(ends))
            preparing.append(mgr.busy)
            starts.append(time.perf_counter())
            r = sc.learn_many(evs[s : s + batch], users)
            ends.append(time.perf_counter())
            users.update(r.users)
            applied += r.applied
            dups += r.duplicates

    t = threading.Thread(target=serve, name="bench-serve")
    t.start()
    t.join()
    mgr.wait()
    # A pause is time in which a batch was waiting and not being served: from the later of
    # the previous batch's end and this batch's release to this batch's start. (A scorer
    # ahead of the stream idles until the next release: that wait is not a pause.)
    gaps = np.array([s - max(e, r) for s, e, r in zip(starts[1:], ends[:-1], released[1:])]) * 1e3
    idle = np.array([s - e for s, e in zip(starts[1:], ends[:-1])]) * 1e3
    dur = np.array([e - s for s, e in zip(starts, ends)]) * 1e3
    at_swap = [gaps[i - 1] for i in swap_at if 0 < i <= len(gaps)]
    after_swap = [dur[i] for i in swap_at if i < len(dur)]
    busy = dur[np.array(preparing, bool)] if dur.size else dur
    out: dict[str, Any] = {
        "bench": "swap",
        "items": n_items,
        "dim": dim,
        "path": path,
        "item_storage": sc.model.table.text.dtype.name,
        "rate": rate,
        "events_in": n_events,
        "applied": applied,
        "dropped": n_events - applied - dups,
        "duplicated": dups,
        "batch": batch,
        "swaps_asked": swaps,
        "swaps": len(mgr.swaps),
        "superseded": len(mgr.superseded),
        "rejected": len(mgr.rejected),
        "max_pause_ms": round(float(gaps.max()) if gaps.size else 0.0, 3),
        "max_pause_at_swap_ms": round(float(max(at_swap)) if at_swap else 0.0, 3),
        "pauses_at_swaps_ms": [round(float(x), 3) for x in at_swap],
        "median_gap_ms": round(float(np.median(gaps)) if gaps.size else 0.0, 3),
        "max_gap_incl_idle_ms": round(float(idle.max()) if idle.size else 0.0, 3),
        "swap_ms": round(max((s.swap_ms for s in mgr.swaps), default=0.0), 3),
        "prepare_s": round(max((s.prepare_s for s in mgr.swaps), default=0.0), 3),
        "prepares_s": [round(s.prepare_s, 3) for s in mgr.swaps],
        "announced": len(announced),
        "serves_after_s": [] if at_once else [round(b - a, 3) for a, b in zip(announced, served)],
        "batch_p50_ms": round(float(np.median(dur)), 2) if dur.size else 0.0,
        "batch_max_ms": round(float(dur.max()), 2) if dur.size else 0.0,
        "first_batch_after_swap_max_ms": round(float(max(after_swap)), 2) if after_swap else 0.0,
        "batch_p50_ms_while_preparing": round(float(np.median(busy)), 2) if busy.size else None,
        "batch_max_ms_while_preparing": round(float(busy.max()), 2) if busy.size else None,
        "peak_rss_mb": round(_peak_rss_mb(), 0),  # the process, the versions' writing included
        "serving_peak_rss_mb": None if (p := peak_rss_since_reset_mb()) is None else round(p, 0),
    }
    if first_build_s is not None:
        st = sc.candidates.stats
        out["first_index_build_s"] = round(first_build_s, 1)
        out["index_builds"] = st.builds
        out["index_build_s_last"] = round(st.build_s, 1)
    out["memory"] = memory_breakdown(sc)  # MB by part, as the last version serves
    return out
