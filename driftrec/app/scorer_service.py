"""The scorer service (``driftrec scorer``): the scorer core on the Kafka transport and a
state backend picked by ``STATE_URL`` (Redis in production).

It wires the same core as the embedded runner (:class:`~driftrec.app.runtime.ScorerWorker`)
to the Kafka transport (``driftrec.stream.kafka``), in one of two runtimes: the aiokafka poll
loop (:func:`run_scorer`) or faust-streaming (:func:`run_scorer_faust`).

Exactly-once application: the scorer stores its consumer offsets in the same state
transaction as the user state they produced; on start (and on every partition assignment)
it seeks to those offsets, rebuilds the catalog from the ``items`` topic up to the stored
items offsets, loads the latest announced version (or the registry's current one: see
:meth:`ScorerService._load_current`), and the worker skips any record the
state already covers. Kafka's own committed offsets are only a hint for monitoring.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from driftrec.state import StateConfigError, StateUnavailable
from driftrec.stream import StreamUnavailable, TopicNames
from driftrec.stream.kafka import KafkaSource, group_committed

from .admin import load_catalog
from .checks import answers
from .health import Probe
from .metrics import Metrics
from .process import tune_gc
from .runtime import parse_announcement
from .settings import Settings
from .supervision import STATUS_EVERY_S, Retry, stop_flag

log = logging.getLogger("driftrec.services")

SCORER_GROUP = "driftrec-scorer"
#: How often the scorer looks for adapter announcements (between two batches).
ADAPTER_POLL_S = 0.1


class AdapterWatcher:
    """Reads new announcements on the adapters topic (no group; from the end at start).

    :attr:`latest` is the last announcement already on the topic when the watcher started
    (read once, to its end): a scorer that starts after a version was published, while no
    scorer ran, serves it from its first update (:meth:`ScorerService._load_current`). The
    records read then are not returned again by :meth:`poll`."""

    def __init__(self, bootstrap: str, topic: str, security: Any = None) -> None:
        from driftrec.stream.kafka import read_topic

        self.bootstrap, self.topic = bootstrap, topic
        # an empty long poll waits up to 500 ms on aiokafka's thread, not on the scorer's
        self._c = KafkaSource(
            bootstrap,
            [topic],
            None,
            default_offset="end",
            client_id="driftrec-adapters",
            fetch_max_wait_ms=500,
            security=security,
        )
        self._c.poll(100, 0)  # positions the partitions at their ends now
        try:
            before = read_topic(bootstrap, topic, security=security)  # to the end, at or past those
        except BaseException:
            self.close()
            raise
        self._read: dict[int, int] = {}  # partition -> last offset read at start
        self.latest: dict[str, Any] | None = None
        for r in sorted(before, key=lambda r: r.offset):
            self._read[r.partition] = max(self._read.get(r.partition, -1), r.offset)
            rec = parse_announcement(r.value or b"")
            if rec is not None:
                self.latest = dict(rec)

    def poll(self, timeout_ms: int = 0) -> list[dict[str, Any]]:
        out = []
        for r in self._c.poll(100, timeout_ms):
            if r.offset <= self._read.get(r.partition, -1):
                continue  # read at start (see latest)
            rec = parse_announcement(r.value or b"")
            if rec is None:
                log.error("ignoring a malformed announcement on %s at offset %d", self.topic, r.offset)
            else:
                out.append(dict(rec))
        return out

    def close(self) -> None:
        try:
            self._c.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def scorer_threads(settings: Settings | None = None) -> int:
    """BLAS/torch threads of a scorer process (``SCORER_THREADS``, default 1)."""
    return (settings or Settings.from_env()).scorer_threads


def _limit_threads(n: int) -> None:
    """Small matrix products on a busy machine run faster on one BLAS/torch thread than on
    several that spin against each other; a scorer scales out with processes (partitions)."""
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    torch.set_num_threads(n)


class ScorerService:
    """Everything the scorer process holds, built in the order that makes a restart exact.

    The faust runtime reuses it: it calls :meth:`handle` per micro-batch and
    :meth:`between_batches` after each.
    """

    def __init__(
        self,
        settings: Settings,
        group: str = SCORER_GROUP,
        metrics: Metrics | None = None,
        reset_state: bool = False,
    ) -> None:
        from .system import open_store

        self.settings, self.group, self.metrics = settings, group, metrics
        self.retry: Retry | None = None  # set by the faust runtime (see handle)
        _limit_threads(settings.scorer_threads)
        self.names = TopicNames(settings.topic_prefix)
        self.security = settings.kafka_security()
        self.state = open_store(settings)
        # a failed start (an outage: the retry loop builds the service again) closes what it
        # opened, Kafka clients included, instead of leaving them to the collector
        self._opened: list[Callable[[], None]] = [self.state.close]
        try:
            self._start(settings, group, metrics, reset_state)
        except BaseException:
            for close in reversed(self._opened):
                with contextlib.suppress(Exception):
                    close()
            raise

    def _start(self, settings: Settings, group: str, metrics: Metrics | None, reset_state: bool) -> None:
        from driftrec.stream.kafka import KafkaSink

        from .system import SystemSpec, build_system

        names, sec, b = self.names, self.security, settings.kafka_bootstrap
        stored = self.state.offsets(group)
        self._forgotten: dict[str, int] = dict(self.state.forgotten())
        if not stored and not reset_state:
            self._refuse_lost_state(b, group, names, sec)
        self.watcher = AdapterWatcher(b, names.adapters, sec)
        self._opened.append(self.watcher.close)
        self._next_watch = 0.0
        # The catalog: the items topic is compacted, i.e. a table; start with all of it.
        # Item records consumed later (at or past the stored offsets) update it live.
        items = load_catalog(b, names.items, sec)
        # announcements are untrusted: uris inside ARTIFACT_DIR, signed when ARTIFACT_KEY is set
        self.system = build_system(
            SystemSpec.from_settings(settings),
            items,
            learn=False,
            item_pop=self.state.item_pop(),
            store=settings.artifact_dir,
            key=settings.artifact_key,
        )
        system = self.system
        assert system.scorer is not None and system.swaps is not None  # built to serve
        self.encoder, self.scorer, self.swaps = system.encoder, system.scorer, system.swaps
        self._opened += [self.scorer.close, self.swaps.close]
        if metrics is not None:
            self.swaps.on_reject = metrics.artifact_rejected
        self._load_current()
        self.swaps.on_swap = self._swapped
        # recs.updates and events.dlq (aiokafka's batch API: docs/operations.md, "Kafka clients")
        self.sink = KafkaSink(b, security=sec)
        self._opened.append(self.sink.close)
        self.worker = self.system.scorer_worker(
            self.state,
            self.sink,
            names,
            group,
            cache_users=settings.scorer_cache_users,
            time_bounds=settings.time_bounds(),
        )
        if metrics is not None:
            metrics.set_version(self.scorer.version)
        log.info(
            "scorer ready: %d items, version %s, ranking first pass %s, resuming at %s",
            len(items),
            self.scorer.version,
            self.scorer.rank_precision,
            stored or "the beginning",
        )

    @staticmethod
    def _refuse_lost_state(bootstrap: str, group: str, names: TopicNames, sec: Any) -> None:
        """No offsets in the state, yet the group committed some: the state was lost (a
        Redis without its data), and starting over would apply every event on the topics
        again onto whatever is left. Refused unless ``--reset-state``."""
        committed = group_committed(bootstrap, group, names.events, sec)
        n = sum(committed.values())
        if n:
            raise StateConfigError(
                f"the state has no offsets of group {group} but the group has committed offsets on "
                f"{len(committed)} event partitions ({n} records): the state was lost or STATE_URL points "
                f"elsewhere; refusing to start over (run `driftrec scorer --reset-state` to apply every "
                f"event still on the topics again)"
            )

    def forget_cached(self) -> None:
        """Users forgotten since the last look (`driftrec users forget`) leave the cache."""
        now = self.state.forgotten()
        fresh = [u for u, t in now.items() if self._forgotten.get(u) != t]
        self._forgotten = now
        if fresh and self.worker.forget_cached(fresh):
            log.info("scorer: forgotten users dropped from the user cache")

    def _load_current(self) -> None:
        """Before serving: the latest announcement on the adapters topic (a version
        published while no scorer ran is newer than the registry's current one) or, when
        there is none or it is refused, the registry's current version. What is loaded
        becomes the registry's current version."""
        cur = self.state.current()
        latest = self.watcher.latest
        tries: list[tuple[str, dict[str, Any]]] = []
        if latest is not None:
            tries.append(("the latest announcement", latest))
        if cur and (latest is None or latest.get("version") != cur):
            rec = next((r for r in self.state.records() if r.get("version") == cur), None)
            if rec is None and cur != self.scorer.version:
                log.error("registry points at %s but has no record of it", cur)
            elif rec is not None:
                tries.append(("the registry's current version", rec))
        for what, rec in tries:
            version = str(rec.get("version"))[:80]
            if version != self.scorer.version:
                self.swaps.submit(rec)
                self.swaps.wait()
                if self.swaps.maybe_swap() is None:
                    log.error("could not load %s, %s; serving %s", what, version, self.scorer.version)
                    continue
                log.info("serving %s from the start (%s)", version, what)
            if cur != version:
                self.state.set_current(version)
            return

    def _swapped(self, ev: Any) -> None:
        self.state.set_current(ev.version)
        if self.metrics is not None:
            self.metrics.swaps.inc()
            self.metrics.set_version(ev.version)

    # the two hooks every runtime calls
    def start_offsets(self) -> dict[tuple[str, int], int]:
        return self.worker.start_offsets()

    def handle(self, records: list[Any]) -> dict[tuple[str, int], int]:
        """One micro-batch (the faust runtime). With :attr:`retry` set, a Redis that stops
        answering mid-batch is waited for (``SERVICE_RETRY_S``) and the same batch handled
        again: its state was not committed (one MULTI/EXEC), its outputs may have been sent
        (at least once, as after a crash), and its counts are taken back first."""
        t0 = time.perf_counter()

        def attempt() -> dict[tuple[str, int], int]:
            st = self.worker.stats
            counts, recs = copy.deepcopy(st.counts), st.recs
            try:
                return self.worker.handle(records)
            except StateUnavailable:
                st.counts, st.recs = counts, recs
                raise

        offs = attempt() if self.retry is None else self.retry.run(attempt, (StateUnavailable,))
        if self.retry is not None:
            self.retry.progress(len(records))
        if self.metrics is not None:
            self.metrics.observe_scorer(self.worker.stats, time.perf_counter() - t0)
        return offs

    def between_batches(self) -> None:
        now = time.monotonic()
        # each poll of the announcements consumer costs CPU; 10 a second
        # is plenty for a hot-swap, which happens between two batches either way
        if now >= self._next_watch:
            self._next_watch = now + ADAPTER_POLL_S
            self._announcements()
        self.swaps.maybe_swap()

    def _announcements(self) -> None:
        for rec in self.watcher.poll(0):
            log.info("announcement of %r; preparing it", str(rec.get("version"))[:80])
            self.swaps.submit(rec)  # a refusal is counted by swaps.on_reject (metrics)

    def probes(self, source: Any) -> dict[str, Callable[[], bool]]:
        """What the health probe asks (:class:`~driftrec.app.health.Probe`): the brokers
        of ``source`` (its cluster metadata) and, for a Redis state, the registry's pointer."""
        checks: dict[str, Callable[[], bool]] = {"kafka": source.reachable}
        if self.settings.state_url.split("://", 1)[0] in ("redis", "rediss", "unix"):
            checks["redis"] = lambda: self.state.current() is not None or True
        return checks

    def summary(self) -> dict[str, Any]:
        st = self.worker.stats
        c = st.counts
        return {
            "consumed": c.consumed,
            "processed": c.processed,
            "dead_lettered": c.dead_lettered,
            "by_reason": dict(c.by_reason),
            "counts_reconcile": c.reconciled,
            "recs": st.recs,
            "skipped_committed": st.skipped_committed,
            "duplicates": st.duplicates,
            "batches": st.batches,
            "version": self.scorer.version,
            "swaps": [s.version for s in self.swaps.swaps],
        }

    def close(self) -> None:
        self.swaps.close()
        self.scorer.close()
        self.watcher.close()
        self.sink.close()
        self.state.close()


def owns_its_users(
    assigned: list[tuple[str, int]], event_topics: Sequence[str], partition_count: Callable[[str], int]
) -> bool:
    """Whether an assignment makes this scorer the only writer of its users: the event
    topics have one partition count (a user's key maps to the same partition number on
    each) and the same partition numbers of each are assigned here.

    >>> owns_its_users([("c", 0), ("l", 0), ("i", 1)], ["c", "l"], lambda t: 3)
    True
    >>> owns_its_users([("c", 0), ("l", 1)], ["c", "l"], lambda t: 3)
    False
    >>> owns_its_users([("c", 0), ("l", 0)], ["c", "l"], {"c": 3, "l": 6}.get)
    False
    """
    parts = {t: frozenset(p for tt, p in assigned if tt == t) for t in event_topics}
    if len({partition_count(t) for t in event_topics}) != 1:
        return False
    return len(set(parts.values())) == 1


def run_scorer(
    s: Settings,
    group: str = SCORER_GROUP,
    metrics: Metrics | None = None,
    exit_when_idle: float = 0.0,
    max_seconds: float = 0.0,
    stop: threading.Event | None = None,
    own_process: bool = False,
    reset_state: bool = False,
) -> dict[str, Any]:
    """The Kafka runtime: poll a micro-batch, ``ScorerWorker.run_once``, repeat.
    Returns the run's summary (also printed as one JSON line). ``own_process``: the
    process is this service's (the CLI), so it may tune the garbage collector.

    An unreachable Kafka or Redis (at start or later) is retried for ``SERVICE_RETRY_S``
    (:class:`Retry`): the service is built again and resumes at the offsets stored with
    its state, so no event is lost or applied twice."""
    stop = stop or stop_flag()
    retry = Retry("scorer", s.service_retry_s, metrics, stop, answers=answers(s))
    t_start = time.monotonic()

    def attempt() -> dict[str, Any]:
        left = max_seconds - (time.monotonic() - t_start) if max_seconds else 0.0
        return _run_scorer_once(
            s,
            group,
            metrics,
            exit_when_idle,
            max(left, 1e-3) if max_seconds else 0.0,
            stop,
            own_process,
            reset_state,
            retry,
        )

    def restarted() -> None:
        if metrics is not None:
            metrics._seen = {}  # the next attempt's counts start at 0

    out = retry.run(attempt, on_outage=restarted)
    out["restarts"] = retry.restarts
    return out


def _run_scorer_once(
    s: Settings,
    group: str,
    metrics: Metrics | None,
    exit_when_idle: float,
    max_seconds: float,
    stop: threading.Event,
    own_process: bool,
    reset_state: bool,
    retry: Retry,
) -> dict[str, Any]:
    svc = ScorerService(s, group, metrics, reset_state=reset_state)
    if own_process:
        tune_gc()
    names = svc.names
    source: Any = None

    def assigned(tps: list[tuple[str, int]]) -> None:
        svc.worker.set_cache_valid(owns_its_users(tps, names.events, source.partition_count))

    try:
        source = KafkaSource(
            s.kafka_bootstrap,
            [*names.events, names.items],
            group,
            start_offsets=svc.start_offsets,
            on_assign=assigned,
            default_offset=0,
            client_id=f"driftrec-scorer-{group}",
            security=svc.security,
        )
    except BaseException:
        svc.close()
        raise
    retry.started()
    probe = Probe(retry.health, svc.probes(source)).start()  # the gauge sees an idle outage too
    t_start = last = last_status = time.monotonic()
    next_lag = 0.0
    next_status = t_start + STATUS_EVERY_S
    last_count = 0
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            n = svc.worker.run_once(source, s.scorer.batch_size, max(1, s.scorer.batch_ms))
            retry.progress(n)
            now = time.monotonic()
            if n:
                last = now
                if metrics is not None:
                    metrics.observe_scorer(svc.worker.stats, time.perf_counter() - t0)
            svc.between_batches()
            # While no broker answers the probe, asking for the log ends would block this
            # thread for the client's timeout (30 s) and rebuild the service for nothing: the
            # consumer reconnects by itself. An outage that lasts SERVICE_RETRY_S ends it.
            kafka_up = retry.health.is_up("kafka")
            gone = retry.health.down_for("kafka")
            if gone is not None and gone >= s.service_retry_s:
                raise StreamUnavailable(f"no Kafka broker answered for {gone:.0f} s ({s.kafka_bootstrap})")
            if metrics is not None and now >= next_lag and kafka_up:
                metrics.lag.set(source.lag())
                next_lag = now + 1.0
            if now >= next_status:  # progress for a person reading the log
                svc.forget_cached()
                c = svc.worker.stats.counts
                age = svc.worker.stats.oldest_age_ms
                log.info(
                    "scorer: %d consumed (%.0f/s), %d processed, %d dead-lettered, %d recs, "
                    "version %s, last batch's oldest event %s old",
                    c.consumed,
                    (c.consumed - last_count) / (now - last_status),
                    c.processed,
                    c.dead_lettered,
                    svc.worker.stats.recs,
                    svc.scorer.version,
                    "?" if age is None else f"{age:.0f} ms",
                )
                last_count, last_status, next_status = c.consumed, now, now + STATUS_EVERY_S
            if (
                exit_when_idle
                and now - last > exit_when_idle
                and kafka_up
                and source.assignment()
                and source.lag() == 0
            ):
                if not svc.swaps.busy:
                    svc.swaps.maybe_swap()
                    break
            if max_seconds and now - t_start > max_seconds:
                break
    finally:
        probe.close()
        source.close()
        summary = svc.summary()
        print(json.dumps(summary), flush=True)
        svc.close()
    return summary


def run_scorer_faust(
    s: Settings,
    group: str = SCORER_GROUP,
    metrics: Metrics | None = None,
    exit_when_idle: float = 0.0,
    reset_state: bool = False,
) -> dict[str, Any]:
    """The faust runtime: faust-streaming's app drives :meth:`ScorerService.handle`. Returns
    the run's summary (also printed as one JSON line); it tunes the garbage collector (the
    process is this service's)."""
    from driftrec.stream.faust_app import run_faust_scorer

    # Kafka or Redis unreachable at start: backed off and retried as in the Kafka
    # runtime. Once running, faust's consumer reconnects to the broker by itself, and
    # a Redis lost inside a batch is waited for and the batch handled again (handle).
    retry = Retry("scorer", s.service_retry_s, metrics)
    svc = retry.run(lambda: ScorerService(s, group, metrics, reset_state=reset_state))
    retry.started()
    svc.retry = retry  # Redis lost mid-batch: waited for, the batch handled again
    tune_gc()
    try:
        run_faust_scorer(
            svc,
            s.kafka_bootstrap,
            svc.names,
            group,
            s.scorer.batch_size,
            s.scorer.batch_ms,
            exit_when_idle=exit_when_idle,
            security=svc.security,
        )
    finally:
        summary = svc.summary()
        print("\n" + json.dumps(summary), flush=True)  # own line (faust's terminal codes)
        svc.close()
    return summary
