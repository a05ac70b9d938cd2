"""The prequential (test-then-train) loop of the drift tests, pure over events.

DESIGN.md, "Evaluation protocol": in event-time order, before a target event (like and
comment by default) is applied, every system is asked for the user's *current* top-k
(a fresh ranking, seen items excluded); it is a hit when the event's item is in it. Then
the event is applied to every system.

To stay exact and still batch the work, the stream is cut into conflict-free
micro-batches: a batch ends before a user would appear twice (or at ``max_batch``).
Every target event of a batch is scored from the pre-batch state (no user in it has
another event in the batch, so this equals scoring each event just before it), then the
whole batch is applied to every system. Nothing is learned from an event before it is
scored, and a learner only sees events already applied.

Examples
--------
>>> from driftrec.stream import Event
>>> class Fixed:
...     name = "fixed"
...     def rank_many(self, users, now, k): return [["a", "b"] for _ in users]
...     def learn_many(self, events): pass
>>> ev = [Event("1", "like", "u", "b", 1), Event("2", "click", "u", "c", 2),
...       Event("3", "like", "v", "z", 3)]
>>> res = run(ev, [Fixed()], k=2)
>>> res.systems["fixed"].positions.tolist()  # b at position 1, z missed
[1, -1]
>>> {m: round(v, 3) for m, v in metrics(res.systems["fixed"].positions, 2).items()}
{'hr': 0.5, 'ndcg': 0.315, 'mrr': 0.25}
>>> res.target_item_events.tolist()  # events of the target's item before it
[0, 0]

Items published during a batch: with ``publications`` (the catalog's publication times),
a batch's targets are ranked in groups that see the same published items, each at the
time of the latest publication before it (or the batch's first event time, as without):
an item published at ``ts`` is a candidate for every target at or after ``ts``, and for
none before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from driftrec.stream import Event

DEFAULT_TARGETS = ("like", "comment")
#: A target is cold when its item had fewer than this many earlier events (DESIGN.md).
COLD_EVENTS = 5


class Recommender(Protocol):
    """What the loop needs of a system (optional: a ``swaps`` list, grown on hot-swaps)."""

    name: str

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        """Current top-``k`` item ids per user, best first, items the user has seen excluded."""
        ...

    def learn_many(self, events: Sequence[Event]) -> None:
        """Apply a batch of events (no user twice)."""
        ...


@dataclass
class SystemRun:
    """One system's record: ``positions[t]`` is the 0-based rank of target ``t``'s item in
    the system's top-k (-1 = miss); ``swaps`` the event positions of its hot-swaps."""

    name: str
    positions: np.ndarray
    swaps: list[int] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PrequentialRun:
    n_events: int
    k: int
    target_index: np.ndarray  # position in the stream of every target event
    target_ts: np.ndarray
    systems: dict[str, SystemRun]
    n_batches: int = 0
    #: per target, how many events of its item came before it in the stream
    target_item_events: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def cold(self, threshold: int = COLD_EVENTS) -> np.ndarray:
        """Mask of the cold targets: their item had fewer than ``threshold`` earlier events."""
        return self.target_item_events < threshold


def conflict_free(events: Sequence[Event], max_batch: int = 256) -> Iterator[list[Event]]:
    """Consecutive runs of events with no user twice, at most ``max_batch`` long.

    Examples
    --------
    >>> ev = [Event(str(i), "click", u, "x", i) for i, u in enumerate("abacd")]
    >>> [[e.user_id for e in b] for b in conflict_free(ev)]
    [['a', 'b'], ['a', 'c', 'd']]
    """
    batch: list[Event] = []
    users: set[str] = set()
    for e in events:
        if e.user_id in users or len(batch) >= max_batch:
            yield batch
            batch, users = [], set()
        batch.append(e)
        users.add(e.user_id)
    if batch:
        yield batch


