"""The Kafka services: ``driftrec topics create | replay | scorer | learner | adapters``.

They wire the same cores as the embedded runner (:class:`~driftrec.app.runtime.ScorerWorker`,
:class:`~driftrec.app.runtime.LearnerWorker`) to the Kafka transport (``driftrec.stream.kafka``) and a
state backend picked by ``STATE_URL`` (Redis in production).

Exactly-once application: the scorer stores its consumer offsets in the same state
transaction as the user state they produced; on start (and on every partition assignment)
it seeks to those offsets, rebuilds the catalog from the ``items`` topic up to the stored
items offsets, loads the registry's current version, and the worker skips any record the
state already covers. Kafka's own committed offsets are only a hint for monitoring.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .process import tune_gc
from .runtime import TopicNames, parse_announcement
from .settings import VARS_BY_NAME, Settings, check_kafka, flag_float, flag_int, flag_path

log = logging.getLogger("driftrec.services")

SCORER_GROUP = "driftrec-scorer"
STATUS_EVERY_S = 10.0
#: How often the scorer looks for adapter announcements (between two batches).
ADAPTER_POLL_S = 0.1
#: The services' micro-batch limit (SCORER_BATCH_SIZE overrides; the core's default is 256).
SERVICE_BATCH_SIZE: int = VARS_BY_NAME["SCORER_BATCH_SIZE"].service_default
LEARNER_GROUP = "driftrec-learner"


# ---------------------------------------------------------------- arguments ---
def _common(p: argparse.ArgumentParser, state: bool = True, model: bool = False) -> None:
    g = p.add_argument_group("connections (flags override the environment)")
    g.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (KAFKA_BOOTSTRAP)")
    g.add_argument("--topic-prefix", metavar="NAME", help="namespace for every topic (TOPIC_PREFIX)")
    if state:
        g.add_argument(
            "--state", metavar="URL", help="state backend, e.g. redis://127.0.0.1:6379/0 (STATE_URL)"
        )
    if model:
        g.add_argument("--model", metavar="PATH", help="encoder model directory (DRIFTREC_MODEL)")
        g.add_argument("--artifacts", metavar="DIR", help="artifact store directory (ARTIFACT_DIR)")
        g.add_argument("--device", choices=["auto", "cpu", "cuda"], help="DRIFTREC_DEVICE")
        g.add_argument(
            "--metrics-port",
            type=flag_int(0, 65535),
            metavar="PORT",
            help="serve Prometheus metrics on PORT (METRICS_PORT; 0 = off)",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    o = {
        "kafka_bootstrap": getattr(args, "bootstrap", None),
        "topic_prefix": getattr(args, "topic_prefix", None),
        "state_url": getattr(args, "state", None),
        "model": getattr(args, "model", None),
        "artifact_dir": getattr(args, "artifacts", None),
        "device": getattr(args, "device", None),
        "metrics_port": getattr(args, "metrics_port", None),
    }
    # the services' defaults (settings.VARS): comment encoding off the hot path (async), and
    # batches up to SERVICE_BATCH_SIZE: a poll returns what is there, up to this: small
    # batches when live, large ones (a user's events coalesced, fixed costs shared) when
    # there is a backlog
    s = Settings.from_env(service=True, **o)
    if getattr(args, "command", None) in ("topics", "replay", "scorer", "learner"):
        check_kafka(
            s.kafka_bootstrap,
            "--bootstrap" if o["kafka_bootstrap"] else "KAFKA_BOOTSTRAP",
            security=s.kafka_security(),
        )
    return s


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Stream errors become a one-line message and exit status 2 (the CLI handles the rest)."""

    def run(args: argparse.Namespace) -> int:
        from driftrec.stream.errors import StreamError

        from .settings import redact

        try:
            return fn(args)
        except StreamError as exc:
            print(redact(f"driftrec {args.command}: error: {exc}").replace("\n", " "), file=sys.stderr)
            return 2

    return run


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "topics",
        help="Kafka topic bootstrap",
        formatter_class=fmt,
        description="Create the driftrec topics (idempotent): events.clicks, events.likes, "
        "events.comments, items (compacted), adapters (compacted, 1 partition), "
        "recs.updates, events.dlq.",
    )
    tsub = p.add_subparsers(dest="topics_command", metavar="ACTION")
    c = tsub.add_parser("create", help="create missing topics")
    _common(c, state=False)
    c.add_argument(
        "--partitions", type=flag_int(1, 10_000), default=3, help="partitions of the keyed topics (default 3)"
    )
    c.add_argument(
        "--retention-hours",
        type=flag_float(above=0),
        default=24 * 7,
        help="retention of events/recs (default 168)",
    )
    c.set_defaults(func=_guard(cmd_topics_create))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    p = sub.add_parser(
        "replay",
        help="replay an event log into Kafka",
        formatter_class=fmt,
        description="Send a recorded log to Kafka: the catalog to `items` first, then events "
        "keyed by user_id to their per-type topic, paced by event time.\n\n"
        "  driftrec replay events.jsonl --items items.jsonl --to kafka --speed 60\n"
        "  driftrec replay ml-100k --format movielens --to kafka --rate 1000",
    )
    p.add_argument(
        "log_path", nargs="?", metavar="LOG", type=flag_path(), help="the event log (or use --log)"
    )
    p.add_argument("--log", dest="log_opt", metavar="PATH", type=flag_path(), help="the event log")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "csv", "movielens"])
    p.add_argument(
        "--items", metavar="PATH", type=flag_path("file"), help="item catalog JSONL (jsonl/csv formats)"
    )
    p.add_argument("--to", default="kafka", choices=["kafka"], help="destination (kafka)")
    p.add_argument(
        "--speed",
        type=flag_float(0),
        default=0.0,
        help="event-time speed-up: 0 = as fast as possible (default), 60 = 60x real time",
    )
    p.add_argument(
        "--rate", type=flag_float(0), default=0.0, help="a steady N events/s instead of event-time pacing"
    )
    p.add_argument(
        "--limit", type=flag_int(0), default=0, help="send only the first N events (by time; 0: all)"
    )
    p.add_argument(
        "--restamp",
        action="store_true",
        help="set each event's ts to the wall-clock send time (latency measurements)",
    )
    p.add_argument("--create-topics", action="store_true", help="create missing topics first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p, state=False)
    p.set_defaults(func=_guard(cmd_replay))

    p = sub.add_parser(
        "scorer",
        help="run the scorer service (Kafka + state)",
        formatter_class=fmt,
        description="Consume events.* and items, update user state, publish recs.updates, "
        "dead-letter bad records to events.dlq, hot-swap announced adapters.",
    )
    _common(p, model=True)
    p.add_argument(
        "--runtime",
        choices=["kafka", "faust"],
        default="kafka",
        help="kafka: the aiokafka poll loop (default); faust: the faust-streaming app",
    )
    p.add_argument("--group", default=SCORER_GROUP, help=f"consumer group (default {SCORER_GROUP})")
    p.add_argument(
        "--exit-when-idle",
        type=flag_float(0),
        default=0.0,
        metavar="S",
        help="exit after S seconds without records (tests, batch jobs)",
    )
    p.add_argument(
        "--max-seconds", type=flag_float(0), default=0.0, help="exit after this long (0 = run until stopped)"
    )
    p.add_argument(
        "--reset-state",
        action="store_true",
        help="start over although the state has no offsets while the group has committed some "
        "(the state was lost: every event still on the topics is applied again)",
    )
    p.set_defaults(func=_guard(cmd_scorer))

    p = sub.add_parser(
        "learner",
        help="run the learner service (Kafka + artifact store)",
        formatter_class=fmt,
        description="Consume events.* on its own group, fine-tune LoRA adapters when due, write "
        "artifacts to ARTIFACT_DIR, register and announce them on `adapters`.",
    )
    _common(p, model=True)
    p.add_argument("--group", default=LEARNER_GROUP, help=f"consumer group (default {LEARNER_GROUP})")
    p.add_argument(
        "--exit-when-idle",
        type=flag_float(0),
        default=0.0,
        metavar="S",
        help="exit after S seconds without records",
    )
    p.add_argument("--train-on-exit", action="store_true", help="train once more before exiting (tests)")
    p.set_defaults(func=_guard(cmd_learner))

    p = sub.add_parser(
        "adapters",
        help="list model versions, roll back",
        formatter_class=fmt,
        description="  driftrec adapters list\n  driftrec adapters rollback VERSION   "
        "re-announce VERSION; running scorers swap to it",
    )
    asub = p.add_subparsers(dest="adapters_command", metavar="ACTION")
    a = asub.add_parser("list", help="registered versions; * marks the serving one")
    _common(a)
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=_guard(cmd_adapters_list))
    a = asub.add_parser("rollback", help="re-announce an earlier version (or 'base': no adapter)")
    _common(a)
    a.add_argument("version", metavar="VERSION")
    a.set_defaults(func=_guard(cmd_adapters_rollback))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


