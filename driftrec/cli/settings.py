"""``driftrec settings``: the environment variables as a markdown table (the README's is
generated from it), or a check of the current ones."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftrec.app.checks import ConfigError, check_services
from driftrec.app.settings import VARS, Settings, check_env

README_START, README_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def update_readme(path: str | Path) -> bool:
    """Write :func:`markdown_table` between the README's markers; whether the file changed."""
    p = Path(path)
    text = p.read_text()
    if README_START not in text or README_END not in text:
        raise ConfigError(f"{p}: no {README_START} ... {README_END} markers; allowed: a README with both")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{markdown_table()}\n{README_END}{tail}"
    if new != text:
        p.write_text(new)
    return new != text


def markdown_table() -> str:
    """The README's configuration table (``driftrec settings``)."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for v in VARS:
        default = (
            "(none)"
            if v.default is None
            else (
                ("1" if v.default else "0")
                if v.kind == "bool"
                else (str(v.default) if v.default != "" else "(empty)")
            )
        )
        if v.service_default is not None:
            default += f" (services: {v.service_default})"
        meaning = v.help + (f"; flag `{v.flag}`" if v.flag else "")
        rows.append(
            f"| `{v.name}` | `{default}` | {v.allowed} | {meaning} |".replace("`(none)`", "(none)").replace(
                "`(empty)`", "(empty)"
            )
        )
    return "\n".join(rows)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "settings",
        help="the environment variables: a table, or check the current ones",
        description="Print every environment variable driftrec reads as a markdown table "
        "(name, default, allowed values, meaning), or with --check validate "
        "the current environment (exit status 2 if a value is bad).",
    )
    p.add_argument("--check", action="store_true", help="validate the current environment")
    p.add_argument(
        "--connect",
        action="store_true",
        help="with --check: also reach the Kafka bootstrap servers and a Redis STATE_URL",
    )
    p.add_argument(
        "--update-readme",
        metavar="PATH",
        help="write the table between the settings-table markers of PATH (README.md)",
    )
    p.set_defaults(func=cmd_settings)


def cmd_settings(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if args.update_readme:
        changed = update_readme(args.update_readme)
        print(f"{args.update_readme}: {'updated' if changed else 'already up to date'}")
        return 0
    if not args.check:
        print(markdown_table())
        return 0
    errors = check_env(env)
    if not errors and args.connect:
        errors = check_services(Settings.from_env(env))
    for e in errors:
        print(f"driftrec settings: error: {e}", file=sys.stderr)
    if errors:
        return 2
    shown = [f"{v.name}={v.shown(env[v.name])}" for v in VARS if env.get(v.name, "").strip()]
    print("ok" + (": " + ", ".join(shown) if shown else ": every variable at its default"))
    return 0
