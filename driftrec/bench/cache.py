"""``driftrec bench cache``: the scorer's user cache (``SCORER_CACHE_USERS``) stays bounded
however many users go through it.

The scorer service's worker (:class:`~driftrec.app.runtime.ScorerWorker`, the cache on, as
when a scorer owns its partitions) handles ``users`` events of as many distinct users, in
batches of ``batch`` records, each user in partition ``k % 12``. The store answers every
user as a returning one with a history of ``history`` interactions (the states of
``driftrec bench state``: 32-hex event ids, a fifth of them comments, a 384-dimension
vector) and keeps nothing it is given, and the outputs go nowhere: what the process holds
is the scorer, the catalog and the cache. Its RSS (``/proc/self/statm``) is taken before
the first batch, when the cache is first full, and every ``users // 10`` users after; the
report says the cache's length at each point and the bytes per cached user.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from driftrec.state import StateWrite, UserState
from driftrec.stream import Event, Record, TopicNames, encode

from .speed import _scorer
from .state import _states

__all__ = ["rss_bytes", "run_cache_bench"]

PARTITIONS = 12


def rss_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``; the peak where /proc is
    missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class _ReturningUsers:
    """A state store whose every user is a returning one (a history of ``history``) and
    that keeps nothing: the worker's reads cost what Redis's would hand back."""

    def __init__(self, history: int, dim: int, n_items: int, seed: int = 0) -> None:
        self.history, self.dim, self.n_items = history, dim, n_items
        self.rng = np.random.default_rng(seed)
        self.reads = 0

    def get_many(
        self, user_ids: Sequence[str], shards: Mapping[str, int] | None = None
    ) -> dict[str, UserState]:
        self.reads += len(user_ids)
        made = _states(self.rng, 0, len(user_ids), self.history, self.dim, self.n_items)
        out = {}
        for u, st in zip(user_ids, made.values()):
            st.user_id = u
            out[u] = st
        return out

    def commit(self, write: StateWrite) -> None:
        pass

    def offsets(self, group: str) -> dict[str, int]:
        return {}

    def expire_users(self, *args: Any, **kw: Any) -> list[str]:
        return []


class _Nowhere:
    def send_many(self, msgs: Sequence[Any]) -> None:
        pass


def run_cache_bench(
    users: int = 1_000_000,
    cache_users: int = 200_000,
    batch: int = 4096,
    history: int = 10,
    n_items: int = 10_000,
    dim: int = 384,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """RSS and cache length while ``users`` distinct users go through a scorer worker with
    a cache of ``cache_users`` (see the module).

    Examples
    --------
    >>> r = run_cache_bench(users=600, cache_users=100, batch=64, history=2, n_items=50, dim=8)
    >>> r["users"], r["cache_users"], r["cache_len_end"], r["store_reads"]
    (600, 100, 100, 600)
    """
    from driftrec.app.system import build_scorer_worker

    names = TopicNames()
    scorer = _scorer(n_items, dim, batch=batch)
    store = _ReturningUsers(history, dim, n_items)
    worker = build_scorer_worker(
        scorer, store, _Nowhere(), names, "scorer", cache_users=cache_users, time_bounds=None
    )
    worker.set_cache_valid(True)
    rng = np.random.default_rng(1)
    t_base = 1_800_000_000_000
    gc.collect()
    points: list[dict[str, Any]] = [{"users": 0, "cache_len": 0, "rss_mb": round(rss_bytes() / 2**20, 1)}]
    every = max(batch, users // 10)
    next_point = cache_users if 0 < cache_users < users else every
    t0 = time.perf_counter()
    done = 0
    while done < users:
        n = min(batch, users - done)
        items = np.minimum(rng.zipf(1.3, n) - 1, n_items - 1)
        recs = []
        for j in range(n):
            k = done + j
            e = Event(f"c{k}", "click", f"u{k}", f"i{items[j]}", t_base + k)
            p = k % PARTITIONS
            recs.append(Record(names.for_type("click"), p, k // PARTITIONS, e.user_id.encode(), encode(e)))
        worker.handle(recs)
        done += n
        if progress is not None:
            progress(done)
        if done >= next_point or done == users:
            gc.collect()
            points.append(
                {"users": done, "cache_len": worker.cached, "rss_mb": round(rss_bytes() / 2**20, 1)}
            )
            next_point = (next_point // every + 1) * every
    wall = time.perf_counter() - t0
    full = next((p for p in points if p["cache_len"] >= cache_users > 0), None)
    per_user = (
        round((full["rss_mb"] - points[0]["rss_mb"]) * 2**20 / full["cache_len"])
        if full is not None
        else None
    )
    after_full = [p["rss_mb"] for p in points if full is not None and p["users"] >= full["users"]]
    return {
        "bench": "cache",
        "users": users,
        "cache_users": cache_users,
        "history": history,
        "batch": batch,
        "seconds": round(wall, 1),
        "events_per_s": round(users / wall) if wall > 0 else None,
        "store_reads": store.reads,
        "cache_len_end": worker.cached,
        "rss_mb_start": points[0]["rss_mb"],
        "rss_mb_cache_full": full["rss_mb"] if full is not None else None,
        "rss_mb_end": points[-1]["rss_mb"],
        "rss_mb_growth_after_full": round(max(after_full) - min(after_full), 1) if after_full else None,
        "bytes_per_cached_user": per_user,
        "points": points,
    }
