"""driftrec: wiring (CLI, settings, the embedded runner, evaluation and benchmarks)."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
