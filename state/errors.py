"""State errors: one root, a few leaves."""

from __future__ import annotations


class StateError(Exception):
    """Root of every state failure."""


class StateUnavailable(StateError):
    """The backend cannot be reached (Redis down, file not writable). Retry or fix the URL."""


class StateConfigError(StateError, ValueError):
    """The state URL or a setting is wrong."""
