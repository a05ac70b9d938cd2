"""``driftrec bench swap`` on the candidate path: each version's index is built in the
background before it serves; nothing is dropped or applied twice."""

from __future__ import annotations

import json

import pytest

from driftrec.bench.swap import bench_swap


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_swap_bench_on_the_candidate_path(storage: str) -> None:
    r = bench_swap(
        n_items=10_000,
        dim=16,
        n_users=50,
        n_events=3000,
        batch=64,
        swaps=2,
        rate=600.0,  # 5 s: time for a version to be prepared on a busy machine
        candidates="index",
        item_storage=storage,
        cooc=8,
    )
    assert (r["path"], r["item_storage"]) == ("index", storage)
    assert r["applied"] == r["events_in"] == 3000
    assert r["dropped"] == 0 and r["duplicated"] == 0 and r["rejected"] == 0
    # (a busy machine may leave the second version unserved when the stream ends)
    assert r["swaps_asked"] == 2 and 1 <= r["swaps"] <= 2
    # the base version's index before the stream, one per version in the background (every
    # row changes: more than the rows a derived index takes)
    assert r["index_builds"] >= 1 + r["swaps"] and r["first_index_build_s"] >= 0
    assert len(r["serves_after_s"]) == len(r["prepares_s"]) == r["swaps"]
    assert all(s >= p for s, p in zip(r["serves_after_s"], r["prepares_s"]))
    assert r["max_pause_at_swap_ms"] <= r["max_pause_ms"] <= r["max_gap_incl_idle_ms"]
    assert r["memory"]["index_mb"] > 0 and r["memory"]["table_residual_mb"] > 0  # a learned version


def test_swap_bench_flags(capsys) -> None:
    from driftrec.cli import main

    argv = ["bench", "swap", "--items", "1500", "--dim", "16", "--users", "40", "--events", "1200"]
    argv += ["--batch", "64", "--rate", "8000", "--candidates", "exact", "--json"]
    assert main([*argv, "--swaps", "1"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["path"] == "exact" and r["item_storage"] == "float32" and r["swaps"] == 1
    assert "first_index_build_s" not in r
    # every version announced at its place, whatever the previous one is doing
    assert main([*argv, "--swaps", "3", "--at-once"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["announced"] == 3 and r["serves_after_s"] == [] and r["dropped"] == r["duplicated"] == 0
