"""Transport security of every Kafka client: one :class:`KafkaSecurity`, built once from
settings (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_*``), turned into the
keyword arguments of each client library:

- :meth:`KafkaSecurity.aiokafka_kwargs`: ``AIOKafkaConsumer``/``AIOKafkaProducer``/admin
  (:class:`~driftrec.stream.kafka.KafkaSource`, :class:`~driftrec.stream.kafka.KafkaSink`)
- :meth:`KafkaSecurity.kafka_python_kwargs`: kafka-python's admin, producer and consumer
  (topics, replay, :func:`~driftrec.stream.kafka.read_topic`)
- :meth:`KafkaSecurity.faust_credentials`: faust's ``broker_credentials``

The password never appears in ``repr``, in a log line or in an error message;
:func:`explain` turns a client's failure into one line that says whether authentication
or TLS failed.

Examples
--------
>>> KafkaSecurity().kafka_python_kwargs()
{}
>>> s = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "alice", "s3cret")
>>> s
KafkaSecurity(SASL_PLAINTEXT, SCRAM-SHA-512, user 'alice')
>>> sorted(s.kafka_python_kwargs())
['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol']
>>> KafkaSecurity("SASL_SSL", "PLAIN", "alice", None)
Traceback (most recent call last):
...
driftrec.stream.errors.StreamConfigError: KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from .errors import StreamConfigError

__all__ = ["MECHANISMS", "PROTOCOLS", "KafkaSecurity", "explain"]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, repr=False)
class KafkaSecurity:
    """How the Kafka clients authenticate and encrypt (default: PLAINTEXT, nothing).

    Parameters
    ----------
    protocol : PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    mechanism : the SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); SASL only
    username, password : the SASL user; SASL only
    cafile : PEM file of the CA(s) that signed the broker's certificate (default: the
        system's trust store); SSL only
    certfile, keyfile : PEM client certificate and key (mutual TLS); optional
    check_hostname : verify that the broker's certificate names the host connected to
    """

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, compare=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise StreamConfigError(
                f"KAFKA_SECURITY_PROTOCOL={self.protocol!r}; allowed: {', '.join(PROTOCOLS)}"
            )
        if self.sasl:
            if self.mechanism is None:
                object.__setattr__(self, "mechanism", "PLAIN")
            if self.mechanism not in MECHANISMS:
                raise StreamConfigError(
                    f"KAFKA_SASL_MECHANISM={self.mechanism!r}; allowed: {', '.join(MECHANISMS)}"
                )
            if not self.username or not self.password:
                raise StreamConfigError(
                    f"KAFKA_SECURITY_PROTOCOL={self.protocol} needs KAFKA_SASL_USERNAME and "
                    f"KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
                )
        if self.keyfile and not self.certfile:
            raise StreamConfigError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (the client certificate)")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def __repr__(self) -> str:
        return f"KafkaSecurity({self.describe()})"

    def describe(self) -> str:
        """One line for logs: protocol, mechanism and user, never the password."""
        parts = [self.protocol]
        if self.sasl:
            parts += [str(self.mechanism), f"user {self.username!r}"]
        if self.tls and self.cafile:
            parts.append(f"CA {self.cafile}")
        if self.tls and self.certfile:
            parts.append(f"client certificate {self.certfile}")
        return ", ".join(parts)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of aiokafka and faust (``None`` without TLS)."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.cafile or None)
            ctx.check_hostname = self.check_hostname
            if self.certfile:
                ctx.load_cert_chain(self.certfile, self.keyfile or None)
        except (OSError, ssl.SSLError) as exc:
            raise StreamConfigError(
                f"Kafka TLS files unusable (KAFKA_SSL_CAFILE={self.cafile!r}, "
                f"KAFKA_SSL_CERTFILE={self.certfile!r}): {exc}"
            ) from None
        return ctx

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``AIOKafkaConsumer``, ``AIOKafkaProducer`` and the admin."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        if self.sasl:
            out.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return out

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of kafka-python's ``KafkaAdminClient``, ``KafkaProducer``,
        ``KafkaConsumer``."""
        if self.protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out["ssl_context"] = self.ssl_context()
            out["ssl_check_hostname"] = self.check_hostname
        if self.sasl:
            out.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return out

    def faust_credentials(self) -> Any:
        """faust's ``broker_credentials`` (``None`` for PLAINTEXT)."""
        if self.protocol == "PLAINTEXT":
            return None
        from faust.auth import SASLCredentials, SSLCredentials

        if self.sasl:
            creds = SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=self.ssl_context(),
                mechanism=self.mechanism,
            )
            return creds
        return SSLCredentials(self.ssl_context())

    def faust_config(self) -> dict[str, Any]:
        """The faust ``App`` settings (``broker_credentials``), empty for PLAINTEXT."""
        creds = self.faust_credentials()
        return {} if creds is None else {"broker_credentials": creds}

    def scrub(self, text: str) -> str:
        """``text`` without the password (if it ever held it)."""
        if self.password and self.password in text:
            text = text.replace(self.password, "***")
        return text


