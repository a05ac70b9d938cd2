"""The consumer of the services on aiokafka: :class:`KafkaSource`, the
:class:`~driftrec.stream.ports.EventSource` of the scorer, the learner and the adapters
watcher (imported from :mod:`driftrec.stream.kafka`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import StreamConfigError
from .kafka_clients import aio_consumer, result, to_record
from .ports import Record
from .security import PLAINTEXT, KafkaSecurity

__all__ = ["KafkaSource"]

log = logging.getLogger("driftrec.stream.kafka")


def assignors() -> tuple[Any, ...]:
    """The group's partition assignors: aiokafka's range assignor, which gives a member the
    same partition numbers of every topic (of one partition count) that all subscribe to.

    >>> [a.name for a in assignors()]
    ['range']
    """
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor

    return (RangePartitionAssignor,)


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

    Members get partitions by range (:func:`assignors`): each member gets the same partition
    numbers of every subscribed topic of the same partition count, so a key's records on
    several topics (a user's clicks, likes and comments) reach one member. (aiokafka's
    default, round robin, deals the partitions of one number to different members: two
    scorers would then read and write one user's state at once, and one write would undo
    the other's.) ``partition_assignment_strategy`` in ``config`` overrides it.
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
            "partition_assignment_strategy": assignors(),
            **config,
        }

        async def start() -> Any:
            c = aio_consumer(bootstrap, self.security, **opts)
            try:
                return await started(c)
            except BaseException:  # a consumer that did not start is closed, not dropped
                with contextlib.suppress(Exception):
                    await c.stop()
                raise

        async def started(c: Any) -> Any:
            await c.start()
            deadline = time.monotonic() + 15.0
            while True:  # every topic's partitions known before joining: a whole first assignment
                cluster = await c._client.fetch_all_metadata()
                missing = [t for t in self.topics if not cluster.partitions_for_topic(t)]
                if not missing:
                    break
                if time.monotonic() > deadline:
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

        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return result(fut, (timeout_s or self.timeout_s) + 5, self.bootstrap, what, self.security)

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
        return [to_record(r) for recs in got.values() for r in recs]

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

    def reachable(self, timeout_s: float = 2.0) -> bool:
        """Whether a broker of the cluster answers a metadata request within ``timeout_s``:
        a health probe (the client reconnects quietly while the brokers are gone). The
        request runs on the consumer's own loop; the calling thread waits, not the caller of
        :meth:`poll` (call it from another thread)."""
        import asyncio

        async def ask() -> None:
            await asyncio.wait_for(self._c._client.fetch_all_metadata(), timeout_s)

        fut = asyncio.run_coroutine_threadsafe(ask(), self._loop)
        try:
            fut.result(timeout_s + 1.0)
            return True
        except Exception:  # noqa: BLE001 - any failure means "no broker answered"
            fut.cancel()
            return False

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
