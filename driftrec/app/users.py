"""Erasing users from the state store (``driftrec users forget USER_ID [...]``).

What it does and what it cannot do (topic retention, the learner's window): see
docs/operations.md, "Forgetting a user".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from driftrec.state import open_state
from driftrec.stream import Message, TopicNames
from driftrec.stream.kafka import KafkaSink

from .settings import Settings


def forget_users(s: Settings, user_ids: Sequence[str], tombstones: bool = False) -> dict[str, Any]:
    """Delete the users' state (vector, history, top-k, last event ids) from ``s.state_url``;
    the learner drops their events from its window. ``tombstones``: also publish a tombstone
    (key = user, no value) per user on recs.updates. Returns what was done."""
    st = open_state(s.state_url, **s.redis_options())  # REDIS_SSL_CAFILE, REDIS_PASSWORD_FILE
    try:
        n = st.forget(user_ids, int(time.time() * 1000))
    finally:
        st.close()
    out: dict[str, Any] = {"forgotten": len(set(user_ids)), "had_state": n}
    if tombstones:
        topic = TopicNames(s.topic_prefix).recs
        sink = KafkaSink(s.kafka_bootstrap, security=s.kafka_security())
        try:  # value None: a Kafka tombstone (readers of recs.updates see no value for the user)
            sink.send_many(
                [
                    Message(topic, None, u.encode())  # type: ignore[arg-type]
                    for u in dict.fromkeys(user_ids)
                ]
            )
        finally:
            sink.close()
        out["tombstones"] = topic
    return out
