"""Replay a recorded log into Kafka (kafka-python): ``driftrec replay LOG --to kafka``.

The catalog goes to ``items`` first (key = item_id, acknowledged before any event is
sent), then the events, in event-time order, to their per-type topic with key = user_id,
so that one user's events land on one partition and keep their order.

Pacing: ``speed`` replays by event time (``0`` = as fast as possible, ``60`` = sixty times
real time: an hour of log in a minute); ``rate`` sends a steady N events per second
instead. Sends are asynchronous; every acknowledgement is checked before returning.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import kafka_clients, topics
from .errors import StreamConfigError
from .events import Event, Item, encode, encode_item
from .security import PLAINTEXT, KafkaSecurity

log = logging.getLogger("driftrec.stream.replay")

#: Above this gap between schedule and clock, sleep instead of busy-sending.
_SLEEP_MIN_S = 0.0005


@dataclass
class ReplayStats:
    items: int = 0
    events: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    max_behind_ms: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class Pacer:
    """When the i-th event (event time ``ts``) is due, in ``time.monotonic()`` seconds.

    Examples
    --------
    >>> p = Pacer(speed=60, first_ts=0, start=100.0)
    >>> p.due(0, 60_000)  # one minute of event time at 60x is one second of wall time
    101.0
    >>> Pacer(rate=1000, start=0.0).due(500, 0)
    0.5
    >>> Pacer(speed=0).due(10**6, 10**12)  # as fast as possible
    0.0
    """

    def __init__(
        self, speed: float = 0.0, rate: float = 0.0, first_ts: int = 0, start: float | None = None
    ) -> None:
        if speed < 0 or rate < 0:
            raise StreamConfigError("--speed and --rate must be >= 0")
        self.speed, self.rate, self.first_ts = speed, rate, first_ts
        self.start = time.monotonic() if start is None else start

    def due(self, i: int, ts: int) -> float:
        if self.rate > 0:
            return self.start + i / self.rate
        if self.speed > 0:
            return self.start + max(0, ts - self.first_ts) / 1000.0 / self.speed
        return 0.0


def replay_to_kafka(
    events: Sequence[Event],
    items: Sequence[Item],
    bootstrap: str,
    prefix: str = "",
    speed: float = 0.0,
    rate: float = 0.0,
    restamp: bool = False,
    progress: bool = True,
    producer: Any = None,
    on_sent: Callable[[Event, float], None] | None = None,
    security: KafkaSecurity | None = None,
) -> ReplayStats:
    """Send ``items`` then ``events`` (sorted by ts) to Kafka; return what was sent.

    ``restamp`` replaces each event's ``ts`` with the wall-clock time it is sent (so
    event-to-update latency can be measured downstream).
    """
    st = ReplayStats()
    own = producer is None
    sec = security or PLAINTEXT
    if own:  # kafka-python only says that TLS or the password is refused after 30 s, and not why
        kafka_clients.raise_if_refused(bootstrap, sec, None)
    with kafka_clients.map_kafka_errors(bootstrap, "replay producer", sec):
        if own:
            # idempotent: per-partition order holds with several requests in flight (and a
            # retry cannot duplicate), so one slow acknowledgement does not hold back the next
            # requests (with one in flight, a paced replay queued behind every slow one)
            producer = kafka_clients.producer(
                bootstrap,
                sec,
                client_id="driftrec-replay",
                acks="all",
                linger_ms=5,
                batch_size=512 * 1024,
                enable_idempotence=True,
                max_in_flight_requests_per_connection=5,
                retries=5,
            )
    t0 = time.monotonic()
    try:
        with kafka_clients.map_kafka_errors(bootstrap, "replay items"):
            item_topic = topics.prefixed(prefix, topics.ITEMS)
            futs = [producer.send(item_topic, key=it.item_id.encode(), value=encode_item(it)) for it in items]
            producer.flush(timeout=60)
            for f in futs:
                f.get(timeout=60)
            st.items = len(futs)
        evs = sorted(events, key=lambda e: e.ts)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=len(evs), unit="ev", file=sys.stderr, desc="replay", mininterval=0.5, dynamic_ncols=True
            )
        with kafka_clients.map_kafka_errors(bootstrap, "replay metadata"):
            # the event topics' metadata before the clock starts: otherwise the first send
            # waits for it (~300 ms here) and a paced replay then sends that time's events
            # in one burst
            for t in sorted({topics.prefixed(prefix, topics.topic_for(e.type)) for e in evs}):
                producer.partitions_for(t)
        pacer = Pacer(speed, rate, evs[0].ts if evs else 0)
        pending: list[Any] = []
        with kafka_clients.map_kafka_errors(bootstrap, "replay events"):
            for i, e in enumerate(evs):
                due = pacer.due(i, e.ts)
                now = time.monotonic()
                if due - now > _SLEEP_MIN_S:
                    time.sleep(due - now)
                elif due and now - due > 0:
                    st.max_behind_ms = max(st.max_behind_ms, (now - due) * 1000)
                if restamp:
                    from dataclasses import replace

                    e = replace(e, ts=int(time.time() * 1000))
                topic = topics.prefixed(prefix, topics.topic_for(e.type))
                pending.append(producer.send(topic, key=e.user_id.encode(), value=encode(e)))
                st.by_topic[topic] = st.by_topic.get(topic, 0) + 1
                if on_sent is not None:
                    on_sent(e, time.time())
                if len(pending) >= 5000:
                    for f in pending[:-1000]:
                        f.get(timeout=60)
                    del pending[:-1000]
                if bar is not None and (i & 255) == 255:
                    bar.update(256)
            producer.flush(timeout=60)
            for f in pending:
                f.get(timeout=60)
        if bar is not None:
            bar.n = len(evs)
            bar.refresh()
            bar.close()
        st.events = len(evs)
    finally:
        st.seconds = time.monotonic() - t0
        if own:
            producer.close(timeout=10)
    return st
