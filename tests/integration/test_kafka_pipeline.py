"""The Kafka runtime end to end, against the real broker and redis-server.

Run: ``scripts/services.sh up && pytest -m integration tests/integration``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from driftrec.stream import Event, Message, encode, encode_item, generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


# ---------------------------------------------------------------- helpers ---
def _sink(bootstrap):
    from driftrec.stream.kafka import KafkaSink

    return KafkaSink(bootstrap)


def _produce_items(bootstrap, names, items):
    s = _sink(bootstrap)
    s.send_many([Message(names.items, encode_item(it), it.item_id.encode()) for it in items])
    s.close()


def _event_messages(names, events):
    return [Message(names.for_type(e.type), encode(e), e.user_id.encode()) for e in events]


def _store(url):
    from driftrec.state.redis import RedisStateStore

    return RedisStateStore.from_url(url)


def _run_scorer(settings, group, idle=2.0, metrics=None, **kw):
    from driftrec.app.scorer_service import run_scorer

    return run_scorer(settings, group, metrics, exit_when_idle=idle, stop=threading.Event(), **kw)


def _headers(rec):
    return {k: v.decode() for k, v in rec.headers}


def _wait(pred, timeout, what, diagnose=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}. {diagnose()}")


def _stream(n_events, n_users, n_items, seed=3):
    s = generate("abrupt", n_events=n_events, n_users=n_users, n_items=n_items, seed=seed)
    return s.events, s.items


def _covered(store, group, names):
    return sum(v for k, v in store.offsets(group).items() if not k.startswith(names.items + ":"))


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


def _first_half_on_topics(bootstrap, names, n_events, n_users, n_items, seed):
    """A stream whose catalog and first half are on the topics:
    ``(events, items, first, second, an open sink)``."""
    events, items = _stream(n_events, n_users, n_items, seed=seed)
    first, second = events[: n_events // 2], events[n_events // 2 :]
    _produce_items(bootstrap, names, items)
    sink = _sink(bootstrap)
    sink.send_many(_event_messages(names, first))
    return events, items, first, second, sink


def _assert_each_event_once(users, events):
    """Every event applied exactly once: per-user counts add up and no event is twice in a
    history (histories keep the newest ones). Returns user -> event ids."""
    assert sum(u.n_events for u in users.values()) == len(events)
    by_user: dict[str, list[str]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e.event_id)
    for uid, st in users.items():
        ids = [h.event_id for h in st.history]
        assert st.n_events == len(by_user[uid]), uid
        assert len(ids) == len(set(ids)) and set(ids) <= set(by_user[uid]), uid
    return by_user


# ------------------------------------------------------------------ tests ---
def test_malformed_goes_to_dlq_good_is_scored_offset_committed(settings, topics, state_url):
    from kafka import KafkaConsumer, TopicPartition

    from driftrec.stream.kafka import read_topic

    b, names = settings.kafka_bootstrap, topics
    _, items = _stream(10, 2, 20)
    _produce_items(b, names, items)
    good = Event("e-good", "like", "u1", items[0].item_id, 1_700_000_000_000)
    bad = b'{"event_id": "e-bad", "type": "like", "user_id": "u1"'
    s = _sink(b)
    s.send_many(
        [Message(names.for_type("like"), bad, b"u1"), Message(names.for_type("like"), encode(good), b"u1")]
    )
    s.close()

    summary = _run_scorer(settings, "g1")
    assert summary["dead_lettered"] == 1 and summary["by_reason"] == {"bad_json": 1}
    assert summary["consumed"] == summary["processed"] + summary["dead_lettered"] == len(items) + 2

    dlq = read_topic(b, names.dlq)
    assert len(dlq) == 1 and dlq[0].value == bad
    h = _headers(dlq[0])
    assert h["reason"] == "bad_json" and h["source_topic"] == names.for_type("like")
    likes = [r for r in read_topic(b, names.for_type("like"))]
    assert int(h["offset"]) == next(r.offset for r in likes if r.value == bad)
    part = int(h["partition"])

    store = _store(state_url)
    u1 = store.get_many(["u1"])["u1"]
    assert u1.n_events == 1 and u1.last_event_id == "e-good" and u1.topk
    recs = [json.loads(r.value) for r in read_topic(b, names.recs)]
    assert [r["event_id"] for r in recs] == ["e-good"] and recs[0]["user_id"] == "u1"
    assert [x["item_id"] for x in recs[0]["items"]] == u1.topk
    # the offset is committed: in the state (the source of truth) and in the group
    assert store.offsets("g1")[f"{names.for_type('like')}:{part}"] == 2
    c = KafkaConsumer(bootstrap_servers=b, group_id="g1", enable_auto_commit=False)
    assert c.committed(TopicPartition(names.for_type("like"), part)) == 2
    c.close()


MALFORMED = [
    (b"{oops", "bad_json"),
    (b'{"event_id":"m2","type":"like","item_id":"i1","ts":5}', "missing_user_id"),
    (b'{"event_id":"m3","type":"hover","user_id":"u","item_id":"i1","ts":5}', "unknown_type"),
    (b'{"event_id":"m4","type":"click","user_id":"u","item_id":"i1","ts":"soon"}', "bad_timestamp"),
    (b"[1, 2]", "not_an_object"),
]


def test_dead_letter_the_broker_refuses_is_not_counted_nor_committed(settings, topics, state_url, capsys):
    """The dead-letter topic takes no record over 200 bytes: the scorer's send of a large
    malformed record fails, the run's counts do not reconcile, and nothing is committed."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    from driftrec.stream import StreamUnavailable

    b, names = settings.kafka_bootstrap, topics
    admin = KafkaAdminClient(bootstrap_servers=b.split(","), client_id="driftrec-tests")
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, names.dlq, configs={"max.message.bytes": "200"})]
        )
    finally:
        admin.close()
    _, items = _stream(10, 2, 20)
    _produce_items(b, names, items)
    good = Event("e-good", "like", "u1", items[0].item_id, 1_700_000_000_000)
    bad = b'{"event_id": "e-bad", "type": "like", "text": "' + b"x" * 2000
    s = _sink(b)
    s.send_many(
        [Message(names.for_type("like"), bad, b"u1"), Message(names.for_type("like"), encode(good), b"u1")]
    )
    s.close()

    with pytest.raises(StreamUnavailable):
        _run_scorer(settings, "g-dlq-refused")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["consumed"] >= 2 and summary["dead_lettered"] == 0
    assert summary["counts_reconcile"] is False
    offsets = _store(state_url).offsets("g-dlq-refused")
    assert not any(k.startswith(names.for_type("like") + ":") for k in offsets)  # redelivered on restart


