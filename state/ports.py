"""The state ports: small protocols every backend implements (memory, file, Redis)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .model import StateWrite, UserState


class UserStore(Protocol):
    """User state in batches; a write carries its consumer offsets, atomically (per shard
    on a sharded backend: ``StateWrite.shards``)."""

    def get_many(
        self, user_ids: Sequence[str], shards: Mapping[str, int] | None = None
    ) -> dict[str, UserState]:
        """The users that have a state; ``shards`` (user -> partition number) tells a
        sharded backend where to look, the others ignore it."""
        ...

    def commit(self, write: StateWrite) -> None: ...


class OffsetStore(Protocol):
    """Consumer offsets committed with the state (``"topic:partition" -> next offset``)."""

    def offsets(self, group: str) -> dict[str, int]: ...


class ItemStatsStore(Protocol):
    """Decayed popularity accumulators per item (log space), written by ``commit``."""

    def item_pop(self) -> dict[str, float]: ...


class ModelRegistry(Protocol):
    """Adapter versions announced by the learner and the pointer to the serving one."""

    def register(self, record: Mapping[str, Any]) -> None: ...

    def records(self) -> list[dict[str, Any]]: ...

    def set_current(self, version: str) -> None: ...

    def current(self) -> str | None:
        """The serving version (:meth:`set_current`); None before the first swap."""
        ...


class UserEraser(Protocol):
    """Forgetting users: their state goes (vector, history, top-k, last event ids) and
    their ids are noted with the time of the request, so that a learner rebuilding its
    window from the topics leaves out their events up to that time."""

    def forget(self, user_ids: Sequence[str], at_ms: int) -> int:
        """Delete the users' state; returns how many had one."""
        ...

    def forgotten(self) -> dict[str, int]:
        """``user_id -> time (epoch ms) of the forget request`` for every forgotten user."""
        ...

    def expire_users(self, now_ms: int | None = None, limit: int = ...) -> list[str]:
        """With ``user_ttl_days`` set: delete the state of the users not written for that
        long (at most ``limit`` per shard); returns their ids. Without: ``[]``."""
        ...


class StateStore(UserStore, OffsetStore, ItemStatsStore, UserEraser, ModelRegistry, Protocol):
    """What the services need from one backend (every backend implements all of it)."""

    def close(self) -> None: ...
