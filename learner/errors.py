"""Learner errors: one root, a few leaves."""

from __future__ import annotations


class LearnerError(Exception):
    """Root of every learner failure."""
