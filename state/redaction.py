"""Secrets never printed (DESIGN.md, "Security"): the one place that hides the password of
a URL before it reaches a message or a log line.

``redis://user:secret@host`` becomes ``redis://user:***@host``. Nothing here parses a URL:
everything between ``://`` and the last ``@`` of the authority is masked (the user name is
kept when it is plain), so a password holding a raw ``/``, ``?``, ``#``, a space or an
``@`` is hidden as well as a well-formed one. :func:`redact_url` masks one URL (a value
that is known to be one URL, spaces included); :func:`redact` rewrites every URL and every
``user:password@`` in free text (an error message that quotes a URL or a
``user:password@host:port`` netloc). :func:`unencoded_userinfo` says which character of a
URL's user or password must be percent-encoded before a client can parse it.
"""

from __future__ import annotations

import re

__all__ = ["PERCENT_ENCODE", "redact", "redact_url", "unencoded_userinfo"]

#: ``scheme://AUTH@`` in free text: AUTH runs to the last ``@`` of the token (stopping at
#: white space and quotes); in a quoted URL (``'redis://...'``, as ``repr`` quotes it), to
#: the last ``@`` before the closing quote, spaces included.
_QUOTED_URL_AUTH = re.compile(
    r"(?P<q>['\"])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<auth>[^'\"\n]*)@(?=[^'\"\n@]*(?P=q))"
)
_URL_AUTH = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<auth>[^\s'\"]*)@")
#: ``user:password@`` in free text (no scheme): the user part has no ``:``/``@``/``/``; the
#: password runs to the last ``@`` of the same token (a raw ``@``, ``:`` or ``/`` inside a
#: password is still hidden), stopping at white space and quotes.
_USERINFO = re.compile(r"(?P<user>[^\s:@/'\"]*):(?!//)(?P<pw>[^\s'\"]+)@")
#: The characters a URL's user or password must hold percent-encoded (their codes).
_ENCODE = {"/": "%2F", "?": "%3F", "#": "%23", " ": "%20", "\t": "%09", "\n": "%0A"}
#: How to write such a password (the end of a message).
PERCENT_ENCODE = (
    "percent-encode the user and password in the URL ('/' as %2F, '?' as %3F, '#' as %23, "
    "a space as %20, '%' as %25; python3 -c 'import urllib.parse,sys; "
    'print(urllib.parse.quote(sys.argv[1], safe=""))\' PASSWORD)'
)


def _masked(auth: str) -> str:
    """The user info ``auth`` with its password masked (``***`` alone when the user part is
    not a plain name, or there is no ``:``)."""
    user, sep, _ = auth.partition(":")
    if sep and not any(c in user for c in "/?#@ \t"):
        return f"{user}:***"
    return "***"


def redact(text: str) -> str:
    """``text`` with the password of every URL and every ``user:password@host`` in it
    replaced by ``***``.

    Examples
    --------
    >>> redact("cannot reach Redis at u:pw@h:6379 (rediss://:x@y/0)")
    'cannot reach Redis at u:***@h:6379 (rediss://:***@y/0)'
    >>> redact("redis://bob:pa:ss@w0rd@127.0.0.1:6379/0")
    'redis://bob:***@127.0.0.1:6379/0'
    >>> redact("STATE_URL='redis://u:Zx9 S/Q@127.0.0.1:16380/0': bad port")
    "STATE_URL='redis://u:***@127.0.0.1:16380/0': bad port"
    >>> redact("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    'Error 111 connecting to 127.0.0.1:6379. Connection refused.'
    """
    text = _QUOTED_URL_AUTH.sub(lambda m: f"{m['q']}{m['scheme']}{_masked(m['auth'])}@", text)
    text = _URL_AUTH.sub(lambda m: f"{m['scheme']}{_masked(m['auth'])}@", text)
    return _USERINFO.sub(lambda m: f"{m['user']}:***@", text)


def redact_url(url: str) -> str:
    """One URL with everything between ``://`` and its last ``@`` masked (the user name
    kept when it is plain); the rest unchanged. No parsing: a password with a ``/``, a
    space or an ``@`` is masked whole.

    Examples
    --------
    >>> redact_url("redis://user:secret@host:6379/0?prefix=x")
    'redis://user:***@host:6379/0?prefix=x'
    >>> redact_url("redis://:secret@host")
    'redis://:***@host'
    >>> redact_url("redis://u:Zx9 Se/cret@127.0.0.1:99999/0")
    'redis://u:***@127.0.0.1:99999/0'
    >>> redact_url("redis://host:6379/0")
    'redis://host:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return redact(url)
    auth, at, host = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}://{_masked(auth)}@{host}"


def unencoded_userinfo(url: str) -> str | None:
    """What makes the user info of ``url`` unparseable (a character a URL needs
    percent-encoded there, named with its code), or ``None``. The secret is never quoted.

    Examples
    --------
    >>> unencoded_userinfo("redis://u:Zx9/Q@127.0.0.1:16380/0")
    "the user or password holds a raw '/' (write it as %2F)"
    >>> unencoded_userinfo("redis://u:p%2Fw@h:6379/0") is None
    True
    """
    _, sep, rest = url.partition("://")
    if not sep:
        return None
    auth = rest.rpartition("@")[0]
    for c, code in _ENCODE.items():
        if c in auth:
            shown = {" ": "space", "\t": "tab", "\n": "newline"}.get(c, repr(c))
            return f"the user or password holds a raw {shown} (write it as {code})"
    return None
