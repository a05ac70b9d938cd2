"""Transport ports: where records come from and go to (Kafka or in-process)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Record:
    """One consumed record, with its position."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0


@dataclass(frozen=True)
class Message:
    """One record to produce."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=())


class EventSource(Protocol):
    """Polls batches and commits positions (``(topic, partition) -> next offset``)."""

    def poll(self, max_records: int, timeout_ms: int) -> list[Record]: ...

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None: ...


class EventSink(Protocol):
    """Sends messages; returns once all are acknowledged (raises otherwise)."""

    def send_many(self, messages: Sequence[Message]) -> None: ...
