"""Retry: outages are retried for SERVICE_RETRY_S, broker refusals are not."""

from __future__ import annotations

import threading

from driftrec.app.metrics import Metrics
from driftrec.app.supervision import Retry
from driftrec.state import StateUnavailable
from driftrec.stream.errors import StreamUnavailable


def _refusal() -> StreamUnavailable:
    from aiokafka.errors import MessageSizeTooLargeError

    try:
        try:
            raise MessageSizeTooLargeError()
        except MessageSizeTooLargeError as exc:
            raise StreamUnavailable("Kafka at h:1 failed (send): MessageSizeTooLargeError()") from exc
    except StreamUnavailable as exc:
        return exc


def test_outage_is_retried_then_given_up(caplog):
    m = Metrics("scorer")
    r = Retry("scorer", limit_s=0.3, metrics=m, stop=threading.Event(), first_delay_s=0.05)
    r.started()
    assert 'driftrec_up{dependency="redis"} 1.0' in m.text()
    exc = StateUnavailable("cannot reach Redis at redis://:***@h:1: Connection refused")
    assert r.failed(exc)
    assert 'driftrec_up{dependency="redis"} 0.0' in m.text()
    assert "redis unreachable (attempt 1" in caplog.text and "Connection refused" in caplog.text
    r.started()  # built again: the outage goes on until progress
    assert r.since is not None
    r.progress(3)
    assert r.since is None and 'driftrec_up{dependency="redis"} 1.0' in m.text()
    while r.failed(StreamUnavailable("no Kafka broker answers at h:1")):
        pass
    assert 'driftrec_up{dependency="kafka"} 0.0' in m.text() and "giving up" in caplog.text


def test_a_broker_refusal_is_not_an_outage():
    r = Retry("scorer", limit_s=60, stop=threading.Event())
    assert Retry.permanent(_refusal()) and not r.failed(_refusal())
    assert not Retry.permanent(StreamUnavailable("did not answer in time"))
