"""`driftrec bench scale`: throughput and latency by the number of scorer processes, on the
running broker and state (``scripts/services.sh up`` and ``up-cluster``).

For each count of ``--scorers`` (default 1, 2, 4), on topics of ``--partitions`` partitions
and a state namespace of its own (both removed afterwards):

1. a backlog of ``--events`` events is replayed into Kafka, and the state is told that the
   group has read it all (its offsets at the end of every events partition: a gate);
2. that many ``driftrec scorer`` processes start in one consumer group; once the group
   holds all of them (the catalog read, nothing else to do), a member that reads nothing
   joins, the gate's offsets go back to 0, and the member leaves: the rebalance makes
   every scorer seek to 0 at once. Measured from that moment to the backlog's end (one
   rebalance included): events/s, and the CPU time the scorer processes used
   meanwhile (``/proc/PID/stat``), so events per CPU second ("per core used"); the CPU of
   the redis-server processes behind the state (those on this host), and the machine's
   busy cores over the same window (``/proc/stat``), say where the rest went;
3. at a steady ``--rate`` for ``--seconds`` (event time = send time), a probe in a process
   of its own reads ``recs.updates``: event-to-update latency p50/p99.

Speed-up is events/s against one scorer's; per-core efficiency is events per CPU second
against one scorer's. On a machine with fewer cores than scorer processes (plus the
broker, Redis and the replay) the processes share the cores: more processes than cores
measure contention, not scale-out.

    driftrec bench scale --scorers 1,2,4 --partitions 12 \\
        --redis redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 [--json]
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .kafka import covered, group_members, service_env, start_probe, wait_for

__all__ = ["ScaleBenchArgs", "cpu_seconds", "machine_busy", "run"]


@dataclass
class ScaleBenchArgs:
    """What ``driftrec bench scale`` measures (its flags: :mod:`driftrec.cli.bench`); the
    connections left None come from the settings (``KAFKA_BOOTSTRAP``, ``REDIS_URL``,
    ``DRIFTREC_MODEL``)."""

    bootstrap: str | None
    redis: str | None  # the state: redis://... or redis+cluster://HOST:PORT[,...]
    model: str | None
    scorers: list[int]  # scorer processes per run
    partitions: int  # partitions of each topic
    events: int  # backlog drained per run
    rate: float  # steady rate of the latency run
    seconds: float  # length of the latency run
    users: int  # users in the synthetic stream
    items: int  # catalog size


def say(msg: str) -> None:
    print(f"[bench scale] {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads (``/proc``);
    0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command: state is field 3, utime 14 and stime 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far, summed over its cores (``/proc/stat``:
    user, nice, system, irq, softirq, steal): the difference of two readings over the wall
    time is how many cores were busy."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = sum(v[i] for i in (0, 1, 2, 5, 6, 7) if i < len(v))
    return busy / os.sysconf("SC_CLK_TCK")


def state_pids(store: Any) -> list[int]:
    """The redis-server processes behind ``store`` that run on this host (every node of a
    cluster, replicas included): their ``INFO server`` process ids that ``/proc`` shows
    as a redis-server."""
    client = getattr(store, "client", None)
    if client is None:
        return []
    nodes = [n.redis_connection for n in client.get_nodes()] if hasattr(client, "get_nodes") else [client]
    out = []
    for r in nodes:
        try:
            pid = int(r.info("server")["process_id"])
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip().startswith("redis-server"):
                    out.append(pid)
        except Exception:  # noqa: BLE001 - elsewhere, or not answering: not counted
            pass
    return out


def _until(pred: Any, timeout: float, procs: Sequence[subprocess.Popen]) -> None:
    """:func:`~driftrec.bench.kafka.wait_for`, looking every 0.1 s (each look reads the
    offsets of every shard: the clock's resolution against the CPU it takes)."""
    deadline = time.monotonic() + timeout
    while not pred():
        dead = [q for q in procs if q.poll() is not None]
        if dead:
            raise RuntimeError(
                f"a scorer process exited with status {dead[0].returncode} during the benchmark"
            )
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        time.sleep(0.1)


def _percentiles(lat: Any) -> dict[str, float | None]:
    if not len(lat):
        return {"latency_ms_p50": None, "latency_ms_p99": None, "latency_ms_max": None}
    return {
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 1),
        "latency_ms_max": round(float(np.max(lat)), 1),
    }


def _ends(bootstrap: str, topics: Sequence[str], sec: Any) -> dict[str, int]:
    """``{"topic:partition": end offset}`` of ``topics``."""
    from kafka import TopicPartition

    from driftrec.stream.kafka import consumer

    c = consumer(bootstrap, sec, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, q) for t in topics for q in sorted(c.partitions_for_topic(t) or ())]
        return {f"{tp.topic}:{tp.partition}": int(v) for tp, v in c.end_offsets(tps).items()}
    finally:
        c.close()


