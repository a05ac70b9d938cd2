"""The scorer against the catalog's size: events/s, batch latency, memory, and recall@10 of
the served top-10 against the exact top-10.

The catalog is synthetic, as in ``driftrec bench scorer`` (:mod:`driftrec.bench.speed`):
random unit vectors (``catalog="random"``), or, closer to text embeddings, vectors around
one of ``items // 500`` topic centres (``catalog="topics"``), where users engage mostly
with one topic. Items carry 50 random co-engagement neighbours (weight 2), as served after
a training. Warm-up events give every user a history, then timed batches run through
:meth:`Scorer.learn_many`. On the candidate path the index is built first (its build
time and the recall/speed curve its ``nprobe`` was chosen on are reported), and after the
timed batches the served top-10 of ``recall_users`` users is compared with the exact one.
``item_storage`` (``ScorerConfig.item_storage``) holds the item rows in float32 or float16;
the memory the scorer holds is broken down by part (:mod:`driftrec.bench.memory`).
``peak_rss_mb`` is the process's peak, the bench's making of the catalog included;
``serving_peak_rss_mb`` the peak from the moment the scorer holds its table (the index
build and the timed batches; Linux), what a scorer process needs.

Run it alone: ``python -m driftrec.bench.catalog --items 100000`` (``--json`` prints the
figures as JSON on the last line).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from driftrec.stream import Event, ItemId, UserId

from .speed import _events, _peak_rss_mb, _unit, peak_rss_since_reset_mb, reset_peak_rss

#: Items per topic of the ``topics`` catalog.
TOPIC_SIZE = 500


def _catalog(rng: np.random.Generator, n: int, d: int, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Item vectors and (``topics``) each item's topic."""
    if kind == "random":
        return _unit(rng, n, d), None
    T = max(2, n // TOPIC_SIZE)
    centres = _unit(rng, T, d)
    topic = rng.integers(0, T, n)
    v = _unit(rng, n, d)
    v *= np.float32(0.8)
    for s in range(0, n, 65_536):  # no second [n, d] temporary
        v[s : s + 65_536] += np.float32(0.6) * centres[topic[s : s + 65_536]]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v, topic


def _topic_events(
    rng: np.random.Generator,
    n: int,
    n_users: int,
    by_topic: list[np.ndarray],
    t0: int = 1_700_000_000_000,
    prefix: str = "e",
) -> list[Event]:
    """Each user engages with its own topic's items (zipf within the topic), 80 % of the time."""
    users = rng.integers(0, n_users, n)
    T = len(by_topic)
    home = users % T
    other = rng.integers(0, T, n)
    topic = np.where(rng.random(n) < 0.8, home, other)
    rank = rng.zipf(1.3, n) - 1
    items = [int(by_topic[t][min(r, len(by_topic[t]) - 1)]) for t, r in zip(topic.tolist(), rank.tolist())]
    types = np.where(rng.random(n) < 0.7, "click", "like")
    return [
        Event(f"{prefix}{k}", str(types[k]), UserId(f"u{users[k]}"), ItemId(f"i{items[k]}"), t0 + k * 10)
        for k in range(n)
    ]


def topical_window(
    n: int, window: int, seed: int, dim: int = 384
) -> tuple[Any, dict[str, str], list[Event], dict[str, int]]:
    """A learner's catalog and window at any size (``driftrec bench learner --catalog
    topics``): the ``topics`` catalog's vectors as text rows, each item's text naming its
    topic, publication times spread over the week before the window, and ``window``
    events following each user's topic (one user per 4 events)."""
    from driftrec.model import ItemTable

    rng = np.random.default_rng(seed)
    vectors, topic = _catalog(rng, n, dim, "topics")
    assert topic is not None
    ids = [f"i{j}" for j in range(n)]
    t0 = 1_700_000_000_000
    week = 7 * 24 * 3_600_000
    pub = t0 - rng.integers(0, week, n)
    texts = {i: f"post {j} about topic {t}" for j, (i, t) in enumerate(zip(ids, topic.tolist()))}
    item_ts = dict(zip(ids, pub.tolist()))
    by_topic = [np.flatnonzero(topic == t) for t in range(int(topic.max()) + 1)]
    events = _topic_events(rng, window, max(1, window // 4), by_topic, t0=t0)
    return ItemTable.from_text(ids, vectors), texts, events, item_ts


def run_catalog_bench(
    items: int = 100_000,
    events: int = 60_000,
    users: int = 10_000,
    candidates: str = "auto",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    *,
    dim: int = 384,
    batch: int = 1024,
    warm_events: int = 20_000,
    recall_users: int = 256,
    catalog: str = "random",
    index_spec: str = "auto",
    ann_scan: int | None = None,
    ann_k: int | None = None,
    item_storage: str | None = None,
) -> dict[str, Any]:
    """The figures of one catalog size (see the module doc). ``candidates``: the scorer's
    ``ScorerConfig.candidates`` (``auto``, ``exact`` or ``index``); ``progress(n)``: timed
    events applied so far."""
    from driftrec.app.system import build_scorer
    from driftrec.model import ItemTable, Representation
    from driftrec.scorer import ScorerConfig
    from driftrec.scorer.candidates import recall_at_k

    from .memory import memory_breakdown

    cfg = ScorerConfig(batch_size=batch, candidates=candidates, index_spec=index_spec)
    if item_storage is not None:
        cfg = replace(cfg, item_storage=item_storage)
    rng = np.random.default_rng(seed)
    vectors, topic = _catalog(rng, items, dim, catalog)
    if cfg.storage_for(items) == "float16":  # as an artifact stored so loads: no float32 copy kept
        vectors = vectors.astype(np.float16)
    table = ItemTable.from_text([f"i{j}" for j in range(items)], vectors)
    del vectors
    nbr = rng.integers(0, items, (items, 50)).astype(np.int32)
    table = table.with_cooc(nbr, rng.random((items, 50)).astype(np.float32), 2.0)
    del nbr
    reset_peak_rss()  # from here on: the scorer's memory (the catalog's making above is the bench's)
    if ann_scan is not None:
        cfg = replace(cfg, ann_scan=ann_scan)
    if ann_k is not None:
        cfg = replace(cfg, ann_k=ann_k)
    sc = build_scorer(cfg, table, Representation(), base_model="bench")
    del table
    cand = sc.candidates
    path = "index" if cand.active(items) else "exact"
    index: dict[str, Any] = {}
    if path == "index":
        t0 = time.perf_counter()
        sc.prepare(sc.model)  # as the swap manager does before a version serves
        build_s = time.perf_counter() - t0
        idx = cand.prepared_index
        assert idx is not None
        index = {
            "index": idx.spec,
            "nprobe": idx.nprobe,
            "index_build_s": round(build_s, 1),
            "ann_curve": [
                {"nprobe": p, "rows_scanned": r, "recall_at_10": rc, "us_per_query": us}
                for p, r, rc, us in idx.curve
            ],
        }
    sc.wait_ready()
    ev_rng = np.random.default_rng(seed + 1)
    by_topic = (
        [np.flatnonzero(topic == t) for t in range(int(topic.max()) + 1)] if topic is not None else None
    )

    def make(n: int, t0: int, prefix: str) -> list[Event]:
        if by_topic is None:
            return _events(ev_rng, n, users, items, t0=t0, prefix=prefix)
        return _topic_events(ev_rng, n, users, by_topic, t0=t0, prefix=prefix)

    states: dict[str, Any] = {}
    for s in range(0, warm_events, batch):
        r = sc.learn_many(make(min(batch, warm_events - s), 1_700_000_000_000 + s * 10, f"w{s}-"), states)
        states.update(r.users)
    evs = make(events, 1_800_000_000_000, "e")
    lat = []
    applied = 0
    t_all = time.perf_counter()
    for s in range(0, events, batch):
        t0 = time.perf_counter()
        r = sc.learn_many(evs[s : s + batch], states)
        lat.append(time.perf_counter() - t0)
        states.update(r.users)
        applied += r.applied
        if progress is not None:
            progress(applied)
    wall = time.perf_counter() - t_all
    rss = _peak_rss_mb()
    serving_rss = peak_rss_since_reset_mb()
    mem = memory_breakdown(sc)  # as served (the recall check below adds the exact path's operands)
    st = cand.stats
    out: dict[str, Any] = {
        "bench": "catalog",
        "items": items,
        "catalog": catalog,
        "dim": dim,
        "users": users,
        "events": applied,
        "batch": batch,
        "path": path,
        "item_storage": sc.model.table.text.dtype.name,
        "events_per_s": round(applied / wall, 0),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 1),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1),
        "peak_rss_mb": round(rss, 0),  # the process, the catalog's making included
        # from the scorer holding its table on: the index build and the timed batches
        "serving_peak_rss_mb": None if serving_rss is None else round(serving_rss, 0),
    }
    if path == "index":
        out["own_candidates_per_row"] = round(st.own / max(st.rows, 1), 1)
        out["shared_candidates_per_batch"] = round(st.shared / max(st.batches, 1), 1)
        sample = list(states.values())
        pick = np.random.default_rng(seed + 2).choice(
            len(sample), min(recall_users, len(sample)), replace=False
        )
        t0 = time.perf_counter()
        out["recall_at_10"] = round(recall_at_k(sc, [sample[i] for i in pick], evs[-1].ts, 10), 4)
        out["recall_users"] = len(pick)
        out["recall_s"] = round(time.perf_counter() - t0, 1)
        out["peak_rss_mb_with_recall"] = round(_peak_rss_mb(), 0)
        out.update(index)
    out["memory"] = mem
    return out


def format_result(res: dict[str, Any]) -> str:
    """The figures as a table, and the index's recall/speed curve under it."""
    rows = {k: v for k, v in res.items() if k not in ("ann_curve", "memory")}
    w = max(len(k) for k in rows)
    text = "\n".join(f"{k:<{w}}  {v}" for k, v in rows.items())
    mem = res.get("memory")
    if mem:
        text += "\n\nmemory held by the scorer, MB (arrays counted once; ids: an estimate):\n"
        text += "\n".join(f"  {k.removesuffix('_mb'):<18} {v:>9.1f}" for k, v in mem.items())
    curve = res.get("ann_curve")
    if curve:
        text += "\n\nindex recall/speed curve (pseudo-queries; the chosen nprobe is marked):\n"
        text += "nprobe  rows scanned  recall@10  us/query\n"
        for c in curve:
            mark = "  <-" if c["nprobe"] == res.get("nprobe") else ""
            text += f"{c['nprobe']:>6}  {c['rows_scanned']:>12}  {c['recall_at_10']:>9.3f}  {c['us_per_query']:>8.1f}{mark}\n"
    return text
