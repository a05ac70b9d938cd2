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

Reads of a batch are one round trip (a pipeline of two HMGETs). A batch's write — users,
item popularity and the consumer offsets it covers — is one MULTI/EXEC transaction, so
after a crash either all of it is there or none of it is: the scorer resumes at the stored
offsets and neither loses nor double-applies an event.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import StateConfigError, StateUnavailable
from .model import StateWrite, UserState
from .redaction import PERCENT_ENCODE, redact, redact_url, unencoded_userinfo

DEFAULT_NAMESPACE = "driftrec"


@contextlib.contextmanager
def map_redis_errors(where: str) -> Iterator[None]:
    """Translate redis-py exceptions into :class:`StateUnavailable` (chained); refused
    credentials (a wrong password or user, none where one is required, an ACL user without
    the rights) into :class:`StateConfigError`: retrying cannot fix them."""
    import redis.exceptions as rex

    where = redact(where)
    try:
        yield
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
                f"cannot reach Redis at {where}: {exc}. Start it (scripts/services.sh up redis) "
                f"or point STATE_URL at a running server"
            )
        ) from exc
    except rex.ResponseError as exc:
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


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


class RedisStateStore:
    """User state, item popularity, offsets and the model registry in Redis.

    Parameters
    ----------
    client : a ``redis.Redis`` (bytes responses, i.e. ``decode_responses=False``)
    namespace : the key prefix; tests use a unique one each
    where : how to name the server in error messages
    """

    def __init__(self, client: Any, namespace: str = DEFAULT_NAMESPACE, where: str = "redis") -> None:
        self._r = client
        self.ns = namespace
        self.where = where
        self._k_meta = f"{namespace}:users:meta"
        self._k_vec = f"{namespace}:users:vec"
        self._k_pop = f"{namespace}:pop"
        self._k_reg = f"{namespace}:registry"
        self._k_order = f"{namespace}:registry:order"
        self._k_cur = f"{namespace}:current"
        self._k_forgotten = f"{namespace}:forgotten"

    @classmethod
    def from_url(
        cls, url: str, check: bool = True, ssl_ca_certs: str | None = None, password: str | None = None
    ) -> RedisStateStore:
        """``redis://[user:password@]host:port/db[?prefix=NAME]`` (also ``unix://``), or
        ``rediss://...`` over TLS: the server's certificate is verified against
        ``ssl_ca_certs`` (``REDIS_SSL_CAFILE``) or ``?ssl_ca_certs=PATH`` in the URL (default:
        the system's trust store). ``password`` (``REDIS_PASSWORD_FILE``) is used when the URL
        holds none; an ACL user comes from the URL."""
        import redis

        why = unencoded_userinfo(url)
        if why:
            raise StateConfigError(f"STATE_URL {redact_url(url)!r}: {why}; {PERCENT_ENCODE}")
        parts = urlsplit(url)
        q = parse_qs(parts.query)
        ns = (q.pop("prefix", [DEFAULT_NAMESPACE]) or [DEFAULT_NAMESPACE])[0]
        if not ns or any(c in ns for c in " \n{}"):
            raise StateConfigError(
                f"STATE_URL {redact_url(url)!r}: prefix must be a non-empty name without spaces or braces"
            )
        tls = sorted(k for k in q if k.startswith("ssl"))
        if tls and parts.scheme != "rediss":  # redis-py would fail at the first command
            raise StateConfigError(
                f"STATE_URL {redact_url(url)!r}: ?{tls[0]}= is a TLS option: use rediss:// (Redis over TLS)"
            )
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
        store = cls(client, ns, where)
        if check:
            with map_redis_errors(where):
                client.ping()
        return store

    # ---- UserStore ---------------------------------------------------------------------
    def get_many(self, user_ids: Sequence[str]) -> dict[str, UserState]:
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
            pipe.hset(self._k_forgotten, mapping={u: int(at_ms) for u in ids})
            n, _, _ = pipe.execute()
        return int(n)

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

    # ---- ModelRegistry -------------------------------------------------------------------
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
