"""One factory per Kafka client: the bootstrap list, the transport security and the
caller's options, nothing else (the client classes are stand-ins: no broker needed)."""

from __future__ import annotations

from typing import Any

import pytest

from driftrec.stream import KafkaSecurity, kafka

PW = "Pw-factory-1"  # noqa: S105
SASL = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "alice", PW)


class _Client:
    def __init__(self, **kw: Any) -> None:
        self.kw = kw


@pytest.fixture
def clients(monkeypatch):
    import aiokafka
    import kafka as kafka_python
    import kafka.admin

    for mod, name in (
        (kafka_python, "KafkaProducer"),
        (kafka_python, "KafkaConsumer"),
        (kafka.admin, "KafkaAdminClient"),
        (aiokafka, "AIOKafkaProducer"),
        (aiokafka, "AIOKafkaConsumer"),
    ):
        monkeypatch.setattr(mod, name, type(name, (_Client,), {}))


def test_kafka_python_clients_get_the_security_and_the_options_as_given(clients):
    p = kafka.producer("a:1,b:2", SASL, client_id="driftrec-replay", acks="all", linger_ms=5)
    assert type(p).__name__ == "KafkaProducer"
    assert p.kw["bootstrap_servers"] == ["a:1", "b:2"] and p.kw["client_id"] == "driftrec-replay"
    assert p.kw["acks"] == "all" and p.kw["linger_ms"] == 5
    assert p.kw["sasl_plain_password"] == PW and p.kw["security_protocol"] == "SASL_PLAINTEXT"
    c = kafka.consumer("a:1", None, group_id=None, fetch_max_wait_ms=20)
    assert c.kw == {"bootstrap_servers": ["a:1"], "group_id": None, "fetch_max_wait_ms": 20}
    a = kafka.admin("a:1", SASL)
    assert "client_id" not in a.kw  # the library's own when the caller names none
    assert type(a).__name__ == "KafkaAdminClient" and a.kw["sasl_mechanism"] == "SCRAM-SHA-512"


def test_aiokafka_clients(clients):
    p = kafka.aio_producer("a:1", SASL, client_id="driftrec", acks="all")
    assert type(p).__name__ == "AIOKafkaProducer"
    assert (
        p.kw["bootstrap_servers"] == ["a:1"] and p.kw["acks"] == "all" and p.kw["sasl_plain_password"] == PW
    )
    c = kafka.aio_consumer("a:1", None, group_id="g", enable_auto_commit=False)
    assert c.kw == {"bootstrap_servers": ["a:1"], "group_id": "g", "enable_auto_commit": False}


def test_no_other_stream_module_builds_a_client() -> None:
    from pathlib import Path

    import driftrec.stream as pkg

    for f in Path(pkg.__path__[0]).glob("*.py"):
        if f.name == "kafka_clients.py":
            continue
        text = f.read_text()
        for cls in ("KafkaProducer(", "KafkaConsumer(", "KafkaAdminClient("):
            assert cls not in text, f"{f.name} builds a {cls[:-1]}: use driftrec.stream.kafka's factories"