# ------------------------------------------------------------------- topics ---
def all_topics(names: TopicNames) -> list[str]:
    return [*names.events, names.items, names.recs, names.adapters, names.dlq]


def ensure_topics(
    bootstrap: str,
    names: TopicNames,
    partitions: int = 3,
    retention_ms: int | None = None,
    security: Any = None,
) -> dict[str, str]:
    from driftrec.stream.kafka import RETENTION_MS, create_topics

    return create_topics(
        bootstrap,
        all_topics(names),
        partitions,
        compacted=[names.items, names.adapters],
        dlq=names.dlq,
        retention_ms=retention_ms or RETENTION_MS,
        single_partition=[names.adapters],
        security=security,
    )


def cmd_topics_create(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    out = ensure_topics(
        s.kafka_bootstrap,
        TopicNames(s.topic_prefix),
        args.partitions,
        int(args.retention_hours * 3600 * 1000),
        security=s.kafka_security(),
    )
    for name, what in out.items():
        print(f"{name}: {what}")
    return 0


# ------------------------------------------------------------------- replay ---
def cmd_replay(args: argparse.Namespace) -> int:
    from driftrec.stream import read_log
    from driftrec.stream.replay import replay_to_kafka

    path = args.log_path or args.log_opt
    if not path:
        print("driftrec replay: error: give the log: driftrec replay LOG --to kafka", file=sys.stderr)
        return 2
    s = settings_from_args(args)
    lg = read_log(path, args.format, args.items)
    events = sorted(lg.events, key=lambda e: e.ts)
    if args.limit:
        events = events[: args.limit]
    if lg.rejected:
        reasons: dict[str, int] = {}
        for r in lg.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        log.warning(
            "%d lines of %s are not valid events and are not sent: %s", len(lg.rejected), path, reasons
        )
    names = TopicNames(s.topic_prefix)
    if args.create_topics:
        ensure_topics(s.kafka_bootstrap, names, security=s.kafka_security())
    # the loaded log out of the collector's walks: with the default thresholds its
    # collections held a 2,000 events/s replay of 20,000 ML-100K events up to 240-370 ms
    # behind its schedule (a burst for the consumers)
    tune_gc()
    st = replay_to_kafka(
        events,
        lg.items,
        s.kafka_bootstrap,
        s.topic_prefix,
        args.speed,
        args.rate,
        args.restamp,
        progress=not args.no_progress,
        security=s.kafka_security(),
    )
    print(
        json.dumps(
            {
                "items": st.items,
                "events": st.events,
                "by_topic": st.by_topic,
                "seconds": round(st.seconds, 3),
                "events_per_s": round(st.rate, 1),
                "max_behind_ms": round(st.max_behind_ms, 1),
                "not_sent_invalid": len(lg.rejected),
            }
        )
    )
    return 0


# ------------------------------------------------------------------- scorer ---
def load_catalog(bootstrap: str, topic: str, security: Any = None) -> list[Any]:
    """The latest valid item per key of the (compacted) items topic."""
    from driftrec.stream import Item, decode_item
    from driftrec.stream.kafka import read_topic

    catalog: dict[str, Item] = {}
    bad = 0
    for r in read_topic(bootstrap, topic, security=security):
        d = decode_item(r.value)
        if isinstance(d, Item):
            catalog[d.item_id] = d
        else:
            bad += 1
    if bad:
        log.warning(
            "%d invalid records on %s ignored for the catalog (the scorer dead-letters them)", bad, topic
        )
    return list(catalog.values())


class AdapterWatcher:
    """Reads new announcements on the adapters topic (no group; from the end at start)."""

    def __init__(self, bootstrap: str, topic: str, security: Any = None) -> None:
        from driftrec.stream.kafka import KafkaSource

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

    def poll(self, timeout_ms: int = 0) -> list[dict[str, Any]]:
        out = []
        for r in self._c.poll(100, timeout_ms):
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
        self, settings: Settings, group: str = SCORER_GROUP, metrics: Any = None, reset_state: bool = False
    ) -> None:
        from driftrec.stream.kafka import KafkaSink

        from .system import SystemSpec, build_system, open_store

        self.settings, self.group, self.metrics = settings, group, metrics
        self.retry: Retry | None = None  # set by the faust runtime (see handle)
        _limit_threads(settings.scorer_threads)
        self.names = names = TopicNames(settings.topic_prefix)
        b = settings.kafka_bootstrap
        self.state = open_store(settings)
        stored = self.state.offsets(group)
        self.security = sec = settings.kafka_security()
        self._forgotten: dict[str, int] = dict(getattr(self.state, "forgotten", dict)())
        if not stored and not reset_state:
            try:
                self._refuse_lost_state(b, group, names, sec)
            except BaseException:
                self.state.close()
                raise
        self.watcher = AdapterWatcher(b, names.adapters, sec)
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
        if metrics is not None:
            self.swaps.on_reject = metrics.artifact_rejected
        self._load_current()
        self.swaps.on_swap = self._swapped
        # recs.updates and events.dlq (aiokafka's batch API: docs/operations.md, "Kafka clients")
        self.sink = KafkaSink(b, security=sec)
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
        from driftrec.state import StateConfigError
        from driftrec.stream.kafka import group_committed

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
        now = getattr(self.state, "forgotten", dict)()
        fresh = [u for u, t in now.items() if self._forgotten.get(u) != t]
        self._forgotten = now
        if fresh and self.worker.forget_cached(fresh):
            log.info("scorer: forgotten users dropped from the user cache")

    def _load_current(self) -> None:
        cur = getattr(self.state, "current", lambda: None)()
        if not cur or cur == self.scorer.version:
            return
        rec = next((r for r in self.state.records() if r.get("version") == cur), None)
        if rec is None:
            log.error("registry points at %s but has no record of it; serving %s", cur, self.scorer.version)
            return
        self.swaps.submit(rec)
        self.swaps.wait()
        if self.swaps.maybe_swap() is None:
            log.error(
                "could not load the registry's current version %s; serving %s", cur, self.scorer.version
            )

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
        from driftrec.state import StateUnavailable

        t0 = time.perf_counter()
        while True:
            st = self.worker.stats
            counts, recs = copy.deepcopy(st.counts), st.recs
            try:
                offs = self.worker.handle(records)
                break
            except StateUnavailable as exc:
                st.counts, st.recs = counts, recs
                if self.retry is None or not self.retry.failed(exc):
                    raise
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


