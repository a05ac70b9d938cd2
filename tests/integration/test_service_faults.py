"""Faults without loss: a Redis restart under a running scorer or learner (its own
redis-server on a free port), and a scorer that finds its state's offsets gone while its
group committed some."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from driftrec.bench.faults import scrape
from driftrec.stream import Message, encode, encode_item, generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Redis:
    """A redis-server of this test: AOF on (data kept across restarts) or off (lost)."""

    def __init__(self, tmp, aof: bool) -> None:
        if not shutil.which("redis-server"):
            pytest.skip("redis-server not installed")
        self.port, self.dir, self.aof = _free_port(), tmp, aof
        self.p: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--appendfsync",
            "always",
        ]
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except Exception:  # noqa: BLE001 - polled until it answers
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.p is not None
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)


def _send(bootstrap, msgs):
    from driftrec.stream.kafka import KafkaSink

    s = KafkaSink(bootstrap)
    s.send_many(msgs)
    s.close()


def _events(names, events):
    return [Message(names.for_type(e.type), encode(e), e.user_id.encode()) for e in events]


def _applied_once(store, events):
    users = store.users()
    assert sum(u.n_events for u in users.values()) == len(events)
    for st in users.values():
        ids = [h.event_id for h in st.history]
        assert len(ids) == len(set(ids))


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_scorer_survives_a_redis_restart_and_applies_every_event_once(
    settings, service_env, topics, tmp_path, runtime
):
    from driftrec.state.redis import RedisStateStore

    b, names = settings.kafka_bootstrap, topics
    r = _Redis(tmp_path, aof=True)
    st = generate("abrupt", n_events=800, n_users=40, n_items=120, seed=9)
    _send(b, [Message(names.items, encode_item(i), i.item_id.encode()) for i in st.items])
    first, second = st.events[:400], st.events[400:]
    _send(b, _events(names, first))
    env = dict(service_env, STATE_URL=r.url, SERVICE_RETRY_S="120")
    log_path = tmp_path / "scorer.log"
    with open(log_path, "wb") as f:
        p = subprocess.Popen(
            [sys.executable, "-m", "driftrec.cli", "scorer", "--group", "g-faults", "--runtime", runtime],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:

        def covered():
            s = RedisStateStore.from_url(r.url)
            try:
                return sum(v for k, v in s.offsets("g-faults").items() if not k.startswith(names.items + ":"))
            finally:
                s.close()

        def wait_for(n, what):
            deadline = time.monotonic() + 120
            while covered() < n:
                assert p.poll() is None and time.monotonic() < deadline, what + log_path.read_text()[-3000:]
                time.sleep(0.2)

        wait_for(len(first), "the first half: ")
        r.kill()
        _send(b, _events(names, second))
        time.sleep(4)  # the scorer meets the outage and backs off
        assert p.poll() is None, log_path.read_text()[-3000:]
        r.start()
        wait_for(len(st.events), "the second half after the restart: ")
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
        r.kill()
    r.start()
    log = log_path.read_text()
    assert "redis unreachable (attempt 1" in log, log[-3000:]
    s = RedisStateStore.from_url(r.url)
    _applied_once(s, st.events)
    r.kill()


def _gauges(port: int) -> dict[str, float]:
    """``driftrec_up{dependency}``: ``{dependency: value}``."""
    up = re.compile(r'driftrec_up\{dependency="(\w+)"\}')
    return {m[1]: v for k, v in scrape(port).items() if (m := up.fullmatch(k))}


def test_learner_survives_a_redis_outage_and_trains_after_it(settings, service_env, topics, prefix, tmp_path):
    """`driftrec learner` against a Redis that goes away while events arrive: it backs off
    (alive, driftrec_up{dependency="redis"} 0), and once Redis is back it rebuilds its window,
    counts every event once, trains and publishes (or records the gate's refusal)."""
    from driftrec.state.redis import RedisStateStore
    from driftrec.stream.kafka import read_topic

    b, names = settings.kafka_bootstrap, topics
    r = _Redis(tmp_path, aof=True)
    st = generate("abrupt", n_events=400, n_users=30, n_items=80, seed=11)
    _send(b, [Message(names.items, encode_item(i), i.item_id.encode()) for i in st.items])
    # before: fewer than the smallest window a training needs (min_pairs 128); during: the rest
    first, second = st.events[:100], st.events[100:]
    _send(b, _events(names, first))
    group, port = f"{prefix}-learner", _free_port()
    env = dict(
        service_env,
        STATE_URL=r.url,
        SERVICE_RETRY_S="120",
        METRICS_PORT=str(port),
        LEARNER_WINDOW="512",
        LEARNER_TRAIN_EVERY="200",
        LEARNER_LORA_EVERY="1000",  # the item stage only (unless drift): a short training
    )
    log_path = tmp_path / "learner.log"
    with open(log_path, "wb") as f:
        p = subprocess.Popen(
            [sys.executable, "-m", "driftrec.cli", "learner", "--group", group],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )

    def counters():
        s = RedisStateStore.from_url(r.url)
        try:
            return s.offsets(f"{group}/counters")
        finally:
            s.close()

    def wait_for(cond, what, timeout=90.0):
        deadline = time.monotonic() + timeout
        while not cond():
            assert p.poll() is None, (
                f"the learner exited ({p.returncode}) {what}: " + log_path.read_text()[-3000:]
            )
            assert time.monotonic() < deadline, f"timed out {what}: " + log_path.read_text()[-3000:]
            time.sleep(0.2)

    try:
        wait_for(lambda: counters().get("seen", 0) >= len(first), "reading the first events")
        assert _gauges(port) == {"kafka": 1.0, "redis": 1.0}
        r.kill()
        _send(b, _events(names, second))  # its checkpoint after these meets the outage
        wait_for(lambda: _gauges(port).get("redis") == 0.0, "waiting for driftrec_up redis 0", 30)
        time.sleep(3)  # a few attempts: each rebuild fails at Redis again
        assert p.poll() is None, log_path.read_text()[-3000:]
        assert _gauges(port) == {"kafka": 1.0, "redis": 0.0}
        assert scrape(port)["driftrec_training_seconds_count"] == 0
        r.start()
        wait_for(lambda: counters().get("trainings", 0) >= 1, "training after the restart")
        wait_for(lambda: _gauges(port).get("redis") == 1.0, "waiting for driftrec_up redis 1", 15)
        assert _gauges(port) == {"kafka": 1.0, "redis": 1.0}
        c = counters()
        assert c["seen"] == len(st.events), c  # the window rebuilt; counted once
        m = scrape(port)  # each training is counted as published or refused by the gate
        trained = m["driftrec_training_seconds_count"]
        published = m["driftrec_adapters_published_total"]
        assert trained >= 1 and published + m["driftrec_candidates_rejected_total"] >= 1, m
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
        r.kill()
    log = log_path.read_text()
    assert "learner: redis unreachable (attempt 1" in log and "learner: connected again" in log, log[-3000:]
    out = json.loads(log.strip().splitlines()[-1])
    assert out["seen"] == len(st.events) and out["trainings"] >= 1, out
    r.start()
    try:
        registry = [rec["version"] for rec in RedisStateStore.from_url(r.url).records()]
    finally:
        r.kill()
    announced = [json.loads(m.value)["version"] for m in read_topic(b, names.adapters)]
    assert announced == registry == out["published"]
    assert len(out["published"]) >= published  # (another training may end before the SIGTERM)


def test_lost_state_is_refused_unless_reset(settings, service_env, topics, tmp_path):
    from driftrec.app.scorer_service import run_scorer
    from driftrec.state.redis import RedisStateStore

    b, names = settings.kafka_bootstrap, topics
    r = _Redis(tmp_path, aof=False)
    try:
        st = generate("abrupt", n_events=300, n_users=20, n_items=60, seed=4)
        _send(b, [Message(names.items, encode_item(i), i.item_id.encode()) for i in st.items])
        _send(b, _events(names, st.events))
        import threading
        from dataclasses import replace

        run_scorer(replace(settings, state_url=r.url), "g-lost", exit_when_idle=2.0, stop=threading.Event())
        r.kill()  # no AOF, no snapshot: everything is gone
        r.start()
        env = dict(service_env, STATE_URL=r.url)
        cmd = [sys.executable, "-m", "driftrec.cli", "scorer", "--group", "g-lost", "--exit-when-idle", "2"]
        out = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
        err = out.stderr.decode().strip().splitlines()
        assert out.returncode == 2, out.stderr.decode()[-3000:]
        assert "--reset-state" in err[-1] and err[-1].startswith("driftrec scorer: error:")
        out = subprocess.run(cmd + ["--reset-state"], env=env, capture_output=True, timeout=150)
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        _applied_once(RedisStateStore.from_url(r.url), st.events)
    finally:
        r.kill()


def test_users_forget_publishes_tombstones(settings, service_env, topics, state_url):
    from driftrec.state import StateWrite, UserState
    from driftrec.state.redis import RedisStateStore
    from driftrec.stream.kafka import read_topic

    store = RedisStateStore.from_url(state_url)
    store.commit(StateWrite(users={"u1": UserState("u1", n_events=1), "u2": UserState("u2", n_events=1)}))
    cmd = [sys.executable, "-m", "driftrec.cli", "users", "forget", "u1", "ghost", "--tombstones"]
    out = subprocess.run(cmd, env=service_env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert json.loads(out.stdout.decode().splitlines()[-1])["had_state"] == 1
    assert set(store.users()) == {"u2"} and set(store.forgotten()) == {"u1", "ghost"}
    recs = read_topic(settings.kafka_bootstrap, topics.recs)
    assert sorted((r.key, r.value) for r in recs) == [(b"ghost", b""), (b"u1", b"")]
