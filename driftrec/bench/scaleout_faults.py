"""The scale-out rows of ``driftrec faults`` (the suite: :mod:`driftrec.bench.faults`):
scorers that join and leave a consumer group mid-stream, and a Redis Cluster master that
fails over. Judged like every row, from the state and the topics the services leave behind.

- ``scorer_join``: one scorer takes the stream; a third of the way through, a second and a
  third start in the same group while the rest is sent (over 20 s or more), and the
  partitions are spread over the three;
- ``scorer_leave``: three scorers share the stream; a third of the way through one is
  stopped (SIGTERM: it commits what it has in hand and leaves the group), half-way another
  is killed (SIGKILL: the group notices after its session timeout); the last one finishes;
- ``redis_failover``: a third of the way through, the master of the Redis Cluster that
  holds the most of the bed's shards is killed (SIGKILL) and its replica takes over;
  the scorer goes on (redis-py's retry, or the service's own after ``SERVICE_RETRY_S``);
  the killed node comes back as a replica (``scripts/services.sh up-cluster``);
- ``redis_failover_lagging``: a replica that lags, as under load or over a slow link, and
  a scorer that has nothing to do while its master fails over. A third of the stream is
  sent and committed; the replica is paused (SIGSTOP) and the bed writes more filler to
  its master than the kernel's socket buffers hold (:func:`_filler_bytes`), so that what
  the master acknowledges next stays in its own memory; the next sixth of the stream is
  sent and committed (for up to :data:`LAG_S`); the master is killed, the replica resumed
  and promoted; then the rest is sent. What the master acknowledged while its replica
  lagged is missing on the promoted replica: those batches are lost, unless a commit waits
  for a replica (``wait_replicas`` of a ``redis+cluster://`` STATE_URL, default 1), or the
  scorer meets the failover mid-commit, gives up on Redis and starts over from the
  state's offsets.

The failover rows need ``--redis redis+cluster://HOST:PORT[,...]``; the lagging one also a
cluster on this host (its replica is paused by pid).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

from .testbed import Bed, Controls, FaultError, say

__all__ = ["LAG_S", "RUNNERS"]

#: How long the scorer may take to commit the events sent while the replica lags before
#: the master is killed (redis_failover_lagging); the replica stays paused for under the
#: cluster's node timeout (5 s as scripts/services.sh starts it), so that it is not itself
#: taken for failed.
LAG_S = 3.0

#: The filler is written in pieces of this size.
FILL_PIECE = 4 << 20

#: Small batches: a join, a leave or a kill lands between commits, with many commits after.
BATCH = {"SCORER_BATCH_SIZE": "64"}


def fault_scorer_join(bed: Bed, ctl: Controls, args: Any) -> dict:
    n = len(bed.events)
    first, rest = bed.events[: n // 3], bed.events[n // 3 :]
    p = bed.start(extra_env=BATCH)
    bed.wait(
        lambda: bed.store.offsets(f"{bed.prefix}-scorer") != {}, 300, "the scorer to read the catalog", p
    )
    th = bed.steady(first)
    bed.wait(lambda: bed.covered() >= len(first), 300, "a third of the stream", p)
    at = bed.covered()
    say(f"  two more scorers join the group at {at:,} of {n:,} events; the rest goes out meanwhile")
    ps = [p, bed.start(extra_env=BATCH), bed.start(extra_env=BATCH)]
    th = bed.steady(rest, chunks=200, pause_s=0.1)  # 20 s or more: the joins land mid-stream
    joined: list[int] = []
    next_look = 0.0

    def three() -> bool:  # the group holds all three (looked at once a second)
        nonlocal next_look
        if not joined and time.monotonic() >= next_look:
            next_look = time.monotonic() + 1.0
            if bed.members() == 3:
                joined.append(bed.covered())
        return bool(joined)

    drained = bed.drained(th)
    bed.wait(lambda: three() and drained(), 600, "the stream with three scorers", ps)
    rcs = [bed.stop(q) for q in ps]
    return dict(
        bed.account("scorer_join", bed.events),
        at=at,
        joined_at=joined[0],
        updates_by=[s.get("recs", 0) for s in bed.summaries()],
        exit=next((rc for rc in rcs if rc != 0), 0),
    )


def fault_scorer_leave(bed: Bed, ctl: Controls, args: Any) -> dict:
    n = len(bed.events)
    ps = [bed.start(extra_env=BATCH) for _ in range(3)]
    bed.wait(lambda: bed.members() == 3, 300, "the group to hold three scorers", ps)
    th = bed.steady(bed.events)
    bed.wait(lambda: bed.covered() >= n // 3, 300, "a third of the stream", ps)
    at = bed.covered()
    say(f"  one scorer of three stopped (SIGTERM) at {at:,} of {n:,} events")
    term_rc = bed.stop(ps[1])
    bed.wait(lambda: bed.covered() >= n // 2, 300, "half the stream", [ps[0], ps[2]])
    killed_at = bed.covered()
    say(f"  another killed (SIGKILL) at {killed_at:,}; the last one finishes")
    ps[2].send_signal(signal.SIGKILL)
    ps[2].wait(10)
    bed.wait(bed.drained(th), 600, "the stream with one scorer left", ps[0])
    rc = bed.stop(ps[0])
    return dict(
        bed.account("scorer_leave", bed.events),
        at=at,
        killed_at=killed_at,
        updates_by=[s.get("recs", 0) for s in bed.summaries()],
        exit=term_rc or rc,
    )


def _master_to_kill(bed: Bed) -> tuple[Any, Any, int]:
    """The master that holds the most of the bed's shards, its replica (redis-py clients of
    each) and one of those shards."""
    import redis

    from driftrec.state.redis_cluster import RedisClusterStateStore

    store = bed.store
    assert isinstance(store, RedisClusterStateStore)
    nodes: dict[tuple[str, int], list[int]] = {}
    for shard in range(bed.partitions):
        node = store.client.get_node_from_key(f"{{{store.ns}:p{shard}}}:pop")
        nodes.setdefault((node.host, node.port), []).append(shard)
    host, port = max(nodes, key=lambda k: len(nodes[k]))
    master = redis.Redis(host=host, port=port, socket_timeout=5, **bed.redis_auth())
    role = master.execute_command("ROLE")
    if len(role) < 3 or not role[2]:
        raise FaultError(f"the master {host}:{port} has no replica to take over: nothing to fail over to")
    r_host, r_port = role[2][0][0], int(role[2][0][1])
    r_host = r_host.decode() if isinstance(r_host, bytes) else r_host
    replica = redis.Redis(host=r_host, port=r_port, socket_timeout=5, **bed.redis_auth())
    return master, replica, nodes[(host, port)][0]


def _filler_bytes() -> int:
    """More than a TCP connection on this host can hold in flight: the largest send buffer
    plus the largest receive buffer (``/proc/sys/net/ipv4/tcp_wmem``, ``tcp_rmem``), and
    8 MB; 64 MB where they cannot be read."""
    try:
        total = 0
        for name in ("tcp_wmem", "tcp_rmem"):
            with open(f"/proc/sys/net/ipv4/{name}") as f:
                total += int(f.read().split()[2])
        return total + (8 << 20)
    except (OSError, ValueError, IndexError):
        return 64 << 20


def _lag(bed: Bed, master: Any, shard: int) -> int:
    """Writes the filler for the paused replica (into ``shard``'s keys, on its master);
    returns its bytes. One key, overwritten: the master's memory holds one piece, its
    replication stream all of them."""
    key, piece, written = f"{{{bed.store.ns}:p{shard}}}:filler", os.urandom(FILL_PIECE), 0
    for _ in range(-(-_filler_bytes() // FILL_PIECE)):
        master.set(key, piece)
        written += len(piece)
    return written


def _promoted(replica: Any) -> bool:
    try:
        return bool(replica.info("replication")["role"] == "master")
    except Exception:  # noqa: BLE001 - not yet (or it does not answer)
        return False


def _kill(ctl: Controls, master: Any) -> str:
    """Kills ``master`` (``--master-kill``, or SIGKILL of its process); returns its address."""
    where = master.connection_pool.connection_kwargs
    pid = int(master.info("server")["process_id"])
    if ctl.master_kill:
        ctl.run("master_kill", host=str(where["host"]), port=str(where["port"]))
    else:
        os.kill(pid, signal.SIGKILL)
    return f"{where['host']}:{where['port']}"


def _needs_cluster(bed: Bed, name: str) -> None:
    if not bed.cluster:
        raise FaultError(
            f"{name} fails a Redis Cluster over: run it with --redis redis+cluster://HOST:PORT[,...] "
            f"(scripts/services.sh up-cluster)"
        )


def _after_failover(
    bed: Bed,
    ctl: Controls,
    p: Any,
    replica: Any,
    since: tuple[float, int],
    done: Callable[[], bool],
    then: Callable[[], Any] = lambda: None,
) -> dict:
    """Waits for the promotion, runs ``then``, waits for ``done``, brings the killed node
    back and stops the scorer; the row's extra cells. ``since``: when the master was killed
    (monotonic) and the log's length then."""
    bed.wait(lambda: _promoted(replica), 120, "the replica's promotion", p)
    promoted = time.monotonic() - since[0]
    then()
    bed.wait(done, 600, "the stream after the failover", p)
    alive = p.poll() is None
    ctl.run("cluster_start")  # the killed node comes back, as a replica
    rc = bed.stop(p)
    return {
        "promoted_after_s": round(promoted, 1),
        # the scorer gave up on Redis and started over from the state's offsets
        "scorer_retries": len(re.findall(r"redis unreachable \(attempt", bed.log_tail(10**9)[since[1] :])),
        "survived": alive,
        "exit": rc,
    }


def fault_redis_failover(bed: Bed, ctl: Controls, args: Any) -> dict:
    _needs_cluster(bed, "redis_failover")
    n = len(bed.events)
    p, th = bed.a_third_in(BATCH)
    master, replica, _ = _master_to_kill(bed)
    at, since = bed.covered(), (time.monotonic(), len(bed.log_tail(10**9)))
    address = _kill(ctl, master)
    say(f"  master {address} killed at {at:,} of {n:,} events; waiting for its replica to take over")
    extra = _after_failover(bed, ctl, p, replica, since, bed.drained(th))
    return dict(bed.account("redis_failover", bed.events), at=at, killed=address, **extra)


def fault_redis_failover_lagging(bed: Bed, ctl: Controls, args: Any) -> dict:
    _needs_cluster(bed, "redis_failover_lagging")
    n = len(bed.events)
    first, lagging, rest = bed.events[: n // 3], bed.events[n // 3 : n // 2], bed.events[n // 2 :]
    p = bed.start(extra_env=BATCH)
    bed.wait(
        lambda: bed.store.offsets(f"{bed.prefix}-scorer") != {}, 300, "the scorer to read the catalog", p
    )
    bed.send_events(first)
    bed.wait(lambda: bed.covered() >= len(first), 300, "a third of the stream", p)
    master, replica, shard = _master_to_kill(bed)
    r_pid = int(replica.info("server")["process_id"])
    os.kill(r_pid, signal.SIGSTOP)
    try:
        filler = _lag(bed, master, shard)
        lag_at = bed.covered()
        bed.send_events(lagging)
        deadline = time.monotonic() + LAG_S
        while bed.covered() < lag_at + len(lagging) and time.monotonic() < deadline:
            time.sleep(0.05)
        at, since = bed.covered(), (time.monotonic(), len(bed.log_tail(10**9)))
        address = _kill(ctl, master)
    finally:
        os.kill(r_pid, signal.SIGCONT)
    say(
        f"  its replica paused, {filler >> 20} MB of filler past it, {at - lag_at:,} of the next "
        f"{len(lagging):,} events committed; master {address} killed at {at:,} of {n:,}"
    )
    end: list[int] = []

    def send_rest() -> None:
        bed.send_events(rest)
        end.append(bed.end())

    extra = _after_failover(bed, ctl, p, replica, since, lambda: bed.covered() >= end[0], send_rest)
    return dict(
        bed.account("redis_failover_lagging", bed.events),
        at=at,
        killed=address,
        committed_while_lagging=at - lag_at,
        filler_mb=filler >> 20,
        **extra,
    )


RUNNERS: dict[str, Callable[[Bed, Controls, Any], dict]] = {
    "scorer_join": fault_scorer_join,
    "scorer_leave": fault_scorer_leave,
    "redis_failover": fault_redis_failover,
    "redis_failover_lagging": fault_redis_failover_lagging,
}