class _Stop:
    def __init__(self) -> None:
        self.flag = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, lambda *_: self.flag.set())
            except ValueError:  # not the main thread (tests)
                pass


def cmd_scorer(args: argparse.Namespace) -> int:
    from .metrics import Metrics

    s = settings_from_args(args)
    metrics = Metrics("scorer")
    metrics.serve(s.metrics_port)
    if args.runtime == "faust":
        from driftrec.state import StateUnavailable
        from driftrec.stream.errors import StreamUnavailable
        from driftrec.stream.faust_app import run_faust_scorer

        # Kafka or Redis unreachable at start: backed off and retried as in the Kafka
        # runtime. Once running, faust's consumer reconnects to the broker by itself, and
        # a Redis lost inside a batch is waited for and the batch handled again (handle).
        retry = Retry("scorer", s.service_retry_s, metrics)
        while True:
            try:
                svc = ScorerService(s, args.group, metrics, reset_state=args.reset_state)
                break
            except (StateUnavailable, StreamUnavailable) as exc:
                if not retry.failed(exc):
                    raise
        retry.started()
        svc.retry = retry  # Redis lost mid-batch: waited for, the batch handled again
        tune_gc()
        try:
            run_faust_scorer(
                svc,
                s.kafka_bootstrap,
                svc.names,
                args.group,
                s.scorer.batch_size,
                s.scorer.batch_ms,
                exit_when_idle=args.exit_when_idle,
                security=svc.security,
            )
        finally:
            summary = svc.summary()
            print("\n" + json.dumps(summary), flush=True)  # own line (faust's terminal codes)
            svc.close()
        return 0 if summary["counts_reconcile"] else 1
    # non-zero when an output was not acknowledged: consumed != processed + dead-lettered
    summary = run_scorer(
        s,
        args.group,
        metrics,
        args.exit_when_idle,
        args.max_seconds,
        own_process=True,
        reset_state=args.reset_state,
    )
    return 0 if summary["counts_reconcile"] else 1


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


