"""Both Kafka client libraries' exceptions become stream errors that say what to do, in
one translation (no broker needed)."""

import asyncio
import concurrent.futures
import threading

import aiokafka.errors as ae
import kafka.errors as ke
import pytest

from driftrec.stream import StreamConfigError, StreamSecurityError, StreamUnavailable
from driftrec.stream.kafka import map_kafka_errors, raise_if_refused, result
from driftrec.stream.security import PLAINTEXT


def _raised(exc: BaseException, on_loop: bool = False) -> BaseException:
    with pytest.raises(Exception) as info:
        with map_kafka_errors("127.0.0.1:1", "consumer", on_loop=on_loop):
            raise exc
    return info.value


def test_nothing_at_the_bootstrap_address_says_how_to_start_a_broker():
    # kafka-python 3.x: no NoBrokersAvailable any more, a timeout that names the bootstrap
    err = _raised(ke.KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1"))
    assert isinstance(err, StreamUnavailable)
    assert "no Kafka broker answers at 127.0.0.1:1" in str(err) and "scripts/services.sh up" in str(err)
    if hasattr(ke, "NoBrokersAvailable"):  # kafka-python 2.x
        assert "no Kafka broker answers" in str(_raised(ke.NoBrokersAvailable()))


def test_timeouts_missing_topics_and_other_broker_errors():
    assert "did not answer in time" in str(_raised(ke.RequestTimedOutError()))
    err = _raised(ke.UnknownTopicOrPartitionError())
    assert isinstance(err, StreamConfigError) and "driftrec topics create" in str(err)
    assert isinstance(_raised(ke.CoordinatorNotAvailableError()), StreamUnavailable)


def test_other_exceptions_pass_through_unchanged():
    assert type(_raised(ValueError("x"))) is ValueError
    refused = StreamSecurityError("authentication failed")
    assert _raised(refused) is refused and _raised(refused, on_loop=True) is refused


def test_the_original_error_is_chained():
    # a caller reads the broker's error code through __cause__ (Retry.permanent does)
    exc = ae.MessageSizeTooLargeError()
    err = _raised(exc, on_loop=True)
    assert isinstance(err, StreamUnavailable) and err.__cause__ is exc
    assert str(err) == "Kafka at 127.0.0.1:1 failed (consumer): MessageSizeTooLargeError()"


def test_on_the_event_loop_every_error_is_the_transports():
    err = _raised(ae.KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]"), on_loop=True)
    assert isinstance(err, StreamUnavailable) and "no Kafka broker answers at 127.0.0.1:1 (consumer)" in str(
        err
    )
    err = _raised(concurrent.futures.TimeoutError(), on_loop=True)
    assert str(err) == "Kafka at 127.0.0.1:1 did not answer in time (consumer)"
    assert isinstance(_raised(RuntimeError("closed"), on_loop=True), StreamUnavailable)


def test_a_wait_that_times_out_cancels_the_coroutine():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        fut = asyncio.run_coroutine_threadsafe(asyncio.sleep(5), loop)
        with pytest.raises(StreamUnavailable, match="did not answer in time \\(poll\\)"):
            result(fut, 0.05, "h:1", "poll", PLAINTEXT)
        assert fut.cancelled()
        done = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, 7), loop)
        assert result(done, 5.0, "h:1", "poll", PLAINTEXT) == 7
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_plaintext_is_never_refused():
    raise_if_refused("127.0.0.1:1", None, None)
    raise_if_refused("127.0.0.1:1", PLAINTEXT, RuntimeError("x"))
