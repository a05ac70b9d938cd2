"""Shards without a server: how a write splits, how popularity merges, the cluster URL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftrec.state import MemoryStateStore, StateConfigError, StateError, StateWrite, UserState, open_state
from driftrec.state.sharding import merge_pop, shard_of_offset, split_by_shard


def test_a_write_splits_into_one_part_per_shard() -> None:
    w = StateWrite(
        users={"a": UserState("a"), "b": UserState("b"), "c": UserState("c")},
        item_pop={"i1": 99.0},  # the scorer's totals: not what a shard adds
        offsets={"ev.likes:2": 5, "ev.clicks:2": 1, "ev.likes:0": 3, "items:7": 4, "seen": 10},
        shards={"a": 2, "b": 0, "c": 2},
        pop_added=[("a", "i1", 1.0), ("c", "i1", 2.0), ("b", "i2", 0.5), ("b", "i1", -3.0)],
    )
    parts = {p.shard: p for p in split_by_shard(w)}
    assert list(parts) == [0, 2, 7, None]
    assert sorted(parts[2].users) == ["a", "c"] and list(parts[0].users) == ["b"]
    assert parts[2].offsets == {"ev.likes:2": 5, "ev.clicks:2": 1}
    assert parts[7].offsets == {"items:7": 4} and not parts[7].users  # an offsets-only shard
    assert parts[None].offsets == {"seen": 10}
    assert math.isclose(parts[2].pop_add["i1"], float(np.logaddexp(1.0, 2.0)), abs_tol=1e-15)
    assert parts[0].pop_add == {"i2": 0.5, "i1": -3.0}


def test_a_user_without_a_shard_is_refused_before_anything_is_written() -> None:
    w = StateWrite(users={"a": UserState("a"), "b": UserState("b")}, shards={"a": 1})
    with pytest.raises(ValueError, match="'b'"):
        split_by_shard(w)
    with pytest.raises(ValueError, match="increment of user 'z'"):
        split_by_shard(StateWrite(shards={"a": 1}, pop_added=[("z", "i", 0.0)]))


def test_merged_popularity_equals_one_running_sum() -> None:
    rng = np.random.default_rng(1)
    incs = [
        (int(rng.integers(6)), f"i{int(rng.integers(4))}", 14_000 + float(rng.normal())) for _ in range(500)
    ]
    one: dict[str, float] = {}
    per_shard: dict[int, dict[str, float]] = {}
    for s, item, inc in incs:
        one[item] = float(np.logaddexp(one.get(item, -np.inf), inc))
        d = per_shard.setdefault(s, {})
        d[item] = float(np.logaddexp(d.get(item, -np.inf), inc))
    merged = merge_pop(per_shard.values())
    assert merged.keys() == one.keys()
    assert all(math.isclose(merged[k], one[k], abs_tol=1e-9) for k in one)  # ~1e-12 at 1e4


def test_offset_keys() -> None:
    assert shard_of_offset("a:b:12") == 12
    assert shard_of_offset("t:-1") is None and shard_of_offset("t:") is None and shard_of_offset("x") is None


def test_memory_ignores_shards_and_keeps_totals() -> None:
    s = MemoryStateStore()
    s.commit(
        StateWrite(
            {"a": UserState("a")}, {"i1": 7.0}, {"t:3": 1}, shards={"a": 3}, pop_added=[("a", "i1", 1.0)]
        )
    )
    assert s.item_pop() == {"i1": 7.0} and set(s.get_many(["a"], {"a": 0})) == {"a"}


def test_memory_ttl_persists_in_the_file(tmp_path) -> None:
    now = [1000.0]
    path = tmp_path / "s.json"
    s = MemoryStateStore(path, user_ttl_days=1, clock=lambda: now[0])
    s.commit(StateWrite(users={"a": UserState("a")}))
    s.close()
    t = MemoryStateStore(path, user_ttl_days=1, clock=lambda: now[0])
    assert t.expire_users(now_ms=int(1000e3) + 86_400_000 - 1) == []
    assert t.expire_users(now_ms=int(1000e3) + 86_400_000) == ["a"] and t.users() == {}


@pytest.mark.parametrize("bad", [-1, "x", float("nan"), float("inf")])
def test_a_bad_ttl_is_a_config_error(bad) -> None:
    with pytest.raises(StateConfigError, match="USER_TTL_DAYS"):
        open_state("memory://", user_ttl_days=bad)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+cluster://h:7000/1", "only database 0"),
        ("redis+cluster://h:7000,h?prefix=a", "'h' is not HOST:PORT"),
        ("redis+cluster://:pw@h:70000", "is not HOST:PORT"),
        ("redis+cluster://h:7000?db=2", "unknown option"),
        ("redis+cluster://h:7000?prefix={x}", "without spaces or braces"),
    ],
)
def test_cluster_url_errors_are_one_line(url, match) -> None:
    pytest.importorskip("redis")
    with pytest.raises(StateConfigError, match=match) as e:
        open_state(url)
    assert "\n" not in str(e.value) and "pw" not in str(e.value)


def test_cluster_url_options() -> None:
    from driftrec.state.redis_cluster import RedisClusterStateStore, parse_cluster_url

    d = parse_cluster_url("rediss+cluster://bob:s%40cret@a:1,b:2/0?prefix=p&ssl_ca_certs=/ca.pem")
    assert d["nodes"] == [("a", 1), ("b", 2)] and d["namespace"] == "p"
    assert d["options"] == {"username": "bob", "password": "s@cret", "ssl": True, "ssl_ca_certs": "/ca.pem"}
    assert parse_cluster_url("redis+cluster://a:1", ssl_ca_certs="/x")["options"].get("ssl_ca_certs") is None
    s = RedisClusterStateStore.from_url(
        "redis+cluster://u:pw@a:1,b:2?prefix=q", check=False, password="other"
    )
    assert s.ns == "q" and s.where == "redis+cluster://u:***@a:1,b:2"
    assert s._key(3, "users:meta") == "{q:p3}:users:meta" and s._key(None, "pop") == "{q}:pop"


def test_a_sharded_write_with_a_stray_user_is_a_state_error() -> None:
    from driftrec.state.redis_cluster import RedisClusterStateStore

    s = RedisClusterStateStore(lambda: None, "x")
    with pytest.raises(StateError, match="no shard"):
        s.commit(StateWrite(users={"a": UserState("a")}, shards={"b": 1}))