class Retry:
    """Backing off while Kafka or Redis is unreachable: one log line per attempt with the
    (redacted) error, ``driftrec_up{dependency}`` 0 meanwhile; gives up (re-raises) once an
    outage has lasted ``SERVICE_RETRY_S``. :meth:`up` ends an outage."""

    def __init__(
        self,
        service: str,
        limit_s: float,
        metrics: Any = None,
        stop: threading.Event | None = None,
        first_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
    ) -> None:
        self.service, self.limit_s, self.metrics, self.stop = service, limit_s, metrics, stop
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self.since: float | None = None
        self.attempts = 0
        self.restarts = 0
        self._healthy_at = 0.0

    def started(self) -> None:
        """The service is built: the gauges say up unless an outage is going on (which
        only progress ends: :meth:`progress`)."""
        if self.since is None:
            self.up()
        self._healthy_at = time.monotonic() + 5.0

    def progress(self, n: int) -> None:
        """After each poll: a batch handled, or 5 s without an error, ends an outage."""
        if self.since is not None and (n or time.monotonic() >= self._healthy_at):
            self.up()

    def up(self) -> None:
        if self.since is not None:
            log.info("%s: connected again after %.1f s", self.service, time.monotonic() - self.since)
        self.since, self.attempts = None, 0
        self._set("kafka", 1)
        self._set("redis", 1)

    def _set(self, dep: str, v: int) -> None:
        if self.metrics is not None and hasattr(self.metrics, "up"):
            self.metrics.up.labels(dep).set(v)

    @staticmethod
    def permanent(exc: BaseException) -> bool:
        """A broker's refusal that retrying cannot fix (a broker error code that Kafka marks
        not retriable: a record too large, an authorisation failure), not an outage."""
        seen: set[int] = set()
        e: BaseException | None = exc
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            if getattr(e, "errno", None) is not None and getattr(e, "retriable", True) is False:
                return True
            e = e.__cause__ or e.__context__
        return False

    def failed(self, exc: BaseException) -> bool:
        """Whether to try again (after sleeping); False: give up."""
        from driftrec.state import StateUnavailable

        from .settings import redact

        if self.permanent(exc):
            return False
        dep = "redis" if isinstance(exc, StateUnavailable) else "kafka"
        self._set(dep, 0)
        now = time.monotonic()
        if self.since is None:
            self.since = now
        waited = now - self.since
        if waited >= self.limit_s or (self.stop is not None and self.stop.is_set()):
            log.error(
                "%s: %s unreachable for %.0f s (SERVICE_RETRY_S=%.0f); giving up",
                self.service,
                dep,
                waited,
                self.limit_s,
            )
            return False
        delay = min(self.max_delay_s, self.first_delay_s * 2**self.attempts, self.limit_s - waited)
        self.attempts += 1
        self.restarts += 1
        log.warning(
            "%s: %s unreachable (attempt %d, retrying in %.1f s, giving up in %.0f s): %s",
            self.service,
            dep,
            self.attempts,
            delay,
            self.limit_s - waited,
            redact(str(exc)).replace("\n", " ")[:500],
        )
        if self.stop is not None:
            self.stop.wait(delay)
        else:
            time.sleep(delay)
        return not (self.stop is not None and self.stop.is_set())


