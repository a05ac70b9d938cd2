"""``driftrec bench scale`` and ``bench cache``: their accounting and flags (the scale
runs themselves need the broker and state: they are figures, not tests)."""

from __future__ import annotations

import json
import os
import time

import pytest

from driftrec.bench.scale import cpu_seconds, format_table, machine_busy, state_pids


def test_cpu_seconds_count_this_process_and_nothing_for_a_gone_one() -> None:
    before = cpu_seconds(os.getpid())
    t = time.process_time()
    while time.process_time() - t < 0.05:  # burn a little CPU
        pass
    assert cpu_seconds(os.getpid()) > before >= 0
    assert cpu_seconds(2**22 + 12345) == 0.0  # no such pid


def test_machine_busy_counts_this_process() -> None:
    b0 = machine_busy()
    t = time.process_time()
    while time.process_time() - t < 0.1:  # keep one core busy
        pass
    assert machine_busy() - b0 >= 0.05


def test_a_store_without_a_server_has_no_redis_processes() -> None:
    from driftrec.state import MemoryStateStore

    assert state_pids(MemoryStateStore()) == []


def test_the_table_names_every_run() -> None:
    run = {
        "scorers": 2,
        "drain": {"events_per_s": 1000, "speedup": 1.5, "cores_used": 0.8, "events_per_cpu_s": 1250},
        "steady": {"latency_ms_p50": 10.0, "latency_ms_p99": 30.0},
    }
    head, _, row = format_table({"runs": [run]}).splitlines()
    assert head.split()[0] == "scorers" and row.split()[:3] == ["2", "1,000", "1.5"]


@pytest.mark.parametrize("bad", ["0", "1,x", "", "1,65"])
def test_scorer_counts_are_checked(bad, capsys) -> None:
    from driftrec.cli import main

    assert main(["bench", "scale", "--scorers", bad]) == 2  # one line, before anything runs
    assert "--scorers" in capsys.readouterr().err


def test_bench_cache_command_json(capsys) -> None:
    from driftrec.cli import main

    args = ["bench", "cache", "--users", "300", "--cache-users", "50", "--batch", "64", "--history", "2"]
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["bench"] == "cache" and res["cache_len_end"] == 50 and res["store_reads"] == 300
    assert res["points"][0]["users"] == 0 and res["points"][-1]["users"] == 300
