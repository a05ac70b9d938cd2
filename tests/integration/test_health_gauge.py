"""``driftrec_up{dependency}`` sees an outage: the broker (and Redis) of
``scripts/services.sh`` stopped under a running scorer, its metrics sampled every 0.5 s by
``driftrec faults``: the gauge is 0 within 5 s of the dependency going away and 1 within 5 s
of it coming back, driftrec says so once each way, and the scorer's log (its own lines and
its client libraries') stays small."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftrec.bench.faults import MAX_LOG_LINES, UP_WITHIN_S

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
RUN = Path(os.environ.get("DRIFTREC_RUN", "/tmp/driftrec-services"))


def test_the_gauge_sees_broker_and_redis_outages(kafka_bootstrap, redis_url, tiny_model):
    if not (RUN / "kafka" / "kafka.pid").exists() or not (RUN / "redis" / "redis.pid").exists():
        pytest.skip("the broker and Redis were not started by scripts/services.sh (it restarts them)")
    env = dict(os.environ, KAFKA_BOOTSTRAP=kafka_bootstrap, REDIS_URL=redis_url, DRIFTREC_MODEL=tiny_model)
    cmd = [sys.executable, "-m", "driftrec.cli", "faults", "--events", "300", "--json", "--only"]
    cmd += ["broker_restart_10s", "redis_restart"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=850, cwd=ROOT)
    out = r.stdout.strip().splitlines()
    assert out, r.stderr[-3000:]
    rows = {row["fault"]: row for row in json.loads(out[-1])["faults"]}
    for name in ("broker_restart_10s", "redis_restart"):
        row = rows[name]
        assert "error" not in row and row["survived"], row
        assert row["lost"] == row["applied_twice"] == row["updates_lost"] == 0, row
        assert row["up_drop_s"] is not None and row["up_drop_s"] <= UP_WITHIN_S, row
        assert row["up_back_s"] is not None and row["up_back_s"] <= UP_WITHIN_S, row
        assert row["said_lost"] == 1 and row["said_back"] == 1, row
    broker = rows["broker_restart_10s"]
    # a 10 s outage (20 s or so with the stop and start commands): well under the target
    # of MAX_LOG_LINES over a 90 s one
    assert broker["log_lines"] < MAX_LOG_LINES / 4, broker
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
