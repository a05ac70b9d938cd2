"""Prometheus metrics of the scorer and learner services (prometheus-client).

Each service builds one :class:`Metrics` on its own registry and, with ``--metrics-port``
(``METRICS_PORT``), serves it on ``http://0.0.0.0:PORT/metrics``.

==================================  ==========  ==========================================
name                                type        meaning
==================================  ==========  ==========================================
driftrec_events_total{outcome}      counter     records consumed: processed | dead_lettered
                                                | skipped (already covered by the state)
driftrec_dead_letters_total{reason} counter     dead-lettered records by reason code
driftrec_recs_updates_total         counter     recs.updates messages published
driftrec_consumer_lag               gauge       records between the consumer and the log end
driftrec_batch_seconds              histogram   wall time of one micro-batch
driftrec_event_age_seconds          histogram   per batch: age of its oldest record (now minus
                                                the record's Kafka timestamp) when the batch's
                                                updates are made, i.e. the event-to-update
                                                latency of its slowest event (producer clocks
                                                permitting); large while a backlog drains
driftrec_model_version_info         info        the serving model version
driftrec_model_swaps_total          counter     hot-swaps performed
driftrec_swaps_rejected_total       counter     announced versions rejected (bad artifact)
driftrec_artifacts_rejected_total   counter     the same, by reason: missing_sha256, bad_version,
{reason}                                        uri_outside_store, missing_signature,
                                                bad_signature, checksum_mismatch, bad_tensor,
                                                bad_index, out_of_range, ...
                                                (driftrec.model.REJECT_REASONS)
driftrec_training_seconds           histogram   learner: one train round
driftrec_adapters_published_total   counter     learner: versions published
driftrec_candidates_rejected_total  counter     learner: candidates refused by the gate
driftrec_up{dependency}             gauge       1 while kafka | redis answers, 0 from a second or
                                                two after it stops (a probe every second:
                                                driftrec.app.health) and while the service
                                                backs off and reconnects (SERVICE_RETRY_S)
==================================  ==========  ==========================================

``rate(driftrec_events_total[1m])`` is the events/s figure.
"""

from __future__ import annotations

import errno
from typing import Any

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TRAIN_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
AGE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """The service metrics on a private registry (so tests can build several)."""

    def __init__(self, service: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.service = service
        self.registry = r = CollectorRegistry()
        self.events = Counter("driftrec_events", "Records consumed, by outcome", ["outcome"], registry=r)
        self.dead_letters = Counter(
            "driftrec_dead_letters", "Dead-lettered records by reason", ["reason"], registry=r
        )
        self.recs = Counter("driftrec_recs_updates", "recs.updates messages published", registry=r)
        self.lag = Gauge(
            "driftrec_consumer_lag", "Records between the consumer position and the log end", registry=r
        )
        self.batch = Histogram(
            "driftrec_batch_seconds", "Wall time of one micro-batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.age = Histogram(
            "driftrec_event_age",
            "Per batch: age of its oldest record when its updates "
            "are made (event-to-update latency of its slowest event)",
            unit="seconds",
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.version = Info("driftrec_model_version", "The serving model version", registry=r)
        self.swaps = Counter("driftrec_model_swaps", "Hot-swaps performed", registry=r)
        self.swaps_rejected = Counter("driftrec_swaps_rejected", "Announced versions rejected", registry=r)
        self.artifacts_rejected = Counter(
            "driftrec_artifacts_rejected", "Announced versions rejected, by reason", ["reason"], registry=r
        )
        self.training = Histogram(
            "driftrec_training_seconds",
            "Learner: wall time of one train round",
            buckets=TRAIN_BUCKETS,
            registry=r,
        )
        self.published = Counter("driftrec_adapters_published", "Learner: versions published", registry=r)
        self.gate_rejected = Counter(
            "driftrec_candidates_rejected", "Learner: candidates refused by the gate", registry=r
        )
        self.up = Gauge(
            "driftrec_up",
            "1 while the dependency answers, 0 while the service reconnects",
            ["dependency"],
            registry=r,
        )
        self._seen: dict[str, int] = {}

    def serve(self, port: int, addr: str = "0.0.0.0", label: str = "METRICS_PORT") -> None:
        """Serve ``/metrics`` on ``port`` (0 = off); a port that cannot be bound (in use) is
        a :class:`~driftrec.app.checks.ConfigError` naming ``label``, at start."""
        if port:
            from prometheus_client import start_http_server

            from .checks import ConfigError

            try:
                start_http_server(port, addr=addr, registry=self.registry)
            except OSError as exc:
                why = "in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
                raise ConfigError(
                    f"{label}={port}: cannot serve metrics on {addr}:{port} ({why}); allowed: a free "
                    f"port (0: off)"
                ) from None

    def artifact_rejected(self, version: str, reason: str, message: str = "") -> None:
        """A :class:`~driftrec.scorer.SwapManager` ``on_reject`` hook: count the refusal."""
        self.artifacts_rejected.labels(reason).inc()
        self.swaps_rejected.inc()

    def set_version(self, version: str) -> None:
        self.version.info({"version": version, "service": self.service})

    def observe_scorer(self, stats: Any, batch_s: float, lag: int | None = None) -> None:
        """Fold the worker's cumulative :class:`~driftrec.app.runtime.WorkerStats` in."""
        c = stats.counts
        for name, now in (
            ("processed", c.processed),
            ("dead_lettered", c.dead_lettered),
            ("skipped", stats.skipped_committed),
            ("recs", stats.recs),
        ):
            delta = now - self._seen.get(name, 0)
            if delta > 0:
                (self.recs if name == "recs" else self.events.labels(name)).inc(delta)
                self._seen[name] = now
        for reason, n in c.by_reason.items():
            key = "r:" + reason
            delta = n - self._seen.get(key, 0)
            if delta > 0:
                self.dead_letters.labels(reason).inc(delta)
                self._seen[key] = n
        self.batch.observe(batch_s)
        age = getattr(stats, "oldest_age_ms", None)
        if age is not None:
            self.age.observe(max(0.0, age) / 1000.0)
        if lag is not None:
            self.lag.set(lag)

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
