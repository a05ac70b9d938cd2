"""The learner service (``driftrec learner``): the learner core on the Kafka transport.

It wires the same core as the embedded runner (:class:`~driftrec.app.runtime.LearnerWorker`)
to the Kafka transport (``driftrec.stream.kafka``): it consumes the event topics on its own
group, fine-tunes LoRA adapters when due, writes artifacts to ``ARTIFACT_DIR``, registers
them in the state store and announces them on the ``adapters`` topic. Its window lives in
memory and is rebuilt from the group's offsets (the window's start) after a restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from driftrec.stream import TopicNames

from . import checks
from .admin import load_catalog
from .health import Probe
from .metrics import Metrics
from .settings import Settings
from .supervision import STATUS_EVERY_S, Retry, stop_flag

log = logging.getLogger("driftrec.services")

LEARNER_GROUP = "driftrec-learner"


def run_learner(
    s: Settings,
    group: str = LEARNER_GROUP,
    metrics: Metrics | None = None,
    exit_when_idle: float = 0.0,
    train_on_exit: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """The learner service. An unreachable Kafka or Redis is retried for ``SERVICE_RETRY_S``
    (:class:`Retry`): the service is built again and rebuilds its window from the group's
    offsets (the window's start), as after a crash."""
    checks.writable_directory(s.artifact_dir, "ARTIFACT_DIR")  # at start, not at the first training
    stop = stop or stop_flag()
    retry = Retry("learner", s.service_retry_s, metrics, stop, answers=checks.answers(s))
    return retry.run(lambda: _run_learner_once(s, group, metrics, exit_when_idle, train_on_exit, stop, retry))


def _run_learner_once(
    s: Settings,
    group: str,
    metrics: Metrics | None,
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
    checks = {"kafka": source.reachable}
    if s.state_url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        checks["redis"] = lambda: state.current() is not None or True
    probe = Probe(retry.health, checks).start()  # the gauge sees an outage during a training too
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
        probe.close()
        source.close()
        sink.close()
        state.close()
        # a day-one calibration round trains nothing: counted apart
        trained_here = [res for res, _ in worker.results if res.reason != "day_one"]
        print(
            json.dumps(
                {
                    "seen": worker.seen,
                    "trainings": worker.trainings - worker.trainings_before,
                    "calibrations": sum(res.reason == "day_one" for res, _ in worker.results),
                    "trainings_total": worker.trainings,
                    "window": len(lrn.window),
                    "dropped_forgotten": worker.dropped_forgotten,
                    "last_training_window": trained_here[-1].window if trained_here else None,
                    "published": [r["version"] for _, r in worker.results if r],
                }
            ),
            flush=True,
        )
    return 0
