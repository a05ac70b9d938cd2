"""Secrets never printed (DESIGN.md, "Security"): the one place that hides the password of
a URL before it reaches a message or a log line.

``redis://user:secret@host`` becomes ``redis://user:***@host``. :func:`redact_url` parses
one URL; :func:`redact` rewrites every ``user:password@`` in free text (an error message
that quotes a URL or a ``user:password@host:port`` netloc).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact", "redact_url"]

#: ``user:password@`` in free text: the user part has no ``:``/``@``/``/``; the password
#: runs to the last ``@`` of the same token (a raw ``@`` or ``:`` inside a password is
#: still hidden), stopping at white space, quotes and ``/``.
_USERINFO = re.compile(r"(?P<user>[^\s:@/'\"]*):(?P<pw>[^\s'\"/]+)@")


def redact(text: str) -> str:
    """``text`` with the password of every ``user:password@host`` in it replaced by ``***``.

    Examples
    --------
    >>> redact("cannot reach Redis at u:pw@h:6379 (rediss://:x@y/0)")
    'cannot reach Redis at u:***@h:6379 (rediss://:***@y/0)'
    >>> redact("redis://bob:pa:ss@w0rd@127.0.0.1:6379/0")
    'redis://bob:***@127.0.0.1:6379/0'
    >>> redact("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    'Error 111 connecting to 127.0.0.1:6379. Connection refused.'
    """
    return _USERINFO.sub(lambda m: f"{m['user']}:***@", text)


def redact_url(url: str) -> str:
    """One URL with its password (if any) replaced by ``***``; the rest unchanged.

    Examples
    --------
    >>> redact_url("redis://user:secret@host:6379/0?prefix=x")
    'redis://user:***@host:6379/0?prefix=x'
    >>> redact_url("redis://:secret@host")
    'redis://:***@host'
    >>> redact_url("redis://host:6379/0")
    'redis://host:6379/0'
    """
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return redact(url)
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
    except ValueError:  # not parseable as a URL: the text rule still hides a password
        return redact(url)
