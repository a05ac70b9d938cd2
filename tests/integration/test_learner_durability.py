"""The learner survives a crash: SIGKILL, restart at once, the next training sees the
whole window (the events consumed before the kill), counted once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from driftrec.stream import Message, encode, encode_item, generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _send(bootstrap, msgs):
    from driftrec.stream.kafka import KafkaSink

    s = KafkaSink(bootstrap)
    s.send_many(msgs)
    s.close()


def test_sigkill_learner_restart_rebuilds_the_window(
    settings, service_env, topics, state_url, prefix, tmp_path
):
    from driftrec.state.redis import RedisStateStore

    b, names = settings.kafka_bootstrap, topics
    st = generate("abrupt", n_events=900, n_users=40, n_items=120, seed=5)
    events, items = st.events, st.items
    _send(b, [Message(names.items, encode_item(i), i.item_id.encode()) for i in items])
    first, second = events[:600], events[600:]
    _send(b, [Message(names.for_type(e.type), encode(e), e.user_id.encode()) for e in first])
    group = f"{prefix}-learner"
    env = dict(service_env, LEARNER_TRAIN_EVERY="100000")  # nothing trains before the kill
    cmd = [sys.executable, "-m", "driftrec.cli", "learner", "--group", group]
    store = RedisStateStore.from_url(state_url)
    log_path = tmp_path / "learner-killed.log"

    def counters():
        return store.offsets(f"{group}/counters")

    with open(log_path, "wb") as f:
        p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while counters().get("seen", 0) < len(first):
            assert p.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        os.kill(p.pid, signal.SIGKILL)
        assert p.wait(10) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
    # the rest arrives while it is down
    _send(b, [Message(names.for_type(e.type), encode(e), e.user_id.encode()) for e in second])
    t0 = time.monotonic()
    r = subprocess.run(
        cmd + ["--exit-when-idle", "3", "--train-on-exit"], env=env, capture_output=True, timeout=200
    )
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert out["seen"] == len(events)  # counted once across the crash
    assert out["window"] == len(events)  # the window before the kill rebuilt, plus the rest
    assert out["trainings"] == 1 and out["last_training_window"]["n_events"] == len(events)
    # no wait for the dead member's session (static membership): before, an immediate restart
    # failed after ~60 s (JoinGroup timeout, exit 2); model load, catalog and training included
    assert took < 90, f"restart took {took:.0f} s: " + r.stderr.decode()[-3000:]
    # a second restart: nothing new; the window is rebuilt again, the training counted
    r = subprocess.run(cmd + ["--exit-when-idle", "2"], env=env, capture_output=True, timeout=200)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out2 = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert out2["seen"] == len(events) and out2["window"] == len(events)
    assert out2["trainings"] == 0 and out2["trainings_total"] == 1
