"""The Redis Cluster backend of the state protocol (``redis+cluster://``, ``rediss+cluster://``).

A shard is a partition number of the events topics (:mod:`.sharding`). Each shard's keys
carry the hash tag ``{ns:pN}``, so they live in one hash slot, on one master::

    {ns:pN}:users:meta        hash  user_id -> JSON (history, version, top-k, counters)
    {ns:pN}:users:vec         hash  user_id -> float32 bytes of the user vector
    {ns:pN}:pop               hash  item_id -> log-sum of this shard's popularity increments
    {ns:pN}:offsets:{group}   hash  "topic:N" -> next offset to read
    {ns:pN}:users:seen        sorted set  user_id -> epoch ms of its last write (USER_TTL_DAYS)

and the keys that belong to no shard share the tag ``{ns}`` (one slot)::

    {ns}:shards               set   the shard numbers written so far
    {ns}:registry, {ns}:registry:order, {ns}:current, {ns}:forgotten   as on one server
    {ns}:users:meta, :users:vec, :pop, :offsets:{group}, :users:seen   unsharded writes
                                    (tools, tests, the learner's offsets)

A batch's write is committed as one MULTI/EXEC per shard it touches: the shard's users,
its popularity increments and its partition's offsets together (the masters in parallel,
a master's shards one after the other). A user lives in one
shard, so every partition stays exactly-once: after a crash between two shards'
transactions, each partition resumes at its own stored offsets. The increments are added
by a Lua step inside the transaction that does nothing when the shard's offsets already
stand at the batch's (a transaction the client retried after a lost reply), so a retry
never counts an event twice. Reads merge over shards: offsets by maximum, popularity by
log-sum (:func:`.sharding.merge_pop`).

MOVED/ASK redirections, failovers and topology refreshes are handled by redis-py's
``RedisCluster`` with a retry (exponential backoff up to :data:`RETRIES` times); what it
gives up on becomes :class:`~.errors.StateUnavailable` (one line, saying what to do).

Replication is asynchronous: a master that dies right after acknowledging a transaction
can leave a promoted replica without it. So a commit returns only once the transaction is
on ``wait_replicas`` replicas of each master it wrote to (``?wait_replicas=N``, default 1;
0 turns it off), or on as many as the master has connected: after the transactions, one
``SET {ns:pN}:synced`` and ``WAIT`` per master (:meth:`RedisClusterStateStore._replicated`).
A commit that no replica confirms within :data:`WAIT_S` is :class:`~.errors.StateUnavailable`:
the caller handles the batch again, which the transactions' offsets make exact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import StateConfigError, StateError, StateUnavailable
from .model import StateWrite, UserState
from .redaction import PERCENT_ENCODE, redact, redact_url, unencoded_userinfo
from .redis import EXPIRE_SCRIPT, RedisRegistry, _s, map_redis_errors, parse_prefix
from .sharding import ShardWrite, merge_pop, split_by_shard
from .ttl import DAY_MS, EXPIRE_LIMIT, check_ttl

#: Attempts of a command or transaction that meets a connection error, a MOVED/ASK or a
#: cluster that is failing over (backoff 50 ms doubling up to 1 s: about 7 s in all).
RETRIES = 10

#: How long a commit waits for a replica to confirm it (one WAIT of :data:`WAIT_STEP_MS`
#: after another) before it is :class:`StateUnavailable`.
WAIT_S = 10.0
WAIT_STEP_MS = 1000

#: How long a master's count of connected replicas (ROLE) is trusted before it is asked again.
REPLICAS_TTL_S = 5.0

#: Adds log-space popularity increments to a shard's accumulators unless the shard's
#: offsets already stand at the write's (the same transaction, retried).
#: KEYS: popularity hash, offsets hash. ARGV: n, n (offset key, offset) pairs, then
#: (item, increment) pairs. Returns 1 when applied, 0 when skipped.
POP_ADD_SCRIPT = """
local n = tonumber(ARGV[1])
if n > 0 then
  local done = true
  for i = 0, n - 1 do
    local cur = redis.call('HGET', KEYS[2], ARGV[2 + 2 * i])
    if (not cur) or tonumber(cur) < tonumber(ARGV[3 + 2 * i]) then done = false break end
  end
  if done then return 0 end
