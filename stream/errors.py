"""Stream errors: one root, a few leaves. Bad data is not an error (it is dead-lettered)."""

from __future__ import annotations


class StreamError(Exception):
    """Root of every transport failure."""


class StreamUnavailable(StreamError):
    """The broker cannot be reached or did not acknowledge; nothing was committed, retry."""


class StreamConfigError(StreamError, ValueError):
    """A transport setting is wrong (bootstrap address, topic layout)."""


class StreamSecurityError(StreamConfigError):
    """TLS or authentication with the broker failed (untrusted certificate, wrong password)."""
