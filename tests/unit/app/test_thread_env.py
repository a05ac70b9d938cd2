"""The ``driftrec`` command sets its thread-pool defaults before numpy loads, a user's own
value wins, and importing the library changes no environment variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from driftrec.app.process import THREAD_ENV

PROBE = "import {mod}, os, numpy, json; print(json.dumps({{k: os.environ.get(k) for k in {keys!r}}}))"


def _env_after_import(mod: str, **overrides: str) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env.update(overrides)
    code = PROBE.format(mod=mod, keys=sorted(THREAD_ENV))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_command_sets_the_defaults() -> None:
    assert _env_after_import("driftrec.cli") == THREAD_ENV


def test_a_value_already_set_wins() -> None:
    got = _env_after_import("driftrec.cli", OMP_WAIT_POLICY="ACTIVE")
    assert got["OMP_WAIT_POLICY"] == "ACTIVE"
    assert got["OPENBLAS_THREAD_TIMEOUT"] == THREAD_ENV["OPENBLAS_THREAD_TIMEOUT"]


def test_importing_the_library_sets_nothing() -> None:
    for mod in ("driftrec", "driftrec.scorer", "driftrec.app.system"):
        assert _env_after_import(mod) == dict.fromkeys(THREAD_ENV), mod
