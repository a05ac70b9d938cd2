"""The state contract, stated once and run against every backend (memory, Redis, Redis Cluster).

The Redis cases need redis-server (``scripts/services.sh up redis``, ``REDIS_URL``) and a
Redis Cluster (``scripts/services.sh up-cluster``, ``REDIS_CLUSTER_URL``); they are marked
``integration``. Without CI they are skipped when unreachable; with ``CI=true`` an
unreachable server is a failure.
"""

from __future__ import annotations

import math
import os
import uuid

import numpy as np
import pytest

from driftrec.state import Interaction, MemoryStateStore, StateUnavailable, StateWrite, UserState, open_state

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_CLUSTER_URL = os.environ.get("REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7000")


def _open(url: str, what: str, start: str, **options):
    try:
        return open_state(f"{url}?prefix=test-contract-{uuid.uuid4().hex[:10]}", **options)
    except StateUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {what} is unreachable: {exc}")
        pytest.skip(f"{what} unreachable ({exc}); run scripts/services.sh {start}")


def _redis_store(**options):
    return _open(REDIS_URL, "Redis", "up redis", **options)


def _make(kind: str, **options):
    if kind == "memory":
        return MemoryStateStore(**options)
    if kind == "redis":
        return _redis_store(**options)
    return _open(REDIS_CLUSTER_URL, "the Redis Cluster", "up-cluster", **options)


BACKENDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.integration),
    pytest.param("redis+cluster", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
def make_store(request):
    """A factory of empty stores of one backend (options: ``user_ttl_days``); dropped after."""
    made = []

    def make(**options):
        s = _make(request.param, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        if hasattr(s, "drop"):
            s.drop()
        s.close()


@pytest.fixture
def store(make_store):
    return make_store()


def _user(uid: str, n: int = 2, dim: int = 4) -> UserState:
    hist = [
        Interaction(
            f"{uid}-e{i}", "comment" if i % 2 else "like", f"i{i}", 1000 + i, "nice" if i % 2 else None
        )
        for i in range(n)
    ]
    vec = np.arange(dim, dtype=np.float32) / 3.0
    return UserState(uid, hist, vec, "v1", ["i7", "i8"], n, hist[-1].event_id, ["i0", "i1"])


def test_a_write_reads_back(store):
    u1, u2 = _user("u1"), _user("ü2 with space", n=3)
    store.commit(StateWrite(users={"u1": u1, u2.user_id: u2}))
    got = store.get_many(["u1", u2.user_id])
    assert set(got) == {"u1", u2.user_id}
    assert got["u1"].same_as(u1) and got[u2.user_id].same_as(u2)
    assert got["u1"].vector.dtype == np.float32
    assert got["u1"].history[1].text == "nice"


def test_a_user_without_vector_reads_back(store):
    u = UserState("bare", n_events=0)
    store.commit(StateWrite(users={"bare": u}))
    got = store.get_many(["bare"])["bare"]
    assert got.vector is None and got.same_as(u)


def test_a_missing_user_is_absent(store):
    store.commit(StateWrite(users={"u1": _user("u1")}))
    assert store.get_many(["nobody"]) == {}
    assert set(store.get_many(["u1", "nobody"])) == {"u1"}
    assert store.get_many([]) == {}


def test_a_later_write_replaces(store):
    store.commit(StateWrite(users={"u1": _user("u1", n=1)}))
    store.commit(StateWrite(users={"u1": _user("u1", n=3)}))
    assert store.get_many(["u1"])["u1"].n_events == 3


def test_offsets_are_stored_with_the_state(store):
    store.commit(
        StateWrite(
            users={"u1": _user("u1")},
            item_pop={"i1": -1.25, "i2": 3.0000000000001},
            offsets={"events.likes:0": 5, "events.clicks:1": 9},
            group="scorer",
        )
    )
    assert store.offsets("scorer") == {"events.likes:0": 5, "events.clicks:1": 9}
    assert store.offsets("other") == {}
    assert store.item_pop() == {"i1": -1.25, "i2": 3.0000000000001}  # floats round-trip exactly
    store.commit(StateWrite(users={}, item_pop={"i1": 0.5}, offsets={"events.likes:0": 7}, group="scorer"))
    assert store.offsets("scorer") == {"events.likes:0": 7, "events.clicks:1": 9}
    assert store.item_pop()["i1"] == 0.5 and store.get_many(["u1"])["u1"].n_events == 2


def test_offsets_are_per_group(store):
    store.commit(StateWrite(offsets={"t:0": 1}, group="a"))
    store.commit(StateWrite(offsets={"t:0": 2}, group="b"))
    assert store.offsets("a") == {"t:0": 1} and store.offsets("b") == {"t:0": 2}


def test_registry(store):
    r1 = {"version": "v1", "uri": "file:///a/v1", "sha256": "x", "metrics": {"hr": 0.1}}
    r2 = {"version": "v2", "uri": "file:///a/v2", "sha256": "y", "metrics": {}}
    store.register(r1)
    store.register(r2)
    store.register(dict(r1, sha256="z"))  # re-registering replaces, moves to the end
    assert [r["version"] for r in store.records()] == ["v2", "v1"]
    assert store.records()[1]["sha256"] == "z"
    assert store.current() is None
    store.set_current("v2")
    assert store.current() == "v2"


def test_open_state_picks_redis_by_scheme():
    pytest.importorskip("redis")
    from driftrec.state.redis import RedisStateStore
    from driftrec.state.redis_cluster import RedisClusterStateStore

    s = RedisStateStore.from_url("redis://127.0.0.1:1/0?prefix=x", check=False)
    assert s.ns == "x" and isinstance(s, RedisStateStore)
    with pytest.raises(StateUnavailable, match="scripts/services.sh up redis"):
        s.offsets("scorer")
    c = RedisClusterStateStore.from_url("redis+cluster://127.0.0.1:1,127.0.0.1:2?prefix=y", check=False)
    assert c.ns == "y"
    with pytest.raises(StateUnavailable, match="scripts/services.sh up-cluster") as e:
        c.offsets("scorer")
    assert "\n" not in str(e.value)


def test_open_state_reaches_redis_backend(monkeypatch):
    import driftrec.state.redis as sr

    monkeypatch.setattr(sr.RedisStateStore, "from_url", classmethod(lambda cls, url: ("redis", url)))
    assert open_state("redis://h:1/0") == ("redis", "redis://h:1/0")


def test_forget_deletes_the_users_state_and_notes_them(store):
    store.commit(
        StateWrite(
            users={"u1": _user("u1"), "u2": _user("u2"), "ü3 x": _user("ü3 x")},
            offsets={"t:0": 3},
            group="scorer",
        )
    )
    assert store.forgotten() == {}
    assert store.forget(["u1", "ü3 x", "never-seen"], 1234) == 2
    assert set(store.get_many(["u1", "u2", "ü3 x"])) == {"u2"}
    assert store.get_many(["u2"])["u2"].same_as(_user("u2"))
    assert store.forgotten() == {"u1": 1234, "ü3 x": 1234, "never-seen": 1234}
    assert store.offsets("scorer") == {"t:0": 3}  # offsets and other users untouched
    assert store.forget([], 99) == 0
    store.commit(StateWrite(users={"u1": _user("u1", n=1)}))  # a user may come back afresh
    assert store.get_many(["u1"])["u1"].n_events == 1


# ---- shards: a batch from several partitions (StateWrite.shards) --------------------------
def _pop_totals(increments):
    """What one scorer holds after these increments: the running log-sum per item."""
    out: dict[str, float] = {}
    for _, item, inc in increments:
        out[item] = np.logaddexp(out.get(item, -np.inf), inc)
    return {k: float(v) for k, v in out.items()}


def _sharded_write(users, shard_of, offsets, increments, group="scorer"):
    return StateWrite(
        users=users,
        item_pop=_pop_totals(increments),
        offsets=offsets,
        group=group,
        shards=shard_of,
        pop_added=increments,
    )


def test_a_sharded_write_reads_back_by_shard_and_without(store):
    us = {u: _user(u) for u in ("a", "b", "c", "ü d")}
    shard_of = {"a": 0, "b": 3, "c": 3, "ü d": 11}
    offsets = {
        "events.likes:0": 4,
        "events.likes:3": 9,
        "events.clicks:3": 2,
        "events.likes:11": 1,
        "items:3": 7,
    }
    store.commit(_sharded_write(us, shard_of, offsets, [("a", "i1", 1.0), ("b", "i2", 2.0)]))
    got = store.get_many(list(us), shard_of)
    assert set(got) == set(us) and all(got[u].same_as(us[u]) for u in us)
    assert set(store.get_many(["a", "ü d", "nobody"])) == {"a", "ü d"}  # no shards given: looked for
    assert store.offsets("scorer") == offsets
    assert set(store.get_many(["a", "nobody"], {"a": 0, "nobody": 5})) == {"a"}


def test_popularity_of_sharded_writes_is_what_one_accumulator_holds(store):
    """Per-shard accumulators merged on read equal one running log-sum (up to rounding)."""
    rng = np.random.default_rng(0)
    shard_of = {f"u{k}": k % 4 for k in range(12)}
    seen: list[tuple[str, str, float]] = []
    for b in range(5):
        incs = [
            (f"u{int(rng.integers(12))}", f"i{int(rng.integers(5))}", 13_000.0 + float(rng.normal()))
            for _ in range(20)
        ]
        seen += incs
        users = {u: _user(u, n=1) for u, _, _ in incs}
        offsets = {f"events.likes:{s}": 10 * (b + 1) for s in {shard_of[u] for u in users}}
        w = _sharded_write(users, {u: shard_of[u] for u in users}, offsets, incs)
        w.item_pop = _pop_totals(seen)  # the scorer's totals after this batch
        store.commit(w)
    want = _pop_totals(seen)
    got = store.item_pop()
    assert set(got) == set(want)
    for item, v in want.items():
        assert math.isclose(got[item], v, rel_tol=0, abs_tol=1e-9), (item, got[item], v)


def test_a_sharded_write_committed_twice_counts_once(store):
    """A transaction retried after a lost reply: popularity and offsets as after one."""
    incs = [("a", "i1", 5.0), ("b", "i1", 6.0), ("b", "i2", 1.0)]
    w = _sharded_write({"a": _user("a"), "b": _user("b")}, {"a": 1, "b": 2}, {"t:1": 3, "t:2": 4}, incs)
    store.commit(w)
    once = store.item_pop()
    store.commit(w)
    again = store.item_pop()
    assert once.keys() == again.keys() and all(math.isclose(once[k], again[k], abs_tol=1e-12) for k in once)
    assert math.isclose(once["i1"], float(np.logaddexp(5.0, 6.0)), abs_tol=1e-12)
    assert store.offsets("scorer") == {"t:1": 3, "t:2": 4}


def test_forget_reaches_every_shard(store):
    us = {u: _user(u) for u in ("a", "b", "c")}
    store.commit(_sharded_write(us, {"a": 0, "b": 1, "c": 2}, {"t:0": 1, "t:1": 1, "t:2": 1}, []))
    assert store.forget(["a", "c", "zz"], 77) == 2
    assert set(store.get_many(["a", "b", "c"])) == {"b"}
    assert set(store.get_many(["a", "b", "c"], {"a": 0, "b": 1, "c": 2})) == {"b"}
    assert store.forgotten() == {"a": 77, "c": 77, "zz": 77}


def test_unsharded_and_sharded_offsets_merge(store):
    store.commit(StateWrite(offsets={"seen": 5, "t:0": 2}, group="g"))
    store.commit(_sharded_write({"a": _user("a")}, {"a": 0}, {"t:0": 9}, [], group="g"))
    assert store.offsets("g") == {"seen": 5, "t:0": 9}


# ---- USER_TTL_DAYS --------------------------------------------------------------------------
def test_inactive_users_expire(make_store):
    clock = [1_000_000.0]  # seconds
    s = make_store(user_ttl_days=1)
    s.clock = lambda: clock[0]
    s.commit(
        _sharded_write({"old": _user("old"), "x": _user("x")}, {"old": 0, "x": 1}, {"t:0": 1, "t:1": 1}, [])
    )
    clock[0] += 20 * 3600
    s.commit(_sharded_write({"new": _user("new"), "x": _user("x", n=3)}, {"new": 1, "x": 1}, {"t:1": 2}, []))
    assert s.expire_users() == []  # nobody is a day old yet
    clock[0] += 5 * 3600  # "old" last written 25 h ago, "x" and "new" 5 h ago
    assert s.expire_users() == ["old"]
    assert set(s.get_many(["old", "x", "new"])) == {"x", "new"}
    assert s.get_many(["x"])["x"].n_events == 3
    assert s.offsets("scorer") == {"t:0": 1, "t:1": 2}  # offsets stay
    clock[0] += 2 * 86400
    assert sorted(s.expire_users(limit=1000)) == ["new", "x"]
    assert s.get_many(["x", "new"]) == {}


def test_without_a_ttl_nobody_expires(store):
    store.commit(StateWrite(users={"u1": _user("u1")}))
    assert store.expire_users(now_ms=10**15) == []
    assert set(store.get_many(["u1"])) == {"u1"}
