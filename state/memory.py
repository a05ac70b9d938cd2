"""The embedded backend: in memory, optionally persisted to a JSON file (``file://PATH``)."""

from __future__ import annotations

import heapq
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import StateUnavailable
from .model import StateWrite, UserState
from .ttl import DAY_MS, EXPIRE_LIMIT, check_ttl


class MemoryStateStore:
    """Users, popularity, offsets and the model registry in dictionaries.

    With ``path`` set, every ``flush_every`` commits (and on :meth:`close`) the whole state
    is written to ``path`` by one atomic rename, and read back on start. With
    ``user_ttl_days``, :meth:`expire_users` deletes the users not written for that long.
    Shards (``StateWrite.shards``) are ignored: one keyspace.

    Examples
    --------
    >>> s = MemoryStateStore()
    >>> s.commit(StateWrite(users={"u1": UserState("u1", n_events=1)}, offsets={"t:0": 5}))
    >>> s.get_many(["u1", "nobody"])["u1"].n_events, s.offsets("scorer")
    (1, {'t:0': 5})
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        flush_every: int = 50,
        user_ttl_days: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self.user_ttl_days = check_ttl(user_ttl_days)
        self.clock = clock
        self._seen: dict[str, int] = {}  # user -> epoch ms of its last write (with a TTL)
        self._users: dict[str, UserState] = {}
        self._pop: dict[str, float] = {}
        self._offsets: dict[str, dict[str, int]] = {}
        self._records: list[dict[str, Any]] = []
        self._current: str | None = None
        self._forgotten: dict[str, int] = {}
        self._path = Path(path) if path else None
        self._flush_every = flush_every
        self._since_flush = 0
        if self._path and self._path.exists():
            self._load()

    # UserStore
    def get_many(
        self, user_ids: Sequence[str], shards: Mapping[str, int] | None = None
    ) -> dict[str, UserState]:
        with self._lock:
            return {u: self._users[u] for u in user_ids if u in self._users}

    def commit(self, write: StateWrite) -> None:
        with self._lock:
            self._users.update(write.users)
            if self.user_ttl_days is not None and write.users:
                self._seen.update(dict.fromkeys(write.users, int(self.clock() * 1000)))
            self._pop.update(write.item_pop)
            if write.offsets:
                self._offsets.setdefault(write.group, {}).update(write.offsets)
            self._since_flush += 1
            if self._path and self._since_flush >= self._flush_every:
                self._flush()

    # UserEraser
    def forget(self, user_ids: Sequence[str], at_ms: int) -> int:
        with self._lock:
            n = 0
            for u in user_ids:
                n += self._users.pop(u, None) is not None
                self._seen.pop(u, None)
                self._forgotten[u] = int(at_ms)
            if self._path:
                self._flush()
            return n

    def expire_users(self, now_ms: int | None = None, limit: int = EXPIRE_LIMIT) -> list[str]:
        """With ``user_ttl_days``: delete the users not written for that long (at most
        ``limit``, oldest first); returns their ids. Without it: ``[]``."""
        if self.user_ttl_days is None:
            return []
        with self._lock:
            now = int(self.clock() * 1000) if now_ms is None else int(now_ms)
            cutoff = now - int(self.user_ttl_days * DAY_MS)
            old = heapq.nsmallest(max(0, int(limit)), ((t, u) for u, t in self._seen.items() if t <= cutoff))
            for _, u in old:
                del self._seen[u]
                self._users.pop(u, None)
            if old and self._path:
                self._flush()
            return [u for _, u in old]

    def forgotten(self) -> dict[str, int]:
        with self._lock:
            return dict(self._forgotten)

    # OffsetStore / ItemStatsStore
    def offsets(self, group: str) -> dict[str, int]:
        with self._lock:
            return dict(self._offsets.get(group, {}))

    def item_pop(self) -> dict[str, float]:
        with self._lock:
            return dict(self._pop)

    # ModelRegistry
    def register(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._records = [r for r in self._records if r["version"] != record["version"]]
            self._records.append(dict(record))

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]

    def set_current(self, version: str) -> None:
        with self._lock:
            self._current = version

    def current(self) -> str | None:
        with self._lock:
            return self._current

    def users(self) -> dict[str, UserState]:
        """All users (tests, reports)."""
        with self._lock:
            return dict(self._users)

    def close(self) -> None:
        with self._lock:
            if self._path:
                self._flush()

    # persistence
    def _flush(self) -> None:
        assert self._path is not None
        doc = {
            "users": {u: s.to_json() for u, s in self._users.items()},
            "pop": self._pop,
            "offsets": self._offsets,
            "records": self._records,
            "current": self._current,
            "forgotten": self._forgotten,
            "seen": self._seen,
        }
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self._path)
        except OSError as exc:
            raise StateUnavailable(
                f"cannot write state file {self._path}: {exc}; check the path and disk"
            ) from exc
        self._since_flush = 0

    def _load(self) -> None:
        assert self._path is not None
        try:
            doc = json.loads(self._path.read_text())
        except (OSError, ValueError) as exc:
            raise StateUnavailable(
                f"cannot read state file {self._path}: {exc}; delete it to start afresh"
            ) from exc
        self._users = {u: UserState.from_json(u, d) for u, d in doc.get("users", {}).items()}
        self._pop = {k: float(v) for k, v in doc.get("pop", {}).items()}
        self._offsets = doc.get("offsets", {})
        self._records = doc.get("records", [])
        self._current = doc.get("current")
        self._forgotten = {u: int(t) for u, t in doc.get("forgotten", {}).items()}
        self._seen = {u: int(t) for u, t in doc.get("seen", {}).items()}
