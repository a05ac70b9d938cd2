"""A Redis Cluster commit returns once each master it wrote to has it on a replica
(``wait_replicas``): the WAIT on the connection of a write made after the transactions,
fewer replicas when the master has fewer, a one-line error when none confirms."""

from __future__ import annotations

import pytest

pytest.importorskip("redis")

from driftrec.state import (  # noqa: E402
    StateConfigError,
    StateUnavailable,
    StateWrite,
    UserState,
    open_state,
    redis_cluster,  # noqa: E402
)
from driftrec.state.redis_cluster import RedisClusterStateStore, parse_cluster_url  # noqa: E402


class _Node:
    name = "10.0.0.1:7000"


class _Pipe:
    def __init__(self, server: _Server) -> None:
        self.server, self.cmds = server, []

    def set(self, key, value):
        self.cmds.append(("SET", key))

    def execute_command(self, *args):
        self.cmds.append(args)

    def execute(self):
        self.server.batches.append(self.cmds)
        return [True, self.server.acks.pop(0) if self.server.acks else 1]


class _Server:
    """The node's plain client: answers ROLE with ``replicas`` and each WAIT from ``acks``."""

    def __init__(self, replicas: int, acks: list[int]) -> None:
        self.replicas, self.acks, self.batches, self.roles = replicas, acks, [], 0

    def pipeline(self, transaction: bool = True):
        assert not transaction  # the SET and the WAIT on one connection, no MULTI
        return _Pipe(self)

    def execute_command(self, *args):
        assert args == ("ROLE",)
        self.roles += 1
        return [b"master", 100, [[b"10.0.0.2", b"7003", b"100"]] * self.replicas]


class _Cluster:
    def __init__(self, server: _Server) -> None:
        self.server = server

    def get_node_from_key(self, key):
        return _Node()

    def get_redis_connection(self, node):
        return self.server

    def sadd(self, key, *members):  # the shards noted
        return len(members)


def _store(server: _Server, wait: int = 1) -> RedisClusterStateStore:
    s = RedisClusterStateStore(lambda: _Cluster(server), "t", wait_replicas=wait)
    s._commit_part = lambda *a, **k: None  # type: ignore[method-assign]  # the transaction itself
    return s


def _write() -> StateWrite:
    return StateWrite(users={"a": UserState("a")}, offsets={"events.likes:3": 5}, shards={"a": 3})


def test_a_commit_waits_for_a_replica_after_its_transactions() -> None:
    server = _Server(replicas=1, acks=[1])
    _store(server).commit(_write())
    (batch,) = server.batches
    assert batch == [("SET", "{t:p3}:synced"), ("WAIT", 1, redis_cluster.WAIT_STEP_MS)]


def test_a_master_without_replicas_commits_alone_and_is_asked_again_later() -> None:
    server = _Server(replicas=0, acks=[])
    s = _store(server)
    s.commit(_write())
    s.commit(_write())
    assert server.batches == [] and server.roles == 1  # ROLE trusted for REPLICAS_TTL_S


def test_wait_replicas_0_sends_nothing() -> None:
    server = _Server(replicas=1, acks=[])
    _store(server, wait=0).commit(_write())
    assert server.batches == [] and server.roles == 0


def test_a_replica_that_never_confirms_is_one_line_after_the_deadline(monkeypatch) -> None:
    monkeypatch.setattr(redis_cluster, "WAIT_S", 0.0)
    server = _Server(replicas=1, acks=[0, 0, 0])
    with pytest.raises(StateUnavailable, match="wait_replicas=0") as e:
        _store(server).commit(_write())
    assert "\n" not in str(e.value) and len(server.batches) == 1


def test_a_replica_that_confirms_late_is_waited_for() -> None:
    server = _Server(replicas=1, acks=[0, 0, 1])
    _store(server).commit(_write())
    assert len(server.batches) == 3


def test_wait_replicas_in_the_url() -> None:
    assert parse_cluster_url("redis+cluster://a:1")["wait_replicas"] == 1
    assert parse_cluster_url("redis+cluster://a:1?wait_replicas=0&prefix=p")["wait_replicas"] == 0
    assert (
        RedisClusterStateStore.from_url("redis+cluster://a:1?wait_replicas=2", check=False).wait_replicas == 2
    )
    for bad in ("x", "-1", "17"):
        with pytest.raises(StateConfigError, match="wait_replicas"):
            open_state(f"redis+cluster://a:1?wait_replicas={bad}")
