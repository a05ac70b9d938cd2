"""scripts/services.sh's Redis keeps its data across restarts (issue 15, build 6): append-only
file as in docker-compose.yml. Runs the script on a port and run directory of its own, never
against the shared services."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path):
    if shutil.which("redis-server") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true: redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed")
    port = _free_port()
    env = dict(os.environ, DRIFTREC_RUN=str(tmp_path / "run"), REDIS_PORT=str(port))

    def sh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
        )

    yield sh, port, tmp_path / "run" / "redis"
    sh("down", "redis")


def test_redis_keeps_offsets_and_registry_across_restarts(own_redis):
    import redis

    sh, port, run = own_redis
    assert sh("up", "redis").returncode == 0
    r = redis.Redis(port=port)
    r.hset("driftrec:offsets:driftrec-scorer", "events.likes:0", 1234)
    r.hset("driftrec:registry", "v1", "{}")
    r.set("driftrec:current", "v1")

    # appendfsync everysec: a write reaches the file within a second or two of its reply
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        b"driftrec:current" in f.read_bytes() for f in (run / "data").rglob("*.aof")
    ):
        time.sleep(0.1)
    # killed without warning, then started again: the writes in the file are back
    os.kill(int((run / "redis.pid").read_text()), signal.SIGKILL)
    time.sleep(0.3)
    p = sh("up", "redis")
    assert p.returncode == 0, p.stderr
    r = redis.Redis(port=port)
    assert r.hget("driftrec:offsets:driftrec-scorer", "events.likes:0") == b"1234"
    assert r.get("driftrec:current") == b"v1"
    assert r.config_get("appendonly")["appendonly"] == "yes"

    p = sh("restart", "redis")
    assert p.returncode == 0, p.stderr
    assert redis.Redis(port=port).hget("driftrec:registry", "v1") == b"{}"

    # down removes the data (with Kafka's, so stored offsets never outlive their topics)
    assert sh("down", "redis").returncode == 0
    assert not (run / "data").exists()
    assert sh("up", "redis").returncode == 0
    assert redis.Redis(port=port).get("driftrec:current") is None


def test_restart_takes_one_service(own_redis):
    """`restart kafka` and `restart redis` keep the data (driftrec faults restarts both;
    tests/integration/test_faults.py); anything else is a usage error."""
    sh, _, _ = own_redis
    for args in ((), ("kafka", "redis"), ("zookeeper",)):
        r = sh("restart", *args)
        assert r.returncode == 2 and "restart takes one service: kafka or redis" in r.stderr, (args, r.stderr)