end
for s = 2 + 2 * n, #ARGV, 2000 do
  local items = {}
  for i = s, math.min(s + 1999, #ARGV), 2 do items[#items + 1] = ARGV[i] end
  local cur = redis.call('HMGET', KEYS[1], unpack(items))
  local out = {}
  for j = 1, #items do
    local inc = tonumber(ARGV[s + 2 * j - 1])
    local v = inc
    if cur[j] then
      local c = tonumber(cur[j])
      if c > inc then v = c + math.log(1 + math.exp(inc - c)) else v = inc + math.log(1 + math.exp(c - inc)) end
    end
    out[#out + 1] = items[j]
    out[#out + 1] = string.format('%.17g', v)
  end
  redis.call('HSET', KEYS[1], unpack(out))
end
return 1
"""


def parse_cluster_url(url: str, ssl_ca_certs: str | None = None) -> dict[str, Any]:
    """``redis+cluster://[user:password@]host:port[,host:port...][/0][?prefix=NAME]`` (or
    ``rediss+cluster://`` over TLS, with ``?ssl_ca_certs=PATH``; ``&wait_replicas=N``: the
    replicas a commit waits for, default 1): the namespace, the startup nodes, the
    connection options and ``wait_replicas``.

    >>> d = parse_cluster_url("redis+cluster://a:7000,[::1]:7001?prefix=t")
    >>> d["namespace"], d["nodes"], d["options"]["ssl"], d["wait_replicas"]
    ('t', [('a', 7000), ('::1', 7001)], False, 1)
    >>> parse_cluster_url("redis+cluster://a:7000/3")
    Traceback (most recent call last):
    ...
    driftrec.state.errors.StateConfigError: STATE_URL 'redis+cluster://a:7000/3': a Redis Cluster has only database 0
    """
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    ns = parse_prefix(url, q)
    shown = redact_url(url)
    tls = parts.scheme == "rediss+cluster"
    ca = (q.pop("ssl_ca_certs", [""]) or [""])[0] or ssl_ca_certs
    wait = (q.pop("wait_replicas", ["1"]) or ["1"])[0]
    if q:
        raise StateConfigError(
            f"STATE_URL {shown!r}: unknown option(s) {', '.join(sorted(q))}; a cluster URL takes "
            f"prefix, ssl_ca_certs and wait_replicas"
        )
    if not wait.isdigit() or int(wait) > 16:
        raise StateConfigError(
            f"STATE_URL {shown!r}: wait_replicas must be a whole number from 0 to 16 (the replicas "
            f"a commit waits for; 0: none), not {wait!r}"
        )
    if parts.path not in ("", "/", "/0"):
        raise StateConfigError(f"STATE_URL {shown!r}: a Redis Cluster has only database 0")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for hp in hosts.split(","):
        host, _, port = hp.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise StateConfigError(
                f"STATE_URL {shown!r}: {redact(hp.strip())!r} is not HOST:PORT; list the cluster's "
                f"nodes as redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
        nodes.append((host, int(port)))
    user, sep, password = userinfo.partition(":")
    options: dict[str, Any] = {
        "username": unquote(user) or None,
        "password": unquote(password) if sep else None,
        "ssl": tls,
    }
    if tls and ca:
        options["ssl_ca_certs"] = ca
    return {"namespace": ns, "nodes": nodes, "options": options, "wait_replicas": int(wait)}


class RedisClusterStateStore(RedisRegistry):
    """User state, popularity, offsets and the model registry on a Redis Cluster, keyed
    per shard (the module's docstring has the layout).

    Parameters
    ----------
    connect : makes the ``redis.cluster.RedisCluster`` client (called once, on first use)
    namespace : the key prefix; tests use a unique one each
    where : how to name the cluster in error messages
    user_ttl_days : users not written for this many days go (:meth:`expire_users`)
    wait_replicas : a commit returns once on this many replicas of each master it wrote to
        (or on all the master has connected, when fewer); 0: at once
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        namespace: str = "driftrec",
        where: str = "redis+cluster",
        user_ttl_days: float | None = None,
        clock: Callable[[], float] = time.time,
        wait_replicas: int = 0,
    ) -> None:
        self._connect = connect
        self.wait_replicas = int(wait_replicas)
        self._replicas: dict[str, tuple[int, float]] = {}  # node -> (connected replicas, asked at)
        self._client: Any = None
        self.ns = namespace
        self.where = where
        self.user_ttl_days = check_ttl(user_ttl_days)
        self.clock = clock
        self._known: set[int] = set()  # shards noted in {ns}:shards by this process
        self._pool: ThreadPoolExecutor | None = None  # commits to several masters at once
        self._k_shards = f"{{{namespace}}}:shards"
        self._k_reg = f"{{{namespace}}}:registry"
        self._k_order = f"{{{namespace}}}:registry:order"
        self._k_cur = f"{{{namespace}}}:current"
        self._k_forgotten = f"{{{namespace}}}:forgotten"

    @classmethod
    def from_url(
        cls,
        url: str,
        check: bool = True,
        ssl_ca_certs: str | None = None,
        password: str | None = None,
        user_ttl_days: float | None = None,
    ) -> RedisClusterStateStore:
        """The store of a ``redis+cluster://`` URL (see :func:`parse_cluster_url`); the
        startup nodes are asked for the cluster's slot map (one that answers is enough).
        ``password`` (``REDIS_PASSWORD_FILE``) is used when the URL holds none."""
        why = unencoded_userinfo(url)
        if why:
            raise StateConfigError(f"STATE_URL {redact_url(url)!r}: {why}; {PERCENT_ENCODE}")
        d = parse_cluster_url(url, ssl_ca_certs)
        opts = d["options"]
        if password and opts["password"] is None:
            opts["password"] = password
        ttl = check_ttl(user_ttl_days)
        scheme, _, rest = url.partition("://")
        where = redact_url(f"{scheme}://{rest.split('?')[0].split('/')[0]}")

        def connect() -> Any:
            from redis.backoff import ExponentialWithJitterBackoff
            from redis.cluster import ClusterNode, RedisCluster
            from redis.retry import Retry

            return RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in d["nodes"]],
                retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), RETRIES),
                socket_timeout=10,
                socket_connect_timeout=5,
                health_check_interval=30,
                **opts,
            )

        store = cls(connect, d["namespace"], where, ttl, wait_replicas=d["wait_replicas"])
        if check:
            with map_redis_errors(where):
                store._r.ping()
        return store

    @property
    def _r(self) -> Any:
        if self._client is None:
            with map_redis_errors(self.where):
                self._client = self._connect()
        return self._client

    @property
    def client(self) -> Any:
        """The ``RedisCluster`` client (benchmarks read the masters' INFO through it)."""
        return self._r

    # ---- keys ---------------------------------------------------------------------------
    def _key(self, shard: int | None, name: str) -> str:
        return f"{{{self.ns}}}:{name}" if shard is None else f"{{{self.ns}:p{shard}}}:{name}"

    def shards(self) -> list[int]:
        """The shard numbers written so far, ascending."""
        with map_redis_errors(self.where):
            raw = self._r.smembers(self._k_shards)
        self._known.update(int(x) for x in raw)
        return sorted(self._known)

    def _every(self) -> list[int | None]:
        return [None, *self.shards()]

    def _note_shards(self, shards: Iterable[int | None]) -> None:
        new = {s for s in shards if s is not None} - self._known
        if new:
            self._r.sadd(self._k_shards, *sorted(new))
            self._known |= new

    # ---- UserStore ------------------------------------------------------------------------
    def get_many(
        self, user_ids: Sequence[str], shards: Mapping[str, int] | None = None
    ) -> dict[str, UserState]:
        """The users that have a state: each read from its shard (``shards``: user ->
        partition number); a user without one is looked for in every shard."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        by: dict[int | None, list[str]] = {}
        lost: list[str] = []
        for u in ids:
            s = shards.get(u) if shards else None
            if s is None:
                lost.append(u)
            else:
                by.setdefault(s, []).append(u)
        with map_redis_errors(self.where):
            if lost:
                for s in self._every():
                    by.setdefault(s, []).extend(lost)
            reads = list(by.items())
            pipe = self._r.pipeline(transaction=False)
            for s, us in reads:
                pipe.hmget(self._key(s, "users:meta"), us)
                pipe.hmget(self._key(s, "users:vec"), us)
            res = pipe.execute()
        out: dict[str, UserState] = {}
        for (_, us), metas, vecs in zip(reads, res[0::2], res[1::2]):
            for u, m, v in zip(us, metas, vecs):
                if m is not None and u not in out:
                    out[u] = UserState.from_parts(u, m, v or None)
        return out

    def commit(self, write: StateWrite) -> None:
        """One MULTI/EXEC per shard the write touches (unsharded: one in all)."""
        if not (write.users or write.item_pop or write.offsets):
            return
        if not write.shards:
            with map_redis_errors(self.where):
                self._commit_part(None, write.users, write.offsets, write.group, {}, write.item_pop)
                self._replicated(None)
            return
        try:
            parts = split_by_shard(write)
        except ValueError as exc:
            raise StateError(str(exc)) from None
        with map_redis_errors(self.where):
            self._note_shards(p.shard for p in parts)
            by_node: dict[str, list[ShardWrite]] = {}
            for p in parts:
                node = self._r.get_node_from_key(self._key(p.shard, "pop")).name
                by_node.setdefault(node, []).append(p)
            groups = list(by_node.values())
            if len(groups) == 1:
                self._commit_parts(groups[0], write.group)
                return
            # the masters work in parallel, each on its shards one after the other; every
            # part has finished (or failed) before the first error is raised
            if self._pool is None:
                self._pool = ThreadPoolExecutor(8, thread_name_prefix="driftrec-state")
            futures = [self._pool.submit(self._commit_parts, g, write.group) for g in groups]
            errors = [e for e in (f.exception() for f in futures) if e is not None]
            if errors:
                raise errors[0]

    def _commit_parts(self, parts: Sequence[ShardWrite], group: str) -> None:
        for p in parts:
            self._commit_part(p.shard, p.users, p.offsets, group, p.pop_add, {})
        if parts:  # one master: its last transaction on a replica means all of them are
            self._replicated(parts[-1].shard)

    def _replicated(self, shard: int | None) -> None:
        """Returns once the master of ``shard`` has its transactions so far on
        ``wait_replicas`` replicas (or on every replica it has connected, when fewer).

        ``WAIT`` counts the replicas that have a connection's last write, and a pooled
        connection need not be the one that ran the transaction: so a ``SET`` of the shard's
        ``synced`` key (the time, in ms) goes first on the same connection, after the
        transactions, and ``WAIT`` waits for it."""
        if self.wait_replicas <= 0:
            return
        import redis.exceptions as rex

        key = self._key(shard, "synced")
        node = self._r.get_node_from_key(key)
        client = self._r.get_redis_connection(node)
        want = self._wanted(node, client)
        deadline = time.monotonic() + WAIT_S
        while want > 0:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, int(self.clock() * 1000))
            pipe.execute_command("WAIT", want, WAIT_STEP_MS)
            try:
                got = int(pipe.execute()[1])
            except rex.AskError as exc:  # MOVED too: a failover since the transaction
                raise StateUnavailable(
                    f"the Redis Cluster at {self.where} moved shard {shard}'s slot while a commit "
                    f"waited for a replica ({exc}); the batch is handled again"
                ) from exc
            if got >= want:
                return
            want = self._wanted(node, client, fresh=True)
            if want > 0 and time.monotonic() > deadline:
                raise StateUnavailable(
                    f"the Redis Cluster at {self.where}: master {node.name} has {want} replica(s) "
                    f"connected but none confirmed a commit within {WAIT_S:.0f} s (WAIT returned {got}); "
                    f"check its replicas (redis-cli -h HOST -p PORT info replication), or set "
                    f"wait_replicas=0 in STATE_URL to commit without waiting for one"
                )

    def _wanted(self, node: Any, client: Any, fresh: bool = False) -> int:
        """How many replicas to wait for on ``node``: ``wait_replicas``, or fewer when the
        master has fewer connected (ROLE; asked again after :data:`REPLICAS_TTL_S`)."""
        now = time.monotonic()
        n, at = self._replicas.get(node.name, (0, -REPLICAS_TTL_S))
        if fresh or now - at >= REPLICAS_TTL_S:
            role = client.execute_command("ROLE")
            n = len(role[2]) if role and _s(role[0]) == "master" and len(role) > 2 else 0
            self._replicas[node.name] = (n, now)
        return min(self.wait_replicas, n)

    def _commit_part(
        self,
        shard: int | None,
        users: Mapping[str, UserState],
        offsets: Mapping[str, int],
        group: str,
        pop_add: Mapping[str, float],
        pop_set: Mapping[str, float],
    ) -> None:
        k_off = self._key(shard, f"offsets:{group}")
        pipe = self._r.pipeline(transaction=True)
        if pop_add:  # first: it checks the offsets as they were before this transaction
            args: list[Any] = [len(offsets)]
            for k, v in offsets.items():
                args += [k, int(v)]
            for i, v in pop_add.items():
                args += [i, repr(float(v))]
            pipe.execute_command("EVAL", POP_ADD_SCRIPT, 2, self._key(shard, "pop"), k_off, *args)
        if users:
            pipe.hset(self._key(shard, "users:meta"), mapping={u: s.meta_bytes() for u, s in users.items()})
            pipe.hset(self._key(shard, "users:vec"), mapping={u: s.vector_bytes() for u, s in users.items()})
            if self.user_ttl_days is not None:
                pipe.zadd(self._key(shard, "users:seen"), dict.fromkeys(users, int(self.clock() * 1000)))
        if pop_set:
            pipe.hset(self._key(shard, "pop"), mapping={i: repr(float(v)) for i, v in pop_set.items()})
        if offsets:
            pipe.hset(k_off, mapping={k: int(v) for k, v in offsets.items()})
        pipe.execute()

    # ---- UserEraser ---------------------------------------------------------------------
    def forget(self, user_ids: Sequence[str], at_ms: int) -> int:
        """Notes the users as forgotten, then deletes their state from every shard (one
        MULTI/EXEC per shard, each on a replica before the next, as a commit); a forget cut
        short is finished by running it again."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return 0
        n = 0
        with map_redis_errors(self.where):
            self._r.hset(self._k_forgotten, mapping={u: int(at_ms) for u in ids})
            for s in self._every():
                pipe = self._r.pipeline(transaction=True)
                pipe.hdel(self._key(s, "users:meta"), *ids)
                pipe.hdel(self._key(s, "users:vec"), *ids)
                pipe.zrem(self._key(s, "users:seen"), *ids)
                n += int(pipe.execute()[0])
                self._replicated(s)  # a forget acknowledged is not undone by a failover
        return n

    def forgotten(self) -> dict[str, int]:
        with map_redis_errors(self.where):
            raw = self._r.hgetall(self._k_forgotten)
        return {_s(k): int(v) for k, v in raw.items()}

    def expire_users(self, now_ms: int | None = None, limit: int = EXPIRE_LIMIT) -> list[str]:
        """With ``user_ttl_days``: delete the users not written for that long, at most
        ``limit`` per shard (one Lua step per shard); returns their ids. Else ``[]``."""
        if self.user_ttl_days is None:
            return []
        now = int(self.clock() * 1000) if now_ms is None else int(now_ms)
        cutoff = now - int(self.user_ttl_days * DAY_MS)
        out: list[str] = []
        with map_redis_errors(self.where):
            for s in self._every():
                keys = [self._key(s, "users:seen"), self._key(s, "users:meta"), self._key(s, "users:vec")]
                out += [_s(u) for u in self._r.eval(EXPIRE_SCRIPT, 3, *keys, cutoff, int(limit))]
        return out

    # ---- OffsetStore / ItemStatsStore ----------------------------------------------------
    def _over_shards(self, name: str) -> list[dict[Any, Any]]:
        with map_redis_errors(self.where):
            pipe = self._r.pipeline(transaction=False)
            for s in self._every():
                pipe.hgetall(self._key(s, name))
            return list(pipe.execute())

    def offsets(self, group: str) -> dict[str, int]:
        """Every shard's offsets of ``group`` (a key found twice: the larger offset)."""
        out: dict[str, int] = {}
        for raw in self._over_shards(f"offsets:{group}"):
            for k, v in raw.items():
                key, off = _s(k), int(v)
                if off > out.get(key, -1):
                    out[key] = off
        return out

    def item_pop(self) -> dict[str, float]:
        """Per item, the log-sum of the shards' accumulators (and of an unsharded write's)."""
        return merge_pop({_s(k): float(v) for k, v in raw.items()} for raw in self._over_shards("pop"))

    # ---- ModelRegistry (RedisRegistry's, each write on a replica before it returns) -------
    def register(self, record: Mapping[str, Any]) -> None:
        super().register(record)
        with map_redis_errors(self.where):
            self._replicated(None)

    def set_current(self, version: str) -> None:
        super().set_current(version)
        with map_redis_errors(self.where):
            self._replicated(None)

    # ---- reports, tests, lifecycle -------------------------------------------------------
    def users(self) -> dict[str, UserState]:
        """All users of every shard (tests, reports)."""
        metas = self._over_shards("users:meta")
        vecs = self._over_shards("users:vec")
        out: dict[str, UserState] = {}
        for m_raw, v_raw in zip(metas, vecs):
            vec_by = {_s(k): v for k, v in v_raw.items()}
            for u, m in m_raw.items():
                out[_s(u)] = UserState.from_parts(_s(u), m, vec_by.get(_s(u)) or None)
        return out

    def drop(self) -> int:
        """Delete every key of this namespace on every master (tests); returns how many."""
        n = 0
        with map_redis_errors(self.where):
            keys = list(self._r.scan_iter(match=f"{{{self.ns}[:}}]*", count=500))
            for k in keys:
                n += self._r.delete(k)
        self._known.clear()
        return n

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
