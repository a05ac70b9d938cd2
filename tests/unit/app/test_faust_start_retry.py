"""The faust runtime backs off and retries when Kafka or Redis is unreachable at start, as
the Kafka runtime does (SERVICE_RETRY_S), instead of exiting at the first error."""

from __future__ import annotations

from typing import Any

import pytest

from driftrec.app import scorer_service
from driftrec.app.settings import Settings
from driftrec.cli import main
from driftrec.cli import services as cli_services
from driftrec.state import StateUnavailable


class _Svc:
    """What ``run_scorer_faust`` needs of a built service once faust has run."""

    names = security = None

    def summary(self) -> dict[str, Any]:
        return {"counts_reconcile": True}

    def close(self) -> None:
        pass


def _run(monkeypatch: pytest.MonkeyPatch, fails: int, retry_s: str) -> tuple[int, int]:
    tries = []

    def build(*a: Any, **k: Any) -> _Svc:
        tries.append(1)
        if len(tries) <= fails:
            raise StateUnavailable("cannot reach Redis at 127.0.0.1:1: connection refused")
        return _Svc()

    monkeypatch.setattr(scorer_service, "ScorerService", build)
    # the settings as given, without the reachability check the CLI makes before starting
    monkeypatch.setattr(cli_services, "settings_from_args", lambda args: Settings.from_env())
    monkeypatch.setattr("driftrec.stream.faust_app.run_faust_scorer", lambda *a, **k: None)
    monkeypatch.setenv("SERVICE_RETRY_S", retry_s)
    code = main(["scorer", "--runtime", "faust"])
    return code, len(tries)


def test_the_faust_scorer_retries_an_unreachable_dependency_at_start(monkeypatch) -> None:
    code, tries = _run(monkeypatch, fails=2, retry_s="30")  # backs off 0.5 s, then 1 s
    assert (code, tries) == (0, 3)


def test_the_faust_scorer_gives_up_when_retrying_is_off(monkeypatch) -> None:
    code, tries = _run(monkeypatch, fails=2, retry_s="0")
    assert code != 0 and tries == 1
