"""Quiet exits: no "nanobind: leaked" report at the end of a service (the collector's frozen
objects are handed back before the interpreter's teardown), and no "Unclosed
AIOKafkaConsumer/Producer" after a client that failed to start (a reconnect attempt during
an outage) is dropped. No broker needed: nothing listens at 127.0.0.1:1."""

from __future__ import annotations

import gc
import importlib.util
import logging
import subprocess
import sys

import pytest

from driftrec.stream import StreamError

NOTHING = "127.0.0.1:1"


@pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="the leak report comes from triton's bindings"
)
def test_tune_gc_leaves_no_leak_report_at_exit() -> None:
    code = "import triton\nfrom driftrec.app.process import tune_gc\ntune_gc()\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "nanobind" not in p.stderr and "leaked" not in p.stderr, p.stderr[-2000:]


def _unclosed(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()
    return [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]


def test_a_consumer_that_cannot_start_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    from driftrec.stream.kafka import KafkaSource

    caplog.set_level(logging.ERROR, "asyncio")
    for _ in range(3):
        with pytest.raises(StreamError):
            KafkaSource(NOTHING, ["t"], "g", timeout_s=2.0, request_timeout_ms=1000)
    assert _unclosed(caplog) == []


def test_a_producer_that_cannot_start_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    from driftrec.stream.kafka import KafkaSink

    caplog.set_level(logging.ERROR, "asyncio")
    for _ in range(3):
        with pytest.raises(StreamError):
            KafkaSink(NOTHING, timeout_s=2.0)
    assert _unclosed(caplog) == []
