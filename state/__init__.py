"""state: persistence of user state, item popularity, consumer offsets and the model registry.

Backends are picked by URL scheme: ``memory://`` (in process), ``file:///path/state.json``
(in process, persisted) and ``redis://host:port/db``.
"""
from __future__ import annotations

from typing import Callable

from .errors import StateConfigError, StateError, StateUnavailable
from .memory import MemoryStateStore
from .model import DEFAULT_HISTORY, Interaction, StateWrite, UserState
from .ports import ItemStatsStore, ModelRegistry, OffsetStore, StateStore, UserStore
from .redaction import redact, redact_url

__all__ = [
    "DEFAULT_HISTORY", "Interaction", "ItemStatsStore", "MemoryStateStore", "ModelRegistry",
    "OffsetStore", "StateConfigError", "StateError", "StateStore", "StateUnavailable",
    "StateWrite", "UserState", "UserStore", "open_state", "redact", "redact_url",
]


def _memory(url: str) -> MemoryStateStore:
    return MemoryStateStore()


def _file(url: str) -> MemoryStateStore:
    path = url[len("file://"):]
    if not path:
        raise StateConfigError(f"STATE_URL {url!r} names no file; use file:///path/to/state.json")
    return MemoryStateStore(path)


def _redis(url: str) -> StateStore:
    from .redis import RedisStateStore  # imported only when used

    return RedisStateStore.from_url(url)


BACKENDS: dict[str, Callable[[str], StateStore]] = {
    "memory": _memory, "file": _file, "redis": _redis,
}


def open_state(url: str = "memory://") -> StateStore:
    """Open a state backend by URL.

    Examples
    --------
    >>> type(open_state("memory://")).__name__
    'MemoryStateStore'
    >>> open_state("mongo://x")
    Traceback (most recent call last):
    ...
    driftrec.state.errors.StateConfigError: STATE_URL 'mongo://x' has unknown scheme 'mongo'; use one of memory, file, redis
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in BACKENDS:
        raise StateConfigError(
            f"STATE_URL {redact_url(url)!r} has unknown scheme {scheme!r}; use one of {', '.join(BACKENDS)}")
    return BACKENDS[scheme](url)
