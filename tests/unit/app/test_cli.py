from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftrec.cli import main

KEYS = {
    "events_in",
    "events_processed",
    "dead_lettered",
    "recs_published",
    "adapters_published",
    "adapters_swapped",
    "hr_at_10_before_shift",
    "hr_at_10_after_shift",
    "wall_s",
}


def test_demo_runs_and_writes_its_report(
    tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report"
    rc = main(
        [
            "demo",
            "--model",
            tiny_model,
            "--events",
            "1500",
            "--users",
            "40",
            "--items",
            "160",
            "--rate",
            "0",
            "--train-every",
            "500",
            "--report",
            str(report),
            "--json",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    summary = json.loads(out[-1])
    assert KEYS <= set(summary)
    assert summary["events_in"] == summary["events_processed"] + summary["dead_lettered"]
    assert summary["dead_lettered"] == round(0.005 * 1500) and summary["counts_reconcile"]
    assert (report / "hr.png").stat().st_size > 1000
    assert json.loads((report / "summary.json").read_text()) == summary


def test_generate_then_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tmp_path), "--events", "300", "--users", "10", "--items", "40"]) == 0
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 300
    assert json.loads((tmp_path / "shift.json").read_text())["scenario"] == "abrupt"
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "driftrec demo" in capsys.readouterr().out


def test_bad_input_gives_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "items.jsonl").write_text('{"item_id": "a", "text": "x"}\n')
    rc = main(
        [
            "eval",
            "--log",
            str(tmp_path / "missing.jsonl"),
            "--format",
            "jsonl",
            "--items",
            str(tmp_path / "items.jsonl"),
            "--events",
            "10",
        ]
    )
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err
