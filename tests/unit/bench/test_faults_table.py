"""The fault table's verdicts and messages (the suite itself runs against real services:
tests/integration/test_faults.py)."""

from __future__ import annotations

import pytest

from driftrec.bench.faults import COLUMNS, FAULTS, Controls, FaultError, row_ok, table


def _row(**kw):
    r = {"fault": "scorer_sigkill", "sent": 10, "processed": 10, "dead_lettered": 0, "lost": 0}
    r.update(applied_twice=0, updates_lost=0, exit=0)
    r.update(kw)
    return r


def test_a_row_is_ok_only_when_nothing_is_lost_doubled_or_crashed():
    assert row_ok(_row())
    assert not row_ok(_row(lost=1))
    assert not row_ok(_row(applied_twice=1))
    assert not row_ok(_row(updates_lost=1))
    assert not row_ok(_row(exit=-6))  # aborted on SIGTERM at the end
    assert not row_ok(_row(error="FaultError: timed out"))
    forged = _row(fault="forged_artifacts", forged=6, rejected=6, updates_from_forged=0)
    assert row_ok(forged)
    assert not row_ok(dict(forged, rejected=5))
    assert not row_ok(dict(forged, updates_from_forged=1))


def test_the_table_has_every_column_and_a_verdict():
    text = table([_row(), _row(fault="garbage_flood", lost=2)])
    head, rule, a, b = text.splitlines()
    assert head.split() == [*COLUMNS, "ok"]
    assert a.split()[-1] == "yes" and b.split()[-1] == "NO"


def test_a_missing_stop_command_says_which_flag_to_use():
    ctl = Controls(kafka_stop="/nonexistent/services.sh stop kafka")
    with pytest.raises(FaultError, match="--kafka-stop"):
        ctl.run("kafka_stop")


def test_help_names_every_fault(capsys):
    from driftrec.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["faults", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(f in out for f in FAULTS)
