"""The state contract, stated once and run against every backend (memory, Redis).

The Redis case needs redis-server (``scripts/services.sh up redis``); it is marked
``integration``. Without CI it is skipped when Redis is unreachable; with ``CI=true`` an
unreachable Redis is a failure.
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from driftrec.state import Interaction, MemoryStateStore, StateUnavailable, StateWrite, UserState, open_state

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_store():
    from driftrec.state.redis import RedisStateStore

    url = f"{REDIS_URL}?prefix=test-contract-{uuid.uuid4().hex[:10]}"
    try:
        store = RedisStateStore.from_url(url)
    except StateUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but Redis is unreachable: {exc}")
        pytest.skip(f"Redis unreachable ({exc}); run scripts/services.sh up redis")
    return store


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request):
    if request.param == "memory":
        s = MemoryStateStore()
        yield s
        s.close()
    else:
        s = _redis_store()
        yield s
        s.drop()
        s.close()


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

    s = RedisStateStore.from_url("redis://127.0.0.1:1/0?prefix=x", check=False)
    assert s.ns == "x" and isinstance(s, RedisStateStore)
    with pytest.raises(StateUnavailable, match="scripts/services.sh up redis"):
        s.offsets("scorer")


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