def run_scorer(
    s: Settings,
    group: str = SCORER_GROUP,
    metrics: Any = None,
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
    from driftrec.state import StateUnavailable
    from driftrec.stream.errors import StreamUnavailable

    stop = stop or _Stop().flag
    retry = Retry("scorer", s.service_retry_s, metrics, stop)
    t_start = time.monotonic()
    while True:
        try:
            left = max_seconds - (time.monotonic() - t_start) if max_seconds else 0.0
            out = _run_scorer_once(
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
            out["restarts"] = retry.restarts
            return out
        except (StateUnavailable, StreamUnavailable) as exc:
            if not retry.failed(exc):
                raise
            if metrics is not None:
                metrics._seen = {}  # the next attempt's counts start at 0


def _run_scorer_once(
    s: Settings,
    group: str,
    metrics: Any,
    exit_when_idle: float,
    max_seconds: float,
    stop: threading.Event,
    own_process: bool,
    reset_state: bool,
    retry: Retry,
) -> dict[str, Any]:
    from driftrec.stream.kafka import KafkaSource

    svc = ScorerService(s, group, metrics, reset_state=reset_state)
    if own_process:
        tune_gc()
    names = svc.names
    source: Any = None

    def assigned(tps: list[tuple[str, int]]) -> None:
        svc.worker.set_cache_valid(owns_its_users(tps, names.events, source.partition_count))

    def revoked(tps: list[tuple[str, int]]) -> None:
        source.commit(svc.worker.flush())  # the batch in flight is committed before they go

    # SCORER_PIPELINE=1: a batch's updates are acknowledged while the next batch is scored
    svc.worker.set_pipeline(s.scorer_pipeline)
    try:
        source = KafkaSource(
            s.kafka_bootstrap,
            [*names.events, names.items],
            group,
            start_offsets=svc.start_offsets,
            on_assign=assigned,
            on_revoke=revoked,
            default_offset=0,
            client_id=f"driftrec-scorer-{group}",
            security=svc.security,
        )
    except BaseException:
        svc.close()
        raise
    retry.started()
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
            if metrics is not None and now >= next_lag:
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
            if exit_when_idle and now - last > exit_when_idle and source.assignment() and source.lag() == 0:
                if not svc.swaps.busy:
                    svc.swaps.maybe_swap()
                    break
            if max_seconds and now - t_start > max_seconds:
                break
    finally:
        try:
            source.commit(svc.worker.flush())
        except Exception as exc:  # noqa: BLE001 - reprocessed after a restart, nothing lost
            log.warning("the last batch was not committed (it is reprocessed on restart): %s", exc)
        source.close()
        summary = svc.summary()
        print(json.dumps(summary), flush=True)
        svc.close()
    return summary


# ------------------------------------------------------------------ learner ---
def cmd_learner(args: argparse.Namespace) -> int:
    from .metrics import Metrics

    s = settings_from_args(args)
    metrics = Metrics("learner")
    metrics.serve(s.metrics_port)
    return run_learner(s, args.group, metrics, args.exit_when_idle, args.train_on_exit)


def run_learner(
    s: Settings,
    group: str = LEARNER_GROUP,
    metrics: Any = None,
    exit_when_idle: float = 0.0,
    train_on_exit: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """The learner service. An unreachable Kafka or Redis is retried for ``SERVICE_RETRY_S``
    (:class:`Retry`): the service is built again and rebuilds its window from the group's
    offsets (the window's start), as after a crash."""
    from driftrec.state import StateUnavailable
    from driftrec.stream.errors import StreamUnavailable

    stop = stop or _Stop().flag
    retry = Retry("learner", s.service_retry_s, metrics, stop)
    while True:
        try:
            return _run_learner_once(s, group, metrics, exit_when_idle, train_on_exit, stop, retry)
        except (StateUnavailable, StreamUnavailable) as exc:
            if not retry.failed(exc):
                raise


def _run_learner_once(
    s: Settings,
    group: str,
    metrics: Any,
    exit_when_idle: float,
    train_on_exit: bool,
    stop: threading.Event,
    retry: Retry,
) -> int:
    from driftrec.stream.kafka import KafkaSink, KafkaSource

    from .system import SystemSpec, build_system, open_store

    names = TopicNames(s.topic_prefix)
    b = s.kafka_bootstrap
    sec = s.kafka_security()
    state = open_store(s)
    sink: Any = None
    try:  # a failed attempt (the retry loop calls again) leaves no connection or thread behind
        items = load_catalog(b, names.items, sec)
        system = build_system(SystemSpec.from_settings(s), items, serve=False)
        lrn = system.learner
        assert lrn is not None  # built to learn

        def on_result(res: Any, record: Any) -> None:
            if metrics is None:
                return
            metrics.training.observe(
                float(res.metrics.get("train_s", 0.0)) + float(res.metrics.get("encode_s", 0.0))
            )
            (metrics.published if record is not None else metrics.gate_rejected).inc()
            if record is not None:
                metrics.set_version(record["version"])

        sink = KafkaSink(b, security=sec)
        worker = system.learner_worker(
            sink,
            state,
            names,
            s.artifact_dir,
            on_result=on_result,
            time_bounds=s.time_bounds(),
            artifact_key=s.artifact_key,
            group=group,
        )
        worker.restore()  # positions, positions at the last training, counters, forgotten users
        # Items already in the catalog were loaded above; the group starts at the beginning of events.
        # Training blocks polling for tens of seconds: a long session keeps the member in its group.
        # The group's offsets are the start of the window (LearnerWorker.window_start), committed
        # after every drained poll (async; sync on close): a restarted learner re-reads the window.
        # Static membership (one learner per group): a learner restarted after a crash takes its
        # old member's place at once instead of waiting out the 60 s session.
        source = KafkaSource(
            b,
            [*names.events, names.items, names.recs],
            group,
            security=sec,
            client_id="driftrec-learner",
            commit_interval_s=0.0,
            session_timeout_ms=60_000,
            heartbeat_interval_ms=5_000,
            start_offsets=worker.start_offsets,
            group_instance_id=f"{group}-learner",
        )
    except BaseException:
        if sink is not None:
            sink.close()
        state.close()
        raise
    retry.started()
    last = last_status = time.monotonic()
    seen_at_status = 0
    try:
        while not stop.is_set():
            trained = len(worker.results)
            n = worker.run_once(source, 1000, 200)
            retry.progress(n)
            now = time.monotonic()
            if len(worker.results) != trained:
                last = now  # time spent training is not idle time
            if now - last_status >= STATUS_EVERY_S:
                worker.refresh_forgotten()
                log.info(
                    "learner: %d events seen (%.0f/s), window %d, %d trainings, %d published",
                    worker.seen,
                    (worker.seen - seen_at_status) / (now - last_status),
                    len(lrn.window),
                    len(worker.results),
                    sum(1 for _, r in worker.results if r),
                )
                last_status, seen_at_status = now, worker.seen
            if n:
                last = now
                if metrics is not None:
                    metrics.events.labels("processed").inc(n)
            if exit_when_idle and now - last > exit_when_idle and source.assignment() and source.lag() == 0:
                break
        if train_on_exit and len(lrn.window) >= 2:
            worker.train("manual")
    finally:
        source.close()
        sink.close()
        state.close()
        print(
            json.dumps(
                {
                    "seen": worker.seen,
                    "trainings": len(worker.results),
                    "trainings_total": worker.trainings,
                    "window": len(lrn.window),
                    "dropped_forgotten": worker.dropped_forgotten,
                    "last_training_window": worker.results[-1][0].window if worker.results else None,
                    "published": [r["version"] for _, r in worker.results if r],
                }
            ),
            flush=True,
        )
    return 0


# ----------------------------------------------------------------- adapters ---
def cmd_adapters_list(args: argparse.Namespace) -> int:
    from driftrec.state import open_state

    s = settings_from_args(args)
    st = open_state(s.state_url, **s.redis_options())
    try:
        recs = st.records()
        cur = getattr(st, "current", lambda: None)()
    finally:
        st.close()
    if args.json:
        print(json.dumps({"current": cur, "versions": recs}, indent=1))
        return 0
    if not recs:
        print("no adapter versions registered (serving: base)")
        return 0
    print(f"  {'version':<28} {'created':<20} {'events':>7}  val HR@10 (current -> candidate)")
    for r in recs:
        mark = "*" if r.get("version") == cur else " "
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.get("created_ts", 0) / 1000))
        m = r.get("metrics", {})
        hr = f"{m.get('val_hr_current', float('nan')):.4f} -> {m.get('val_hr_candidate', float('nan')):.4f}"
        print(f"{mark} {r['version']:<28} {created:<20} {r.get('window', {}).get('n_events', 0):>7}  {hr}")
    return 0


def cmd_adapters_rollback(args: argparse.Namespace) -> int:
    from driftrec.model import path_from_uri
    from driftrec.state import open_state
    from driftrec.stream import Message
    from driftrec.stream.kafka import KafkaSink

    s = settings_from_args(args)
    st = open_state(s.state_url, **s.redis_options())
    try:
        recs = st.records()
    finally:
        st.close()
    from driftrec.scorer.swap import BASE_RECORD

    rec = next((r for r in recs if r.get("version") == args.version), None)
    if args.version == BASE_RECORD["version"]:
        rec = dict(BASE_RECORD)  # the base encoder, no adapter, nothing learned
    elif rec is None:
        known = ", ".join(r["version"] for r in recs) or "none"
        print(
            f"driftrec adapters rollback: error: version {args.version!r} is not registered (known: {known})",
            file=sys.stderr,
        )
        return 2
    if rec["uri"] != BASE_RECORD["uri"] and not (path_from_uri(rec["uri"]) / "manifest.json").exists():
        print(
            f"driftrec adapters rollback: error: the artifact of {args.version} is gone ({rec['uri']})",
            file=sys.stderr,
        )
        return 2
    names = TopicNames(s.topic_prefix)
    sink = KafkaSink(s.kafka_bootstrap, security=s.kafka_security())
    try:
        sink.send_many([Message(names.adapters, json.dumps(rec).encode(), args.version.encode())])
    finally:
        sink.close()
    print(f"re-announced {args.version} on {names.adapters}; running scorers swap to it between two batches")
    return 0
