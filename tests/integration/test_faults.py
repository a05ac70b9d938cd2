"""``driftrec faults`` at a reduced size (300 events a fault, the tiny model) against the
broker and Redis of ``scripts/services.sh``, which it stops and starts: every fault of the
table runs, and every "lost", "applied twice" and "updates lost" cell is 0. The failover
rows run against the Redis Cluster of ``scripts/services.sh up-cluster``
(``REDIS_CLUSTER_URL``), whose masters they kill and bring back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftrec.bench.faults import CLUSTER_ONLY, COLUMNS, FAULTS, default_faults

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
RUN = Path(os.environ.get("DRIFTREC_RUN", "/tmp/driftrec-services"))
CLUSTER = os.environ.get("REDIS_CLUSTER_URL", "redis+cluster://127.0.0.1:7000")


def test_fault_table_at_a_reduced_size(kafka_bootstrap, redis_url, tiny_model):
    if not (RUN / "kafka" / "kafka.pid").exists() or not (RUN / "redis" / "redis.pid").exists():
        pytest.skip("the broker and Redis were not started by scripts/services.sh (it restarts them)")
    env = dict(os.environ, KAFKA_BOOTSTRAP=kafka_bootstrap, REDIS_URL=redis_url, DRIFTREC_MODEL=tiny_model)
    cmd = [sys.executable, "-m", "driftrec.cli", "faults", "--events", "300", "--json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1100, cwd=ROOT)
    out = r.stdout.strip().splitlines()
    assert out, r.stderr[-3000:]
    rows = {row["fault"]: row for row in json.loads(out[-1])["faults"]}
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    assert list(rows) == default_faults(cluster=False) == [f for f in FAULTS if f not in CLUSTER_ONLY]
    for name, row in rows.items():
        assert set(COLUMNS) <= set(row), row
        assert "error" not in row, row
        assert row["lost"] == row["applied_twice"] == row["updates_lost"] == 0, row
        assert row["sent"] == row["processed"] + row["dead_lettered"], row
        if name != "learner_sigkill":
            assert row["exit"] == 0, row  # the scorer stopped cleanly on SIGTERM at the end
    # each fault happened where it should: mid-stream, with the services waiting it out
    assert 0 < rows["scorer_sigkill"]["at"] < rows["scorer_sigkill"]["sent"]
    for name in ("broker_restart_10s", "broker_restart_90s", "redis_restart"):
        assert rows[name]["survived"] and rows[name]["at"] < rows[name]["sent"], rows[name]
    assert rows["broker_restart_90s"]["down_s"] >= 90
    flood = rows["garbage_flood"]  # one garbage record per good event
    assert flood["processed"] > 0 and flood["dead_lettered"] == flood["processed"] == flood["dlq_with_reason"]
    forged = rows["forged_artifacts"]
    assert forged["rejected"] == forged["forged"] == 6 and forged["updates_from_forged"] == 0
    assert set(forged["reasons"]) == {
        "missing_sha256",
        "uri_outside_store",
        "bad_version",
        "checksum_mismatch",
        "bad_tensor",
        "bad_index",
    }
    assert rows["learner_sigkill"]["trainings_after_restart"] >= 1
    # the group changed mid-stream and every scorer did some of the work
    join, leave = rows["scorer_join"], rows["scorer_leave"]
    assert join["at"] < join["sent"] and len(join["updates_by"]) == 3 and all(join["updates_by"]), join
    assert leave["at"] < leave["killed_at"] < leave["sent"], leave
    assert len(leave["updates_by"]) == 2, leave  # the SIGKILLed one printed no summary
    # the table a person reads
    assert "fault" in out[0] and all(f in r.stdout for f in rows)


def test_cluster_failover_rows(kafka_bootstrap, tiny_model):
    """A master killed with its replica in sync, and with its replica lagging: nothing lost."""
    ports = [int(hp.rsplit(":", 1)[1]) for hp in CLUSTER.split("://", 1)[1].split("?")[0].split(",")]
    if not all((RUN / "redis-cluster" / str(p) / "redis.pid").exists() for p in ports):
        pytest.skip("the Redis Cluster was not started by scripts/services.sh up-cluster (it kills a master)")
    env = dict(os.environ, KAFKA_BOOTSTRAP=kafka_bootstrap, DRIFTREC_MODEL=tiny_model)
    cmd = [sys.executable, "-m", "driftrec.cli", "faults", "--redis", CLUSTER, "--events", "600", "--json"]
    cmd += ["--only", *CLUSTER_ONLY]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    out = r.stdout.strip().splitlines()
    assert out, r.stderr[-3000:]
    rows = {row["fault"]: row for row in json.loads(out[-1])["faults"]}
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    assert list(rows) == list(CLUSTER_ONLY)
    for row in rows.values():
        assert "error" not in row, row
        assert row["lost"] == row["applied_twice"] == row["updates_lost"] == 0, row
        assert row["exit"] == 0 and row["survived"], row
        assert 0 < row["at"] < row["sent"], row  # the master died mid-stream
    assert rows["redis_failover_lagging"]["filler_mb"] > 0