PLAINTEXT = KafkaSecurity()


class _NoPasswordInClientConfig(logging.Filter):
    """kafka-python's ``KafkaAdminClient`` logs its whole configuration at DEBUG, the SASL
    password included: the password is replaced by ``***`` before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict) and args.get("sasl_plain_password"):
            record.args = ({**args, "sasl_plain_password": "***"},)
        elif isinstance(args, tuple) and any(
            isinstance(a, dict) and a.get("sasl_plain_password") for a in args
        ):
            record.args = tuple(
                {**a, "sasl_plain_password": "***"}
                if isinstance(a, dict) and a.get("sasl_plain_password")
                else a
                for a in args
            )
        return True


logging.getLogger("kafka.admin.client").addFilter(_NoPasswordInClientConfig())

#: Words in a client's error that mean the SASL exchange failed.
_AUTH_WORDS = ("authentication", "sasl", "scram", "credentials", "invalid username", "password")
#: ... and that the TLS handshake failed.
_TLS_WORDS = ("certificate", "ssl", "tls", "handshake", "wrong version number")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in out and len(out) < 10:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def explain(exc: BaseException, security: KafkaSecurity, bootstrap: str) -> str | None:
    """One line naming what failed when ``exc`` is an authentication or a TLS failure
    against ``bootstrap`` (``None`` otherwise). Never holds the password."""
    chain = _chain(exc)
    names = " ".join(type(e).__name__ for e in chain).lower()
    text = security.scrub(" | ".join(str(e) for e in chain)).lower()
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "certificate verify failed" in text:
        why = (
            next(
                (
                    e.verify_message
                    for e in chain
                    if isinstance(e, ssl.SSLCertVerificationError) and getattr(e, "verify_message", None)
                ),
                None,
            )
            or "certificate verify failed"
        )
        return (
            f"TLS to Kafka at {bootstrap} failed: the broker's certificate is not trusted ({why}); "
            f"set KAFKA_SSL_CAFILE to the CA that signed it"
        )
    if (
        "saslauthenticationfailed" in names
        or "authenticationfailed" in names
        or (security.sasl and any(w in text for w in _AUTH_WORDS))
    ):
        return (
            f"authentication to Kafka at {bootstrap} failed ({security.mechanism}, user "
            f"{security.username!r}): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE)"
        )
    if any(isinstance(e, ssl.SSLError) for e in chain) or (
        security.tls and any(w in text for w in _TLS_WORDS)
    ):
        return f"TLS to Kafka at {bootstrap} failed: {security.scrub(str(chain[-1]))[:200]}"
    return None


def diagnose(bootstrap: str, security: KafkaSecurity, timeout_s: float = 10.0) -> str | None:
    """Connect once to each bootstrap server (TLS handshake, SASL exchange) and return one
    line naming what failed (TLS or authentication), or ``None`` when one server accepts us
    (or nothing answers at all: that is not a security problem).

    The clients themselves hide why a connection failed ("Unable to bootstrap"); this is
    what turns a wrong password into "authentication ... failed" within a second.
    """
    if security.protocol == "PLAINTEXT":
        return None
    import asyncio

    from aiokafka.conn import create_conn

    kw = security.aiokafka_kwargs()

    async def one(host: str, port: int) -> None:
        conn = await asyncio.wait_for(
            create_conn(
                host, port, client_id="driftrec-probe", request_timeout_ms=int(timeout_s * 1000), **kw
            ),
            timeout_s,
        )
        conn.close()

    why: str | None = None
    for hp in bootstrap.split(","):
        host, _, port = hp.strip().rpartition(":")
        try:
            asyncio.run(one(host.strip("[]"), int(port)))
            return None
        except (ConnectionRefusedError, OSError) as exc:
            if isinstance(exc, ssl.SSLError):
                why = explain(exc, security, bootstrap) or why
        except Exception as exc:  # noqa: BLE001 - classified below
            why = (
                explain(exc, security, bootstrap)
                or why
                or (
                    f"Kafka at {bootstrap} did not complete a {security.protocol} connection "
                    f"({type(exc).__name__}): does the listener speak {security.protocol}? (KAFKA_SECURITY_PROTOCOL)"
                )
            )
    return why
