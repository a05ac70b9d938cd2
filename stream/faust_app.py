"""The scorer as a faust-streaming app (``driftrec scorer --runtime faust``).

One agent consumes ``events.clicks``, ``events.likes``, ``events.comments`` and ``items``
as raw bytes, micro-batches with ``stream.take_events(max_, within=...)`` (``take`` with
the records' positions), and hands each batch to the same scorer worker as the default
Kafka runtime: decode, dead-letter, scorer core, recs.updates, state commit with
offsets. The worker runs in a thread so the event loop keeps heartbeating.

Faust commits the group offsets itself, of events acked after their batch returned, i.e.
after the state (with its offsets) is committed: the group's offsets never run ahead of the
state. After a crash faust redelivers from its committed offsets and the worker skips every
record the state's offsets already cover, so each event is applied exactly once.

faust runs on aiokafka, the client of every other long-running consumer and producer
(docs/operations.md, "Kafka clients"). This module does not import the wiring package: the
caller passes ``hooks``, an object with ``handle(records)`` and ``between_batches()``
(``driftrec.app.scorer_service.ScorerService``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from .ports import Record

log = logging.getLogger("driftrec.stream.faust")


def to_record(event: Any) -> Record:
    """A faust event (message with its position) as a transport :class:`Record`."""
    m = event.message
    headers = m.headers.items() if hasattr(m.headers, "items") else (m.headers or ())
    return Record(
        m.topic,
        m.partition,
        m.offset,
        m.key,
        m.value if m.value is not None else b"",
        tuple((k, bytes(v or b"")) for k, v in headers),
        int((m.timestamp or 0) * 1000),
    )


def make_app(
    hooks: Any,
    bootstrap: str,
    input_topics: Sequence[str],
    group: str,
    batch_size: int = 256,
    batch_ms: int = 50,
    on_batch: Callable[[int], None] | None = None,
    security: Any = None,
    **app_config: Any,
) -> tuple[Any, Any]:
    """Build the faust app and its scorer agent; returns ``(app, agent)``."""
    import faust

    cfg: dict[str, Any] = {
        "broker": f"kafka://{bootstrap}",
        "value_serializer": "raw",
        "key_serializer": "raw",
        "store": "memory://",
        "web_enabled": False,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "broker_commit_every": batch_size,
        "broker_commit_interval": 1.0,
        "topic_allow_declare": False,
        "autodiscover": False,
        "datadir": os.path.join(tempfile.gettempdir(), "driftrec-faust", group),
    }
    if security is not None:  # a driftrec.stream.security.KafkaSecurity: broker_credentials
        cfg.update(security.faust_config())
    cfg.update(app_config)
    app = faust.App(group, **cfg)
    topic = app.topic(*input_topics, value_serializer="raw", key_serializer="raw", allow_empty=True)

    async def score(stream: Any) -> Any:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(batch_size, within=max(batch_ms, 1) / 1000):
            records = [to_record(e) for e in events]
            await loop.run_in_executor(None, hooks.handle, records)
            await loop.run_in_executor(None, hooks.between_batches)
            if on_batch is not None:
                on_batch(len(records))
            yield len(records)

    agent = app.agent(topic, name=f"{group}.score")(score)
    return app, agent


def run_faust_scorer(
    hooks: Any,
    bootstrap: str,
    names: Any,
    group: str,
    batch_size: int = 256,
    batch_ms: int = 50,
    exit_when_idle: float = 0.0,
    security: Any = None,
) -> None:
    """Run the faust worker until stopped (or ``exit_when_idle`` seconds without records)."""
    from faust import Worker

    last = [time.monotonic()]

    def seen(n: int) -> None:
        last[0] = time.monotonic()

    if security is not None and security.protocol != "PLAINTEXT":
        from .kafka_clients import raise_if_refused

        raise_if_refused(bootstrap, security, RuntimeError("faust"))  # faust would retry forever
    app, _ = make_app(
        hooks, bootstrap, [*names.events, names.items], group, batch_size, batch_ms, seen, security=security
    )

    worker = Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    if exit_when_idle:

        @app.timer(interval=0.5)
        async def idle_check() -> None:
            if time.monotonic() - last[0] > exit_when_idle and app.consumer.assignment():
                log.info("idle for %.1f s; stopping", exit_when_idle)
                worker._schedule_shutdown(signal.SIGTERM)  # the worker's own clean-stop path

    os.makedirs(str(app.conf.datadir), exist_ok=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    crash = getattr(app, "crash_reason", None) or getattr(worker, "crash_reason", None)
    if crash is not None:
        raise RuntimeError(f"the faust scorer stopped on an error: {crash!r}") from crash