@contextlib.contextmanager
def _extra_member(bootstrap: str, group: str, topics: Sequence[str], sec: Any) -> Iterator[None]:
    """A member of ``group`` (it reads nothing) from entering until leaving: each of the two
    is a rebalance, after which every member has sought to where its ``start_offsets``
    says (the state's offsets)."""
    from driftrec.stream.kafka import consumer

    c = consumer(bootstrap, sec, group_id=group, enable_auto_commit=False, client_id="driftrec-bench-gate")
    try:
        c.subscribe(topics)
        deadline = time.monotonic() + 300
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(timeout_ms=200, max_records=1)
        c.pause(*c.assignment())
        yield
    finally:
        c.close()


def _one(args: ScaleBenchArgs, k: int, state_base: str, redis_opts: dict, sec: Any) -> dict:
    """One run with ``k`` scorer processes."""
    from driftrec.app.admin import all_topics, ensure_topics
    from driftrec.state import StateWrite, open_state
    from driftrec.stream import Message, TopicNames, encode_item, generate
    from driftrec.stream.kafka import KafkaSink, admin
    from driftrec.stream.replay import replay_to_kafka

    assert args.bootstrap is not None
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    names = TopicNames(prefix)
    group = "scale"
    ensure_topics(args.bootstrap, names, args.partitions, security=sec)
    n_lat = int(args.rate * args.seconds)
    s = generate("abrupt", n_events=args.events + n_lat, n_users=args.users, n_items=args.items, seed=11 + k)
    backlog, live = s.events[: args.events], s.events[args.events :]
    state_url = f"{state_base}{'&' if '?' in state_base else '?'}prefix={prefix}"
    store = open_state(state_url, **redis_opts)
    env = service_env(args.bootstrap, state_url, prefix, args.model)
    sink = KafkaSink(args.bootstrap, security=sec)
    sink.send_many([Message(names.items, encode_item(it), it.item_id.encode()) for it in s.items])
    say(f"{k} scorer(s): replaying a backlog of {len(backlog):,} events")
    replay_to_kafka(backlog, [], args.bootstrap, prefix, speed=0, progress=False, security=sec)
    gate = _ends(args.bootstrap, names.events, sec)
    store.commit(StateWrite(offsets=gate, group=group))  # as if read: the scorers wait there
    work = tempfile.mkdtemp(prefix=f"{prefix}-")
    log_path = os.path.join(work, "scorers.log")
    procs: list[subprocess.Popen] = []
    pr: subprocess.Popen | None = None
    out: dict[str, Any] = {"scorers": k, "load_average_1m_before": round(os.getloadavg()[0], 2)}
    try:
        with open(log_path, "ab") as log:
            for _ in range(k):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "driftrec.cli", "scorer", "--group", group],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        say(f"{k} scorer(s): waiting for the group to hold all of them (the backlog gated)")
        wait_for(lambda: group_members(args.bootstrap, group, sec) >= k, 600, procs)
        with _extra_member(args.bootstrap, group, [*names.events, names.items], sec):
            wait_for(lambda: group_members(args.bootstrap, group, sec) >= k + 1, 300, procs)
            store.commit(StateWrite(offsets=dict.fromkeys(gate, 0), group=group))  # the gate opens
            say(f"{k} scorer(s): draining the backlog of {len(backlog):,} events")
            t0, c0 = time.perf_counter(), covered(store, group, names)
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            own0 = cpu_seconds(os.getpid())
            redis_pids = state_pids(store)
            redis0 = sum(cpu_seconds(q) for q in redis_pids)
            busy0 = machine_busy()
        # it has left: the rebalance seeks every scorer to the gate's 0 at once
        _until(lambda: covered(store, group, names) >= len(backlog), 900, procs)
        dt = time.perf_counter() - t0
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        own = cpu_seconds(os.getpid()) - own0
        redis_cpu = sum(cpu_seconds(q) for q in redis_pids) - redis0
        busy1 = machine_busy()
        done = len(backlog) - c0
        out["drain"] = {
            "events": done,
            "seconds": round(dt, 2),
            "events_per_s": round(done / dt) if dt > 0 else None,
            "scorer_cpu_s": round(cpu, 2),
            "cores_used": round(cpu / dt, 2) if dt > 0 else None,
            "events_per_cpu_s": round(done / cpu) if cpu > 0 else None,
            "bench_cores_used": round(own / dt, 2) if dt > 0 else None,
            "redis_servers": len(redis_pids),
            "redis_cores_used": round(redis_cpu / dt, 2) if dt > 0 and redis_pids else None,
            "machine_busy_cores": round((busy1 - busy0) / dt, 2) if dt > 0 else None,
            "machine_cores": os.cpu_count(),
        }

        # 3. latency at a steady rate
        pr, paths = start_probe(env, args.bootstrap, names.recs, work)
        wait_for(lambda: os.path.exists(paths["ready"]) or pr.poll() is not None, 60, procs)
        if pr.poll() is not None:
            raise RuntimeError(f"the latency probe exited with status {pr.returncode}")
        before = covered(store, group, names)
        say(f"{k} scorer(s): {len(live):,} events at a steady {args.rate:,.0f}/s")
        sent = replay_to_kafka(
            live, [], args.bootstrap, prefix, rate=args.rate, restamp=True, progress=False, security=sec
        )
        wait_for(lambda: covered(store, group, names) >= before + len(live), 300, procs)
        time.sleep(0.5)
        Path(paths["stop"]).touch()
        pr.wait(30)
        live_ids = {e.event_id for e in live}
        with open(paths["arrivals.jsonl"]) as f:
            lat = np.array(
                [now - ts for eid, ts, now, _ in (json.loads(line) for line in f) if eid in live_ids]
            )
        out["steady"] = {
            "target_per_s": args.rate,
            "sent_per_s": round(sent.rate, 1),
            "events": len(live),
            "updates": int(lat.size),
            **_percentiles(lat),
        }
    finally:
        if pr is not None and pr.poll() is None:
            pr.kill()
        for q in procs:
            q.terminate()
        for q in procs:
            try:
                q.wait(30)
            except subprocess.TimeoutExpired:
                q.kill()
        sink.close()
        try:
            store.drop()
            store.close()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(env["ARTIFACT_DIR"], ignore_errors=True)
        try:
            a = admin(args.bootstrap, sec)
            a.delete_topics(all_topics(names))
            a.close()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
    return out