def run(
    events: Sequence[Event],
    systems: Sequence[Recommender],
    k: int = 10,
    targets: Sequence[str] = DEFAULT_TARGETS,
    max_batch: int = 256,
    progress: Callable[[int], None] | None = None,
    publications: Sequence[int] | None = None,
) -> PrequentialRun:
    """Test-then-train every system over ``events`` (sorted by ``ts``) in one pass.

    ``publications``: the items' publication times, where items are published during the
    stream (see the module doc)."""
    import time

    tset = set(targets)
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"system names must be unique: {names}")
    pos: dict[str, list[int]] = {n: [] for n in names}
    swaps: dict[str, list[int]] = {n: [] for n in names}
    secs = {n: 0.0 for n in names}
    t_index: list[int] = []
    t_ts: list[int] = []
    t_cnt: list[int] = []
    item_events: dict[str, int] = {}
    pubs = np.unique(np.asarray(publications, np.int64)) if publications is not None else None
    done = 0
    n_batches = 0
    for batch in conflict_free(events, max_batch):
        n_batches += 1
        for e in batch:  # earlier events of each target's item, in stream order
            c = item_events.get(e.item_id, 0)
            if e.type in tset:
                t_cnt.append(c)
            item_events[e.item_id] = c + 1
        tg = [e for e in batch if e.type in tset]
        if tg:
            t_index.extend(done + i for i, e in enumerate(batch) if e.type in tset)
            t_ts.extend(e.ts for e in tg)
            for now, grp in _groups(tg, batch[0].ts, pubs):
                users = [e.user_id for e in grp]
                for s in systems:
                    t0 = time.perf_counter()
                    ranked = s.rank_many(users, now, k)
                    secs[s.name] += time.perf_counter() - t0
                    out = pos[s.name]
                    for e, items in zip(grp, ranked):
                        try:
                            out.append(list(items[:k]).index(e.item_id))
                        except ValueError:
                            out.append(-1)
        for s in systems:
            before = len(getattr(s, "swaps", ()))
            t0 = time.perf_counter()
            s.learn_many(batch)
            secs[s.name] += time.perf_counter() - t0
            grown = len(getattr(s, "swaps", ())) - before
            swaps[s.name].extend([done + len(batch)] * max(0, grown))
        done += len(batch)
        if progress is not None:
            progress(len(batch))
    runs = {n: SystemRun(n, np.asarray(pos[n], np.int64), swaps[n], secs[n]) for n in names}
    return PrequentialRun(
        done,
        k,
        np.asarray(t_index, np.int64),
        np.asarray(t_ts, np.int64),
        runs,
        n_batches,
        np.asarray(t_cnt, np.int64),
    )


def _groups(tg: list[Event], start: int, pubs: np.ndarray | None) -> list[tuple[int, list[Event]]]:
    """A batch's targets (in time order) in runs that see the same published items, each
    with the time to rank it at: the batch's first event time, or the latest publication
    at or before the run's targets where that is later.

    Examples
    --------
    >>> ev = [Event(str(t), "like", f"u{t}", "x", t) for t in (10, 12, 15, 30)]
    >>> [(now, [e.ts for e in g]) for now, g in _groups(ev, 9, np.array([5, 11, 12, 40]))]
    [(9, [10]), (12, [12, 15, 30])]
    >>> [(now, len(g)) for now, g in _groups(ev, 9, None)]
    [(9, 4)]
    """
    if pubs is None or not len(pubs):
        return [(start, tg)]
    ep = np.searchsorted(pubs, np.fromiter((e.ts for e in tg), np.int64, count=len(tg)), side="right")
    out: list[tuple[int, list[Event]]] = []
    for j, e in enumerate(tg):
        if out and ep[j] == ep[j - 1]:
            out[-1][1].append(e)
        else:
            now = max(start, int(pubs[ep[j] - 1])) if ep[j] else start
            out.append((now, [e]))
    return out


