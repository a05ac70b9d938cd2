"""driftrec sets its thread-pool defaults before numpy loads, and a user's own value wins."""

from __future__ import annotations

import os
import subprocess
import sys

from driftrec import THREAD_ENV

PROBE = (
    "import driftrec, os, numpy, json; print(json.dumps({k: os.environ.get(k) for k in driftrec.THREAD_ENV}))"
)


def _env_after_import(**overrides: str) -> dict[str, str]:
    import json

    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env.update(overrides)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_defaults_are_set_on_import() -> None:
    assert _env_after_import() == THREAD_ENV


def test_a_value_already_set_wins() -> None:
    got = _env_after_import(OMP_WAIT_POLICY="ACTIVE")
    assert got["OMP_WAIT_POLICY"] == "ACTIVE"
    assert got["OPENBLAS_THREAD_TIMEOUT"] == THREAD_ENV["OPENBLAS_THREAD_TIMEOUT"]