def run(args: ScaleBenchArgs) -> dict:
    """Runs one measurement per count of ``args.scorers``; returns the figures."""
    from driftrec.app.settings import Settings

    cluster = "+cluster://" in (args.redis or "")  # REDIS_URL names a single Redis
    st = Settings.from_env(
        kafka_bootstrap=args.bootstrap, redis_url=None if cluster else args.redis, model=args.model
    )
    args.bootstrap, args.model = st.kafka_bootstrap, st.model
    state_base = args.redis if cluster else st.redis_url
    assert state_base is not None
    sec = st.kafka_security()
    from driftrec.state import redact_url

    out: dict[str, Any] = {
        "broker": args.bootstrap,
        "state": redact_url(state_base),
        "partitions": args.partitions,
        "model": args.model or "bundled MiniLM",
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "runs": [],
    }
    for k in args.scorers:
        out["runs"].append(_one(args, k, state_base, st.redis_options(), sec))
    base = out["runs"][0]["drain"] if out["runs"] else {}
    k0 = out["runs"][0]["scorers"] if out["runs"] else 1
    for r in out["runs"]:
        d = r["drain"]
        if base.get("events_per_s") and d.get("events_per_s"):
            d["speedup"] = round(d["events_per_s"] / base["events_per_s"], 2)
            d["ideal_speedup"] = round(min(r["scorers"], out["cpus"] or 1) / min(k0, out["cpus"] or 1), 2)
        if base.get("events_per_cpu_s") and d.get("events_per_cpu_s"):
            d["per_core_efficiency"] = round(d["events_per_cpu_s"] / base["events_per_cpu_s"], 2)
    return out


def format_table(res: dict) -> str:
    """The runs as a table a person reads."""
    head = (
        "scorers",
        "events/s",
        "speedup",
        "scorer cores",
        "events/cpu-s",
        "per-core eff.",
        "redis cores",
        "machine busy",
        "p50 ms",
        "p99 ms",
    )
    rows: list[Sequence[str]] = []
    for r in res["runs"]:
        d, s = r["drain"], r["steady"]
        rows.append(
            [
                str(r["scorers"]),
                f"{d['events_per_s']:,}" if d.get("events_per_s") else "-",
                str(d.get("speedup", "-")),
                str(d.get("cores_used", "-")),
                f"{d['events_per_cpu_s']:,}" if d.get("events_per_cpu_s") else "-",
                str(d.get("per_core_efficiency", "-")),
                str(d.get("redis_cores_used") if d.get("redis_cores_used") is not None else "-"),
                f"{d.get('machine_busy_cores', '-')}/{d.get('machine_cores', '-')}",
                str(s.get("latency_ms_p50", "-")),
                str(s.get("latency_ms_p99", "-")),
            ]
        )
    w = [max(len(h), *(len(c[i]) for c in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda xs: "  ".join(x.rjust(w[i]) for i, x in enumerate(xs))  # noqa: E731
    return "\n".join([line(head), line(["-" * x for x in w]), *(line(c) for c in rows)])
