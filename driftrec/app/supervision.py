"""Supervision of the services: backing off while Kafka or Redis is unreachable, and stopping
on a signal.

Every service runs its attempts in one loop, :meth:`Retry.run`: the scorer and the learner
build themselves and run (an outage rebuilds them; they resume at their stored offsets),
the faust scorer builds itself, and a batch that lost Redis is handled again.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from driftrec.state import StateUnavailable
from driftrec.stream import StreamUnavailable

from .checks import redact
from .health import DEPENDENCIES, Health
from .metrics import Metrics

log = logging.getLogger("driftrec.services")

T = TypeVar("T")

#: How often a service logs its progress, for a person reading the log (seconds).
STATUS_EVERY_S = 10.0
#: What a service waits out: Kafka or Redis unreachable.
OUTAGES: tuple[type[BaseException], ...] = (StateUnavailable, StreamUnavailable)


class Retry:
    """Backing off while Kafka or Redis is unreachable: one log line per attempt with the
    (redacted) error, ``driftrec_up{dependency}`` 0 meanwhile (:attr:`health`, which a
    :class:`~driftrec.app.health.Probe` of the running service reports to as well); gives up
    (re-raises) once an outage has lasted ``SERVICE_RETRY_S``. :meth:`up` ends an outage.
    :meth:`run` is the one loop every service runs its attempts in."""

    def __init__(
        self,
        service: str,
        limit_s: float,
        metrics: Metrics | None = None,
        stop: threading.Event | None = None,
        first_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        answers: Callable[[str], bool] | None = None,
    ) -> None:
        self.service, self.limit_s, self.metrics, self.stop = service, limit_s, metrics, stop
        #: dependency -> whether it accepts connections now (:func:`checks.answers`): ends a
        #: back-off early
        self.answers = answers
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self.since: float | None = None
        self.attempts = 0
        self.restarts = 0
        self._healthy_at = 0.0
        self.health = Health(service, metrics)

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
        """The service works: every dependency answers (one line for each that was lost)."""
        self.since, self.attempts = None, 0
        for dep in DEPENDENCIES:
            self.health.regained(dep)

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

        if self.permanent(exc):
            return False
        dep = "redis" if isinstance(exc, StateUnavailable) else "kafka"
        self.health.lost(dep, redact(str(exc)).replace("\n", " ")[:300])
        now = time.monotonic()
        if self.since is None:  # the outage began when the probe saw it, if it did
            self.since = now - (self.health.down_for(dep) or 0.0)
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
        self._back_off(delay, dep)
        return not (self.stop is not None and self.stop.is_set())

    def _back_off(self, delay: float, dep: str) -> None:
        """Sleep ``delay``, or less: with :attr:`answers`, the wait ends (and the gauge says
        1) as soon as ``dep`` accepts connections again, so that a service waiting 10 s
        between two attempts is back within a second of its dependency."""
        end = time.monotonic() + delay
        while True:
            left = end - time.monotonic()
            if left <= 0 or (self.stop is not None and self.stop.is_set()):
                return
            step = min(left, 0.5) if self.answers is not None else left
            if self.stop is not None:
                self.stop.wait(step)
            else:
                time.sleep(step)
            if self.answers is not None and left > step and self.answers(dep):
                self.health.regained(dep)
                return

    def run(
        self,
        attempt: Callable[[], T],
        outages: tuple[type[BaseException], ...] = OUTAGES,
        on_outage: Callable[[], None] | None = None,
    ) -> T:
        """``attempt()`` until it returns. An outage (one of ``outages``) is backed off and
        tried again (:meth:`failed`) until it has lasted ``SERVICE_RETRY_S``, then re-raised;
        ``on_outage`` runs after each failed attempt (it takes back what the attempt counted)."""
        while True:
            try:
                return attempt()
            except outages as exc:
                if on_outage is not None:
                    on_outage()
                if not self.failed(exc):
                    raise


def stop_flag() -> threading.Event:
    """An event that SIGTERM and SIGINT set: a service stops after its current batch."""
    flag = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, lambda *_: flag.set())
        except ValueError:  # not the main thread (tests)
            pass
    return flag
