"""Flag converters: an argparse ``type=`` per kind of value, checked as the settings are
(:class:`driftrec.app.settings.Var`). A bad flag is one line naming it, exit status 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from driftrec.app.settings import Var

__all__ = ["flag_float", "flag_int", "flag_path", "options"]

T = TypeVar("T")


def flag_int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` for an integer in ``[lo, hi]`` (a bad one: one line, exit 2)."""
    return _flag(Var("", "", "int", None, "", lo=lo, hi=hi), "int")


def flag_float(
    lo: float | None = None, hi: float | None = None, above: float | None = None
) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite number in ``[lo, hi]`` (or ``(above, hi]``)."""
    if above is not None:
        return _flag(Var("", "", "float", None, "", lo=above, hi=hi, lo_open=True), "float")
    return _flag(Var("", "", "float", None, "", lo=lo, hi=hi), "float")


def flag_path(kind: str = "any") -> Callable[[str], str]:
    """An argparse ``type=`` for an existing path: ``file``, ``dir`` or ``any``."""

    def check(raw: str) -> str:
        p = Path(raw).expanduser()
        ok = p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
        if not ok:
            what = {"file": "file", "dir": "directory"}.get(kind, "file or directory")
            problem = "does not exist" if not p.exists() else f"is not a {what}"
            raise argparse.ArgumentTypeError(f"{raw!r} {problem}; allowed: an existing {what}")
        return raw

    check.__name__ = kind
    return check


def _flag(var: Var, name: str) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return var.value(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r}: {exc}; allowed: {var.allowed}") from None

    convert.__name__ = name
    return convert


def options(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """``cls`` (a dataclass of a command's arguments) from the parsed flags of the same
    names; ``given`` sets the fields that are not flags."""
    return cls(**{f.name: given[f.name] if f.name in given else getattr(args, f.name) for f in fields(cls)})
