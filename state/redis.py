"""The Redis backend of the state protocol.

Layout (every key under a namespace, ``driftrec`` unless the URL says ``?prefix=NAME``)::

    {ns}:users:meta          hash  user_id -> JSON (history, version, top-k, counters)
    {ns}:users:vec           hash  user_id -> float32 bytes of the user vector
    {ns}:pop                 hash  item_id -> decayed popularity accumulator (log space, repr)
    {ns}:offsets:{group}     hash  "topic:partition" -> next offset to read
    {ns}:registry            hash  version -> announcement record (JSON)
    {ns}:registry:order      list  versions in registration order
    {ns}:current             string  the serving version
    {ns}:forgotten           hash  user_id -> epoch ms of its ``forget`` request
    {ns}:users:seen          sorted set  user_id -> epoch ms of its last write (only with
                             ``user_ttl_days``: :meth:`RedisStateStore.expire_users`)

Reads of a batch are one round trip (a pipeline of two HMGETs). A batch's write — users,
item popularity and the consumer offsets it covers — is one MULTI/EXEC transaction, so
after a crash either all of it is there or none of it is: the scorer resumes at the stored
offsets and neither loses nor double-applies an event.

This layout is the single-server one (``redis://``, ``rediss://``, ``unix://``); Redis
Cluster (``redis+cluster://``) keys the same data per shard: :mod:`.redis_cluster`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import StateConfigError, StateError, StateUnavailable
from .model import StateWrite, UserState
from .redaction import PERCENT_ENCODE, redact, redact_url, unencoded_userinfo
from .ttl import DAY_MS, EXPIRE_LIMIT, check_ttl

DEFAULT_NAMESPACE = "driftrec"


@contextlib.contextmanager
def map_redis_errors(where: str) -> Iterator[None]:
    """Translate redis-py exceptions into :class:`StateUnavailable` (chained); refused
    credentials (a wrong password or user, none where one is required, an ACL user without
    the rights) into :class:`StateConfigError`: retrying cannot fix them."""
    import redis.exceptions as rex

    where = redact(where)
    cluster = "+cluster://" in where
    start = "scripts/services.sh up-cluster" if cluster else "scripts/services.sh up redis"
    try:
        yield
    except rex.RedisClusterException as exc:  # not a RedisError: the cluster client's own
        raise _cluster_error(where, exc) from exc
    except rex.ClusterDownError as exc:  # before ResponseError, its base class
        raise StateUnavailable(
            redact(
                f"the Redis Cluster at {where} is down ({exc}): a master failed and no replica "
                f"took over yet; retry, or check it with redis-cli --cluster check HOST:PORT"
            )
        ) from exc
    except rex.AuthenticationError as exc:  # before ConnectionError, its base class
        raise StateConfigError(redact(_refused(where, exc))) from exc
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        text = str(exc)
        if any(w in text for w in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "SSL", "TLS")):
            raise StateUnavailable(
                redact(
                    f"TLS to Redis at {where} failed: {text}. Check REDIS_SSL_CAFILE (or ?ssl_ca_certs= in "
                    f"the URL: the CA that signed the server's certificate) and that the server speaks TLS "
                    f"(rediss://)"
                )
            ) from exc
        if "Connection closed by server" in text and where.startswith("redis://"):
            raise StateUnavailable(
                redact(f"Redis at {where} closed the connection ({text}): a TLS-only server? use rediss://")
            ) from exc
        raise StateUnavailable(
            redact(
                f"cannot reach Redis at {where}: {exc}. Start it ({start}) "
                f"or point STATE_URL at a running server"
            )
        ) from exc
    except rex.ResponseError as exc:
        if isinstance(exc, rex.AskError) and not cluster:  # MovedError is one too
            raise StateConfigError(
                redact(
                    f"Redis at {where} is a node of a Redis Cluster ({exc}): use "
                    f"redis+cluster://HOST:PORT[,HOST:PORT...] in STATE_URL"
                )
            ) from exc
        if "cluster support disabled" in str(exc):
            raise StateConfigError(
                redact(
                    f"Redis at {where} is a single server, not a cluster ({exc}): use redis:// in STATE_URL"
                )
            ) from exc
        if str(exc).startswith(_AUTH_REPLIES):
            raise StateConfigError(redact(_refused(where, exc))) from exc
        raise StateUnavailable(
            redact(
                f"Redis at {where} refused a command: {exc}. Check that it is a Redis >= 6 "
                f"server that accepts writes (not a read-only replica, not out of memory)"
            )
        ) from exc
    except rex.RedisError as exc:
        raise StateUnavailable(redact(f"Redis at {where} failed: {exc}; check the server log")) from exc


#: Error replies that mean the credentials (or the ACL user's rights) are wrong.
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM", "invalid username-password")


def _refused(where: str, exc: BaseException) -> str:
    return (
        f"Redis at {where} refused the password/user ({exc}): the credentials were refused, which "
        f"retrying cannot fix; check the user and password of STATE_URL (or REDIS_PASSWORD_FILE) "
        f"and the ACL user's permissions"
    )


def _cluster_error(where: str, exc: Exception) -> StateError:
    """One line for what the cluster client raises outside RedisError."""
    import redis.exceptions as rex

    text = " ".join(str(exc).split())
    if isinstance(exc, rex.CrossSlotTransactionError):  # a bug here, not the server's fault
        return StateError(f"a state transaction on {where} spans hash slots: {text}")
    if "not covered" in text or isinstance(exc, rex.SlotNotCoveredError):
        return StateUnavailable(
            redact(
                f"the Redis Cluster at {where} does not serve all 16384 hash slots ({text}): a master "
                f"is down without a replica, or the cluster was never created. Check it with "
                f"redis-cli --cluster check HOST:PORT and repair it (redis-cli --cluster fix HOST:PORT), "
                f"or start a local one with scripts/services.sh up-cluster"
            )
        )
    if "cluster support disabled" in text or "Cluster mode is not enabled" in text:
        return StateConfigError(
            redact(f"Redis at {where} is a single server, not a cluster ({text}): use redis:// in STATE_URL")
        )
    if isinstance(exc, rex.RedisClusterUnreachableError) or "cannot be connected" in text:
        return StateUnavailable(
            redact(
                f"cannot reach any node of the Redis Cluster at {where}: {text}. Start it "
                f"(scripts/services.sh up-cluster) or list a running node in STATE_URL"
            )
        )
    return StateUnavailable(redact(f"the Redis Cluster at {where} failed: {text}; check the server logs"))


#: Deletes the state of the users not written since ARGV[1] (epoch ms), at most ARGV[2]
#: of them, in one step; returns their ids. KEYS: last-seen sorted set, meta hash, vec hash.
EXPIRE_SCRIPT = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('HDEL', KEYS[2], unpack(ids))
  redis.call('HDEL', KEYS[3], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
end
return ids
"""


