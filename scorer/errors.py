"""Scorer errors: one root, a few leaves."""

from __future__ import annotations


class ScorerError(Exception):
    """Root of every scorer failure."""


class ScorerConfigError(ScorerError, ValueError):
    """A scorer setting is wrong; the message names it."""


class SwapRejected(ScorerError):
    """A new model version could not be prepared; the current one keeps serving."""