def test_n_events_reconcile_and_recs_for_changed_users(settings, topics, state_url):
    from driftrec.stream.kafka import read_topic

    b, names = settings.kafka_bootstrap, topics
    events, items = _stream(400, 30, 100)
    _produce_items(b, names, items)
    msgs, expected_reason = [], {}
    for i, e in enumerate(events):
        msgs.append(_event_messages(names, [e])[0])
        if i % 10 == 0:  # a known share malformed: 40 of 440
            raw, reason = MALFORMED[(i // 10) % len(MALFORMED)]
            if raw.startswith(b'{"'):
                raw = raw.replace(b'"m', f'"m{i}-'.encode())
            else:  # unique bytes, same reason
                raw = b"[%d]" % i if reason == "not_an_object" else raw + b"%d" % i
            expected_reason[raw] = reason
            msgs.append(Message(names.for_type("click"), raw, e.user_id.encode()))
    s = _sink(b)
    s.send_many(msgs)
    s.close()
    n_bad = len(expected_reason)

    from driftrec.app.metrics import Metrics

    t_sent = time.time()
    metrics = Metrics("scorer")
    summary = _run_scorer(settings, "g2", metrics=metrics)
    n = len(events) + n_bad + len(items)
    assert summary["consumed"] == n == summary["processed"] + summary["dead_lettered"]
    # the metrics agree with the summary; every batch observed its oldest record's age: all
    # records were produced before the scorer started (model loading alone takes longer
    # than the smallest bucket), and well within the test's own running time
    m = {
        x.name + x.labels.get("outcome", "") + x.labels.get("le", ""): x.value
        for f in metrics.registry.collect()
        for x in f.samples
    }
    assert m["driftrec_events_totalprocessed"] == summary["processed"]
    assert m["driftrec_events_totaldead_lettered"] == n_bad
    assert m["driftrec_event_age_seconds_count"] == summary["batches"] > 0
    assert m["driftrec_event_age_seconds_bucket0.01"] == 0
    assert m["driftrec_event_age_seconds_sum"] / summary["batches"] < time.time() - t_sent + 5
    assert summary["dead_lettered"] == n_bad
    want = {}
    for r in expected_reason.values():
        want[r] = want.get(r, 0) + 1
    assert summary["by_reason"] == want

    dlq = read_topic(b, names.dlq)
    assert len(dlq) == n_bad
    for r in dlq:
        h = _headers(r)
        assert h["reason"] == expected_reason[r.value], (r.value, h)
        assert h["source_topic"] == names.for_type("click") and "detail" in h and "offset" in h

    store = _store(state_url)
    users = store.users()
    assert sum(u.n_events for u in users.values()) == len(events)
    assert set(users) == {e.user_id for e in events}
    last: dict[str, dict] = {}
    for r in read_topic(b, names.recs):  # one user's updates are on one partition, in order
        rec = json.loads(r.value)
        last[rec["user_id"]] = rec
    for uid, st in users.items():
        assert st.topk, uid
        assert uid in last, f"no recs.updates for {uid} whose top-k changed"
        assert [x["item_id"] for x in last[uid]["items"]] == st.topk


def _artifact(settings, items, version):
    """An adapter artifact as the learner writes it (learner.write_artifact)."""
    from dataclasses import replace

    from driftrec.app.system import SystemSpec, build_system
    from driftrec.model import ItemTable, write_artifact

    spec = replace(SystemSpec.from_settings(settings), device="cpu", cache_dir=None)
    base = build_system(spec, items, serve=False, learn=False)
    enc, t = base.encoder, base.table
    rng = np.random.default_rng(0)
    table = ItemTable(
        t.item_ids,
        t.text,
        (rng.normal(size=t.text.shape) * 0.05).astype(np.float32),
        np.zeros(len(t.item_ids), np.float32),
    )
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


def test_announcement_mid_stream_swaps_without_loss_or_double(settings, topics, state_url):
    from driftrec.app.scorer_service import run_scorer
    from driftrec.stream.kafka import read_topic

    b, names = settings.kafka_bootstrap, topics
    events, items, first, second, s = _first_half_on_topics(b, names, 600, 40, 120, seed=5)
    store = _store(state_url)
    stop = threading.Event()
    out: dict = {}
    th = threading.Thread(target=lambda: out.update(run_scorer(settings, "g3", None, stop=stop)), daemon=True)
    th.start()
    try:
        _wait(lambda: _covered(store, "g3", names) == len(first), 60, "the first half")
        rec = _artifact(settings, items, "v-mid-1")
        store.register(rec)  # as the learner does, then announces
        s.send_many([Message(names.adapters, json.dumps(rec).encode(), b"v-mid-1")])
        _wait(lambda: store.current() == "v-mid-1", 60, "the swap")
        s.send_many(_event_messages(names, second))
        _wait(lambda: _covered(store, "g3", names) == len(events), 60, "the second half")
    finally:
        stop.set()
        th.join(60)
        s.close()
    assert out["swaps"] == ["v-mid-1"] and out["version"] == "v-mid-1"
    assert out["duplicates"] == 0 and out["dead_lettered"] == 0
    users = store.users()
    by_user = _assert_each_event_once(users, events)
    for uid, st in users.items():
        assert sorted(h.event_id for h in st.history) == sorted(by_user[uid])
        assert st.version == "v-mid-1" or uid not in {e.user_id for e in second}
    first_ids, second_ids = {e.event_id for e in first}, {e.event_id for e in second}
    recs = [json.loads(r.value) for r in read_topic(b, names.recs)]
    assert {r["model_version"] for r in recs if r["event_id"] in first_ids} == {"base"}
    assert {r["model_version"] for r in recs if r["event_id"] in second_ids} == {"v-mid-1"}


def test_sigkill_scorer_and_restart_equals_uninterrupted_run(
    settings, service_env, topics, state_url, redis_url, prefix, tmp_path
):
    from driftrec.app.scorer_service import run_scorer

    b, names = settings.kafka_bootstrap, topics
    events, items = _stream(1500, 60, 150, seed=11)
    # One input topic: a user's events then sit on one partition in ts order, so every run
    # sees them in the same order whatever its batch boundaries. (Across the three event
    # topics the interleaving of one user's events is up to the broker's fetches, and a
    # history is kept in applied order: the same set of events, but not the same list.)
    events = [replace(e, type="click", text=None) for e in events]
    _produce_items(b, names, items)
    env = dict(service_env, SCORER_BATCH_SIZE="16")
    cmd = [sys.executable, "-m", "driftrec.cli", "scorer", "--group", "g-run"]
    store = _store(state_url)

    def producer():
        s = _sink(b)
        for i in range(0, len(events), 30):  # ~600 events/s
            s.send_many(_event_messages(names, events[i : i + 30]))
            time.sleep(0.05)
        s.close()

    # The killed run's output goes to a file, never an unread pipe: a full pipe blocks the
    # scorer on its next log line.
    log_path = tmp_path / "scorer-killed.log"

    def log_tail() -> str:
        return "scorer log tail:\n" + log_path.read_text(errors="replace")[-3000:]

    with open(log_path, "wb") as log_file:
        p = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait(
            lambda: any(k.startswith(names.items) for k in store.offsets("g-run")) or p.poll() is not None,
            90,
            "the scorer to consume the catalog",
            log_tail,
        )
        assert p.poll() is None, log_tail()
        th = threading.Thread(target=producer, daemon=True)
        th.start()
        _wait(
            lambda: _covered(store, "g-run", names) >= len(events) // 3, 60, "a third of the stream", log_tail
        )
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL
        killed_at = _covered(store, "g-run", names)
        assert killed_at < len(events), "the scorer finished before the kill; the test proves nothing"
        th.join(60)
    finally:
        if p.poll() is None:
            p.kill()
    r = subprocess.run(cmd + ["--exit-when-idle", "3"], env=env, capture_output=True, timeout=150)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    summary = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert summary["consumed"] + killed_at >= len(events) and summary["dead_lettered"] == 0

    ref_url = f"{redis_url}?prefix={prefix}-ref"
    ref_settings = replace(settings, state_url=ref_url)
    run_scorer(ref_settings, "g-ref", None, exit_when_idle=2.0, stop=threading.Event())
    ref = _store(ref_url)

    got, want = store.users(), ref.users()
    assert set(got) == set(want) == {e.user_id for e in events}
    for uid, w in want.items():
        g = got[uid]
        assert g.history == w.history, uid  # every event applied exactly once, in order
        assert (g.n_events, g.last_event_id, g.seen, g.version) == (
            w.n_events,
            w.last_event_id,
            w.seen,
            w.version,
        )
        np.testing.assert_allclose(g.vector, w.vector, rtol=1e-4, atol=1e-5)
    assert sum(u.n_events for u in got.values()) == len(events)
    gp, wp = store.item_pop(), ref.item_pop()
    assert set(gp) == set(wp)
    np.testing.assert_allclose([gp[k] for k in sorted(wp)], [wp[k] for k in sorted(wp)], rtol=1e-12)
    run_offsets = {k: v for k, v in store.offsets("g-run").items()}
    assert run_offsets == ref.offsets("g-ref")


def test_second_scorer_joins_mid_stream_each_event_applied_once(settings, topics, state_url):
    """Scale-out: a second scorer joins the group mid-stream; the partitions are split
    between the two and every event is still applied exactly once."""
    from driftrec.app.scorer_service import run_scorer

    b, names = settings.kafka_bootstrap, topics
    events, _, first, second, sink = _first_half_on_topics(b, names, 800, 50, 100, seed=21)
    store = _store(state_url)

    def covered():
        return _covered(store, "g-scale", names)

    stops, outs, threads = [], [], []

    def start():
        stop, out = threading.Event(), {}
        th = threading.Thread(
            target=lambda: out.update(run_scorer(settings, "g-scale", None, stop=stop)), daemon=True
        )
        th.start()
        stops.append(stop)
        outs.append(out)
        threads.append(th)

    try:
        start()
        _wait(lambda: covered() == len(first), 90, "the first scorer to apply the first half")
        start()
        _wait(lambda: _members(b, "g-scale") == 2, 90, "the group to settle with two members")
        sink.send_many(_event_messages(names, second))
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
    _assert_each_event_once(store.users(), events)


def test_faust_runtime_reconciles_and_dead_letters(settings, service_env, topics, state_url):
    """The faust-streaming scorer app: same core, same contract (a subprocess: faust owns
    its event loop and signal handlers)."""
    from driftrec.stream.kafka import read_topic

    b, names = settings.kafka_bootstrap, topics
    events, items = _stream(300, 25, 80, seed=5)
    _produce_items(b, names, items)
    bad = [
        (b"{nope", "bad_json"),
        (b'{"event_id":"f2","type":"like","item_id":"i1","ts":5}', "missing_user_id"),
    ]
    s = _sink(b)
    s.send_many(
        _event_messages(names, events) + [Message(names.for_type("like"), raw, b"u0") for raw, _ in bad]
    )
    s.close()
    cmd = [
        sys.executable,
        "-m",
        "driftrec.cli",
        "scorer",
        "--runtime",
        "faust",
        "--group",
        "g-faust",
        "--exit-when-idle",
        "4",
    ]
    r = subprocess.run(cmd, env=service_env, capture_output=True, timeout=200)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    lines = r.stdout.decode().strip().splitlines()
    json_lines = [ln for ln in lines if ln.startswith("{")]
    assert json_lines, (lines[-5:], r.stderr.decode()[-3000:])
    summary = json.loads(json_lines[-1])
    n = len(events) + len(bad) + len(items)
    assert summary["consumed"] == n == summary["processed"] + summary["dead_lettered"]
    dlq = read_topic(b, names.dlq)
    assert sorted(_headers(m)["reason"] for m in dlq) == sorted(reason for _, reason in bad)
    store = _store(state_url)
    assert sum(u.n_events for u in store.users().values()) == len(events)
    assert read_topic(b, names.recs)


def test_learner_service_trains_and_announces(settings, service_env, topics, state_url):
    """`driftrec learner` on its own group: it trains on the stream, writes an artifact and
    announces it (when its gate passes) or records the rejection."""
    from driftrec.state.redis import RedisStateStore
    from driftrec.stream.kafka import read_topic

    b, names = settings.kafka_bootstrap, topics
    events, items = _stream(1200, 40, 120, seed=7)
    _produce_items(b, names, items)
    s = _sink(b)
    s.send_many(_event_messages(names, events))
    s.close()
    env = dict(service_env, LEARNER_TRAIN_EVERY="500")
    cmd = [sys.executable, "-m", "driftrec.cli", "learner", "--exit-when-idle", "3", "--train-on-exit"]
    r = subprocess.run(cmd, env=env, capture_output=True, timeout=200)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert out["seen"] == len(events) and out["trainings"] >= 1
    announced = [json.loads(m.value)["version"] for m in read_topic(b, names.adapters)]
    assert announced == out["published"]
    registry = [rec["version"] for rec in RedisStateStore.from_url(state_url).records()]
    assert registry == out["published"]
    for v in out["published"]:
        assert (Path(settings.artifact_dir) / v / "manifest.json").exists()


def test_sink_acks_keeps_headers_and_partitions_like_the_java_client(kafka_bootstrap, topics):
    from kafka.partitioner.default import murmur2  # kafka-python's: the Java client's placement

    from driftrec.stream.kafka import KafkaSink, read_topic

    msgs = [
        Message(
            topics.recs, b"v%d" % i, b"user-%d" % (i % 37), (("reason", b"r%d" % i),) if i % 5 == 0 else ()
        )
        for i in range(300)
    ]
    sink = KafkaSink(kafka_bootstrap)
    try:
        sink.send_many(msgs[:150])
        sink.send_many(msgs[150:])  # returns once acknowledged: everything is readable now
    finally:
        sink.close()
    got = read_topic(kafka_bootstrap, topics.recs)
    assert sorted(r.value for r in got) == sorted(m.value for m in msgs)
    assert {r.value: r.headers for r in got} == {m.value: m.headers for m in msgs}
    assert {r.partition for r in got} == {0, 1}  # the fixture's two partitions
    assert all(r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 2 for r in got)
    by_value = {r.value: r for r in got}
    for m in msgs:
        assert by_value[m.value].headers == m.headers
    # per key, in send order
    for key in {m.key for m in msgs}:
        assert [r.value for r in sorted(got, key=lambda r: r.offset) if r.key == key] == [
            m.value for m in msgs if m.key == key
        ]


def test_bench_kafka_runs_end_to_end(kafka_bootstrap, redis_url, tiny_model):
    """`driftrec bench kafka` as a user runs it (small): every stage reports its figures and
    its progress. No timing is asserted."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftrec.cli",
            "bench",
            "kafka",
            "--bootstrap",
            kafka_bootstrap,
            "--redis",
            redis_url,
            "--model",
            tiny_model,
            "--events",
            "3000",
            "--raw",
            "2000",
            "--seconds",
            "3",
            "--rate",
            "300",
            "--users",
            "200",
            "--items",
            "300",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=220,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    raw = res["raw"]
    assert raw["messages"] == 2000 and raw["produce_per_s"] >= 1 and raw["consume_per_s"] >= 1
    core = res["core_only"]  # the scorer core alone on the same backlog, the service's batch size
    assert core["events"] == 3000 and core["batch"] == 4096

    # the figures are what they say: events over seconds (rounded to 0.01 s), and the ratio
    # of the two rates
    def rate_of(events: int, seconds: float) -> tuple[float, float]:
        return events / (seconds + 0.005) - 1, events / max(seconds - 0.005, 1e-9) + 1

    lo, hi = rate_of(3000, core["seconds"])
    assert lo <= core["events_per_s"] <= hi
    assert res["core_only_vs_raw_consume"] == round(core["events_per_s"] / raw["consume_per_s"], 3)
    backlog = res["scorer_backlog"]
    assert backlog["events"] <= 3000
    if backlog["events_per_s"]:
        lo, hi = rate_of(backlog["events"], backlog["seconds"])
        assert lo <= backlog["events_per_s"] <= hi
    else:
        assert backlog.get("note")
    steady = res["steady"]
    assert steady["events"] == 900 and 0 < steady["updates"] <= 900
    assert 0 < steady["latency_ms_p50"] <= steady["latency_ms_p99"] <= steady["latency_ms_max"]
    assert [ln for ln in p.stderr.splitlines() if ln.startswith("[bench kafka] ")][:1]
    assert "3/3 latency" in p.stderr