def parse_prefix(url: str, q: dict[str, list[str]]) -> str:
    """The namespace of ``?prefix=NAME`` (removed from ``q``), ``driftrec`` by default."""
    ns = (q.pop("prefix", [DEFAULT_NAMESPACE]) or [DEFAULT_NAMESPACE])[0]
    if not ns or any(c in ns for c in " \n{}"):
        raise StateConfigError(
            f"STATE_URL {redact_url(url)!r}: prefix must be a non-empty name without spaces or braces"
        )
    return ns


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


class RedisRegistry:
    """The model registry (:class:`~driftrec.state.ports.ModelRegistry`) in three keys:
    versions in announcement order (a list), their records (a hash) and the serving one (a
    string). Shared by the single-server and the cluster stores; the keys are set by them
    (on a cluster they share one hash tag, so a registration is one MULTI/EXEC)."""

    _r: Any
    where: str
    _k_reg: str
    _k_order: str
    _k_cur: str

    def register(self, record: Mapping[str, Any]) -> None:
        version = str(record["version"])
        with map_redis_errors(self.where):
            pipe = self._r.pipeline(transaction=True)
            pipe.lrem(self._k_order, 0, version)
            pipe.rpush(self._k_order, version)
            pipe.hset(self._k_reg, version, json.dumps(dict(record), sort_keys=True))
            pipe.execute()

    def records(self) -> list[dict[str, Any]]:
        with map_redis_errors(self.where):
            pipe = self._r.pipeline(transaction=True)
            pipe.lrange(self._k_order, 0, -1)
            pipe.hgetall(self._k_reg)
            order, recs = pipe.execute()
        by_version = {_s(k): json.loads(v) for k, v in recs.items()}
        return [by_version[_s(v)] for v in order if _s(v) in by_version]

    def set_current(self, version: str) -> None:
        with map_redis_errors(self.where):
            self._r.set(self._k_cur, version)

    def current(self) -> str | None:
        with map_redis_errors(self.where):
            v = self._r.get(self._k_cur)
        return None if v is None else _s(v)


