"""The Kafka transport behind the same ports as the embedded one. One client per role:

- **aiokafka** for everything a long-running service does on its hot path.
  :class:`KafkaSource` is the :class:`~driftrec.stream.ports.EventSource` of the scorer,
  the learner and the adapters watcher (a consumer in a group, auto-commit off; the caller
  commits after its outputs and its state are durable). :class:`KafkaSink` is the
  :class:`~driftrec.stream.ports.EventSink` of every producer of the services
  (recs.updates, events.dlq, adapters, the catalog): ``send_many`` returns once the broker
  acknowledged every message (``acks=all``) and raises :class:`StreamUnavailable`
  otherwise. The faust runtime (:mod:`driftrec.stream.faust_app`) runs on aiokafka too.
- **kafka-python** for the synchronous tools that run once and end: :func:`create_topics`
  (partitions, compaction for ``items`` and ``adapters``, time retention for the rest),
  :func:`read_topic` (a bounded read without a group: the catalog at start, tests) and the
  replay producer (:mod:`driftrec.stream.replay`). Its exceptions are translated in
  :func:`map_kafka_errors`; aiokafka's where they are awaited.

Why, with figures: docs/operations.md, "Kafka clients".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .errors import StreamConfigError, StreamSecurityError, StreamUnavailable
from .ports import Message, Record
from .security import PLAINTEXT, KafkaSecurity, diagnose
from .topics import COMPACTED, DLQ

log = logging.getLogger("driftrec.stream.kafka")

DAY_MS = 24 * 3600 * 1000
#: Retention of the non-compacted topics (events, recs.updates) and of the dead letters.
RETENTION_MS = 7 * DAY_MS
DLQ_RETENTION_MS = 30 * DAY_MS
#: Keys whose partition :class:`KafkaSink` remembers (murmur2 is pure Python, ~25 us a key)
PARTITION_MEMO = 1_000_000


@contextlib.contextmanager
def map_kafka_errors(
    bootstrap: str, what: str = "Kafka", security: KafkaSecurity | None = None
) -> Iterator[None]:
    """Translate kafka-python exceptions into stream errors (chained). With ``security``
    (not PLAINTEXT), a broker that does not let us in is diagnosed: an untrusted
    certificate or a refused password is a :class:`StreamSecurityError` saying which."""
    import kafka.errors as ke

    # kafka-python 2.x raises NoBrokersAvailable when nothing answers at the bootstrap
    # address; 3.x raises KafkaTimeoutError("Unable to bootstrap from ...")
    no_brokers = tuple(getattr(ke, n) for n in ("NoBrokersAvailable",) if hasattr(ke, n))
    try:
        yield
    except ke.KafkaError as exc:
        if isinstance(exc, no_brokers) or (
            isinstance(exc, ke.KafkaTimeoutError) and "Unable to bootstrap" in str(exc)
        ):
            _raise_if_refused(bootstrap, security, exc)
            raise StreamUnavailable(
                f"no Kafka broker answers at {bootstrap} ({what}). Start one (scripts/services.sh up kafka "
                f"or docker compose up kafka) or set KAFKA_BOOTSTRAP"
            ) from exc
        if isinstance(
            exc,
            (ke.KafkaTimeoutError, ke.KafkaConnectionError, ke.NodeNotReadyError, ke.RequestTimedOutError),
        ):
            raise StreamUnavailable(
                f"Kafka at {bootstrap} did not answer in time ({what}): {exc}; "
                f"is the broker up and its advertised listener reachable?"
            ) from exc
        if isinstance(exc, ke.UnknownTopicOrPartitionError):
            raise StreamConfigError(
                f"a topic is missing on {bootstrap} ({what}): {exc}; run `driftrec topics create`"
            ) from exc
        raise StreamUnavailable(f"Kafka at {bootstrap} failed ({what}): {exc!r}") from exc


def _raise_if_refused(bootstrap: str, security: KafkaSecurity | None, exc: BaseException | None) -> None:
    """:class:`StreamSecurityError` when TLS or authentication is why ``exc`` happened (or,
    with ``exc=None``, would make the next client fail: one connection, ~0.3 s with SCRAM)."""
    if security is None or security.protocol == "PLAINTEXT":
        return
    why = diagnose(bootstrap, security)
    if why:
        raise StreamSecurityError(why) from None


def _to_record(r: Any) -> Record:
    headers = tuple((k, v if isinstance(v, bytes) else bytes(v or b"")) for k, v in (r.headers or ()))
    return Record(
        r.topic,
        r.partition,
        r.offset,
        r.key,
        r.value if r.value is not None else b"",
        headers,
        r.timestamp or 0,
    )


class KafkaSource:
    """A group consumer on aiokafka that polls :class:`Record` batches and commits explicitly.

    Records are parsed in C (a few us each against ~20 us with kafka-python), heartbeats
    and fetches run on aiokafka's own event loop in a daemon thread, and the group protocol
    is aiokafka's. (kafka-python 3.0.x consumers can stop fetching a partition until the
    next rebalance, dpkp/kafka-python#3106, #3131: seen here as a scorer that consumed
    nothing more mid-test, twice in about ten integration runs.)

    Parameters
    ----------
    bootstrap : ``host:port[,host:port]``
    topics : the topics to subscribe to
    group : the consumer group. ``None``: every partition of ``topics``, no group, no
        commits (the adapters watcher, tools)
    start_offsets : called on every partition assignment; ``(topic, partition) -> offset``
        to seek to (the offsets stored with the state, the source of truth for
        exactly-once application)
    on_assign : called with the assigned ``(topic, partition)`` pairs, after seeking
    on_revoke : called with the revoked ``(topic, partition)`` pairs before they go, between
        two batches (a caller with work in flight finishes it there)
    default_offset : where partitions that ``start_offsets`` does not name start: an
        offset, ``"end"``, or ``None`` (the group's committed offset; without a group, the
        beginning)
    commit_interval_s : how often :meth:`commit` sends the group's offsets (a hint for
        monitoring and lag; the state holds the offsets that count)

    Rebalances happen on aiokafka's loop, but their callbacks wait for the caller to be
    between two batches (they run inside :meth:`poll`, on the caller's thread): a
    revocation waits until the batch in hand is committed, and an assignment seeks to the
    offsets stored with the state before any record of those partitions is returned.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group: str | None,
        start_offsets: Callable[[], Mapping[tuple[str, int], int]] | None = None,
        on_assign: Callable[[list[tuple[str, int]]], None] | None = None,
        default_offset: int | str | None = None,
        client_id: str = "driftrec",
        commit_interval_s: float = 1.0,
        timeout_s: float = 30.0,
        top_up_ms: int = 3,
        on_revoke: Callable[[list[tuple[str, int]]], None] | None = None,
        security: KafkaSecurity | None = None,
        **config: Any,
    ) -> None:
        import asyncio
        import concurrent.futures
        import threading

        from aiokafka import AIOKafkaConsumer
        from aiokafka.abc import ConsumerRebalanceListener

        self.bootstrap, self.topics, self.group = bootstrap, list(topics), group
        self.security = security or PLAINTEXT
        self.timeout_s, self.top_up_ms = timeout_s, top_up_ms
        self._start_offsets, self._on_assign, self._default_offset = start_offsets, on_assign, default_offset
        self._on_revoke = on_revoke
        self._to_commit: dict[tuple[str, int], int] = {}
        self.commit_interval_s = commit_interval_s
        self._next_commit = 0.0
        # rebalance callbacks hand their work to the caller's thread through this queue
        self._pending: list[tuple[str, list[Any], concurrent.futures.Future]] = []
        self._pending_lock = threading.Lock()
        self._ready: set[tuple[str, int]] = set()  # assigned and positioned
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="driftrec-consumer", daemon=True)
        self._thread.start()
        source = self

        class _Listener(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await source._between_batches("revoke", list(revoked))

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await source._between_batches("assign", list(assigned))

        opts: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "group_id": group,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": 200,
            "fetch_min_bytes": 1,
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 2_000,
            "max_poll_interval_ms": 600_000,
            "request_timeout_ms": int(timeout_s * 1000),
        }
        opts.update(self.security.aiokafka_kwargs())
        opts.update(config)

        async def start() -> Any:
            c = AIOKafkaConsumer(**opts)
            await c.start()
            deadline = time.monotonic() + 15.0
            while True:  # every topic's partitions known before joining: a whole first assignment
                cluster = await c._client.fetch_all_metadata()
                missing = [t for t in self.topics if not cluster.partitions_for_topic(t)]
                if not missing:
                    break
                if time.monotonic() > deadline:
                    await c.stop()
                    raise StreamConfigError(
                        f"topics {missing} do not exist on {bootstrap}; "
                        f"run `driftrec topics create` (with the same TOPIC_PREFIX)"
                    )
                await asyncio.sleep(0.2)
            if group is None:
                from aiokafka import TopicPartition

                tps = [
                    TopicPartition(t, p) for t in self.topics for p in sorted(cluster.partitions_for_topic(t))
                ]
                c.assign(tps)
                self._pending.append(("assign", tps, concurrent.futures.Future()))
            else:
                c.subscribe(topics=self.topics, listener=_Listener())
            return c

        async def event() -> Any:
            return asyncio.Event()

        self._queued = self._run(event(), "start")  # set on the loop when a callback is queued
        try:
            self._c = self._run(start(), "consumer")
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise

    # ---- the loop thread -------------------------------------------------------------
    def _run(self, coro: Any, what: str, timeout_s: float | None = None) -> Any:
        import asyncio
        import concurrent.futures

        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result((timeout_s or self.timeout_s) + 5)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise StreamUnavailable(f"Kafka at {self.bootstrap} did not answer in time ({what})") from exc
        except (StreamUnavailable, StreamConfigError):
            raise
        except Exception as exc:  # aiokafka's errors (connection, timeouts, broker errors)
            if type(exc).__name__ == "KafkaConnectionError":
                _raise_if_refused(self.bootstrap, self.security, exc)
                raise StreamUnavailable(
                    f"no Kafka broker answers at {self.bootstrap} ({what}). Start one (scripts/services.sh "
                    f"up kafka or docker compose up kafka) or set KAFKA_BOOTSTRAP"
                ) from exc
            raise StreamUnavailable(f"Kafka at {self.bootstrap} failed ({what}): {exc!r}") from exc

    async def _between_batches(self, kind: str, tps: list[Any]) -> None:
        import asyncio
        import concurrent.futures

        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._pending_lock:
            if self._closing:  # leaving the group: nobody is going to poll again
                return
            self._pending.append((kind, tps, fut))
        self._queued.set()
        await asyncio.wrap_future(fut)

    # ---- the caller's thread ---------------------------------------------------------
    def _apply_pending(self) -> None:
        """Run the rebalance work queued by the loop: the caller is between two batches."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for kind, tps, fut in pending:
            try:
                keys = [(tp.topic, tp.partition) for tp in tps]
                if kind == "revoke":
                    if self._on_revoke:  # the caller finishes what it has in flight for them
                        self._on_revoke(keys)
                    self._ready.difference_update(keys)
                    self._commit_now({k: o for k, o in self._to_commit.items() if k in set(keys)})
                    for k in keys:
                        self._to_commit.pop(k, None)
                else:
                    want = dict(self._start_offsets()) if self._start_offsets else {}
                    seeks = [(tp, want.get(k, self._default_offset)) for tp, k in zip(tps, keys)]

                    async def seek(seeks: list[tuple[Any, Any]] = seeks) -> None:
                        for tp, off in seeks:
                            if off == "end":
                                await self._c.seek_to_end(tp)
                                await self._c.position(tp)  # resolved now: later records are new
                            elif off is not None:
                                self._c.seek(tp, off)
                            elif self.group is None:
                                await self._c.seek_to_beginning(tp)

                    self._run(seek(), "seek")
                    self._ready.update(keys)
                    log.info("assigned %s", ", ".join(f"{t}:{p}" for t, p in keys) or "nothing")
                    if self._on_assign:
                        self._on_assign(self.assignment())
            finally:
                fut.set_result(None)

    def poll(self, max_records: int = 500, timeout_ms: int = 100) -> list[Record]:
        import asyncio

        self._apply_pending()

        async def get() -> Any:
            # aiokafka's getmany waits out a rebalance, whose callbacks wait for this
            # thread: a callback being queued ends the poll (empty) so that it can run
            if self._pending:
                return {}
            self._queued.clear()
            t_get = asyncio.ensure_future(
                self._c.getmany(timeout_ms=max(0, timeout_ms), max_records=max_records)
            )
            t_queued = asyncio.ensure_future(self._queued.wait())
            done, _ = await asyncio.wait({t_get, t_queued}, return_when=asyncio.FIRST_COMPLETED)
            t_queued.cancel()
            if t_get not in done:
                t_get.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t_get
                return {}
            got = self._only_ready(t_get.result())
            n = sum(len(v) for v in got.values())
            if n and n < max_records and self.top_up_ms and not self._pending:
                # What getmany returned was fetched while the caller handled the previous
                # batch, and draining it has just sent the next fetch: its answer (whatever
                # arrived since) comes back in a millisecond or two on a local network.
                # Taking it now spares those records a whole batch cycle of waiting.
                with contextlib.suppress(asyncio.TimeoutError):
                    more = await asyncio.wait_for(
                        self._c.getmany(timeout_ms=self.top_up_ms, max_records=max_records - n),
                        self.top_up_ms / 1000 + 0.05,
                    )
                    for tp, recs in self._only_ready(more).items():
                        got.setdefault(tp, []).extend(recs)
            return got

        # Rebalance work queued during the poll waits for the next one: a revocation must
        # not happen before the caller has handled (and committed) what this poll returns.
        got = self._run(get(), "poll")
        return [_to_record(r) for recs in got.values() for r in recs]

    def _only_ready(self, got: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """(On the loop.) Records of positioned partitions only. aiokafka hands out records
        of a new assignment as soon as it is made, from the group's offsets, while the
        seek to the state's offsets still waits for the caller: those records are not
        returned, and their partition is rewound so that nothing is skipped either way."""
        ready, out = self._ready, {}
        for tp, recs in got.items():
            if (tp.topic, tp.partition) in ready:
                out[tp] = recs
            elif recs and tp in self._c.assignment():
                self._c.seek(tp, recs[0].offset)
        return out

    def _commit_due(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """Remember ``offsets``; whether it is time to send the latest ones."""
        if not offsets or self.group is None:
            return False
        self._to_commit.update(offsets)
        now = time.monotonic()
        if now < self._next_commit:
            return False
        self._next_commit = now + self.commit_interval_s
        return True

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit the group's offsets without waiting for the coordinator, at most every
        ``commit_interval_s`` (a hint for monitoring and lag: the scorer's source of truth
        is the offsets stored with its state); :meth:`close` commits the latest ones."""
        if not self._commit_due(offsets):
            return
        import asyncio

        offs = self._offsets(self._to_commit)

        async def commit() -> None:
            try:
                await self._c.commit(offs)
            except Exception as exc:  # noqa: BLE001 - the next commit supersedes it
                log.warning("group offset commit failed (the next one supersedes it): %r", exc)

        asyncio.run_coroutine_threadsafe(commit(), self._loop)

    def _commit_now(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if offsets and self.group is not None:
            offs = self._offsets(offsets)

            async def commit() -> None:
                await self._c.commit(offs)

            try:
                self._run(commit(), "commit")
            except Exception as exc:  # noqa: BLE001 - a hint only; the state holds the truth
                log.warning("group offset commit failed: %s", exc)

    @staticmethod
    def _offsets(offsets: Mapping[tuple[str, int], int]) -> dict[Any, int]:
        from aiokafka import TopicPartition

        return {TopicPartition(t, p): o for (t, p), o in offsets.items()}

    def commit_sync(self) -> None:
        mine = set(self.assignment())
        self._commit_now({tp: o for tp, o in self._to_commit.items() if tp in mine})

    def partition_count(self, topic: str) -> int:
        return len(self._c.partitions_for_topic(topic) or ())

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self._ready)

    def lag(self) -> int:
        """Records between this consumer's positions and the ends of its partitions."""
        tps = [tp for tp in self._c.assignment() if (tp.topic, tp.partition) in self._ready]
        if not tps:
            return 0

        async def lag() -> int:
            ends = await self._c.end_offsets(tps)
            total = 0
            for tp in tps:
                total += max(0, ends[tp] - await self._c.position(tp))
            return total

        return int(self._run(lag(), "lag"))

    def close(self) -> None:
        try:
            self.commit_sync()
        finally:
            with self._pending_lock:  # release a rebalance waiting on us
                self._closing = True
                for _, _, fut in self._pending:
                    fut.set_result(None)
                self._pending = []
            with contextlib.suppress(Exception):
                self._run(self._c.stop(), "close", 10.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


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

        from aiokafka import AIOKafkaProducer

        self.bootstrap, self.timeout_s = bootstrap, timeout_s
        self.security = security or PLAINTEXT
        self._memo: dict[tuple[str, bytes, int], int] = {}  # (topic, key, partitions) -> partition
        self._parts: dict[str, list[int]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="driftrec-sink", daemon=True)
        self._thread.start()

        async def start() -> Any:
            p = AIOKafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                client_id=client_id,
                acks="all",
                linger_ms=0,
                max_batch_size=max_batch_bytes,
                request_timeout_ms=int(timeout_s * 1000),
                enable_idempotence=False,
                **self.security.aiokafka_kwargs(),
            )
            await p.start()
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
                q = memo.get(k)
                if q is None:
                    if len(memo) >= PARTITION_MEMO:
                        memo.clear()
                    q = memo[k] = parts[(murmur2(m.key) & 0x7FFFFFFF) % len(parts)]
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

    def send_many_async(self, messages: Sequence[Message]) -> Callable[[], None]:
        """Start sending ``messages``; returns a function that blocks until the broker has
        acknowledged all of them (raising :class:`StreamUnavailable` as ``send_many`` does).
        Per-partition order across calls holds only if each call's function has returned
        before the next call: overlapping sends can be reordered (a retried request, or
        batches enqueued as their callers wake up; the producer is not idempotent)."""
        import asyncio

        if not messages:
            return lambda: None
        fut = asyncio.run_coroutine_threadsafe(self._send(messages), self._loop)
        what = f"send {len(messages)} messages"

        def wait() -> None:
            self._result(fut, what)

        return wait

    def _result(self, fut: Any, what: str) -> Any:
        import concurrent.futures

        try:
            return fut.result(self.timeout_s + 5)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise StreamUnavailable(f"Kafka at {self.bootstrap} did not answer in time ({what})") from exc
        except (StreamUnavailable, StreamConfigError):
            raise
        except Exception as exc:  # aiokafka's errors (connection, timeouts, broker errors)
            if type(exc).__name__ == "KafkaConnectionError":
                _raise_if_refused(self.bootstrap, self.security, exc)
            raise StreamUnavailable(f"Kafka at {self.bootstrap} failed ({what}): {exc!r}") from exc

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
    from kafka.admin import KafkaAdminClient, NewTopic

    names = list(dict.fromkeys(names))
    compacted, single = set(compacted), set(single_partition)
    sec = security or PLAINTEXT
    _raise_if_refused(bootstrap, sec, None)  # kafka-python only says so after 30 s, and not why
    with map_kafka_errors(bootstrap, "create topics", sec):
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id="driftrec-admin",
            request_timeout_ms=30_000,
            **sec.kafka_python_kwargs(),
        )
        try:
            existing = set(admin.list_topics())
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
                    admin.create_topics(todo, timeout_ms=30_000)
                except ke.TopicAlreadyExistsError:
                    pass
                for t in todo:
                    out[t.name] = "created"
                _wait_for_topics(admin, [t.name for t in todo])
        finally:
            admin.close()
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
    from kafka import KafkaConsumer, TopicPartition

    sec = security or PLAINTEXT
    _raise_if_refused(bootstrap, sec, None)
    with map_kafka_errors(bootstrap, f"read {topic}", sec):
        c = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            client_id="driftrec-reader",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=20,
            **sec.kafka_python_kwargs(),
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
                    out.extend(_to_record(r) for r in recs if r.offset < ends[tp])
            return out
        finally:
            c.close()


def group_committed(
    bootstrap: str, group: str, topics: Iterable[str], security: KafkaSecurity | None = None
) -> dict[tuple[str, int], int]:
    """The offsets ``group`` has committed on ``topics`` (``(topic, partition) -> offset``;
    empty when it never committed). The scorer checks them against its state's offsets."""
    from kafka.admin import KafkaAdminClient

    wanted = set(topics)
    sec = security or PLAINTEXT
    with map_kafka_errors(bootstrap, f"offsets of group {group}", sec):
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id="driftrec-admin",
            request_timeout_ms=30_000,
            **sec.kafka_python_kwargs(),
        )
        try:
            lister = getattr(admin, "list_group_offsets", None)
            if lister is not None:  # kafka-python 3.x
                got = lister({group: None}).get(group, {})
            else:  # 2.x
                got = admin.list_consumer_group_offsets(group)
        finally:
            admin.close()
    return {
        (tp.topic, tp.partition): int(om.offset)
        for tp, om in got.items()
        if tp.topic in wanted and om.offset is not None and om.offset >= 0
    }
