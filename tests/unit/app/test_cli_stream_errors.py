"""Stream errors reaching the CLI are one line, exit status 2 (unreachable, refused, a bad
transport setting), with any password redacted; a command's own status (the scorer: 1
when its counts do not reconcile) is left alone."""

from __future__ import annotations

import pytest

from driftrec.stream import StreamConfigError, StreamSecurityError, StreamUnavailable


@pytest.mark.parametrize(
    "exc",
    [
        StreamUnavailable("no Kafka broker answers at u:Sekret-9@h:1 (x).\nStart one"),
        StreamConfigError("topics ['a'] do not exist"),
        StreamSecurityError("authentication to Kafka at h:9094 failed (SCRAM-SHA-512, user 'u')"),
    ],
)
def test_stream_errors_are_one_line_exit_2(monkeypatch, capsys, exc):
    from driftrec import cli
    from driftrec.cli import settings

    def boom(args, env=None):
        raise exc

    monkeypatch.setattr(settings, "cmd_settings", boom)
    assert cli.main(["settings"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("driftrec settings: error: ") and "\n" not in err
    assert "Sekret-9" not in err


def test_a_commands_own_status_stands(monkeypatch):
    from driftrec import cli
    from driftrec.cli import settings

    monkeypatch.setattr(settings, "cmd_settings", lambda args, env=None: 1)
    assert cli.main(["settings"]) == 1