class RedisStateStore(RedisRegistry):
    """User state, item popularity, offsets and the model registry in Redis.

    Parameters
    ----------
    client : a ``redis.Redis`` (bytes responses, i.e. ``decode_responses=False``)
    namespace : the key prefix; tests use a unique one each
    where : how to name the server in error messages
    """

    def __init__(
        self,
        client: Any,
        namespace: str = DEFAULT_NAMESPACE,
        where: str = "redis",
        user_ttl_days: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._r = client
        self.ns = namespace
        self.where = where
        #: users not written for this many days are deleted by :meth:`expire_users`
        self.user_ttl_days = check_ttl(user_ttl_days)
        self.clock = clock
        self._k_seen = f"{namespace}:users:seen"
        self._k_meta = f"{namespace}:users:meta"
        self._k_vec = f"{namespace}:users:vec"
        self._k_pop = f"{namespace}:pop"
        self._k_reg = f"{namespace}:registry"
        self._k_order = f"{namespace}:registry:order"
        self._k_cur = f"{namespace}:current"
        self._k_forgotten = f"{namespace}:forgotten"

    @classmethod
    def from_url(
        cls,
        url: str,
        check: bool = True,
        ssl_ca_certs: str | None = None,
        password: str | None = None,
        user_ttl_days: float | None = None,
    ) -> RedisStateStore:
        """``redis://[user:password@]host:port/db[?prefix=NAME]`` (also ``unix://``), or
        ``rediss://...`` over TLS: the server's certificate is verified against
        ``ssl_ca_certs`` (``REDIS_SSL_CAFILE``) or ``?ssl_ca_certs=PATH`` in the URL (default:
        the system's trust store). ``password`` (``REDIS_PASSWORD_FILE``) is used when the URL
        holds none; an ACL user comes from the URL. ``user_ttl_days``: ``USER_TTL_DAYS``."""
        import redis

        why = unencoded_userinfo(url)
        if why:
            raise StateConfigError(f"STATE_URL {redact_url(url)!r}: {why}; {PERCENT_ENCODE}")
        parts = urlsplit(url)
        q = parse_qs(parts.query)
        ns = parse_prefix(url, q)
        tls = sorted(k for k in q if k.startswith("ssl"))
        if tls and parts.scheme != "rediss":  # redis-py would fail at the first command
            raise StateConfigError(
                f"STATE_URL {redact_url(url)!r}: ?{tls[0]}= is a TLS option: use rediss:// (Redis over TLS)"
            )
        ttl = check_ttl(user_ttl_days)
        rest = "&".join(f"{k}={v}" for k, vs in q.items() for v in vs)
        clean = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        try:
            extra: dict[str, Any] = {}
            if ssl_ca_certs and parts.scheme == "rediss" and "ssl_ca_certs" not in q:
                extra["ssl_ca_certs"] = ssl_ca_certs
            if password and parts.password is None:
                extra["password"] = password
            client = redis.Redis.from_url(
                clean, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30, **extra
            )
        except ValueError as exc:
            raise StateConfigError(
                redact(f"STATE_URL {redact_url(url)!r} is not a Redis URL: {exc}")
            ) from None
        where = redact_url(f"{parts.scheme}://{parts.netloc}" if parts.netloc else clean)
        store = cls(client, ns, where, ttl)
        if check:
            with map_redis_errors(where):
                client.ping()
        return store

    @property
    def client(self) -> Any:
        """The ``redis.Redis`` client (benchmarks read the server's INFO through it)."""
        return self._r

    # ---- UserStore ---------------------------------------------------------------------
    def get_many(
        self, user_ids: Sequence[str], shards: Mapping[str, int] | None = None
    ) -> dict[str, UserState]:
        """The users that have a state (``shards``: ignored, one keyspace)."""
        if not user_ids:
            return {}
        ids = list(user_ids)
        with map_redis_errors(self.where):
            pipe = self._r.pipeline(transaction=False)
            pipe.hmget(self._k_meta, ids)
            pipe.hmget(self._k_vec, ids)
            metas, vecs = pipe.execute()
        return {
            u: UserState.from_parts(u, m, v or None) for u, m, v in zip(ids, metas, vecs) if m is not None
        }

    def commit(self, write: StateWrite) -> None:
        """Users, popularity and offsets in one MULTI/EXEC transaction."""
        if not (write.users or write.item_pop or write.offsets):
            return
        with map_redis_errors(self.where):
            pipe = self._r.pipeline(transaction=True)
            if write.users:
                pipe.hset(self._k_meta, mapping={u: s.meta_bytes() for u, s in write.users.items()})
                pipe.hset(self._k_vec, mapping={u: s.vector_bytes() for u, s in write.users.items()})
                if self.user_ttl_days is not None:
                    now = int(self.clock() * 1000)
                    pipe.zadd(self._k_seen, dict.fromkeys(write.users, now))
            if write.item_pop:
                pipe.hset(self._k_pop, mapping={i: repr(float(v)) for i, v in write.item_pop.items()})
            if write.offsets:
                pipe.hset(
                    self._offsets_key(write.group), mapping={k: int(v) for k, v in write.offsets.items()}
                )
            pipe.execute()

    # ---- UserEraser ---------------------------------------------------------------------
    def forget(self, user_ids: Sequence[str], at_ms: int) -> int:
        """The users' state (meta: history, top-k, last event ids; vector) and their
        forget times, in one MULTI/EXEC transaction."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return 0
        with map_redis_errors(self.where):
            pipe = self._r.pipeline(transaction=True)
            pipe.hdel(self._k_meta, *ids)
            pipe.hdel(self._k_vec, *ids)
            pipe.zrem(self._k_seen, *ids)
            pipe.hset(self._k_forgotten, mapping={u: int(at_ms) for u in ids})
            n = pipe.execute()[0]
        return int(n)

    def expire_users(self, now_ms: int | None = None, limit: int = EXPIRE_LIMIT) -> list[str]:
        """With ``user_ttl_days``: delete the state of users not written for that long (at
        most ``limit``, oldest first); returns their ids. Without it: nothing, ``[]``."""
        if self.user_ttl_days is None:
            return []
        now = int(self.clock() * 1000) if now_ms is None else int(now_ms)
        cutoff = now - int(self.user_ttl_days * DAY_MS)
        with map_redis_errors(self.where):
            ids = self._r.eval(EXPIRE_SCRIPT, 3, self._k_seen, self._k_meta, self._k_vec, cutoff, int(limit))
        return [_s(u) for u in ids]

    def forgotten(self) -> dict[str, int]:
        with map_redis_errors(self.where):
            raw = self._r.hgetall(self._k_forgotten)
        return {_s(k): int(v) for k, v in raw.items()}

    # ---- OffsetStore / ItemStatsStore ----------------------------------------------------
    def _offsets_key(self, group: str) -> str:
        return f"{self.ns}:offsets:{group}"

    def offsets(self, group: str) -> dict[str, int]:
        with map_redis_errors(self.where):
            raw = self._r.hgetall(self._offsets_key(group))
        return {_s(k): int(v) for k, v in raw.items()}

    def item_pop(self) -> dict[str, float]:
        with map_redis_errors(self.where):
            raw = self._r.hgetall(self._k_pop)
        return {_s(k): float(v) for k, v in raw.items()}

    # ---- reports, tests, lifecycle -------------------------------------------------------
    def users(self) -> dict[str, UserState]:
        """All users (tests, reports); one HGETALL per hash."""
        with map_redis_errors(self.where):
            pipe = self._r.pipeline(transaction=True)
            pipe.hgetall(self._k_meta)
            pipe.hgetall(self._k_vec)
            metas, vecs = pipe.execute()
        vec_by = {_s(k): v for k, v in vecs.items()}
        return {_s(u): UserState.from_parts(_s(u), m, vec_by.get(_s(u)) or None) for u, m in metas.items()}

    def drop(self) -> int:
        """Delete every key of this namespace (tests); returns how many."""
        n = 0
        with map_redis_errors(self.where):
            keys = list(self._r.scan_iter(match=f"{self.ns}:*", count=500))
            for i in range(0, len(keys), 500):
                n += self._r.delete(*keys[i : i + 500])
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._r.close()