# ---- metrics -------------------------------------------------------------------------
def metrics(positions: np.ndarray, k: int) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k (reciprocal rank, 0 beyond k) from 0-based positions."""
    p = np.asarray(positions)
    if p.size == 0:
        return {"hr": 0.0, "ndcg": 0.0, "mrr": 0.0}
    hit = (p >= 0) & (p < k)
    pp = np.where(hit, p, 0).astype(np.float64)
    return {
        "hr": float(hit.mean()),
        "ndcg": float(np.where(hit, 1.0 / np.log2(pp + 2.0), 0.0).mean()),
        "mrr": float(np.where(hit, 1.0 / (pp + 1.0), 0.0).mean()),
    }


def sliding_hr(positions: np.ndarray, k: int, window: int) -> np.ndarray:
    """HR@k over the trailing ``window`` targets at every target (shorter at the start).

    Examples
    --------
    >>> sliding_hr(np.array([0, -1, 0, 0]), 10, 2).tolist()
    [1.0, 0.5, 0.5, 1.0]
    """
    hit = ((positions >= 0) & (positions < k)).astype(np.float64)
    c = np.concatenate([[0.0], np.cumsum(hit)])
    i = np.arange(1, len(hit) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def tumbling(positions: np.ndarray, k: int, window: int) -> list[dict[str, float]]:
    """Metrics per consecutive block of ``window`` targets (the last may be shorter)."""
    return [
        dict(metrics(positions[s : s + window], k), start=s, n=len(positions[s : s + window]))
        for s in range(0, len(positions), window)
    ]


#: The systems a per-window guard compares every system with (:func:`windows_below`), and
#: by how much HR@k may fall short of the best of them in a window before it counts.
GUARD_SYSTEMS = ("popularity", "recent_popularity")
GUARD_MARGIN = 0.02


def windows_below(
    positions: dict[str, np.ndarray],
    k: int,
    window: int,
    reference: Sequence[str] = GUARD_SYSTEMS,
    margin: float = GUARD_MARGIN,
) -> dict[str, list[int]] | None:
    """Per system, the tumbling windows (of ``window`` targets; a last window of fewer than
    half as many is left out) in which its HR@k is below the best of the ``reference``
    systems' by more than ``margin``: a regression against what counting engagements
    gives, window by window. None when no reference system ran.

    Examples
    --------
    >>> pos = {"popularity": np.array([0, 0, -1, -1]), "x": np.array([-1, -1, -1, -1])}
    >>> windows_below(pos, 10, 2)
    {'popularity': [], 'x': [0]}
    """
    ref = [r for r in reference if r in positions]
    if not ref:
        return None
    blocks = {n: tumbling(p, k, window) for n, p in positions.items()}
    nb = len(next(iter(blocks.values())))
    best = [max(blocks[r][b]["hr"] for r in ref) for b in range(nb)]
    full = [b for b in range(nb) if blocks[ref[0]][b]["n"] * 2 >= window]
    return {n: [b for b in full if bl[b]["hr"] < best[b] - margin - 1e-12] for n, bl in blocks.items()}


def versus_best(
    positions: dict[str, np.ndarray], k: int, reference: Sequence[str] = GUARD_SYSTEMS
) -> dict[str, dict[str, Any]] | None:
    """Per system, its HR@k less that of the best of the ``reference`` systems overall,
    with the standard error of that difference over the same targets (each target's hit
    or miss paired): ``{"reference", "diff", "se", "z"}`` (``z`` = diff / se; None where
    the two never differ). A difference within about two standard errors is what two
    rankings that are equally good give by chance on this many targets. None when no
    reference system ran.

    Examples
    --------
    >>> pos = {"popularity": np.array([0, 0, -1, -1]), "x": np.array([0, -1, 0, 0])}
    >>> v = versus_best(pos, 10)["x"]
    >>> v["reference"], v["diff"], round(v["se"], 3)
    ('popularity', 0.25, 0.479)
    """
    ref = [r for r in reference if r in positions]
    if not ref:
        return None
    hits = {n: ((p >= 0) & (p < k)).astype(np.float64) for n, p in positions.items()}
    best = max(ref, key=lambda r: float(hits[r].mean()) if hits[r].size else 0.0)
    out: dict[str, dict[str, Any]] = {}
    for n, h in hits.items():
        d = h - hits[best]
        se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
        diff = float(d.mean()) if d.size else 0.0
        out[n] = {"reference": best, "diff": diff, "se": se, "z": diff / se if se > 0 else None}
    return out


def recovery(
    positions: np.ndarray,
    k: int,
    window: int,
    target_index: np.ndarray,
    shift_index: int,
    level: float = 0.9,
    min_targets: int | None = None,
) -> dict[str, Any]:
    """Events after the shift until the windowed HR@k regains ``level`` of its pre-shift value.

    The pre-shift level is HR@k over the last ``window`` targets before the shift. After
    it, the windowed HR counts post-shift targets only (the trailing ``window`` of them,
    at least ``min_targets``, default ``window // 4``, so that one lucky hit is not a
    recovery). ``events`` is the number of events from the shift to the target at which
    it first holds (None if never; 0 if the level never dropped below the bar).

    Examples
    --------
    >>> p = np.array([0] * 8 + [-1] * 4 + [0] * 8)
    >>> r = recovery(p, 10, 4, np.arange(20), shift_index=8, min_targets=2)
    >>> r["pre"], r["events"]
    (1.0, 8)
    """
    hit = ((positions >= 0) & (positions < k)).astype(np.float64)
    before = hit[target_index < shift_index]
    after = hit[target_index >= shift_index]
    after_idx = target_index[target_index >= shift_index]
    out: dict[str, Any] = {"pre": None, "events": None, "targets": None, "min_after": None}
    if before.size == 0 or after.size == 0:
        return out
    pre = float(before[-window:].mean())
    out["pre"] = pre
    m = min_targets if min_targets is not None else max(1, window // 4)
    c = np.concatenate([[0.0], np.cumsum(after)])
    i = np.arange(1, len(after) + 1)
    lo = np.maximum(0, i - window)
    wh = (c[i] - c[lo]) / (i - lo)
    ok = (i >= min(m, len(after))) & (wh >= level * pre)
    valid = wh[i >= min(m, len(after))]
    out["min_after"] = float(valid.min()) if valid.size else None
    if pre == 0.0:
        out["events"], out["targets"] = 0, 0
        return out
    j = np.flatnonzero(ok)
    if j.size:
        t = int(j[0])
        out["events"] = int(after_idx[t] - shift_index + 1)
        out["targets"] = t + 1
    return out


def shift_index_of(events: Sequence[Event], shift_ts: int | None) -> int | None:
    """Position of the first event at or after ``shift_ts`` in the (sorted) stream."""
    if shift_ts is None:
        return None
    for n, e in enumerate(events):
        if e.ts >= shift_ts:
            return n
    return len(events)


def auto_window(n_targets: int) -> int:
    """A window of about 1/20 of the targets, between 100 and 1000.

    Examples
    --------
    >>> auto_window(55_000), auto_window(8_000), auto_window(500)
    (1000, 400, 100)
    """
    return int(min(1000, max(100, math.ceil(n_targets / 20 / 50) * 50)))
