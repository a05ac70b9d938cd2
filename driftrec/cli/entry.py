"""The ``driftrec`` command. Every subcommand explains itself with ``--help``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from driftrec.app.process import limit_library_logs, set_thread_env

# The entry point: the process's environment is set here, before numpy and torch load.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
set_thread_env()

DESCRIPTION = """\
driftrec: a streaming continual-learning recommender.

  driftrec demo                 the whole pipeline in one process (no Kafka, no Redis)
  driftrec eval                 drift tests: prequential evaluation with baselines
  driftrec generate             write a synthetic stream (events + items) to a folder
  driftrec bench scorer|swap|reencode|learner|fuzz|kafka   speed and memory figures
  driftrec faults [--json]      fault suite on the running Kafka + Redis (kills, restarts, garbage)
  driftrec topics create        create the Kafka topics
  driftrec replay LOG --to kafka       replay an event log into Kafka
  driftrec scorer / learner     run the services against Kafka (+ Redis)
  driftrec adapters list|rollback      inspect and roll back model versions
  driftrec users forget USER_ID...     erase users' state (and from the learner's window)
  driftrec settings [--check]   the environment variables (a table), or check the current ones
"""


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line on stderr (the usage is in ``--help``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``driftrec`` parser: every subcommand, each from its module of this package."""
    from . import bench, demo, evaluation, faults, services, settings, users

    parser = _Parser(
        prog="driftrec", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in (demo, evaluation, bench, faults, services, settings, users):
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad flag (one line already printed); --help exits 0 as usual
        if exc.code in (0, None):
            raise
        return int(exc.code) if isinstance(exc.code, int) else 2
    root = logging.getLogger()
    before = list(root.handlers)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "aiokafka", "faust", "mode", "urllib3", "httpx", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # a broker outage: a few lines a minute from the clients, not thousands a second (on the
    # handler made here: a host program's own handlers are its business)
    limit_library_logs([h for h in root.handlers if h not in before])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from driftrec.app.checks import ConfigError, redact
    from driftrec.learner import LearnerError
    from driftrec.model import ModelError
    from driftrec.state import StateError
    from driftrec.stream import LogFormatError, StreamError

    try:  # exit 2: a setting, a file or a service (Kafka unreachable or refusing us, Redis);
        # a command's own status stands otherwise (the scorer: 1 when counts do not reconcile)
        return int(args.func(args) or 0)
    except (
        ConfigError,
        LearnerError,
        ModelError,
        StateError,
        StreamError,
        LogFormatError,
        FileNotFoundError,
    ) as exc:
        print(redact(f"driftrec {args.command}: error: {exc}").replace("\n", " "), file=sys.stderr)
        return 2
    except SystemExit as exc:  # a subcommand's parser.error() after parsing
        if exc.code in (0, None):
            raise
        return int(exc.code) if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
