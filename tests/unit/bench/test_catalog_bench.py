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


@pytest.mark.parametrize("candidates", ["exact", "index"])
def test_catalog_bench_float16_and_its_memory(candidates: str) -> None:
    kw = dict(dim=16, batch=256, warm_events=256, recall_users=16, catalog="random")
    res = {
        st: run_catalog_bench(3000, 512, 100, candidates, item_storage=st, **kw)  # type: ignore[arg-type]
        for st in ("float32", "float16")
    }
    for st, r in res.items():
        assert r["item_storage"] == st and r["path"] == candidates
        mem = r["memory"]
        assert mem["table_text_mb"] == pytest.approx(
            3000 * 16 * (2 if st == "float16" else 4) / 1e6, abs=0.05
        )
        assert "table_residual_mb" not in mem  # a zero residual holds nothing
        assert (
            mem["ids_estimate_mb"] > 0
            and mem["total_mb"] >= sum(v for k, v in mem.items() if k != "total_mb") - 0.5
        )
        assert ("index_mb" in mem) == (candidates == "index")
        assert "memory held by the scorer" in format_result(r)
    auto = run_catalog_bench(3000, 256, 100, candidates, item_storage="auto", **kw)  # type: ignore[arg-type]
    assert auto["item_storage"] == "float32"  # below exact_below
