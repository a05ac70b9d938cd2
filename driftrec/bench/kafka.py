"""`driftrec bench kafka`: Kafka figures on the running broker + Redis (scripts/services.sh up).

1. raw kafka-python produce rate (acks=all) and consume rate on the same broker; and the
   scorer core alone on the same backlog, in this process (no Kafka, no Redis, no decoding;
   the service's batch size, threads and model): the ceiling of any runtime around it;
2. scorer throughput: a backlog replayed into Kafka, then `driftrec scorer` (a separate
   process, Redis state) drains it: events/s from its first to its last commit;
3. event-to-update latency at a steady rate (default 1,000 events/s): replay with
   `--restamp` (event ts = send time), a probe (a consumer of recs.updates in a process of
   its own) notes when each update arrives; latency = arrival - ts of the event that
   triggered the update (p50/p99), split at the update record's creation (its Kafka
   timestamp).

    driftrec bench kafka [--model PATH] [--events 20000] [--rate 1000] [--seconds 20] [--json]

Uses its own topic prefix and Redis namespace, removed afterwards. Every Kafka client
(here, in the scorer processes and in the probe) connects with the transport security of
the settings (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_*``; the Redis
state with ``REDIS_SSL_CAFILE``/``REDIS_PASSWORD_FILE``), so it also runs against a SASL_SSL
broker (``eval "$(scripts/services.sh env-secure)"``). The password is never printed.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the checkout the scorer subprocess imports


def raw_rates(
    bootstrap: str, topic: str, n: int, payload: bytes, security: Any = None, timeout_s: float = 300.0
) -> dict[str, float]:
    """kafka-python's produce (acks=all) and consume rates of ``n`` messages of ``payload``
    on ``topic`` (which must be empty); ``security``: a ``KafkaSecurity`` (default PLAINTEXT).
    :class:`TimeoutError` when the ``n`` messages are not all read back within ``timeout_s``."""
    from kafka import TopicPartition

    from driftrec.stream.kafka import consumer, producer

    p = producer(bootstrap, security, acks="all", linger_ms=5, batch_size=512 * 1024)
    t0 = time.perf_counter()
    for i in range(n):
        p.send(topic, key=b"u%d" % (i % 1000), value=payload)
    p.flush()
    produce = n / (time.perf_counter() - t0)
    p.close()
    c = consumer(
        bootstrap,
        security,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_wait_ms=20,
    )
    tps = [TopicPartition(topic, q) for q in sorted(c.partitions_for_topic(topic) or {0})]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got, t0 = 0, time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while got < n:
        if time.monotonic() > deadline:
            c.close()
            raise TimeoutError(
                f"raw rates: read {got:,} of the {n:,} messages of {topic} in {timeout_s:.0f} s"
            )
        got += sum(len(v) for v in c.poll(timeout_ms=500, max_records=5000).values())
    consume = n / (time.perf_counter() - t0)
    c.close()
    return {
        "produce_per_s": round(produce),
        "consume_per_s": round(consume),
        "messages": n,
        "bytes": len(payload),
    }


def core_rate(settings, items, events) -> dict[str, float]:
    """Events/s of the scorer core alone over ``events``, as the scorer service builds it
    (its settings: model, catalog encoding, batch size, comment mode, thread limit), with a
    dictionary for state: an upper bound on what the service can do with the same events
    (it also decodes them, reads and commits state, and produces the updates)."""
    from dataclasses import replace

    import torch
    from threadpoolctl import threadpool_limits

    from driftrec.app.scorer_service import scorer_threads
    from driftrec.app.system import SystemSpec, build_system

    spec = replace(SystemSpec.from_settings(settings), device="cpu")
    scorer = build_system(spec, items, learn=False, standby=False, background=False).scorer
    assert scorer is not None
    threads, bs = torch.get_num_threads(), settings.scorer.batch_size
    n = scorer_threads(settings)  # as the service
    users: dict = {}
    try:
        with threadpool_limits(n):
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            for i in range(0, len(events), bs):
                users.update(scorer.learn_many(events[i : i + bs], users).users)
            dt = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return {
        "events": len(events),
        "batch": bs,
        "threads": n,
        "seconds": round(dt, 2),
        "events_per_s": round(len(events) / dt),
    }


def covered(store, group: str, names) -> int:
    return sum(v for k, v in store.offsets(group).items() if not k.startswith(names.items + ":"))


def group_members(bootstrap: str, group: str, security: Any = None) -> int:
    """Members of a stable consumer group (0 while it rebalances or cannot be described)."""
    from driftrec.stream.kafka import admin

    a = admin(bootstrap, security)
    try:
        d = a.describe_groups([group])[group]
        return len(d.get("members") or []) if d.get("group_state") == "Stable" else 0
    except Exception:  # noqa: BLE001 - a progress probe
        return 0
    finally:
        a.close()


def service_env(bootstrap: str, state_url: str, prefix: str, model: str | None = None) -> dict[str, str]:
    """The environment of a scorer process started by a bench: ours (``KAFKA_SASL_*``
    included) with its own topics, state namespace and artifact folder, on the CPU."""
    env = dict(os.environ)  # passed on whole to the child, not read here
    env.update(
        KAFKA_BOOTSTRAP=bootstrap,
        STATE_URL=state_url,
        TOPIC_PREFIX=prefix,
        DRIFTREC_DEVICE="cpu",
        PYTHONPATH=str(ROOT),
        ARTIFACT_DIR=f"/tmp/{prefix}-artifacts",
    )
    if model:
        env["DRIFTREC_MODEL"] = model
    return env


def start_scorer(env: dict[str, str], group: str, runtime: str = "kafka") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "driftrec.cli", "scorer", "--group", group, "--runtime", runtime],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def probe(
    bootstrap: str,
    topic: str,
    out_path: str,
    ready_path: str,
    stop_path: str,
    max_seconds: float = 900.0,
    security: Any = None,
) -> None:
    """The latency probe, in a process of its own (so that it shares no interpreter lock
    with the replay that timestamps the events): reads ``topic`` from its end and writes
    ``[event_id, event_ts, read_ms, update_record_ts]`` per update, one JSON line each, to
    ``out_path`` once ``stop_path`` exists. ``ready_path`` is created when it is positioned.
    ``security``: a ``KafkaSecurity`` (default PLAINTEXT)."""
    from kafka import TopicPartition

    from driftrec.stream.kafka import consumer

    # fetch_min_bytes=1: the broker answers a fetch as soon as an update is there; the
    # max wait only bounds an empty long poll (short ones cost the 2 shared cores CPU)
    c = consumer(bootstrap, security, group_id=None, fetch_max_wait_ms=100, fetch_min_bytes=1)
    tps = [TopicPartition(topic, q) for q in sorted(c.partitions_for_topic(topic) or {0})]
    c.assign(tps)
    c.seek_to_end(*tps)
    for tp in tps:
        c.position(tp)
    Path(ready_path).touch()
    arrivals: list[tuple[str, int, float, int]] = []
    t_end = time.monotonic() + max_seconds
    while not os.path.exists(stop_path) and time.monotonic() < t_end:
        for recs in c.poll(timeout_ms=50).values():
            now = time.time() * 1000
            for r in recs:
                d = json.loads(r.value)
                # r.timestamp: when the scorer's producer made the update's batch
                arrivals.append((d["event_id"], d["event_ts"], now, r.timestamp))
    c.close()
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(a) + "\n" for a in arrivals)
    os.replace(tmp, out_path)


def start_probe(
    env: dict[str, str], bootstrap: str, topic: str, workdir: str
) -> tuple[subprocess.Popen, dict[str, str]]:
    """Starts :func:`probe` in a process of its own, with ``env``. Its transport security
    comes from the Kafka settings in ``env`` (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``,
    ``KAFKA_SSL_*``), read again there: no password on its command line."""
    paths = {k: os.path.join(workdir, k) for k in ("arrivals.jsonl", "ready", "stop")}
    code = (
        "import sys; from driftrec.app.settings import Settings; from driftrec.bench.kafka import probe; "
        "probe(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], "
        "security=Settings.from_env().kafka_security())"
    )
    p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            bootstrap,
            topic,
            paths["arrivals.jsonl"],
            paths["ready"],
            paths["stop"],
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return p, paths


def say(msg: str) -> None:
    """Progress for the person waiting (stderr: stdout carries the figures)."""
    print(f"[bench kafka] {msg}", file=sys.stderr, flush=True)


def wait_for(pred, timeout: float, procs: Sequence[subprocess.Popen] = ()) -> None:
    """Until ``pred()``; fails at once if one of ``procs`` (the scorers) has exited."""
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if pred():
            return
        dead = [q for q in procs if q.poll() is not None]
        if dead:
            raise RuntimeError(
                f"a scorer process exited with status {dead[0].returncode} during the "
                f"benchmark; run `driftrec scorer` with the same settings to see why"
            )
        time.sleep(0.02)
    raise TimeoutError("benchmark step timed out")


@dataclass
class KafkaBenchArgs:
    """What ``driftrec bench kafka`` measures (its flags: :mod:`driftrec.cli.bench`); the
    connections left None come from the settings (``KAFKA_BOOTSTRAP``, ``REDIS_URL``,
    ``DRIFTREC_MODEL``)."""

    bootstrap: str | None
    redis: str | None
    model: str | None
    events: int  # backlog size for the throughput run
    raw: int  # messages for the raw rates
    rate: float  # steady rate of the latency run
    seconds: float  # length of the latency run
    users: int  # users in the synthetic stream
    items: int  # catalog size
    partitions: int  # partitions of each topic
    runtime: str  # the scorer's runtime: kafka or faust
    scorers: int  # scorer processes in one consumer group (scale-out)


def run(args: KafkaBenchArgs) -> dict:
    """Runs the three measurements; returns the figures."""
    from driftrec.app.settings import Settings

    st = Settings.from_env(kafka_bootstrap=args.bootstrap, redis_url=args.redis, model=args.model)
    args.bootstrap, args.redis, args.model = st.kafka_bootstrap, st.redis_url, st.model
    # every Kafka client below, and the scorer and probe processes (which read the same
    # environment), connect with it; describe() is the only form of it that is printed
    sec = st.kafka_security()
    redis_opts = st.redis_options()  # REDIS_SSL_CAFILE, REDIS_PASSWORD_FILE
    from driftrec.app.admin import all_topics, ensure_topics
    from driftrec.state.redis import RedisStateStore
    from driftrec.stream import Message, TopicNames, encode, encode_item, generate
    from driftrec.stream.kafka import KafkaSink, admin, create_topics
    from driftrec.stream.replay import replay_to_kafka

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    names = TopicNames(prefix)
    say(f"broker {args.bootstrap} ({sec.describe()})")
    ensure_topics(args.bootstrap, names, args.partitions, security=sec)
    n_lat = int(args.rate * args.seconds)
    s = generate("abrupt", n_events=args.events + n_lat, n_users=args.users, n_items=args.items, seed=7)
    backlog, live = s.events[: args.events], s.events[args.events :]
    gc.collect()
    gc.freeze()  # the generated stream stays out of the collector's walks (steady pacing)
    out: dict = {
        "broker": args.bootstrap,
        "security": sec.describe(),
        "partitions": args.partitions,
        "scorers": args.scorers,
        "model": args.model or "bundled MiniLM",
    }

    # 1. raw rates
    raw_topic = f"{prefix}.raw"
    create_topics(args.bootstrap, [raw_topic], args.partitions, security=sec)
    say(f"1/3 raw kafka-python rates: producing and consuming {args.raw:,} messages")
    out["raw"] = raw_rates(args.bootstrap, raw_topic, args.raw, encode(s.events[0]), security=sec)
    say(f"1/3 the scorer core alone on the {len(backlog):,}-event backlog (no transport, no state store)")
    out["core_only"] = core_rate(Settings.from_env(service=True, model=args.model), s.items, backlog)

    state_url = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix={prefix}"
    store = RedisStateStore.from_url(state_url, **redis_opts)
    env = service_env(args.bootstrap, state_url, prefix, args.model)
    # 2. throughput on a backlog (items first, so the scorer starts with the catalog)
    sink = KafkaSink(args.bootstrap, security=sec)
    sink.send_many([Message(names.items, encode_item(it), it.item_id.encode()) for it in s.items])
    say(
        f"2/3 scorer throughput: replaying a backlog of {len(backlog):,} events, then starting "
        f"{args.scorers} scorer process(es) to drain it"
    )
    sent = replay_to_kafka(backlog, [], args.bootstrap, prefix, speed=0, progress=False, security=sec)
    out["replay_backlog_per_s"] = round(sent.rate)
    procs = [start_scorer(env, "bench", args.runtime) for _ in range(args.scorers)]
    workdirs: list[str] = [env["ARTIFACT_DIR"]]
    try:
        if args.scorers > 1:  # measure from when every member has joined (use a large --events)
            wait_for(lambda: group_members(args.bootstrap, "bench", sec) >= args.scorers, 300, procs)
        wait_for(lambda: covered(store, "bench", names) > 0, 300, procs)
        t0 = time.perf_counter()
        c0 = covered(store, "bench", names)
        say("scorer consuming; the clock runs from its first commit to the backlog's end")
        wait_for(lambda: covered(store, "bench", names) >= len(backlog), 600, procs)
        dt = time.perf_counter() - t0
        timed = len(backlog) - c0
        out["scorer_backlog"] = {
            "events": timed,
            "seconds": round(dt, 2),
            "events_per_s": round(timed / dt) if timed else None,
        }
        if not timed:  # the clock starts at the first commit, which already covered it all
            out["scorer_backlog"]["note"] = "backlog drained in one batch: use a larger --events"

        # 3. latency at a steady rate, same scorer process (warm); the probe that reads the
        # updates is a process of its own
        work = tempfile.mkdtemp(prefix=f"{prefix}-probe-")
        workdirs.append(work)
        pr, paths = start_probe(env, args.bootstrap, names.recs, work)
        scorers = list(procs)
        procs.append(pr)
        wait_for(lambda: os.path.exists(paths["ready"]) or pr.poll() is not None, 60, scorers)
        if pr.poll() is not None:
            raise RuntimeError(f"the latency probe exited with status {pr.returncode}")
        before = covered(store, "bench", names)
        say(f"3/3 latency: {len(live):,} events at a steady {args.rate:,.0f}/s ({args.seconds:.0f} s)")
        sent = replay_to_kafka(
            live, [], args.bootstrap, prefix, rate=args.rate, restamp=True, progress=False, security=sec
        )
        wait_for(lambda: covered(store, "bench", names) >= before + len(live), 120, scorers)
        time.sleep(0.5)
        Path(paths["stop"]).touch()
        pr.wait(30)
        arrivals = [tuple(json.loads(line)) for line in open(paths["arrivals.jsonl"])]
        live_ids = {e.event_id for e in live}
        mine = [(ts, now, made) for eid, ts, now, made in arrivals if eid in live_ids]
        lat = np.array([now - ts for ts, now, _ in mine])
        # where the time goes: event sent -> update made (replay, broker, scorer), and
        # update made -> update read (the scorer's produce + this consumer's fetch)
        made = np.array([made - ts for ts, _, made in mine])
        read = np.array([now - made for _, now, made in mine])
        out["steady"] = {
            "target_per_s": args.rate,
            "sent_per_s": round(sent.rate, 1),
            "events": len(live),
            "max_send_behind_ms": round(sent.max_behind_ms, 1),
            "updates": int(lat.size),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "latency_ms_max": round(float(lat.max()), 1) if lat.size else None,
        }
        if lat.size:
            out["steady"]["breakdown_ms"] = {
                "sent_to_update_made_p50": round(float(np.percentile(made, 50)), 1),
                "sent_to_update_made_p99": round(float(np.percentile(made, 99)), 1),
                "update_made_to_read_p50": round(float(np.percentile(read, 50)), 1),
                "update_made_to_read_p99": round(float(np.percentile(read, 99)), 1),
            }
    finally:
        for q in procs:
            q.terminate()
        for q in procs:
            try:
                q.wait(20)
            except subprocess.TimeoutExpired:
                q.kill()
        sink.close()
        store.drop()
        for w in workdirs:
            shutil.rmtree(w, ignore_errors=True)
        try:
            a = admin(args.bootstrap, sec)
            a.delete_topics([*all_topics(names), raw_topic])
            a.close()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
    raw_c = out["raw"]["consume_per_s"]
    eps = out["scorer_backlog"]["events_per_s"]
    out["scorer_vs_raw_consume"] = round(eps / raw_c, 3) if eps else None
    out["core_only_vs_raw_consume"] = round(out["core_only"]["events_per_s"] / raw_c, 3)
    return out
