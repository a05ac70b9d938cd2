"""The dependency gauge and its log lines: a probe sees an outage while the service idles,
one line each way, and the client libraries' repeated lines are held back."""

from __future__ import annotations

import logging
import threading
import time

from driftrec.app.health import Health, Probe
from driftrec.app.metrics import Metrics
from driftrec.app.process import RateLimit, limit_library_logs
from driftrec.app.supervision import Retry
from driftrec.state import StateUnavailable


def _gauge(m: Metrics, dep: str) -> float | None:
    for line in m.text().splitlines():
        if line.startswith(f'driftrec_up{{dependency="{dep}"}}'):
            return float(line.split()[-1])
    return None


def _wait(pred, timeout_s: float = 5.0) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout_s, "timed out"
        time.sleep(0.02)
    return time.monotonic() - t0


def test_one_line_when_lost_and_one_when_back(caplog):
    caplog.set_level(logging.INFO, "driftrec")
    m = Metrics("scorer")
    h = Health("scorer", m)
    h.regained("kafka")
    for _ in range(50):
        h.lost("kafka", "no broker answers at h:1")
    assert _gauge(m, "kafka") == 0.0
    for _ in range(50):
        h.regained("kafka")
    assert _gauge(m, "kafka") == 1.0
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("driftrec")]
    assert len(lines) == 2, lines
    assert "lost kafka (no broker answers at h:1)" in lines[0]
    assert "connected again to kafka after" in lines[1] and lines[1].endswith("s without it")


def test_the_probe_sees_an_idle_outage_within_seconds():
    m = Metrics("scorer")
    h = Health("scorer", m)
    answers = threading.Event()
    answers.set()
    probe = Probe(h, {"kafka": answers.is_set}, every_s=0.1).start()
    try:
        h.regained("kafka")
        answers.clear()
        assert _wait(lambda: _gauge(m, "kafka") == 0.0) < 1.0
        answers.set()
        assert _wait(lambda: _gauge(m, "kafka") == 1.0) < 1.0
    finally:
        probe.close()


def test_a_check_that_raises_is_down_and_its_message_is_redacted(caplog):
    h = Health("learner")

    def check() -> bool:
        raise StateUnavailable("cannot reach Redis at redis://u:pw@h:1/0")

    probe = Probe(h, {"redis": check}, every_s=0.05).start()
    try:
        _wait(lambda: not h.is_up("redis"))
    finally:
        probe.close()
    assert "pw@" not in caplog.text and "u:***@h:1" in caplog.text


def test_retry_reports_to_the_same_health(caplog):
    caplog.set_level(logging.INFO, "driftrec")
    m = Metrics("scorer")
    r = Retry("scorer", limit_s=10, metrics=m, stop=threading.Event(), first_delay_s=0.01)
    r.started()
    assert r.failed(StateUnavailable("cannot reach Redis"))
    assert not r.health.is_up("redis") and _gauge(m, "redis") == 0.0
    r.progress(1)
    assert r.health.is_up("redis") and _gauge(m, "redis") == 1.0
    assert "connected again to redis after" in caplog.text


def test_library_lines_are_rate_limited_with_a_count():
    f = RateLimit(every_s=0.3)
    rec = lambda i: logging.LogRecord(  # noqa: E731
        "aiokafka.conn", logging.ERROR, "", 0, "Unable connect to node %s: %s", (1, i), None
    )
    passed = [f.filter(rec(i)) for i in range(10_000)]
    assert sum(passed) == 1
    time.sleep(0.35)
    r = rec(0)
    assert f.filter(r) and "9999 more like it" in r.getMessage()
    own = logging.LogRecord("driftrec.services", logging.ERROR, "", 0, "x", (), None)
    assert all(f.filter(own) for _ in range(5))


def test_the_filter_sits_on_the_handlers_once():
    h = logging.StreamHandler()
    limit_library_logs([h])
    limit_library_logs([h])
    assert sum(isinstance(x, RateLimit) for x in h.filters) == 1


def test_the_command_limits_its_own_handler_only():
    """In a host process that configured logging first (pytest here), the command leaves
    the host's handlers alone."""
    from driftrec.cli import main

    root = logging.getLogger()
    assert main(["settings"]) == 0
    assert not any(isinstance(f, RateLimit) for h in root.handlers for f in h.filters)


def test_an_outage_the_probe_saw_counts_from_then(caplog):
    """SERVICE_RETRY_S counts from when the probe lost the dependency, not from the first
    error the service itself met (an idle scorer meets none)."""
    from driftrec.stream.errors import StreamUnavailable

    r = Retry("scorer", limit_s=0.2, stop=threading.Event(), first_delay_s=0.01)
    r.started()
    r.health.lost("kafka", "no answer")
    assert r.health.down_for("kafka") is not None and r.health.down_for("redis") is None
    time.sleep(0.25)
    assert not r.failed(StreamUnavailable("no Kafka broker answered for 0 s"))
    assert "giving up" in caplog.text


def test_a_back_off_ends_when_the_dependency_answers_again():
    """A service waiting 10 s between two attempts is back (gauge 1, next attempt) within a
    second of its dependency answering again."""
    m = Metrics("scorer")
    back_at = time.monotonic() + 0.6
    r = Retry(
        "scorer",
        limit_s=60,
        metrics=m,
        stop=threading.Event(),
        first_delay_s=10.0,
        answers=lambda dep: time.monotonic() >= back_at,
    )
    r.started()
    t0 = time.monotonic()
    assert r.failed(StateUnavailable("cannot reach Redis"))
    assert time.monotonic() - t0 < 2.0 and _gauge(m, "redis") == 1.0
    assert r.since is not None  # the outage itself ends with the next attempt's progress
