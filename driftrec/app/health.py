"""Whether a service's dependencies answer: ``driftrec_up{dependency}`` and one log line each way.

:class:`Health` is the one place that sets the gauge: :meth:`Health.lost` puts it at 0 and
logs one line (with why), :meth:`Health.regained` puts it back at 1 and logs one line with
how long the dependency was gone; repeated reports of the same state log nothing.

Two things report to it: the supervision (:class:`~driftrec.app.supervision.Retry`), when
an attempt fails on an outage and when the service works again, and :class:`Probe`, which
asks each dependency every second on a thread of its own, off the serving thread: the
Kafka consumer's cluster metadata (answered by any broker), Redis a ``GET``. A service that
has nothing to do during an outage (its clients reconnect quietly, its next batch never
comes) is seen down within a second or two, and back as soon as the dependency answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .checks import redact

__all__ = ["DEPENDENCIES", "PROBE_EVERY_S", "Health", "Probe"]

log = logging.getLogger("driftrec.services")

#: The dependencies a service reports on (the gauge's label values).
DEPENDENCIES = ("kafka", "redis")
#: How often :class:`Probe` asks each dependency (seconds).
PROBE_EVERY_S = 1.0


class Health:
    """The gauge and the log lines of a service's dependencies (thread-safe).

    >>> h = Health("scorer")
    >>> h.lost("kafka", "no broker answers"); h.lost("kafka"); h.is_up("kafka")
    False
    >>> h.regained("kafka"); h.is_up("kafka")
    True
    """

    def __init__(self, service: str, metrics: Any = None) -> None:
        self.service, self.metrics = service, metrics
        self._since: dict[str, float] = {}  # dependency -> when it was lost (monotonic)
        self._lock = threading.Lock()

    def is_up(self, dep: str) -> bool:
        with self._lock:
            return dep not in self._since

    def down_for(self, dep: str) -> float | None:
        """Seconds since ``dep`` was lost (None: it answers)."""
        with self._lock:
            since = self._since.get(dep)
        return None if since is None else time.monotonic() - since

    def lost(self, dep: str, why: str = "") -> None:
        """``dep`` does not answer: the gauge at 0; one line, the first time."""
        with self._lock:
            first = dep not in self._since
            if first:
                self._since[dep] = time.monotonic()
        self._set(dep, 0)
        if first:
            log.warning(
                "%s: lost %s%s; driftrec_up{dependency=%r} 0 until it answers",
                self.service,
                dep,
                f" ({why})" if why else "",
                dep,
            )

    def regained(self, dep: str) -> None:
        """``dep`` answers: the gauge at 1; one line with how long it was gone, if it was."""
        with self._lock:
            since = self._since.pop(dep, None)
        self._set(dep, 1)
        if since is not None:
            log.info(
                "%s: connected again to %s after %.1f s without it",
                self.service,
                dep,
                time.monotonic() - since,
            )

    def _set(self, dep: str, v: int) -> None:
        if self.metrics is not None:
            self.metrics.up.labels(dep).set(v)


class Probe:
    """Asks each dependency every ``every_s`` on a daemon thread and reports to ``health``.

    ``checks``: dependency -> a callable that returns whether it answers (an exception
    counts as no, its message as why). A check may block (the thread is the probe's own),
    and should bound its wait (the Kafka check waits at most 2 s).
    """

    def __init__(
        self,
        health: Health,
        checks: Mapping[str, Callable[[], bool]],
        every_s: float = PROBE_EVERY_S,
    ) -> None:
        self.health, self.checks, self.every_s = health, dict(checks), every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"driftrec-probe-{health.service}", daemon=True
        )

    def start(self) -> Probe:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            for dep, check in self.checks.items():
                why = ""
                try:
                    ok = bool(check())
                except Exception as exc:  # noqa: BLE001 - any failure means "does not answer"
                    ok, why = False, redact(str(exc)).replace("\n", " ")[:300]
                if self._stop.is_set():  # the service is closing its clients: not an outage
                    return
                if ok:
                    self.health.regained(dep)
                else:
                    self.health.lost(dep, why or "no answer")

    def close(self) -> None:
        """Stop asking (before the clients the checks use are closed)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
