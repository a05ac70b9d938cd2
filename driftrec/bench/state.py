"""``driftrec bench state``: what a user's state costs in Redis, and what a batch costs.

Writes ``users`` user states through the state store the way the scorer worker does, in
batches of ``batch`` events (one event per user, a new user each: the store is read for
the batch's users, then the batch is committed with its offsets and popularity), each user
in shard ``k % shards`` (a user's Kafka partition). The states are the scorer's: a history
of ``history_len`` interactions (32-hex event ids, a fifth of them comments with a
60-character text), as many seen items, a top-10 and a 384-dimensional float32 vector.

Reports, from ``INFO`` of every master (summed over a cluster's masters):

- ``bytes_per_user``: growth of ``used_memory`` over the run / users (replicas hold as much
  again: ``bytes_per_user_with_replicas``);
- ``rss_bytes``: ``used_memory_rss`` of the redis-server processes at the end (masters;
  ``rss_bytes_all_nodes`` with the replicas);
- ``reads_per_event``, ``writes_per_event``, ``commands_per_event``: growth of the
  ``INFO commandstats`` calls over the run / events (commands run inside a Lua step count
  too), with the breakdown by command in ``commands``;
- ``commit_ms_p50``/``p99`` and ``read_ms_p50``/``p99``: one batch's commit (and read) as
  the client sees it.

The namespace is a fresh ``bench-state-*`` prefix, deleted at the end (``keep=True``: kept).
A ``memory://`` URL runs the same writes without the Redis figures (None).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from driftrec.state import Interaction, StateWrite, UserState, open_state

#: commands that read the state (the rest of the data commands write it)
READS = {"hmget", "hget", "hgetall", "smembers", "zrangebyscore"}
#: what the clients run to find their way (not per event)
HOUSEKEEPING = {"info", "cluster|slots", "cluster|shards", "cluster|nodes", "ping", "hello", "client|setinfo",
                "command", "command|docs", "config|get", "scan", "del", "unlink", "select", "auth", "replconf",
                "psync", "sync", "readonly"}  # fmt: skip
TEXTS = [
    "great post, exactly what I was looking for today thanks!!",
    "not sure about this one, the second half loses the thread.",
    "sharing this with my team, the benchmark part is gold here",
]


def _nodes(store: Any) -> tuple[list[Any], list[Any]]:
    """(masters, replicas) as redis clients; ([], []) for a backend without a server."""
    client = getattr(store, "client", None)
    if client is None:
        return [], []
    if hasattr(client, "get_primaries"):  # a RedisCluster
        return (
            [n.redis_connection for n in client.get_primaries()],
            [n.redis_connection for n in client.get_replicas()],
        )
    return [client], []


def _info(nodes: list[Any]) -> dict[str, Any]:
    used = rss = 0
    calls: dict[str, int] = {}
    for r in nodes:
        mem = r.info("memory")
        used += int(mem["used_memory"])
        rss += int(mem["used_memory_rss"])
        for k, v in r.info("commandstats").items():
            name = k.removeprefix("cmdstat_")
            calls[name] = calls.get(name, 0) + int(v["calls"])
    return {"used": used, "rss": rss, "calls": calls}


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 3) if xs else None


def _states(
    rng: np.random.Generator, first: int, n: int, history_len: int, dim: int, n_items: int
) -> dict[str, UserState]:
    items = np.minimum(rng.zipf(1.2, (n, max(history_len, 10))) - 1, n_items - 1)
    kinds = rng.random((n, history_len))
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    hexes = rng.bytes(16 * n * history_len).hex()
    t0 = 1_760_000_000_000
    out = {}
    for b in range(n):
        uid = f"u{first + b}"
        hist = []
        for j in range(history_len):
            c = 32 * (b * history_len + j)
            kind = "comment" if kinds[b, j] < 0.2 else "like" if kinds[b, j] < 0.6 else "click"
            text = TEXTS[j % len(TEXTS)] if kind == "comment" else None
            hist.append(Interaction(hexes[c : c + 32], kind, f"i{items[b, j]}", t0 + 60_000 * j, text))
        seen = list(dict.fromkeys(h.item_id for h in hist))
        topk = [f"i{x}" for x in items[b, -10:]]
        last = hist[-1].event_id if hist else ""
        out[uid] = UserState(uid, hist, vecs[b], "v1", topk, history_len, last, seen)
    return out


def run_state_bench(
    url: str,
    users: int,
    shards: int = 12,
    batch: int = 256,
    history_len: int = 50,
    progress: Callable[[int, int], None] | None = None,
    dim: int = 384,
    n_items: int = 10_000,
    user_ttl_days: float | None = None,
    keep: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``users`` user states as the scorer does; memory, commands and latency (see
    the module). ``user_ttl_days`` adds the last-write index of ``USER_TTL_DAYS``.

    Examples
    --------
    >>> r = run_state_bench("memory://", users=20, shards=3, batch=8, history_len=4)
    >>> r["users"], r["batches"], r["bytes_per_user"] is None, r["commit_ms_p50"] >= 0
    (20, 3, True, True)
    """
    prefix = f"bench-state-{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in url else "?"
    target = url if "prefix=" in url or url.startswith(("memory:", "file:")) else f"{url}{sep}prefix={prefix}"
    options: dict[str, Any] = {"user_ttl_days": user_ttl_days} if user_ttl_days else {}
    store = open_state(target, **options)
    masters, replicas = _nodes(store)
    rng = np.random.default_rng(seed)
    before, before_all = _info(masters), _info(masters + replicas)
    commit_ms: list[float] = []
    read_ms: list[float] = []
    offsets = [0] * shards
    pop: dict[str, float] = {}
    t_start = time.perf_counter()
    n_batches = 0
    try:
        for first in range(0, users, batch):
            n = min(batch, users - first)
            states = _states(rng, first, n, history_len, dim, n_items)
            shard_of = {u: int(u[1:]) % shards for u in states}
            t0 = time.perf_counter()
            store.get_many(list(states), shard_of)
            t1 = time.perf_counter()
            added = []
            for u, st in states.items():  # the batch's event: one like of the user's last item
                inc = float(st.history[-1].ts) / 86_400_000 * np.log(2) if st.history else 0.0
                item = st.history[-1].item_id if st.history else "i0"
                added.append((u, item, inc))
                pop[item] = float(np.logaddexp(pop.get(item, -np.inf), inc))
                offsets[shard_of[u]] += 1
            write = StateWrite(
                users=states,
                item_pop={i: pop[i] for _, i, _ in added},
                offsets={f"events.likes:{s}": offsets[s] for s in set(shard_of.values())},
                group="bench",
                shards=shard_of,
                pop_added=added,
            )
            store.commit(write)
            t2 = time.perf_counter()
            read_ms.append((t1 - t0) * 1000)
            commit_ms.append((t2 - t1) * 1000)
            n_batches += 1
            if progress is not None:
                progress(first + n, users)
        wall = time.perf_counter() - t_start
        after, after_all = _info(masters), _info(masters + replicas)
    finally:
        if not keep and hasattr(store, "drop"):
            store.drop()
        store.close()
    out: dict[str, Any] = {
        "url": url.split("?")[0],
        "users": users,
        "shards": shards,
        "batch": batch,
        "history_len": history_len,
        "dim": dim,
        "user_ttl_days": user_ttl_days,
        "batches": n_batches,
        "masters": len(masters),
        "replicas": len(replicas),
        "seconds": round(wall, 2),
        "users_per_s": round(users / wall, 1) if wall > 0 else None,
        "commit_ms_p50": _pct(commit_ms, 50),
        "commit_ms_p99": _pct(commit_ms, 99),
        "read_ms_p50": _pct(read_ms, 50),
        "read_ms_p99": _pct(read_ms, 99),
        "bytes_per_user": None,
        "bytes_per_user_with_replicas": None,
        "rss_bytes": None,
        "rss_bytes_all_nodes": None,
        "reads_per_event": None,
        "writes_per_event": None,
        "commands_per_event": None,
        "commands": {},
        "meta_bytes_per_user": round(float(np.mean([len(s.meta_bytes()) for s in states.values()])), 1)
        if users
        else None,
    }
    if masters and users:
        calls = {
            k: v - before["calls"].get(k, 0)
            for k, v in after["calls"].items()
            if k not in HOUSEKEEPING and v - before["calls"].get(k, 0) > 0
        }
        reads = sum(v for k, v in calls.items() if k in READS)
        total = sum(calls.values())
        out.update(
            bytes_per_user=round((after["used"] - before["used"]) / users, 1),
            bytes_per_user_with_replicas=round((after_all["used"] - before_all["used"]) / users, 1),
            rss_bytes=after["rss"],
            rss_bytes_all_nodes=after_all["rss"],
            reads_per_event=round(reads / users, 4),
            writes_per_event=round((total - reads) / users, 4),
            commands_per_event=round(total / users, 4),
            commands={k: round(v / users, 4) for k, v in sorted(calls.items())},
        )
    return out
