"""kafka-python's exceptions become stream errors that say what to do (no broker needed)."""

import kafka.errors as ke
import pytest

from driftrec.stream.errors import StreamConfigError, StreamUnavailable
from driftrec.stream.kafka import map_kafka_errors


def _raised(exc: BaseException) -> BaseException:
    with pytest.raises(Exception) as info:
        with map_kafka_errors("127.0.0.1:1", "consumer"):
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
