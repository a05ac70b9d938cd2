"""Every docstring example in the installed package runs (driftrec.*, the four client
folders included: they install under driftrec.)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import driftrec

SUBPACKAGES = ["model", "stream", "state", "scorer", "learner", "app", "evaluation", "bench", "cli"]


def _modules() -> list[str]:
    names = ["driftrec"]
    for sub in SUBPACKAGES:
        pkg = importlib.import_module(f"driftrec.{sub}")
        names.append(pkg.__name__)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}.")]
    return sorted(set(names))


MODULES = _modules()


def test_every_subpackage_is_found() -> None:
    # a package-dir mapping that stopped working would silently leave doctests out
    for sub in SUBPACKAGES:
        assert any(m.startswith(f"driftrec.{sub}.") for m in MODULES), sub
    assert driftrec.__file__ is not None


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} doctest examples in {name} failed (output above)"
