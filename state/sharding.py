"""Shards of the state: how a batch's write splits per Kafka partition, and how per-shard
popularity accumulators merge back into one value per item.

A shard is a partition number of the events topics. Every events topic has the same
partition count and is keyed by user id, so a user's events all arrive on one partition
number and the user's state lives in one shard. A sharded backend (Redis Cluster) keeps
each shard's keys in one hash slot, so everything one batch writes for one partition (its
users' state, its popularity increments and the partition's offsets) is one transaction.

Popularity is a sum of decayed event weights kept in log space (``log sum_j w_j
2**(ts_j / half_life)``, see ``Representation.pop_increment``). A shard keeps the log-sum
of its own events' increments; the item's popularity is the log-sum over shards
(:func:`merge_pop`), which is what one accumulator fed every event would hold, up to the
rounding of a different summation order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .model import StateWrite, UserState

__all__ = ["ShardWrite", "log_add", "merge_pop", "shard_of_offset", "split_by_shard"]


@dataclass
class ShardWrite:
    """The part of a sharded write that one shard commits in one transaction.

    ``pop_add``: item -> log-sum of this write's popularity increments in this shard.
    ``shard`` None holds the offsets whose key names no partition (``"seen"``).
    """

    shard: int | None
    users: dict[str, UserState] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    pop_add: dict[str, float] = field(default_factory=dict)


def log_add(x: float, y: float) -> float:
    """``log(exp(x) + exp(y))`` (-inf = nothing yet), as ``numpy.logaddexp`` computes it.

    >>> log_add(float("-inf"), 1.5), round(log_add(0.0, 0.0), 6)
    (1.5, 0.693147)
    """
    if x == y:
        return x + math.log(2.0)
    d = x - y
    if d > 0:
        return x + math.log1p(math.exp(-d))
    if d <= 0:
        return y + math.log1p(math.exp(d))
    return math.nan


def merge_pop(shards: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """One popularity accumulator per item from per-shard ones (log-sum over shards).

    >>> merge_pop([{"i1": 0.0}, {"i1": 0.0, "i2": -1.0}])["i1"] == log_add(0.0, 0.0)
    True
    >>> merge_pop([{"i2": -1.0}, {}])
    {'i2': -1.0}
    """
    out: dict[str, float] = {}
    for pop in shards:
        for item, v in pop.items():
            cur = out.get(item)
            out[item] = v if cur is None else log_add(cur, v)
    return out


def shard_of_offset(key: str) -> int | None:
    """The partition number of an offsets key ``"topic:partition"``; None for another key.

    >>> shard_of_offset("events.likes:7"), shard_of_offset("ns.events.clicks:0"), shard_of_offset("seen")
    (7, 0, None)
    """
    _, sep, p = key.rpartition(":")
    return int(p) if sep and p.isdigit() else None


def split_by_shard(write: StateWrite) -> list[ShardWrite]:
    """The per-shard parts of a sharded write (``write.shards`` set), by shard number
    (the part without a shard last). A user or an increment without a shard is a
    ``ValueError``: nothing is written.

    >>> w = StateWrite(
    ...     users={"a": UserState("a"), "b": UserState("b")},
    ...     offsets={"events.likes:0": 5, "events.likes:3": 9, "items:3": 2},
    ...     shards={"a": 3, "b": 0},
    ...     pop_added=[("a", "i1", 0.0), ("a", "i1", 0.0), ("b", "i1", 1.0)],
    ... )
    >>> [(p.shard, sorted(p.users), p.offsets, p.pop_add) for p in split_by_shard(w)]  # doctest: +NORMALIZE_WHITESPACE
    [(0, ['b'], {'events.likes:0': 5}, {'i1': 1.0}),
     (3, ['a'], {'events.likes:3': 9, 'items:3': 2}, {'i1': 0.6931471805599453})]
    """
    shards = write.shards
    parts: dict[int | None, ShardWrite] = {}

    def part(s: int | None) -> ShardWrite:
        p = parts.get(s)
        if p is None:
            p = parts[s] = ShardWrite(s)
        return p

    for u, st in write.users.items():
        s = shards.get(u)
        if s is None:
            raise ValueError(f"user {u!r} of a sharded state write has no shard")
        part(s).users[u] = st
    for k, v in write.offsets.items():
        part(shard_of_offset(k)).offsets[k] = int(v)
    for u, item, inc in write.pop_added:
        s = shards.get(u)
        if s is None:
            raise ValueError(f"a popularity increment of user {u!r} has no shard")
        pop = part(s).pop_add
        cur = pop.get(item)
        pop[item] = float(inc) if cur is None else log_add(cur, float(inc))
    return [parts[s] for s in sorted(parts, key=lambda s: (s is None, s or 0))]
