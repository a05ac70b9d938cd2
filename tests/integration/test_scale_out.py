"""Scale-out: a second scorer joins the group mid-stream; the partitions are split between
the two and every event is still applied exactly once (real broker, real Redis)."""
from __future__ import annotations

import threading
import time

import pytest

from stream import Message, encode, encode_item, generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _members(bootstrap, group):
    from kafka.admin import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        d = a.describe_groups([group])[group]
        return len(d.get("members") or []) if d.get("group_state") == "Stable" else 0
    except Exception:  # noqa: BLE001 - polled until it answers
        return 0
    finally:
        a.close()


def test_second_scorer_joins_mid_stream_each_event_applied_once(settings, topics, state_url):
    from driftrec.services import run_scorer
    from state.redis import RedisStateStore
    from stream.kafka import KafkaSink

    b, names = settings.kafka_bootstrap, topics
    s = generate("abrupt", n_events=800, n_users=50, n_items=100, seed=21)
    events, items = s.events, s.items
    first, second = events[:400], events[400:]
    sink = KafkaSink(b)
    sink.send_many([Message(names.items, encode_item(it), it.item_id.encode()) for it in items])
    sink.send_many([Message(names.for_type(e.type), encode(e), e.user_id.encode()) for e in first])
    store = RedisStateStore.from_url(state_url)

    def covered():
        return sum(v for k, v in store.offsets("g-scale").items() if not k.startswith(names.items + ":"))

    stops, outs, threads = [], [], []

    def start():
        stop, out = threading.Event(), {}
        th = threading.Thread(target=lambda: out.update(run_scorer(settings, "g-scale", None, stop=stop)),
                              daemon=True)
        th.start()
        stops.append(stop)
        outs.append(out)
        threads.append(th)

    try:
        start()
        _wait(lambda: covered() == len(first), 90, "the first scorer to apply the first half")
        start()
        _wait(lambda: _members(b, "g-scale") == 2, 90, "the group to settle with two members")
        sink.send_many([Message(names.for_type(e.type), encode(e), e.user_id.encode()) for e in second])
        _wait(lambda: covered() == len(events), 90, "the two scorers to apply the second half")
    finally:
        for stop in stops:
            stop.set()
        for th in threads:
            th.join(60)
        sink.close()
    assert len(outs) == 2 and all(o for o in outs), "a scorer did not finish"
    assert sum(o["dead_lettered"] for o in outs) == 0
    # both did part of the second half: the split is real
    assert all(o["processed"] > 0 for o in outs)
    users = store.users()
    assert sum(u.n_events for u in users.values()) == len(events)
    by_user: dict[str, list[str]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e.event_id)
    for uid, st in users.items():
        ids = [h.event_id for h in st.history]  # the newest ones (histories are capped)
        assert st.n_events == len(by_user[uid]), uid
        assert len(ids) == len(set(ids)) and set(ids) <= set(by_user[uid]), uid
