"""Every Kafka client of driftrec is made here, and every error of one is translated here.

One factory per client, each taking the bootstrap address and the transport security
(:class:`~driftrec.stream.security.KafkaSecurity`, applied here and nowhere else) and the
caller's options unchanged:

- kafka-python, for the synchronous tools that run once and end: :func:`producer`,
  :func:`consumer`, :func:`admin`;
- aiokafka, for the services' hot path (:class:`~driftrec.stream.kafka.KafkaSource`,
  :class:`~driftrec.stream.kafka.KafkaSink`): :func:`aio_consumer`, :func:`aio_producer`
  (to be called on the client's event loop).

:func:`map_kafka_errors` is the one translation of both libraries' exceptions into stream
errors (:mod:`driftrec.stream.errors`), chained to the original (``raise ... from exc``) so
that a caller can still read the broker's error code. The public names are re-exported by
:mod:`driftrec.stream.kafka`.

Examples
--------
>>> from driftrec.stream.errors import StreamUnavailable
>>> try:
...     with map_kafka_errors("h:9092", "send", on_loop=True):
...         raise RuntimeError("broker gone")
... except StreamUnavailable as exc:
...     print(exc, "|", repr(exc.__cause__))
Kafka at h:9092 failed (send): RuntimeError('broker gone') | RuntimeError('broker gone')
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator
from typing import Any

from .errors import StreamConfigError, StreamError, StreamSecurityError, StreamUnavailable
from .ports import Record
from .security import PLAINTEXT, KafkaSecurity, diagnose

__all__ = [
    "admin",
    "aio_consumer",
    "aio_producer",
    "consumer",
    "map_kafka_errors",
    "producer",
    "raise_if_refused",
    "result",
    "to_record",
]


# ---- errors ----------------------------------------------------------------------------
def raise_if_refused(bootstrap: str, security: KafkaSecurity | None, exc: BaseException | None) -> None:
    """:class:`StreamSecurityError` when TLS or authentication is why ``exc`` happened (or,
    with ``exc=None``, would make the next client fail: one connection, ~0.3 s with SCRAM).
    Nothing for PLAINTEXT.

    >>> raise_if_refused("h:9092", None, None)
    """
    if security is None or security.protocol == "PLAINTEXT":
        return
    why = diagnose(bootstrap, security)
    if why:
        raise StreamSecurityError(why) from None


def _no_broker(bootstrap: str, what: str) -> StreamUnavailable:
    return StreamUnavailable(
        f"no Kafka broker answers at {bootstrap} ({what}). Start one (scripts/services.sh up kafka "
        f"or docker compose up kafka) or set KAFKA_BOOTSTRAP"
    )


def _translated(
    exc: Exception, bootstrap: str, what: str, security: KafkaSecurity | None, on_loop: bool
) -> StreamError | None:
    """The stream error that ``exc`` stands for (``None``: not a client's error, let it
    through). Raises :class:`StreamSecurityError` itself when TLS or authentication is why."""
    import kafka.errors as ke

    if isinstance(exc, ke.KafkaError):  # kafka-python
        # kafka-python 2.x raises NoBrokersAvailable when nothing answers at the bootstrap
        # address; 3.x raises KafkaTimeoutError("Unable to bootstrap from ...")
        no_brokers = tuple(getattr(ke, n) for n in ("NoBrokersAvailable",) if hasattr(ke, n))
        if isinstance(exc, no_brokers) or (
            isinstance(exc, ke.KafkaTimeoutError) and "Unable to bootstrap" in str(exc)
        ):
            raise_if_refused(bootstrap, security, exc)
            return _no_broker(bootstrap, what)
        if isinstance(
            exc,
            (ke.KafkaTimeoutError, ke.KafkaConnectionError, ke.NodeNotReadyError, ke.RequestTimedOutError),
        ):
            return StreamUnavailable(
                f"Kafka at {bootstrap} did not answer in time ({what}): {exc}; "
                f"is the broker up and its advertised listener reachable?"
            )
        if isinstance(exc, ke.UnknownTopicOrPartitionError):
            return StreamConfigError(
                f"a topic is missing on {bootstrap} ({what}): {exc}; run `driftrec topics create`"
            )
        return StreamUnavailable(f"Kafka at {bootstrap} failed ({what}): {exc!r}")
    if not on_loop:
        return None
    # what a coroutine on aiokafka's event loop raised, or the wait for it
    if isinstance(exc, concurrent.futures.TimeoutError):
        return StreamUnavailable(f"Kafka at {bootstrap} did not answer in time ({what})")
    if type(exc).__name__ == "KafkaConnectionError":  # aiokafka's
        raise_if_refused(bootstrap, security, exc)
        return _no_broker(bootstrap, what)
    return StreamUnavailable(f"Kafka at {bootstrap} failed ({what}): {exc!r}")


@contextlib.contextmanager
def map_kafka_errors(
    bootstrap: str, what: str = "Kafka", security: KafkaSecurity | None = None, *, on_loop: bool = False
) -> Iterator[None]:
    """Translate the Kafka clients' exceptions raised inside into stream errors (chained).

    kafka-python's: nothing at the bootstrap address, timeouts, a missing topic (a
    :class:`StreamConfigError`), any other broker error. With ``on_loop`` (waiting for a
    coroutine run on aiokafka's event loop) every exception is the transport's: the wait
    timing out, a connection that fails, any other. Stream errors and, without
    ``on_loop``, exceptions of other libraries go through unchanged. With ``security``
    (not PLAINTEXT), a broker that does not let us in is diagnosed: an untrusted
    certificate or a refused password is a :class:`StreamSecurityError` saying which."""
    try:
        yield
    except StreamError:
        raise
    except Exception as exc:
        err = _translated(exc, bootstrap, what, security, on_loop)
        if err is None:
            raise
        raise err from exc


def result(
    fut: concurrent.futures.Future[Any], timeout_s: float, bootstrap: str, what: str, security: KafkaSecurity
) -> Any:
    """The result of a coroutine run on a client's event loop (``fut`` from
    ``asyncio.run_coroutine_threadsafe``), waiting at most ``timeout_s``: cancelled and a
    :class:`StreamUnavailable` when it takes longer, its errors translated."""
    with map_kafka_errors(bootstrap, what, security, on_loop=True):
        try:
            return fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise


def to_record(r: Any) -> Record:
    """A consumer record of either library as a transport :class:`Record`."""
    headers = tuple((k, v if isinstance(v, bytes) else bytes(v or b"")) for k, v in (r.headers or ()))
    return Record(
        r.topic,
        r.partition,
        r.offset,
        r.key,
        r.value if r.value is not None else b"",
        headers,
        r.timestamp or 0,
    )


# ---- kafka-python ----------------------------------------------------------------------
def _kafka_python(
    bootstrap: str, security: KafkaSecurity | None, client_id: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    kw: dict[str, Any] = {"bootstrap_servers": bootstrap.split(",")}
    if client_id is not None:  # None: the library's own (kafka-python-producer-1, ...)
        kw["client_id"] = client_id
    kw.update((security or PLAINTEXT).kafka_python_kwargs())
    kw.update(options)
    return kw


def producer(
    bootstrap: str, security: KafkaSecurity | None = None, *, client_id: str | None = None, **options: Any
) -> Any:
    """A kafka-python ``KafkaProducer`` with ``options`` (``acks``, ``linger_ms``, ...)."""
    from kafka import KafkaProducer

    return KafkaProducer(**_kafka_python(bootstrap, security, client_id, options))


def consumer(
    bootstrap: str, security: KafkaSecurity | None = None, *, client_id: str | None = None, **options: Any
) -> Any:
    """A kafka-python ``KafkaConsumer`` with ``options`` (``group_id``, ``fetch_max_wait_ms``, ...)."""
    from kafka import KafkaConsumer

    return KafkaConsumer(**_kafka_python(bootstrap, security, client_id, options))


def admin(
    bootstrap: str, security: KafkaSecurity | None = None, *, client_id: str | None = None, **options: Any
) -> Any:
    """A kafka-python ``KafkaAdminClient`` with ``options`` (``request_timeout_ms``)."""
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**_kafka_python(bootstrap, security, client_id, options))


# ---- aiokafka --------------------------------------------------------------------------
def _aiokafka(bootstrap: str, security: KafkaSecurity | None, options: dict[str, Any]) -> dict[str, Any]:
    kw: dict[str, Any] = {"bootstrap_servers": bootstrap.split(",")}
    kw.update((security or PLAINTEXT).aiokafka_kwargs())
    kw.update(options)
    return kw


def aio_consumer(bootstrap: str, security: KafkaSecurity | None = None, **options: Any) -> Any:
    """An aiokafka ``AIOKafkaConsumer`` with ``options``; call it on the client's loop."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(**_aiokafka(bootstrap, security, options))


def aio_producer(bootstrap: str, security: KafkaSecurity | None = None, **options: Any) -> Any:
    """An aiokafka ``AIOKafkaProducer`` with ``options``; call it on the client's loop."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**_aiokafka(bootstrap, security, options))
