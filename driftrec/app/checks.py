"""The checks behind the settings: what a value may hold, and whether a service answers.

- value checks (:func:`directory`, :func:`model_ref`, :func:`bootstrap`, :func:`state_url`,
  ...): each takes the raw string and returns the value, or raises :class:`ValueError`
  whose message is the problem (the declaration adds the name, the value and what is
  allowed: :class:`driftrec.app.settings.Var`);
- :func:`read_secret_file`: a password held in a file;
- network checks (:func:`check_kafka`, :func:`check_services`): a fast, quiet answer on
  whether Kafka and a Redis state are reachable.

A setting that is wrong is a :class:`ConfigError` whose message is one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from driftrec.scorer.config import INDEX_SPEC
from driftrec.state import BACKENDS, PERCENT_ENCODE, StateError, open_state, redact_url, unencoded_userinfo
from driftrec.state import redact as _redact
from driftrec.stream import StreamError, StreamSecurityError
from driftrec.stream.security import diagnose

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "ConfigError",
    "answers",
    "artifact_key",
    "bool_value",
    "bootstrap",
    "check_kafka",
    "check_services",
    "directory",
    "model_ref",
    "read_secret_file",
    "readable_file",
    "redact",
    "redact_url",
    "redis_url",
    "state_url",
    "topic_prefix",
    "writable_directory",
]


class ConfigError(ValueError):
    """A setting is wrong; the message (one line) names the variable or flag."""


def redact(text: str) -> str:
    """``text`` with the password of every ``user:password@host`` in it replaced by ``***``
    (the one helper, :func:`driftrec.state.redact`, which the Redis errors use too).

    >>> redact("cannot reach Redis at u:pw@h:6379 (rediss://:x@y/0)")
    'cannot reach Redis at u:***@h:6379 (rediss://:***@y/0)'
    """
    return _redact(text)


# ------------------------------------------------------------ value checks ---
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def bool_value(raw: str) -> bool:
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("not a boolean")


def directory(raw: str) -> str:
    """A directory that exists or can be created: no part of it is a regular file."""
    p = Path(raw).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise ValueError("not a directory" if q == p else f"{q} is not a directory")
            if not os.access(q, os.W_OK):
                raise ValueError(f"{q} is not writable")
            break
    return str(p)


def writable_directory(path: str, label: str) -> str:
    """``path``, created if missing, once a file can be written in it: a start check of a
    directory a service writes to (the learner's ``ARTIFACT_DIR``), so that a path nobody can
    create fails at start, in one line, and not at the first training. :class:`ConfigError`
    naming ``label`` otherwise."""
    import tempfile

    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".driftrec-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{label}={path!r}: cannot create or write it ({exc.strerror or type(exc).__name__}); "
            f"allowed: a directory this user can create and write"
        ) from None
    return str(p)


def model_ref(raw: str) -> str:
    """A local model directory (a path: must exist) or a Hugging Face id."""
    if raw.startswith(("/", "./", "../", "~")) or os.sep in raw and Path(raw).expanduser().exists():
        p = Path(raw).expanduser()
        if not p.is_dir():
            raise ValueError("no such model directory")
        return str(p)
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", raw):
        raise ValueError("neither an existing directory nor a Hugging Face id")
    return raw


def bootstrap(raw: str) -> str:
    for hp in raw.split(","):
        host, _, port = hp.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{hp.strip()!r} is not HOST:PORT")
    return raw


def state_url(raw: str) -> str:
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in BACKENDS:
        raise ValueError(f"unknown scheme {scheme!r}")
    if scheme == "file":
        path = raw[len("file://") :]
        if not path:
            raise ValueError("names no file")
        if Path(path).is_dir():
            raise ValueError("is a directory, not a file")
        directory(str(Path(path).parent))
    elif scheme in ("redis+cluster", "rediss+cluster"):
        cluster_url(raw)
    elif scheme != "memory":
        redis_url(raw)
    return raw


def cluster_url(raw: str) -> str:
    """``redis+cluster://[user:password@]host:port[,host:port...][?prefix=NAME]``: every
    node a HOST:PORT."""
    why = unencoded_userinfo(raw)
    if why:
        raise ValueError(f"{why}; {PERCENT_ENCODE}")
    rest = raw.split("://", 1)[1]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    nodes = authority.rsplit("@", 1)[-1]
    if not nodes:
        raise ValueError("names no node")
    for node in nodes.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"node {node.strip()!r} is not HOST:PORT")
    return raw


def redis_url(raw: str) -> str:
    why = unencoded_userinfo(raw)
    if why:  # checked before any parsing: the parts of such a URL are not what they seem
        raise ValueError(f"{why}; {PERCENT_ENCODE}")
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unknown scheme {parts.scheme!r}")
    tls = sorted({k for k, _ in parse_qsl(parts.query) if k.startswith("ssl")})
    if tls and parts.scheme != "rediss":
        raise ValueError(f"?{tls[0]}= is a TLS option: use rediss:// (Redis over TLS)")
    try:
        parts.port  # noqa: B018 - parses the port
    except ValueError:
        raise ValueError("bad port") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("names no host")
    return raw


def readable_file(raw: str) -> str:
    """An existing, readable file (a CA bundle, a certificate, a key, a password file)."""
    p = Path(raw).expanduser()
    if not p.is_file():
        raise ValueError("no such file" if not p.exists() else "not a file")
    if not os.access(p, os.R_OK):
        raise ValueError("not readable")
    return str(p)


def artifact_key(raw: str) -> str:
    if len(raw) < 16:
        raise ValueError("too short")
    return raw


def topic_prefix(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{0,200}", raw):
        raise ValueError("not a Kafka topic name")
    return raw


def index_spec(raw: str) -> str:
    if not INDEX_SPEC.fullmatch(raw):
        raise ValueError("not a candidate index this scorer builds")
    return raw


def read_secret_file(path: str, label: str) -> str:
    """The secret held in ``path`` (one line; the trailing newline dropped); the message of a
    failure names the variable and the file, never the content."""
    try:
        value = Path(path).expanduser().read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{label}={path!r}: cannot read it ({type(exc).__name__}); allowed: a readable file "
            f"holding the password"
        ) from None
    if not value:
        raise ConfigError(
            f"{label}={path!r}: the file is empty; allowed: a readable file holding the password"
        )
    return value


# ---------------------------------------------------------- network checks ---
def check_kafka(
    bootstrap: str, label: str = "KAFKA_BOOTSTRAP", timeout_s: float = 5.0, security: Any = None
) -> None:
    """:class:`ConfigError` (one line) unless one of the bootstrap servers accepts a TCP
    connection: a fast, quiet answer instead of a client's retries. With ``security`` (a
    ``KafkaSecurity`` other than PLAINTEXT) it also lets us in: an untrusted certificate or
    a refused password is a ``StreamSecurityError`` saying which (never the password)."""
    import socket

    why = ""
    for hp in bootstrap.split(","):
        host, _, port = hp.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
        except (OSError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            continue
        if security is not None and security.protocol != "PLAINTEXT":
            refused = diagnose(bootstrap, security, timeout_s=max(timeout_s, 10.0))
            if refused:
                raise StreamSecurityError(refused)
        return
    raise ConfigError(
        f"{label}={bootstrap!r}: no Kafka broker reachable ({why}); allowed: the address of a "
        f"running broker (scripts/services.sh up kafka)"
    )


def answers(s: Settings, timeout_s: float = 0.5) -> Callable[[str], bool]:
    """``dependency -> whether it accepts a TCP connection now`` (``kafka``: one of the
    bootstrap servers; ``redis``: a Redis ``STATE_URL``'s server, always True for the other
    backends), each within ``timeout_s``: how a service backing off during an outage
    (:class:`~driftrec.app.supervision.Retry`) sees it end before its next attempt is due."""
    import socket

    def tcp(host: str, port: int) -> bool:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            return True
        except OSError:
            return False

    def kafka() -> bool:
        for hp in s.kafka_bootstrap.split(","):
            host, _, port = hp.strip().rpartition(":")
            if port.isdigit() and tcp(host.strip("[]"), int(port)):
                return True
        return False

    def redis() -> bool:
        parts = urlsplit(s.state_url)
        if parts.scheme in ("redis", "rediss"):
            return tcp(parts.hostname or "127.0.0.1", parts.port or 6379)
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout_s)
            try:
                sock.connect(parts.path)
                return True
            except OSError:
                return False
            finally:
                sock.close()
        return True

    return lambda dep: kafka() if dep == "kafka" else redis()


def check_services(s: Settings) -> list[str]:
    """One line per service of ``s`` that cannot be reached (Kafka bootstrap, Redis state)."""
    errors = []
    try:
        check_kafka(s.kafka_bootstrap, security=s.kafka_security())
    except (ConfigError, StreamError) as exc:
        errors.append(str(exc))
    if s.state_url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        errors.extend(_check_state(s.state_url, s.redis_options()))
    return errors


def _check_state(url: str, options: Mapping[str, Any] | None = None) -> list[str]:
    try:
        open_state(url, **dict(options or {})).close()
    except StateError as exc:
        return [f"STATE_URL={redact_url(url)!r}: {redact(str(exc))}"]
    return []
