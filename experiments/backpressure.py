"""Backpressure: does the scorer's memory stay bounded under a burst of
10x the steady rate and while Redis is stalled? Lag should grow instead.

Runs against the services of ``scripts/services.sh up`` (Kafka on KAFKA_BOOTSTRAP, Redis on
REDIS_URL; it stalls that redis-server with SIGSTOP, so run it where nothing else uses it):

    python experiments/backpressure.py [--rate 500] [--seconds 20] [--stall-s 20] [--model PATH]

Phases: steady (``--rate`` events/s), burst (10x), Redis stalled (SIGSTOP, steady rate),
drain. Samples the scorer process's RSS and its lag (events produced minus events its
committed state covers) every 0.25 s and prints one JSON line per phase and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import threading
import time
import uuid

ap = argparse.ArgumentParser()
ap.add_argument("--rate", type=float, default=500.0)
ap.add_argument("--seconds", type=float, default=20.0)
ap.add_argument("--stall-s", type=float, default=20.0)
ap.add_argument("--model", default=None)
a = ap.parse_args()

from driftrec.app.admin import ensure_topics  # noqa: E402
from driftrec.app.settings import Settings  # noqa: E402
from driftrec.bench.kafka import covered, service_env, start_scorer, wait_for  # noqa: E402
from driftrec.state.redis import RedisStateStore  # noqa: E402
from driftrec.stream import (  # noqa: E402
    Message,
    TopicNames,  # noqa: E402
    encode_item,
    generate,
)
from driftrec.stream.kafka import KafkaSink  # noqa: E402
from driftrec.stream.replay import replay_to_kafka  # noqa: E402

st = Settings.from_env(model=a.model)
sec = st.kafka_security()
prefix = f"bp{uuid.uuid4().hex[:8]}"
names = TopicNames(prefix)
ensure_topics(st.kafka_bootstrap, names, 3, security=sec)
n_steady = int(a.rate * a.seconds)
n_burst = int(10 * a.rate * a.seconds)
n_stall = int(a.rate * a.stall_s)
s = generate("abrupt", n_events=n_steady * 2 + n_burst + n_stall, n_users=5000, n_items=2000, seed=3)
ev = s.events
KafkaSink(st.kafka_bootstrap, security=sec).send_many(
    [Message(names.items, encode_item(i), i.item_id.encode()) for i in s.items]
)
state_url = f"{st.redis_url}{'&' if '?' in st.redis_url else '?'}prefix={prefix}"
store = RedisStateStore.from_url(state_url, **st.redis_options())
env = dict(service_env(st.kafka_bootstrap, state_url, prefix, a.model), SERVICE_RETRY_S="300")
proc = start_scorer(env, "bp")
redis_pid = int(
    subprocess.check_output(
        ["pgrep", "-f", f"redis-server .*:{st.redis_url.rsplit(':', 1)[-1].split('/')[0]}"]
    ).split()[0]
)

phase = ["start"]
produced = [0]
samples: list[tuple[str, float, int, int]] = []
last_cov = [0]
stop = threading.Event()


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sampler() -> None:
    while not stop.is_set():
        try:
            if phase[0] != "stalled":  # reading the stalled Redis would block the sampler
                last_cov[0] = covered(store, "bp", names)
            samples.append((phase[0], rss_mb(proc.pid), produced[0] - last_cov[0], last_cov[0]))
        except Exception:  # noqa: BLE001 - a sample lost is not a result lost
            pass
        time.sleep(0.25)


def send(chunk, rate):
    def sent(e, t):
        produced[0] += 1

    return replay_to_kafka(
        chunk,
        [],
        st.kafka_bootstrap,
        prefix,
        rate=rate,
        restamp=True,
        progress=False,
        security=sec,
        on_sent=sent,
    )


th = threading.Thread(target=sampler, daemon=True)
try:
    i = 0
    send(ev[:200], a.rate)  # warm-up: the scorer joins and loads
    i = 200
    wait_for(lambda: covered(store, "bp", names) >= 200, 300, [proc])
    th.start()
    rates = {}
    for name, n, rate in (("steady", n_steady, a.rate), ("burst_10x", n_burst, 10 * a.rate)):
        phase[0] = name
        rates[name] = round(send(ev[i : i + n], rate).rate)
        i += n
    phase[0] = "stalled"
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        send(ev[i : i + n_stall], a.rate)
        i += n_stall
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    phase[0] = "drain"
    t0 = time.monotonic()
    wait_for(lambda: covered(store, "bp", names) >= produced[0], 600, [proc])
    drain_s = time.monotonic() - t0
finally:
    stop.set()
    proc.terminate()
    proc.wait(30)
out = {}
for name in ("steady", "burst_10x", "stalled", "drain"):
    xs = [x for x in samples if x[0] == name]
    if xs:
        out[name] = {
            "rss_mb_max": round(max(x[1] for x in xs), 1),
            "rss_mb_last": round(xs[-1][1], 1),
            "lag_max": max(x[2] for x in xs),
            "samples": len(xs),
        }
out["events"] = produced[0]
out["all_covered"] = covered(store, "bp", names) >= produced[0]
out["drain_s"] = round(drain_s, 1)
out["rate"] = a.rate
out["sent_per_s"] = rates
print(json.dumps(out))
