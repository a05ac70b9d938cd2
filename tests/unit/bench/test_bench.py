from __future__ import annotations

import json

from driftrec.bench import speed as bench
from driftrec.bench.swap import bench_swap


def test_bench_scorer_tiny() -> None:
    r = bench.bench_scorer(n_items=300, dim=16, n_users=50, n_events=600, batch=64, warm_events=200)
    assert r["events"] == 600 and r["batch"] == 64
    assert 0 < r["p50_ms"] <= r["p99_ms"]
    # events/s is events over the timed wall: at least half of the 10 batches took >= p50,
    # and none took longer than p99 (bookkeeping between batches is allowed for)
    assert r["events_per_s"] <= 600 / (5 * r["p50_ms"] / 1e3) * 1.01
    assert r["events_per_s"] >= 600 / (20 * r["p99_ms"] / 1e3)  # 10 batches (+ bookkeeping)
    assert r["bound_events_per_s"] > 0 and r["share_of_bound"] >= 0  # tiny: the share rounds to 0
    assert r["rank_precision"] in ("float32", "bfloat16") and r["rows_ranked_again"] == 0.0


def test_bench_swap_tiny_drops_and_duplicates_nothing() -> None:
    r = bench_swap(n_items=300, dim=16, n_users=50, n_events=4000, batch=32, swaps=2, rate=8000.0)
    assert r["applied"] == r["events_in"] == 4000
    assert r["dropped"] == 0 and r["duplicated"] == 0 and r["rejected"] == 0
    assert r["swaps"] >= 1 and r["max_pause_ms"] >= 0
    # a pause excludes the time a scorer ahead of the stream idles until the next release
    assert r["max_pause_at_swap_ms"] <= r["max_pause_ms"] <= r["max_gap_incl_idle_ms"]


def test_bench_learner_tiny(tiny_model: str) -> None:
    r = bench.bench_learner(tiny_model, window=256, device="cpu", n_items=80)
    assert r["device"] == "cpu" and r["window"] == 256 and r["use_lora"]
    # lora_every=1: the item parts and the adapters both trained, and the step counts add up
    assert r["item_steps"] >= 1 and r["lora_steps"] >= 1
    assert r["steps"] == r["item_steps"] + r["lora_steps"]
    assert r["s_per_step"] * r["steps"] <= r["finetune_s"] * 1.05 + 0.01
    assert r["train_s"] <= r["finetune_s"] + 0.01 and r["peak_rss_mb"] > 100  # torch alone is more


def test_bench_learner_on_a_topical_catalog_above_round_items_trains_on_a_sample(tiny_model: str) -> None:
    r = bench.bench_learner(
        tiny_model, window=512, device="cpu", n_items=25_000, use_lora=False, catalog="topics"
    )
    assert r["catalog"] == "topics" and r["items"] == 25_000 and r["item_steps"] >= 1
    assert r["round_items"] < 25_000  # the default LEARNER_ROUND_ITEMS is 20,000


def test_bench_command_json(capsys) -> None:
    from driftrec.cli import main

    assert (
        main(
            [
                "bench",
                "scorer",
                "--items",
                "200",
                "--dim",
                "8",
                "--users",
                "20",
                "--events",
                "256",
                "--batch",
                "64",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["bench"] == "scorer"


def test_bench_reencode_tiny(tiny_model: str) -> None:
    r = bench.bench_reencode(
        n_items=400, model=tiny_model, max_len=8, budget=100, n_users=50, batch=32, limit_s=120, before_s=0.5
    )
    assert r["stale_at_swap"] == 300 and r["finished"] and not r["extrapolated"]
    assert r["reencoded"] == r["reencoded_served"] == 300
    assert r["full_catalog_s"] == r["seconds"] > 0 and r["events_per_s_during"] > 0
    assert r["first_rows"] == 400 and 0 < r["first_rows_s"] <= r["seconds"]
