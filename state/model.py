"""Plain values the state backends store: user state and a batch's write."""

from __future__ import annotations

import base64
import json
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NewType

import numpy as np

try:  # C JSON codec; its output for these dicts (strings, ints) is byte-identical to json.dumps
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    _orjson = None

UserId = NewType("UserId", str)
ItemId = NewType("ItemId", str)

#: How many interactions of a user are kept (the user vector is derived from them).
DEFAULT_HISTORY = 50
MAX_STORED_TEXT = 512


_event_id_of = operator.itemgetter(0)  # Interaction.event_id, at C speed


class Interaction(NamedTuple):
    """One applied event in a user's history (oldest first)."""

    event_id: str
    type: str
    item_id: str
    ts: int
    text: str | None = None


@dataclass
class UserState:
    """Everything the scorer keeps for a user.

    ``vector`` was computed under model ``version`` and is recomputed from ``history``
    when the serving version differs. ``topk`` is the last published top-k.
    """

    user_id: str
    history: list[Interaction] = field(default_factory=list)
    vector: np.ndarray | None = None
    version: str = ""
    topk: list[str] = field(default_factory=list)
    n_events: int = 0
    last_event_id: str = ""
    seen: list[str] = field(default_factory=list)

    def has_event(self, event_id: str) -> bool:
        return event_id == self.last_event_id or event_id in map(_event_id_of, self.history)

    # --- serialisation: JSON for the small parts, float32 bytes for the vector ---------
    def _meta(self) -> dict[str, Any]:
        return {
            "h": [list(h) for h in self.history],
            "ver": self.version,
            "k": self.topk,
            "n": self.n_events,
            "last": self.last_event_id,
            "s": self.seen,
        }

    def meta_bytes(self) -> bytes:
        """The JSON of everything but the vector, UTF-8 (what the Redis backend stores)."""
        if _orjson is not None:
            try:
                return _orjson.dumps(self._meta())
            except TypeError:  # e.g. a lone surrogate in a comment: the stdlib path decides
                pass
        return self.meta_json().encode()

    def meta_json(self) -> str:
        if _orjson is not None:
            try:
                return _orjson.dumps(self._meta()).decode()
            except TypeError:
                pass
        return json.dumps(self._meta(), separators=(",", ":"), ensure_ascii=False)

    def vector_bytes(self) -> bytes:
        return b"" if self.vector is None else np.asarray(self.vector, np.float32).tobytes()

    @classmethod
    def from_parts(cls, user_id: str, meta: str | bytes, vec: bytes | None) -> UserState:
        d = _loads(meta)
        return cls(
            user_id,
            [Interaction(*h) for h in d["h"]],
            np.frombuffer(vec, np.float32).copy() if vec else None,
            d.get("ver", ""),
            list(d.get("k", [])),
            int(d.get("n", 0)),
            d.get("last", ""),
            list(d.get("s", [])),
        )

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta_json(), "vec": base64.b64encode(self.vector_bytes()).decode()}

    @classmethod
    def from_json(cls, user_id: str, d: Mapping[str, str]) -> UserState:
        return cls.from_parts(user_id, d["meta"], base64.b64decode(d["vec"]) if d.get("vec") else None)

    def same_as(self, other: UserState) -> bool:
        """Equal content (vectors compared bit for bit as float32)."""
        return self.meta_json() == other.meta_json() and self.vector_bytes() == other.vector_bytes()


def _loads(meta: str | bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(meta)
        except _orjson.JSONDecodeError:  # whatever orjson refuses, the stdlib parser decides
            pass
    return json.loads(meta)


@dataclass
class StateWrite:
    """What one batch produced, written atomically with the consumer offsets it covers.

    ``offsets`` maps ``"topic:partition"`` to the next offset to read for ``group``.
    ``item_pop`` holds the new decayed-popularity accumulators of the items it touched.

    ``shards`` maps each user of the write to its shard: the partition number its events
    come from (every events topic has the same partition count and is keyed by user, so a
    user lives in one). A sharded backend (Redis Cluster) then commits one transaction per
    shard (that shard's users, its offsets and its popularity increments ``pop_added``:
    ``(user_id, item_id, log-space increment)`` per applied event) and keeps popularity as
    per-shard accumulators merged on read; the other backends ignore both and store
    ``item_pop``. An empty ``shards`` is an unsharded write: one transaction everywhere.
    """

    users: Mapping[str, UserState] = field(default_factory=dict)
    item_pop: Mapping[str, float] = field(default_factory=dict)
    offsets: Mapping[str, int] = field(default_factory=dict)
    group: str = "scorer"
    shards: Mapping[str, int] = field(default_factory=dict)
    pop_added: Sequence[tuple[str, str, float]] = ()
