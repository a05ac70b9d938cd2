"""Process-level tuning shared by every long-running driftrec command: thread pools, the
garbage collector, the client libraries' log volume."""

from __future__ import annotations

import logging
import os
import threading
import time

#: Thread-pool settings that an entry point (``driftrec``'s command) applies before numpy
#: and torch load (a value already in the environment wins). The scorer alternates numpy's
#: OpenBLAS (the score product) with torch's OpenMP pool (top-k, user vectors); by default
#: each pool's idle threads spin for a while after a call (OpenBLAS ~2^28 cycles, libgomp's
#: spin count) and, on a machine with few cores, the pool that works next shares its cores
#: with the other's spinners. On the 2-core test machine that made the top-k after the
#: product take ~45 ms instead of ~5, and ``driftrec bench scorer`` ran at 10,900-11,500
#: events/s instead of 13,400-13,500. Neither setting slowed ``driftrec bench learner``
#: (13.2 s vs 12.7 s).
THREAD_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}


def set_thread_env() -> None:
    """Apply :data:`THREAD_ENV` where unset. An entry point calls it before numpy and torch
    are imported (they read these once, as they load); importing driftrec changes nothing."""
    for k, v in THREAD_ENV.items():
        os.environ.setdefault(k, v)


def tune_gc() -> None:
    """For a long-running process (a service, the embedded pipeline, a benchmark or an
    evaluation): move everything loaded at start (torch, transformers, the catalog) out of
    the collector's sight and collect the young generation less often. A batch allocates
    tens of thousands of small containers, and with the default thresholds the collector
    kept walking every user's history: ``driftrec bench scorer`` ran at 2,461 events/s with
    the defaults and 3,639 with this, on the same (busy) machine."""
    import atexit
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # Handed back before the interpreter's teardown: objects still frozen then are never
    # freed, and a library that checks for leaks at exit reports them (triton's nanobind
    # bindings, which torch loads with transformers, printed ~30 "nanobind: leaked" lines
    # at every service's exit).
    atexit.unregister(gc.unfreeze)
    atexit.register(gc.unfreeze)


#: The client libraries whose log lines :class:`RateLimit` holds back (with their children).
LIBRARY_LOGGERS = ("aiokafka", "kafka")
#: At most one line per message every this many seconds from each of them.
LIBRARY_LOG_EVERY_S = 10.0


class RateLimit(logging.Filter):
    """A handler's filter: at most one record per (logger, level, message template) every
    ``every_s`` seconds from the loggers named ``prefixes`` (and their children); the next
    one that passes says how many like it were held back. A client library that reconnects
    to a broker gone for a minute logs the same two or three lines thousands of times a
    second (aiokafka wrote 63,410 lines in a 22 s broker outage); driftrec's own log says
    once that the broker is gone and once that it is back (:mod:`driftrec.app.health`).

    >>> f = RateLimit(every_s=60)
    >>> rec = lambda: logging.LogRecord("aiokafka", 40, "", 0, "Unable connect to %s", ("n1",), None)
    >>> [f.filter(rec()) for _ in range(3)]
    [True, False, False]
    >>> f.filter(logging.LogRecord("driftrec.services", 40, "", 0, "mine", (), None))
    True
    """

    def __init__(
        self, prefixes: tuple[str, ...] = LIBRARY_LOGGERS, every_s: float = LIBRARY_LOG_EVERY_S
    ) -> None:
        super().__init__()
        self.prefixes, self.every_s = prefixes, every_s
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def _limited(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limited(record.name):
            return True
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            last, held = self._last.get(key, (float("-inf"), 0))
            if now - last < self.every_s:
                self._last[key] = (last, held + 1)
                return False
            if len(self._last) >= 10_000:  # messages built without a template: keep it bounded
                self._last.clear()
            self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like it in the last {now - last:.0f} s not shown]"
        return True


def limit_library_logs(
    handlers: list[logging.Handler] | None = None,
    prefixes: tuple[str, ...] = LIBRARY_LOGGERS,
    every_s: float = LIBRARY_LOG_EVERY_S,
) -> RateLimit:
    """Put one :class:`RateLimit` on each of ``handlers`` (default: every handler of the root
    logger; an entry point passes the ones its logging configuration made): the client
    libraries' lines reach the root's handlers by propagation, which a logger's own filter
    would not see. A handler that has one keeps it."""
    f = RateLimit(prefixes, every_s)
    for h in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(x, RateLimit) for x in h.filters):
            h.addFilter(f)
    return f
