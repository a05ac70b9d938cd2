"""The ``driftrec`` command: every parser, flag converter and command function.

The top layer: it reads the flags and the environment, calls the library (``driftrec.app``,
``driftrec.evaluation``, ``driftrec.bench``) with plain arguments and prints the result.
Nothing below imports it, nor argparse.
"""

from __future__ import annotations

from .entry import build_parser, main

__all__ = ["build_parser", "main"]
