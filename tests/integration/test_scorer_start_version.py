"""A scorer that starts after a version was published serves it from its first update: the
registry's current version, or the latest announcement on ``adapters`` when it is newer
(published while no scorer ran), falling back to the current one when that announcement
is refused. Against the real broker and redis-server."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest

from driftrec.stream import Message, encode, encode_item, generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _send(bootstrap, msgs):
    from driftrec.stream.kafka import KafkaSink

    s = KafkaSink(bootstrap)
    try:
        s.send_many(list(msgs))
    finally:
        s.close()


def _store(url):
    from driftrec.state.redis import RedisStateStore

    return RedisStateStore.from_url(url)


def _artifact(settings, items, version, bias=0.0):
    """An artifact as the learner writes it (``bias``: one item's, for a forged one)."""
    from driftrec.app.system import SystemSpec, build_system
    from driftrec.model import ItemTable, write_artifact

    spec = replace(SystemSpec.from_settings(settings), device="cpu", cache_dir=None)
    base = build_system(spec, items, serve=False, learn=False)
    enc, t = base.encoder, base.table
    rng = np.random.default_rng(0)
    b = np.zeros(len(t.item_ids), np.float32)
    b[0] = bias
    table = ItemTable(t.item_ids, t.text, (rng.normal(size=t.text.shape) * 0.05).astype(np.float32), b)
    return write_artifact(
        settings.artifact_dir,
        version,
        enc.lora_state(),
        enc.lora_config,
        table,
        enc.base_model,
        {"from_ts": 0, "to_ts": 1, "n_events": 1},
        {"val_hr_candidate": 0.5},
    )


def _announce(bootstrap, names, rec):
    _send(bootstrap, [Message(names.adapters, json.dumps(rec).encode(), rec["version"].encode())])


def _serve(settings, group, names, events):
    """A scorer of ``group`` started now, over ``events`` (sent first); its summary and the
    model versions its updates name."""
    from driftrec.app.scorer_service import run_scorer
    from driftrec.stream.kafka import read_topic

    b = settings.kafka_bootstrap
    before = {(r.partition, r.offset) for r in read_topic(b, names.recs)}
    _send(b, [Message(names.for_type(e.type), encode(e), e.user_id.encode()) for e in events])
    out = run_scorer(settings, group, None, exit_when_idle=2.0, stop=threading.Event())
    new = [r for r in read_topic(b, names.recs) if (r.partition, r.offset) not in before]
    return out, {json.loads(r.value)["model_version"] for r in new}


@pytest.fixture
def stream(settings, topics):
    s = generate("abrupt", n_events=300, n_users=30, n_items=80, seed=11)
    _send(
        settings.kafka_bootstrap, [Message(topics.items, encode_item(i), i.item_id.encode()) for i in s.items]
    )
    return s.events, s.items


def test_a_scorer_started_after_a_publication_serves_it(settings, topics, state_url, stream):
    """The learner published while no scorer ran: the registry holds the record, the
    topic the announcement, and nobody set ``current``."""
    events, items = stream
    store = _store(state_url)
    rec = _artifact(settings, items, "v-pub-1")
    store.register(rec)
    _announce(settings.kafka_bootstrap, topics, rec)
    assert store.current() is None
    out, versions = _serve(settings, "g-late", topics, events)
    assert out["version"] == "v-pub-1" and versions == {"v-pub-1"}, (out, versions)
    assert store.current() == "v-pub-1"


def test_a_second_scorer_serves_what_the_first_swapped_in(settings, topics, state_url, stream):
    events, items = stream
    store = _store(state_url)
    rec = _artifact(settings, items, "v-cur-1")
    store.register(rec)
    _announce(settings.kafka_bootstrap, topics, rec)
    out, versions = _serve(settings, "g-first", topics, events[:150])
    assert out["version"] == "v-cur-1" and store.current() == "v-cur-1"
    # a newer version published while no scorer ran, then a refused (forged) announcement
    newer = _artifact(settings, items, "v-cur-2")
    store.register(newer)
    _announce(settings.kafka_bootstrap, topics, newer)
    out, versions = _serve(settings, "g-second", topics, events[150:])
    assert out["version"] == "v-cur-2" and versions == {"v-cur-2"}, (out, versions)
    forged = _artifact(settings, items, "v-forged", bias=1e30)
    _announce(settings.kafka_bootstrap, topics, forged)
    out, versions = _serve(settings, "g-third", topics, events[:50])
    assert out["version"] == "v-cur-2" and versions <= {"v-cur-2"}, (out, versions)
