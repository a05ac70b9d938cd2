"""A scorer that lived through a broker outage stops quietly on SIGTERM: exit 0, one line
when it lost the broker and one when it had it back, no "Unclosed AIOKafkaConsumer" from
clients replaced meanwhile, no "nanobind: leaked" report at exit, no traceback. The broker
of ``scripts/services.sh`` is stopped for longer than a Kafka client's request timeout
(30 s), under a scorer that serves its metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driftrec.bench.faults import scrape
from driftrec.stream import Message, encode, encode_item, generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
RUN = Path(os.environ.get("DRIFTREC_RUN", "/tmp/driftrec-services"))
SERVICES = str(ROOT / "scripts" / "services.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout: float, what: str, p: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert p.poll() is None, f"the scorer exited ({p.returncode}): {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {log.read_text()[-2000:]}"
        time.sleep(0.2)


def test_sigterm_after_an_outage_is_quiet(settings, service_env, topics, state_url, tmp_path):
    if not (RUN / "kafka" / "kafka.pid").exists():
        pytest.skip("the broker was not started by scripts/services.sh (this test restarts it)")
    from driftrec.state.redis import RedisStateStore
    from driftrec.stream.kafka import KafkaSink

    s = generate("abrupt", n_events=200, n_users=20, n_items=60, seed=4)
    sink = KafkaSink(settings.kafka_bootstrap)
    sink.send_many([Message(topics.items, encode_item(i), i.item_id.encode()) for i in s.items])
    sink.send_many([Message(topics.for_type(e.type), encode(e), e.user_id.encode()) for e in s.events])
    sink.close()
    port = _free_port()
    log = tmp_path / "scorer.log"
    with open(log, "wb") as f:
        p = subprocess.Popen(
            [sys.executable, "-m", "driftrec.cli", "scorer", "--group", "g-quiet"],
            env=dict(service_env, METRICS_PORT=str(port), SERVICE_RETRY_S="300"),
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    store = RedisStateStore.from_url(state_url)
    up = 'driftrec_up{dependency="kafka"}'
    try:
        covered = lambda: sum(v for k, v in store.offsets("g-quiet").items() if ".events." in k)  # noqa: E731
        _wait(lambda: covered() >= len(s.events), 240, "the stream", p, log)
        subprocess.run([SERVICES, "stop", "kafka"], check=True, capture_output=True, timeout=120)
        try:
            _wait(lambda: scrape(port).get(up) == 0.0, 10, "the gauge at 0", p, log)
            time.sleep(40)  # past the clients' 30 s request timeout
        finally:
            subprocess.run([SERVICES, "up", "kafka"], check=True, capture_output=True, timeout=180)
        _wait(lambda: scrape(port).get(up) == 1.0, 30, "the gauge at 1", p, log)
        time.sleep(3)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
        store.close()
    text = log.read_text(errors="replace")
    assert rc == 0, text[-3000:]
    assert "Unclosed AIOKafka" not in text, text[-3000:]
    assert "nanobind" not in text and "leaked" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert text.count("scorer: lost kafka") == 1, text[-3000:]
    assert text.count("scorer: connected again to kafka after") == 1, text[-3000:]
