"""state: persistence of user state, item popularity, consumer offsets and the model registry.

Backends are picked by URL scheme: ``memory://`` (in process), ``file:///path/state.json``
(in process, persisted), ``redis://host:port/db`` (also ``rediss://`` with TLS and
``unix://``; the options of :meth:`RedisStateStore.from_url`: ``ssl_ca_certs``, ``password``)
and ``redis+cluster://host:port[,host:port...]`` (also ``rediss+cluster://``): Redis
Cluster, keyed per shard (:mod:`.redis_cluster`). Every backend takes ``user_ttl_days``
(``USER_TTL_DAYS``, :mod:`.ttl`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import StateConfigError, StateError, StateUnavailable
from .memory import MemoryStateStore
from .model import DEFAULT_HISTORY, Interaction, StateWrite, UserState
from .ports import ItemStatsStore, ModelRegistry, OffsetStore, StateStore, UserEraser, UserStore
from .redaction import PERCENT_ENCODE, redact, redact_url, unencoded_userinfo

__all__ = [
    "DEFAULT_HISTORY",
    "PERCENT_ENCODE",
    "Interaction",
    "ItemStatsStore",
    "MemoryStateStore",
    "ModelRegistry",
    "OffsetStore",
    "StateConfigError",
    "StateError",
    "StateStore",
    "StateUnavailable",
    "StateWrite",
    "UserEraser",
    "UserState",
    "UserStore",
    "open_state",
    "redact",
    "redact_url",
    "unencoded_userinfo",
]


def _memory(url: str, user_ttl_days: float | None = None, **_: object) -> MemoryStateStore:
    return MemoryStateStore(user_ttl_days=user_ttl_days)


def _file(url: str, user_ttl_days: float | None = None, **_: object) -> MemoryStateStore:
    path = url[len("file://") :]
    if not path:
        raise StateConfigError(f"STATE_URL {url!r} names no file; use file:///path/to/state.json")
    folder = Path(path).parent
    try:  # the file is written later, by an atomic rename in this directory: checked now
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".driftrec-write-check-"):
            pass
    except OSError as exc:
        raise StateConfigError(
            f"STATE_URL {url!r}: cannot create or write its directory {folder} "
            f"({exc.strerror or type(exc).__name__}); use a file in a directory this user can write"
        ) from None
    return MemoryStateStore(path, user_ttl_days=user_ttl_days)


def _redis(url: str, **options: Any) -> StateStore:
    from .redis import RedisStateStore  # imported only when used

    return RedisStateStore.from_url(url, **options)


def _redis_cluster(url: str, **options: Any) -> StateStore:
    from .redis_cluster import RedisClusterStateStore  # imported only when used

    return RedisClusterStateStore.from_url(url, **options)


BACKENDS: dict[str, Callable[..., StateStore]] = {
    "memory": _memory,
    "file": _file,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "redis+cluster": _redis_cluster,
    "rediss+cluster": _redis_cluster,
}


def open_state(url: str = "memory://", **options: Any) -> StateStore:
    """Open a state backend by URL.

    Examples
    --------
    >>> type(open_state("memory://")).__name__
    'MemoryStateStore'
    >>> open_state("mongo://x")
    Traceback (most recent call last):
    ...
    driftrec.state.errors.StateConfigError: STATE_URL 'mongo://x' has unknown scheme 'mongo'; use one of memory, file, redis, rediss, unix, redis+cluster, rediss+cluster

    ``options`` go to the Redis backends (``ssl_ca_certs``: the CA bundle of a ``rediss://``
    URL; ``password``: when the URL holds none), and are ignored by the others, except
    ``user_ttl_days`` (every backend: inactive users expire, :mod:`.ttl`).
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in BACKENDS:
        raise StateConfigError(
            f"STATE_URL {redact_url(url)!r} has unknown scheme {scheme!r}; use one of {', '.join(BACKENDS)}"
        )
    return BACKENDS[scheme](url, **options)
