"""The settings layer: every variable declared once; a bad value or flag is one line naming
it, exit status 2, never a traceback (one test per class of error), and the README's
table is the generated one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driftrec.app.settings import VARS, ConfigError, Settings, Var, check_env, redact
from driftrec.cli import main
from driftrec.cli.settings import README_END, README_START, markdown_table

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults: none of the declared variables set."""
    for v in VARS:
        monkeypatch.delenv(v.name, raising=False)


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], *names: str) -> str:
    """Runs the CLI in process; asserts exit status 2 and one line on stderr naming ``names``."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in names:
        assert n in lines[0], lines[0]
    assert any(w in lines[0] for w in ("allowed", "choose from", "does not exist", "reach")), lines[0]
    return lines[0]


# ----------------------------------------------------------------- type ---
@pytest.mark.parametrize(
    "name,value",
    [
        ("SCORER_THREADS", "abc"),
        ("SCORER_CACHE_USERS", "abc"),
        ("METRICS_PORT", "1.5"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    line = fails(["adapters", "list"], capsys, name, repr(value))
    assert line.startswith("driftrec adapters: error: ")


def test_a_flag_of_the_wrong_type_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    fails(["demo", "--events", "many"], capsys, "--events", "'many'")


# ---------------------------------------------------------------- range ---
@pytest.mark.parametrize(
    "name,value",
    [("SCORER_TOP_K", "0"), ("SCORER_BATCH_SIZE", "0"), ("LEARNER_WINDOW", "4"), ("METRICS_PORT", "70000")],
)
def test_a_value_out_of_range_is_one_line(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    line = fails(["adapters", "list"], capsys, name)
    assert "out of range" in line


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["demo", "--events", "-5"], "--events"),
        (["eval", "-k", "0"], "-k"),
        (["generate", "x", "--items", "3"], "--items"),
        (["bench", "swap", "--rate", "0"], "--rate"),
        (["topics", "create", "--partitions", "0"], "--partitions"),
        (["scorer", "--metrics-port", "-1"], "--metrics-port"),
        (["replay", "--limit", "-1"], "--limit"),
    ],
)
def test_a_flag_out_of_range_is_one_line(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fails(argv, capsys, flag, "out of range")


# --------------------------------------------------------------- choice ---
@pytest.mark.parametrize(
    "name,value",
    [
        ("SCORER_RANK_PRECISION", "fast"),
        ("DRIFTREC_DEVICE", "tpu"),
        ("SCORER_COMMENTS", "later"),
        ("STATE_URL", "mongo://x"),
    ],
)
def test_a_value_not_among_the_choices_is_one_line(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    fails(["adapters", "list"], capsys, name, repr(value))


@pytest.mark.parametrize(
    "raw,want", [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("no", False)]
)
def test_booleans_accept_the_six_spellings(raw: str, want: bool) -> None:
    assert Var("FLAG", "flag", "bool", False, "a switch").parse(raw) is want
    with pytest.raises(ConfigError, match="FLAG='maybe': not a boolean"):
        Var("FLAG", "flag", "bool", False, "a switch").parse("maybe")


def test_a_flag_not_among_the_choices_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    fails(["eval", "--device", "tpu"], capsys, "--device", "tpu")


# ----------------------------------------------------------------- file ---
def test_a_directory_that_is_a_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "plain"
    f.write_text("x")
    monkeypatch.setenv("ARTIFACT_DIR", str(f))
    assert "not a directory" in fails(["adapters", "list"], capsys, "ARTIFACT_DIR")
    monkeypatch.setenv("ARTIFACT_DIR", str(tmp_path / "new" / "artifacts"))  # created when needed: fine
    monkeypatch.setenv("DRIFTREC_MODEL", str(tmp_path / "no-model"))
    fails(["adapters", "list"], capsys, "DRIFTREC_MODEL")


def test_a_missing_log_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "items.jsonl").write_text('{"item_id": "a", "text": "x", "ts": 1}\n')
    fails(
        ["eval", "--log", str(tmp_path / "missing.jsonl"), "--items", str(tmp_path / "items.jsonl")],
        capsys,
        "--log",
        "does not exist",
    )


def test_a_log_without_a_valid_event_stops_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "items.jsonl").write_text('{"item_id": "a", "text": "x", "ts": 1}\n')
    (tmp_path / "bad.jsonl").write_text('{not json\n{"type": "like"}\n')
    report = tmp_path / "report"
    fails(
        [
            "eval",
            "--log",
            str(tmp_path / "bad.jsonl"),
            "--items",
            str(tmp_path / "items.jsonl"),
            "--report",
            str(report),
            "--no-progress",
        ],
        capsys,
        "--log",
        "no valid event",
    )
    assert not report.exists()


# ---------------------------------------------------- unreachable service ---
def test_an_unreachable_redis_is_one_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATE_URL", "redis://:s3cret@127.0.0.1:1/0")
    line = fails(["adapters", "list"], capsys, "STATE_URL")
    assert "s3cret" not in line and ":***@" in line


def test_an_unreachable_broker_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    fails(["topics", "create", "--bootstrap", "127.0.0.1:1"], capsys, "--bootstrap", "127.0.0.1:1")


def test_settings_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--check"]) == 0
    assert capsys.readouterr().out.startswith("ok")
    monkeypatch.setenv("SCORER_TOP_K", "0")
    monkeypatch.setenv("STATE_URL", "redis://user:s3cret@127.0.0.1:bad/0")
    assert main(["settings", "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "SCORER_TOP_K='0'" in err[1] and "s3cret" not in err[0]


# ------------------------------------------------------------ the table ---
def test_every_declared_default_is_allowed_and_named_once() -> None:
    names = [v.name for v in VARS]
    assert len(names) == len(set(names))
    assert not check_env(
        {
            v.name: str(v.default)
            for v in VARS
            if v.default not in (None, "") and not str(v.default).startswith(("$", "~"))
        }
    )
    s = Settings.from_env({})
    assert s.scorer.batch_size == 256 and s.scorer.comments == "sync"
    svc = Settings.from_env({}, service=True)
    assert svc.scorer.batch_size == 4096 and svc.scorer.comments == "async"
    assert Settings.from_env({"SCORER_BATCH_SIZE": "7"}, service=True).scorer.batch_size == 7


def test_the_readme_table_is_the_generated_one() -> None:
    text = (ROOT / "README.md").read_text()
    assert README_START in text and README_END in text
    block = text.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert block == markdown_table(), "run: driftrec settings --update-readme README.md"


def test_no_code_below_the_entry_points_reads_the_environment() -> None:
    """Only the settings (and the CLI above them) read the variables (the thread and HF
    defaults are set, not read)."""
    offenders = []
    for folder in ("driftrec", "stream", "scorer", "learner", "state"):
        for p in (ROOT / folder).rglob("*.py"):
            if p == ROOT / "driftrec" / "app" / "settings.py" or p.parent == ROOT / "driftrec" / "cli":
                continue
            for i, line in enumerate(p.read_text().splitlines(), 1):
                if (
                    ("os.environ" in line or "getenv(" in line)
                    and "setdefault" not in line
                    and "dict(os.environ" not in line
                ):
                    offenders.append(f"{p.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, offenders


def test_redact() -> None:
    assert redact("rediss://alice:pw@h:6380/0 and :x@y") == "rediss://alice:***@h:6380/0 and :***@y"
    with pytest.raises(ConfigError, match=r"STATE_URL='redis://u:\*\*\*@h:x/0'"):
        Settings.from_env({"STATE_URL": "redis://u:pw@h:x/0"})


def test_the_command_exits_2_with_one_line() -> None:
    """The installed entry point, in its own process: no traceback, one line, status 2."""
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARS}}
    env.update(SCORER_BATCH_SIZE="0", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "driftrec.cli", "scorer"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "driftrec scorer: error: SCORER_BATCH_SIZE='0': out of range; allowed: an integer from 1 to 1000000"
    ]


def test_the_candidate_settings_reach_the_scorer_and_a_bad_index_is_one_line() -> None:

    s = Settings.from_env(
        {
            "SCORER_CANDIDATES": "index",
            "SCORER_EXACT_BELOW": "1000",
            "SCORER_ANN_K": "64",
            "SCORER_INDEX_SPEC": "IVF1000,PQ194x4fs",
        }
    )
    assert (s.scorer.candidates, s.scorer.exact_below, s.scorer.ann_k, s.scorer.index_spec) == (
        "index",
        1000,
        64,
        "IVF1000,PQ194x4fs",
    )
    with pytest.raises(ConfigError) as e:
        Settings.from_env({"SCORER_INDEX_SPEC": "IVF10,HNSW32;x"})
    assert "SCORER_INDEX_SPEC='IVF10,HNSW32;x'" in str(e.value) and "\n" not in str(e.value)


def test_a_product_quantiser_that_does_not_divide_the_width_says_which_would() -> None:
    from driftrec.scorer.ann import AnnIndex

    v = np.random.default_rng(0).random((5000, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="PQ10x4fs"):
        AnnIndex.build(v, np.zeros(5000, np.float32), 1.0, spec="IVF16,PQ5x4fs")
