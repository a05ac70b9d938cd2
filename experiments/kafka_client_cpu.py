#!/usr/bin/env python
"""CPU per message of aiokafka (driftrec's KafkaSink and KafkaSource) and kafka-python on
the same broker: process CPU time over all threads, acks=all, 3 partitions, synthetic
events, two rounds. The figures behind the choice in docs/operations.md, "Kafka clients".

    eval "$(scripts/services.sh env)"; python experiments/kafka_client_cpu.py "$KAFKA_BOOTSTRAP" 20000

Every client connects with the transport security of driftrec's settings
(KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*), e.g. ``eval "$(scripts/services.sh
env-secure)"`` for the SASL_SSL broker of ``scripts/services.sh up-secure``. The password is
never printed.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from driftrec.app.settings import Settings
from driftrec.stream import Message, encode, generate
from driftrec.stream.kafka import KafkaSink, KafkaSource, create_topics

BATCH = 4096  # the services' micro-batch


def cpu_us(fn: Callable[[], None], n: int) -> float:
    """CPU microseconds per message of ``fn`` (which handles ``n`` messages)."""
    c0 = time.process_time()
    fn()
    return round((time.process_time() - c0) / n * 1e6, 1)


def one_round(bootstrap: str, msgs: list[Message], out: dict[str, list[float]], security: Any) -> None:
    n = len(msgs)
    kw = security.kafka_python_kwargs()
    ta, tk = f"cpu{uuid.uuid4().hex[:8]}a", f"cpu{uuid.uuid4().hex[:8]}k"
    create_topics(bootstrap, [ta, tk], 3, security=security)
    try:
        mine = [Message(ta, m.value, m.key) for m in msgs]
        sink = KafkaSink(bootstrap, security=security)
        sink.send_many(mine[:10])  # metadata and connections before the clock
        out["produce_aiokafka_us"].append(
            cpu_us(lambda: [sink.send_many(mine[i : i + BATCH]) for i in range(0, n, BATCH)], n)
        )
        sink.close()

        p = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=2,
            retries=5,
            max_in_flight_requests_per_connection=1,
            batch_size=256 * 1024,
            **kw,
        )
        p.send(tk, b"x", b"warm").get(30)

        def kp_send() -> None:
            for i in range(0, n, BATCH):
                futs = [p.send(tk, value=m.value, key=m.key) for m in msgs[i : i + BATCH]]
                p.flush(30)
                for f in futs:
                    f.get(30)

        out["produce_kafka_python_us"].append(cpu_us(kp_send, n))
        p.close()

        src = KafkaSource(bootstrap, [ta], None, security=security)

        def aio_poll() -> None:
            got = 0
            while got < n + 10:
                got += len(src.poll(5000, 200))

        out["consume_aiokafka_us"].append(cpu_us(aio_poll, n))
        src.close()

        c = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=200, **kw
        )
        tps = [TopicPartition(ta, q) for q in range(3)]
        c.assign(tps)
        c.seek_to_beginning(*tps)

        def kp_poll() -> None:
            got = 0
            while got < n + 10:
                got += sum(len(v) for v in c.poll(timeout_ms=200, max_records=5000).values())

        out["consume_kafka_python_us"].append(cpu_us(kp_poll, n))
        c.close()
    finally:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, **kw)
        admin.delete_topics([ta, tk])
        admin.close()


def main(argv: list[str]) -> int:
    bootstrap, n = argv[0], int(argv[1]) if len(argv) > 1 else 20_000
    security = Settings.from_env().kafka_security()  # KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, ...
    print(f"broker {bootstrap} ({security.describe()})", file=sys.stderr, flush=True)
    events = generate("abrupt", n_events=n, n_users=2000, n_items=500, seed=7).events
    msgs = [Message("", encode(e), e.user_id.encode()) for e in events]
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "produce_aiokafka_us",
            "produce_kafka_python_us",
            "consume_aiokafka_us",
            "consume_kafka_python_us",
        )
    }
    for _ in range(2):
        one_round(bootstrap, msgs, out, security)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
