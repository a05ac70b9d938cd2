"""The catalog-size benchmark runs end to end on a small catalog (both paths)."""

from __future__ import annotations

import pytest

from driftrec.bench.catalog import format_result, run_catalog_bench


@pytest.mark.parametrize("candidates", ["exact", "index"])
def test_catalog_bench_small(candidates: str) -> None:
    seen: list[int] = []
    res = run_catalog_bench(
        5000,
        1024,
        300,
        candidates,
        seed=0,
        progress=seen.append,
        dim=16,
        batch=256,
        warm_events=512,
        recall_users=32,
        catalog="topics",
    )
    assert res["path"] == candidates and res["events"] == 1024 and seen[-1] == 1024
    assert res["events_per_s"] > 0 and res["peak_rss_mb"] > 0
    if candidates == "index":
        assert 0.0 <= res["recall_at_10"] <= 1.0 and res["index_build_s"] >= 0
        assert res["ann_curve"] and "nprobe" in format_result(res)
