"""The embedded transport: an in-process, thread-safe, partitioned log with consumer groups.

It behaves like the Kafka transport behind the same ports (:class:`EventSource`,
:class:`EventSink`), so the scorer and learner loops run unchanged on either.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence

from .ports import Message, Record


class MemoryBroker:
    """Topics of ``partitions`` append-only lists; committed offsets per group."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._cond = threading.Condition()

    def _topic(self, name: str) -> list[list[Record]]:
        if name not in self._logs:
            self._logs[name] = [[] for _ in range(self.partitions)]
        return self._logs[name]

    def partition_for(self, key: bytes | None, n: int) -> int:
        return 0 if key is None else zlib.crc32(key) % n

    def send_many(self, messages: Sequence[Message]) -> None:
        with self._cond:
            now = int(time.time() * 1000)
            for m in messages:
                parts = self._topic(m.topic)
                p = self.partition_for(m.key, len(parts))
                parts[p].append(Record(m.topic, p, len(parts[p]), m.key, m.value, m.headers, now))
            self._cond.notify_all()

    def read(self, topic: str, partition: int = 0, start: int = 0) -> list[Record]:
        with self._cond:
            return list(self._topic(topic)[partition][start:])

    def records(self, topic: str) -> list[Record]:
        with self._cond:
            return [r for p in self._topic(topic) for r in p]

    def end_offsets(self, topic: str) -> dict[int, int]:
        with self._cond:
            return {p: len(lst) for p, lst in enumerate(self._topic(topic))}

    def committed(self, group: str, topic: str, partition: int) -> int:
        with self._cond:
            return self._committed.get((group, topic, partition), 0)

    def commit(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        with self._cond:
            for (t, p), o in offsets.items():
                self._committed[(group, t, p)] = o

    def consumer(self, topics: Iterable[str], group: str) -> MemorySource:
        return MemorySource(self, list(topics), group)


class MemorySource:
    """A consumer of a :class:`MemoryBroker`: starts at the group's committed offsets."""

    def __init__(self, broker: MemoryBroker, topics: list[str], group: str) -> None:
        self.broker, self.topics, self.group = broker, topics, group
        self._pos: dict[tuple[str, int], int] = {}
        with broker._cond:
            for t in topics:
                for p in range(len(broker._topic(t))):
                    self._pos[(t, p)] = broker._committed.get((group, t, p), 0)

    def seek(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self._pos.update(offsets)

    def poll(self, max_records: int = 500, timeout_ms: int = 100) -> list[Record]:
        deadline = time.monotonic() + timeout_ms / 1000
        b = self.broker
        with b._cond:
            while True:
                out: list[Record] = []
                for (t, p), o in self._pos.items():
                    log = b._topic(t)[p]
                    if o < len(log):
                        take = log[o : o + (max_records - len(out))]
                        out.extend(take)
                        self._pos[(t, p)] = o + len(take)
                    if len(out) >= max_records:
                        break
                if out:
                    return out
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                b._cond.wait(left)

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.broker.commit(self.group, offsets)

    def lag(self) -> int:
        with self.broker._cond:
            return sum(len(self.broker._topic(t)[p]) - o for (t, p), o in self._pos.items())
