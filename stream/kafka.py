"""The Kafka transport behind the same ports as the embedded one. One client per role:

- **aiokafka** for everything a long-running service does on its hot path.
  :class:`KafkaSource` (:mod:`driftrec.stream.kafka_source`) is the
  :class:`~driftrec.stream.ports.EventSource` of the scorer, the learner and the adapters
  watcher (a consumer in a group, auto-commit off; the caller commits after its outputs and
  its state are durable). :class:`KafkaSink` is the :class:`~driftrec.stream.ports.EventSink`
  of every producer of the services (recs.updates, events.dlq, adapters, the catalog):
  ``send_many`` returns once the broker acknowledged every message (``acks=all``) and raises
  :class:`StreamUnavailable` otherwise. The faust runtime (:mod:`driftrec.stream.faust_app`)
  runs on aiokafka too.
- **kafka-python** for the synchronous tools that run once and end: :func:`create_topics`
  (partitions, compaction for ``items`` and ``adapters``, time retention for the rest),
  :func:`read_topic` (a bounded read without a group: the catalog at start, tests),
  :func:`group_committed` and the replay producer (:mod:`driftrec.stream.replay`).

Every client, of either library, is made by one factory per role (:func:`producer`,
:func:`consumer`, :func:`admin`, :func:`aio_producer`, :func:`aio_consumer`), which applies
the transport security; every client error is translated by :func:`map_kafka_errors`
(both in :mod:`driftrec.stream.kafka_clients`, re-exported here).

Why, with figures: docs/operations.md, "Kafka clients".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import StreamConfigError, StreamUnavailable
from .kafka_clients import (
    admin,
    aio_consumer,
    aio_producer,
    consumer,
    map_kafka_errors,
    producer,
    raise_if_refused,
    result,
    to_record,
)
from .kafka_source import KafkaSource
from .ports import Message, Record
from .security import PLAINTEXT, KafkaSecurity
from .topics import COMPACTED, DLQ

__all__ = [
    "DAY_MS",
    "DLQ_RETENTION_MS",
    "PARTITION_MEMO",
    "RETENTION_MS",
    "KafkaSink",
    "KafkaSource",
    "admin",
    "aio_consumer",
    "aio_producer",
    "consumer",
    "create_topics",
    "group_committed",
    "map_kafka_errors",
    "producer",
    "raise_if_refused",
    "read_topic",
    "to_record",
    "topic_configs",
]

DAY_MS = 24 * 3600 * 1000
#: Retention of the non-compacted topics (events, recs.updates) and of the dead letters.
RETENTION_MS = 7 * DAY_MS
DLQ_RETENTION_MS = 30 * DAY_MS
#: Keys whose partition :class:`KafkaSink` remembers (murmur2 is pure Python, ~25 us a key)
PARTITION_MEMO = 1_000_000


class KafkaSink:
    """A producer whose ``send_many`` returns once the broker acknowledged every message
    (``acks=all``) and raises :class:`StreamUnavailable` otherwise.

    Each partition's messages go to aiokafka's batch API: the record batch is built in C,
    ~7 us of CPU per message against ~40 us for kafka-python's ``send``. Keys go to the
    same partitions as with kafka-python and the Java client (murmur2 of the key, memoised:
    a scorer sends to the same users again and again). aiokafka runs on its own event loop
    in a daemon thread; ``send_many`` blocks the caller until the acknowledgements are in.
    """

    def __init__(
        self,
        bootstrap: str,
        timeout_s: float = 30.0,
        client_id: str = "driftrec",
        max_batch_bytes: int = 1 << 20,
        security: KafkaSecurity | None = None,
    ) -> None:
        import asyncio
        import threading

        self.bootstrap, self.timeout_s = bootstrap, timeout_s
        self.security = security or PLAINTEXT
        self._memo: dict[tuple[str, bytes, int], int] = {}  # (topic, key, partitions) -> partition
        self._parts: dict[str, list[int]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="driftrec-sink", daemon=True)
        self._thread.start()

        async def start() -> Any:
            p = aio_producer(
                bootstrap,
                self.security,
                client_id=client_id,
                acks="all",
                linger_ms=0,
                max_batch_size=max_batch_bytes,
                request_timeout_ms=int(timeout_s * 1000),
                enable_idempotence=False,
            )
            try:
                await p.start()
            except BaseException:  # a producer that did not start is closed, not dropped
                with contextlib.suppress(Exception):
                    await p.stop()
                raise
            return p

        try:
            self._p = self._run(start(), "producer")
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise

    def _run(self, coro: Any, what: str) -> Any:
        import asyncio

        return self._result(asyncio.run_coroutine_threadsafe(coro, self._loop), what)

    async def _partitions(self, topic: str) -> list[int]:
        parts = self._parts.get(topic)
        if parts is None:
            parts = self._parts[topic] = sorted(await self._p.partitions_for(topic))
        return parts

    async def _send(self, messages: Sequence[Message]) -> None:
        import asyncio
        import random

        from aiokafka.partitioner import murmur2

        memo = self._memo
        batches: dict[tuple[str, int], list[Any]] = {}
        for m in messages:
            parts = await self._partitions(m.topic)
            if m.key is None:
                q = random.choice(parts)
            else:
                k = (m.topic, m.key, len(parts))
                known = memo.get(k)
                if known is None:
                    if len(memo) >= PARTITION_MEMO:
                        memo.clear()
                    known = memo[k] = parts[(murmur2(m.key) & 0x7FFFFFFF) % len(parts)]
                q = known
            bs = batches.get((m.topic, q))
            if bs is None:
                bs = batches[(m.topic, q)] = [self._p.create_batch()]
            headers = list(m.headers)
            if bs[-1].append(key=m.key, value=m.value, timestamp=None, headers=headers) is None:
                bs.append(self._p.create_batch())
                if bs[-1].append(key=m.key, value=m.value, timestamp=None, headers=headers) is None:
                    raise StreamConfigError(
                        f"a {len(m.value)}-byte message does not fit a batch for {m.topic}"
                    )
        futs = []
        for (topic, q), bs in batches.items():
            for b in bs:  # in order: aiokafka keeps one pending batch per partition
                futs.append(await self._p.send_batch(b, topic, partition=q))
        await asyncio.gather(*futs)

    def send_many(self, messages: Sequence[Message]) -> None:
        if messages:
            self._run(self._send(messages), f"send {len(messages)} messages")

    def _result(self, fut: Any, what: str) -> Any:
        return result(fut, self.timeout_s + 5, self.bootstrap, what, self.security)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._p.stop(), "close")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def topic_configs(
    name: str, compacted: Iterable[str] = COMPACTED, dlq: str = DLQ, retention_ms: int = RETENTION_MS
) -> dict[str, str]:
    """The config of one topic: compaction for the latest-value-per-key topics, retention
    for the logs (longer for the dead letters, which someone has to look at).

    Examples
    --------
    >>> topic_configs("t1.items", compacted=["t1.items"])["cleanup.policy"]
    'compact'
    >>> topic_configs("events.likes")["retention.ms"] == str(RETENTION_MS)
    True
    """
    if name in set(compacted):
        return {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(DLQ_RETENTION_MS if name == dlq else retention_ms),
    }


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 3,
    compacted: Iterable[str] = COMPACTED,
    dlq: str = DLQ,
    retention_ms: int = RETENTION_MS,
    replication: int = 1,
    single_partition: Iterable[str] = (),
    security: KafkaSecurity | None = None,
) -> dict[str, str]:
    """Create topics that do not exist yet; returns ``name -> "created" | "exists"``.

    ``single_partition`` topics (the adapters announcements, whose order matters) get one
    partition whatever ``partitions`` says.
    """
    from kafka.admin import NewTopic

    names = list(dict.fromkeys(names))
    compacted, single = set(compacted), set(single_partition)
    sec = security or PLAINTEXT
    raise_if_refused(bootstrap, sec, None)  # kafka-python only says so after 30 s, and not why
    with map_kafka_errors(bootstrap, "create topics", sec):
        a = admin(bootstrap, sec, client_id="driftrec-admin", request_timeout_ms=30_000)
        try:
            existing = set(a.list_topics())
            todo = [
                NewTopic(
                    n,
                    1 if n in single else partitions,
                    replication,
                    topic_configs=topic_configs(n, compacted, dlq, retention_ms),
                )
                for n in names
                if n not in existing
            ]
            out = {n: "exists" for n in names if n in existing}
            if todo:
                import kafka.errors as ke

                try:
                    a.create_topics(todo, timeout_ms=30_000)
                except ke.TopicAlreadyExistsError:
                    pass
                for t in todo:
                    out[t.name] = "created"
                _wait_for_topics(a, [t.name for t in todo])
        finally:
            a.close()
    return out


def _wait_for_topics(admin: Any, names: list[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if set(names) <= set(admin.list_topics()):
            return
        time.sleep(0.1)
    raise StreamUnavailable(f"topics {names} were not visible {timeout_s:.0f} s after creation")


def read_topic(
    bootstrap: str,
    topic: str,
    until: Mapping[int, int] | None = None,
    timeout_s: float = 30.0,
    security: KafkaSecurity | None = None,
) -> list[Record]:
    """Every record of ``topic`` from the beginning up to ``until`` (partition -> offset;
    default: the end offsets now), without a group. For bootstrapping the catalog and the
    registry, for tools and tests."""
    from kafka import TopicPartition

    sec = security or PLAINTEXT
    raise_if_refused(bootstrap, sec, None)
    with map_kafka_errors(bootstrap, f"read {topic}", sec):
        c = consumer(
            bootstrap,
            sec,
            client_id="driftrec-reader",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=20,
        )
        try:
            parts = c.partitions_for_topic(topic)
            if parts is None:  # metadata may need a moment for a new topic
                c.topics()
                parts = c.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return []
            ends = dict(c.end_offsets(tps))
            if until is not None:
                ends = {tp: min(ends[tp], until.get(tp.partition, 0)) for tp in tps}
            tps = [tp for tp in tps if ends[tp] > 0]
            if not tps:
                return []
            c.assign(tps)
            c.seek_to_beginning(*tps)
            out: list[Record] = []
            deadline = time.monotonic() + timeout_s
            while any(c.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise StreamUnavailable(f"reading {topic} from {bootstrap} took over {timeout_s:.0f} s")
                for tp, recs in c.poll(timeout_ms=200, max_records=5000).items():
                    out.extend(to_record(r) for r in recs if r.offset < ends[tp])
            return out
        finally:
            c.close()


def group_committed(
    bootstrap: str, group: str, topics: Iterable[str], security: KafkaSecurity | None = None
) -> dict[tuple[str, int], int]:
    """The offsets ``group`` has committed on ``topics`` (``(topic, partition) -> offset``;
    empty when it never committed). The scorer checks them against its state's offsets."""
    wanted = set(topics)
    sec = security or PLAINTEXT
    with map_kafka_errors(bootstrap, f"offsets of group {group}", sec):
        a = admin(bootstrap, sec, client_id="driftrec-admin", request_timeout_ms=30_000)
        try:
            lister = getattr(a, "list_group_offsets", None)
            if lister is not None:  # kafka-python 3.x
                got = lister({group: None}).get(group, {})
            else:  # 2.x
                got = a.list_consumer_group_offsets(group)
        finally:
            a.close()
    return {
        (tp.topic, tp.partition): int(om.offset)
        for tp, om in got.items()
        if tp.topic in wanted and om.offset is not None and om.offset >= 0
    }
