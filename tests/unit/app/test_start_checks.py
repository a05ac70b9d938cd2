"""Settings that used to end in a traceback or fail late are one line, exit status 2, at
start: a metrics port in use, TLS options on a plain ``redis://`` URL, an artifact store
or a state file's directory that cannot be created or written."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from driftrec.app import checks
from driftrec.app.checks import ConfigError
from driftrec.app.metrics import Metrics
from driftrec.app.settings import VARS
from driftrec.cli import main
from driftrec.state import StateConfigError, open_state

NOT_CREATABLE = "/proc/driftrec-x"  # even root cannot make a directory there


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for v in VARS:
        monkeypatch.delenv(v.name, raising=False)
    monkeypatch.setenv("SERVICE_RETRY_S", "0")  # today's late failures would otherwise retry


@pytest.fixture
def no_kafka_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The services' start check of the broker passes (no broker in unit tests): what is
    checked after it is what these tests are about."""
    import driftrec.cli.services as services

    monkeypatch.setattr(services, "check_kafka", lambda *a, **k: None)


@pytest.fixture
def busy_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen(1)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def one_line(argv: list[str], capsys: pytest.CaptureFixture[str], *names: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for n in names:
        assert n in lines[0], lines[0]
    return lines[0]


def test_a_metrics_port_in_use(busy_port: int, no_kafka_check, capsys, monkeypatch) -> None:
    with pytest.raises(ConfigError, match=f"METRICS_PORT={busy_port}: .*in use"):
        Metrics("scorer").serve(busy_port)
    for service in ("scorer", "learner"):
        one_line([service, "--metrics-port", str(busy_port)], capsys, "--metrics-port", "in use")
    monkeypatch.setenv("METRICS_PORT", str(busy_port))
    one_line(["scorer"], capsys, f"METRICS_PORT={busy_port}", "in use")


@pytest.mark.parametrize("option", ["ssl_ca_certs=/etc/hosts", "ssl_cert_reqs=required"])
def test_tls_options_on_a_plain_redis_url(option: str, capsys, monkeypatch) -> None:
    url = f"redis://127.0.0.1:1/0?{option}"
    with pytest.raises(StateConfigError, match="rediss://"):
        open_state(url)
    monkeypatch.setenv("STATE_URL", url)
    one_line(["settings", "--check"], capsys, "STATE_URL", "rediss://")
    one_line(["adapters", "list"], capsys, "STATE_URL", "rediss://")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_an_artifact_store_that_cannot_be_created(no_kafka_check, capsys, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="ARTIFACT_DIR"):
        checks.writable_directory(NOT_CREATABLE, "ARTIFACT_DIR")
    monkeypatch.setenv("ARTIFACT_DIR", NOT_CREATABLE)
    line = one_line(["learner"], capsys, f"ARTIFACT_DIR='{NOT_CREATABLE}'")
    assert "cannot" in line


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
@pytest.mark.parametrize("argv", [["scorer"], ["learner"], ["users", "forget", "u1"], ["adapters", "list"]])
def test_a_state_file_whose_directory_cannot_be_made(
    argv, no_kafka_check, capsys, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("STATE_URL", f"file://{NOT_CREATABLE}/state.json")
    line = one_line(argv, capsys, "STATE_URL", NOT_CREATABLE)
    assert "redis" not in line.lower() and "cannot" in line


def test_a_writable_directory_is_made(tmp_path) -> None:
    d = tmp_path / "a" / "b"
    assert checks.writable_directory(str(d), "ARTIFACT_DIR") == str(d) and d.is_dir()
    assert list(d.iterdir()) == []
