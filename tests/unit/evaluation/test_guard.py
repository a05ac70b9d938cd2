"""The per-window guard of ``driftrec eval``: per system, the windows in which its HR@k
falls below the best of popularity and recent popularity by more than a margin."""

from __future__ import annotations

import numpy as np

from driftrec.evaluation import harness
from driftrec.evaluation import prequential as pq
from driftrec.stream import Event


class Fixed:
    """Recommends the same list to everyone."""

    def __init__(self, name: str, items: list[str]) -> None:
        self.name, self.items = name, items

    def rank_many(self, users, now, k):
        return [self.items[:k] for _ in users]

    def learn_many(self, events) -> None:
        pass


def _run():
    # targets: "a" for the first 40 events, then "b" for the next 40, then 9 more "a"
    items = ["a"] * 40 + ["b"] * 40 + ["a"] * 9
    ev = [Event(f"e{n}", "like", f"u{n}", i, n) for n, i in enumerate(items)]
    systems = [Fixed("popularity", ["a"]), Fixed("recent_popularity", ["b"]), Fixed("driftrec", ["a"])]
    return pq.run(ev, systems, k=1), systems


def test_windows_below_counts_each_system_against_the_best_count() -> None:
    res, _ = _run()
    pos = {n: r.positions for n, r in res.systems.items()}
    below = pq.windows_below(pos, k=1, window=20)
    # windows 0-1: "a" (popularity and driftrec hit), 2-3: "b" (recent_popularity hits);
    # the last window holds 9 targets, fewer than half a window: left out
    assert below == {"popularity": [2, 3], "recent_popularity": [0, 1], "driftrec": [2, 3]}
    assert pq.windows_below(pos, k=1, window=20, margin=1.0) == {n: [] for n in pos}
    assert pq.windows_below({"x": pos["driftrec"]}, k=1, window=20) is None


def test_the_summary_and_the_table_report_the_guard() -> None:
    res, systems = _run()
    summary = harness.summarise(res, systems, 20, None, None)
    d = summary["systems"]["driftrec"]
    assert d["windows_below_popularity"] == 2 and d["windows_below_popularity_at"] == [2, 3]
    assert summary["guard"] == {"systems": ["popularity", "recent_popularity"], "margin": 0.02}
    table = harness.format_tables(res, summary, 20)
    assert "windows below the best of popularity/recent_popularity by more than 0.02" in table
    assert "driftrec 2 (2 3)" in table
    # without a count to compare with, no guard
    only = [s for s in systems if s.name == "driftrec"]
    res1 = pq.run([Event("e", "like", "u", "a", 0)], only, k=1)
    assert (
        "windows_below_popularity" not in harness.summarise(res1, only, 20, None, None)["systems"]["driftrec"]
    )
    assert np.isfinite(d["hr_at_1"])


def test_each_system_is_compared_with_the_best_count_overall_with_its_noise() -> None:
    res, systems = _run()
    summary = harness.summarise(res, systems, 20, None, None)
    # overall: popularity hits 49 of 89 targets ("a"), recent_popularity 40 ("b")
    v = summary["systems"]["recent_popularity"]["hr_vs_best_count"]
    assert v["reference"] == "popularity"
    assert v["diff"] == round((40 - 49) / 89, 4)
    # every target differs (+1 or -1): the paired difference's standard error
    d = np.array([-1.0] * 49 + [1.0] * 40)
    assert v["se"] == round(float(d.std(ddof=1) / np.sqrt(89)), 4)
    assert v["z"] == round(((40 - 49) / 89) / float(d.std(ddof=1) / np.sqrt(89)), 2)
    same = summary["systems"]["driftrec"]["hr_vs_best_count"]
    assert same == {"reference": "popularity", "diff": 0.0, "se": 0.0, "z": None}
    table = harness.format_tables(res, summary, 20)
    assert "HR@1 against the best count overall (popularity)" in table
    assert "recent_popularity -0.1011 +/- 0.1061, driftrec +0.0000 +/- 0.0000" in table
