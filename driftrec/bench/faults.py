"""``driftrec faults``: a fault suite against the running services (scripts/services.sh up).

Each fault runs on topics and a Redis namespace of its own (removed afterwards), with the
real ``driftrec scorer`` (or ``driftrec learner``) as a separate process, and is judged from
what the services left behind, not from their own counters (a killed process's counters are
gone with it):

- **sent**: records written to the event topics (good events, plus garbage for the flood);
- **processed**: distinct good events in the users' state (Redis), i.e. applied;
- **dead_lettered**: distinct source records on ``events.dlq``;
- **lost**: sent - processed - dead_lettered (neither applied nor dead-lettered);
- **applied_twice**: applications beyond one per event (a user's event count against the
  distinct events in their history) plus records dead-lettered twice;
- **updates_lost**: users whose last record on ``recs.updates`` is not the top-k their state
  says was published last (an update committed in state but never delivered).

The outage rows (``broker_restart_*``, ``redis_restart``) also check the health gauge: the
scorer's ``driftrec_up{dependency}`` is sampled every 0.5 s on its metrics port, and
**up_drop_s** (from the dependency gone to the gauge at 0), **up_back_s** (from it back to
the gauge at 1) and **log_lines** (the scorer's log lines, its own and its client
libraries', during the outage) are columns; each must be within :data:`UP_WITHIN_S` and
under :data:`MAX_LOG_LINES`.

For ``learner_sigkill`` the learner is the service under test: processed = events in the
window of the first training after the restart, applied_twice = events counted twice in
its ``seen`` counter, updates_lost = 1 when no training follows the restart.

Faults:

- ``scorer_sigkill``: SIGKILL the scorer a third of the way through a backlog, restart it;
- ``broker_restart_10s``, ``broker_restart_90s``: stop the Kafka broker mid-stream, keep it
  down 10 s / 90 s, start it again; the scorer must wait for it (``SERVICE_RETRY_S``);
- ``redis_restart``: stop Redis mid-stream (the second half is sent while it is down),
  start it again after 5 s (AOF keeps the data);
- ``learner_sigkill``: SIGKILL the learner as soon as a training starts, restart it;
- ``garbage_flood``: as many hostile records as good events (``driftrec bench fuzz``'s
  kinds, only those the decoder must reject), interleaved on the event topics;
- ``forged_artifacts``: six forged adapter announcements mid-stream, one at a time (no sha256, a uri outside
  the artifact store, a path-traversal version, a wrong checksum, NaN tensors and an
  out-of-range neighbour index behind correct checksums); all must be refused
  (``driftrec_artifacts_rejected_total``) and no update may name a forged version;
- ``scorer_join``, ``scorer_leave``: scorers joining and leaving the group mid-stream;
  ``redis_failover``, ``redis_failover_lagging``: a Redis Cluster master killed, its replica
  (in sync, or lagging) promoted (:mod:`driftrec.bench.scaleout_faults`).

Without ``--only``, the faults that the state backend allows run: with a single Redis
(``--redis redis://...``) all but the failovers, with a Redis Cluster
(``--redis redis+cluster://HOST:PORT[,...]``) all but ``redis_restart``.

The broker and Redis are stopped and started with ``scripts/services.sh stop|up kafka|redis``
(data kept); point ``--kafka-stop`` etc. at other commands (``docker compose stop kafka``)
for other deployments. Stopping the broker disturbs every other client of it. A cluster
master is killed by pid (on this host; ``--master-kill`` says how elsewhere) and brought back
with ``scripts/services.sh up-cluster`` (``--cluster-start``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import scaleout_faults
from .testbed import Bed, Controls, FaultError, free_port, say

FAULTS = (
    "scorer_sigkill",
    "broker_restart_10s",
    "broker_restart_90s",
    "redis_restart",
    "learner_sigkill",
    "garbage_flood",
    "forged_artifacts",
    "scorer_join",
    "scorer_leave",
    "redis_failover",
    "redis_failover_lagging",
)
#: the faults that need a Redis Cluster, and the one that needs a single Redis
CLUSTER_ONLY = ("redis_failover", "redis_failover_lagging")
SINGLE_ONLY = ("redis_restart",)
COLUMNS = (
    "fault",
    "sent",
    "processed",
    "dead_lettered",
    "lost",
    "applied_twice",
    "updates_lost",
    "up_drop_s",
    "up_back_s",
    "log_lines",
)
#: The outage rows' gauge check: ``driftrec_up{dependency}`` 0 within this many seconds of
#: the dependency going away and 1 within as many of it coming back; the scorer's log lines
#: (its own and its client libraries') during the outage fewer than :data:`MAX_LOG_LINES`.
UP_WITHIN_S = 5.0
MAX_LOG_LINES = 1000
#: The columns of the rows without an outage.
_NO_OUTAGE = {"up_drop_s": "-", "up_back_s": "-", "log_lines": "-"}


@dataclass(frozen=True)
class FaultArgs:
    """What ``driftrec faults`` runs (its flags: :mod:`driftrec.cli.faults`); the connections
    left None come from the settings (``KAFKA_BOOTSTRAP``, ``REDIS_URL``, ``DRIFTREC_MODEL``)."""

    bootstrap: str | None
    redis: str | None  # a redis:// or redis+cluster:// URL
    model: str | None
    events: int  # events generated per fault (at most 40 a user are kept)
    items: int  # catalog size
    partitions: int  # partitions per topic
    seed: int  # seed of the streams and the garbage
    only: list[str] | None  # these faults only (None: all of FAULTS)
    #: the shell commands that stop and start the broker and Redis (:class:`Controls`)
    kafka_stop: str
    kafka_start: str
    redis_stop: str
    redis_start: str
    master_kill: str  # kills a cluster master ({host}, {port}); empty: SIGKILL by pid, here
    cluster_start: str  # brings it back


# ------------------------------------------------------------------------- faults ---
def _halves(bed: Bed) -> tuple[list[Any], list[Any]]:
    n = len(bed.events)
    return bed.events[: n // 2], bed.events[n // 2 :]


def fault_scorer_sigkill(bed: Bed, ctl: Controls, args: FaultArgs) -> dict:
    n = len(bed.events)
    env = {"SCORER_BATCH_SIZE": "64"}  # small batches: the kill lands between commits
    p, th = bed.a_third_in(env)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    at = bed.covered()
    say(f"  scorer killed at {at:,} of {n:,} events; restarting it")
    p = bed.start(extra_env=env)
    bed.wait(bed.drained(th), 300, "the stream after the restart", p)
    rc = bed.stop(p)
    return dict(bed.account("scorer_sigkill", bed.events), at=at, exit=rc)


class GaugeWatch:
    """Samples a service's ``driftrec_up{dependency=DEP}`` every ``every_s`` on a thread,
    and counts the lines of its log, from the moment a dependency is stopped until it is
    back (:meth:`figures`: ``up_drop_s``, ``up_back_s``, ``log_lines``)."""

    def __init__(self, bed: Bed, port: int, dep: str, every_s: float = 0.5) -> None:
        import threading

        self.bed, self.port, self.dep, self.every_s = bed, port, dep, every_s
        self.samples: list[tuple[float, float | None]] = []
        self._stop = threading.Event()
        self._log_at = os.path.getsize(bed.log_path) if os.path.exists(bed.log_path) else 0
        self.gone = self.back = 0.0  # when the dependency stopped answering, answered again
        self._th = threading.Thread(target=self._run, name="faults-gauge", daemon=True)
        self._th.start()

    def _run(self) -> None:
        key = f'driftrec_up{{dependency="{self.dep}"}}'
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), scrape(self.port).get(key)))
            self._stop.wait(self.every_s)

    def _first(self, value: float, since: float) -> float | None:
        return next((t for t, v in self.samples if t >= since and v == value), None)

    def wait_back(self, timeout_s: float = 60.0) -> None:
        """Until the gauge says 1 again (or ``timeout_s``), then stop sampling."""
        deadline = time.monotonic() + timeout_s
        while self._first(1.0, self.back) is None and time.monotonic() < deadline:
            time.sleep(self.every_s)
        self._stop.set()
        self._th.join(5)

    def figures(self) -> dict[str, Any]:
        """Seconds from the dependency gone to the gauge at 0 (None: never), from it back
        to the gauge at 1 (None: never), and the log lines written meanwhile."""
        drop = self._first(0.0, self.gone - 60)  # a drop while the stop command runs counts too
        back = self._first(1.0, self.back)
        end = back if back is not None else time.monotonic()
        with open(self.bed.log_path, "rb") as f:
            f.seek(self._log_at)
            text = f.read().decode(errors="replace")
        return {
            "up_drop_s": None if drop is None or drop > end else round(max(0.0, drop - self.gone), 1),
            "up_back_s": None if back is None else round(max(0.0, back - self.back), 1),
            "log_lines": text.count("\n"),
            "outage_log_s": round(end - self.gone, 1),
            # driftrec's own lines about it (driftrec.app.health): one each way
            "said_lost": text.count(f": lost {self.dep}"),
            "said_back": text.count(f": connected again to {self.dep} after"),
        }


def _broker_restart(down_s: float) -> Callable[[Bed, Controls, FaultArgs], dict]:
    def fault(bed: Bed, ctl: Controls, args: FaultArgs) -> dict:
        n = len(bed.events)
        port = free_port()
        p, th = bed.a_third_in({"METRICS_PORT": str(port)})
        watch = GaugeWatch(bed, port, "kafka")
        ctl.stopped("kafka", bed.bootstrap.split(",")[0])
        try:
            t0 = watch.gone = time.monotonic()  # the broker no longer answers
            at = bed.covered()
            say(f"  broker stopped at {at:,} of {n:,} events; down for {down_s:.0f} s")
            while time.monotonic() - t0 < down_s and p.poll() is None:
                time.sleep(0.5)
        finally:  # interrupted or not, the broker is started again
            ctl.run("kafka_start")
        watch.back = time.monotonic()
        down = watch.back - t0
        alive = p.poll() is None
        say(f"  broker back after {down:.0f} s without it; the scorer {'waited' if alive else 'EXITED'}")
        watch.wait_back()
        if not alive:  # a row that says so, and the rest of the stream by a new scorer
            p = bed.start()
        bed.wait(bed.drained(th), 300, "the stream after the broker came back", p)
        rc = bed.stop(p)
        return dict(
            bed.account(f"broker_restart_{down_s:.0f}s", bed.events),
            **watch.figures(),
            at=at,
            down_s=round(down, 1),
            resent=bed.resends,
            survived=alive,
            exit=rc,
        )

    return fault


def _redis_address(url: str) -> str:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"


def fault_redis_restart(bed: Bed, ctl: Controls, args: FaultArgs) -> dict:
    if bed.cluster:
        raise FaultError("redis_restart restarts a single Redis: run it with --redis redis://HOST:PORT/DB")

    port = free_port()
    p, th = bed.a_third_in({"METRICS_PORT": str(port)})
    at = bed.covered()
    watch = GaugeWatch(bed, port, "redis")
    ctl.stopped("redis", _redis_address(bed.settings.redis_url))
    try:
        watch.gone = time.monotonic()
        say("  Redis stopped; the stream goes on while it is down (5 s)")
        time.sleep(5)
        alive = p.poll() is None
    finally:  # interrupted or not, Redis is started again
        ctl.run("redis_start")
    watch.back = time.monotonic()
    say(f"  Redis back; the scorer {'waited' if alive else 'EXITED'}")
    watch.wait_back()
    bed.store.close()
    bed.store = bed.open_store()
    if not alive:
        p = bed.start()
    bed.wait(bed.drained(th), 300, "the stream after Redis came back", p)
    rc = bed.stop(p)
    return dict(bed.account("redis_restart", bed.events), **watch.figures(), at=at, survived=alive, exit=rc)


def fault_learner_sigkill(bed: Bed, ctl: Controls, args: FaultArgs) -> dict:
    n = len(bed.events)
    first, second = _halves(bed)
    env = {
        "LEARNER_TRAIN_EVERY": str(len(first)),
        "LEARNER_WINDOW": str(max(n, 4096)),
        "LEARNER_LORA_EVERY": "1",
    }
    group = f"{bed.prefix}-learner"
    bed.send_events(first)
    mark = len(bed.log_tail(10**9))
    p = bed.start("learner", env)
    started = re.compile(r"learner: training \(")
    bed.wait(lambda: bool(started.search(bed.log_tail(10**9)[mark:])), 600, "the first training", p)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    counters = bed.store.offsets(f"{group}/counters")
    mid = int(counters.get("trainings", 0)) == 0
    say(
        f"  learner killed {'during' if mid else 'after'} its first training; the rest goes out, restarting it"
    )
    bed.send_events(second)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftrec.cli",
            "learner",
            "--group",
            group,
            "--exit-when-idle",
            "3",
            "--train-on-exit",
        ],
        env=dict(bed.env, **env),
        capture_output=True,
        timeout=900,
    )
    if r.returncode != 0:
        raise FaultError(
            f"the restarted learner exited {r.returncode}: {r.stderr.decode(errors='replace')[-600:]}"
        )
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    window = (out.get("last_training_window") or {}).get("n_events", 0)
    return {
        "fault": "learner_sigkill",
        "sent": n,
        "processed": window,
        "dead_lettered": 0,
        "lost": n - window,
        "applied_twice": max(0, out["seen"] - n),
        "updates_lost": 0 if out["trainings"] >= 1 else 1,
        "killed_mid_training": mid,
        "seen": out["seen"],
        "trainings_after_restart": out["trainings"],
    }


def fault_garbage_flood(bed: Bed, ctl: Controls, args: FaultArgs) -> dict:
    from driftrec.stream import Message, encode
    from driftrec.stream.events import Rejected, decode

    from .fuzz import KINDS, fuzz_record

    rng = random.Random(args.seed)
    msgs, garbage = [], 0
    for e in bed.events:
        msgs.append(Message(bed.names.for_type(e.type), encode(e), e.user_id.encode()))
        while True:  # one record the decoder must reject per good event
            raw = fuzz_record(rng, e, rng.choice(KINDS))
            if isinstance(decode(raw), Rejected):
                break
        msgs.append(Message(bed.names.events[rng.randrange(len(bed.names.events))], raw, b"garbage"))
        garbage += 1
    p = bed.start()
    bed.send(msgs)
    total = len(msgs)
    bed.wait(lambda: bed.covered() >= total, 600, "the flood", p)
    rc = bed.stop(p)
    return dict(bed.account("garbage_flood", bed.events, garbage), exit=rc)


def _forge(bed: Bed) -> tuple[list[dict], set[str]]:
    """Six forged announcements; the versions they name."""
    from dataclasses import replace

    import numpy as np

    from driftrec.app.system import SystemSpec, build_system
    from driftrec.model import write_artifact

    st = bed.settings
    spec = replace(SystemSpec.from_settings(st), device="cpu", cache_dir=None)
    base = build_system(spec, bed.items, serve=False, learn=False)  # the encoder and its table
    enc, table = base.encoder, base.table
    store = bed.env["ARTIFACT_DIR"]
    elsewhere = os.path.join(bed.work, "elsewhere")
    window = {"from_ts": 0, "to_ts": 1, "n_events": 2}
    key = st.artifact_key

    def art(where: str, version: str, t: Any) -> dict:
        return write_artifact(where, version, {}, None, t, enc.base_model, window, {}, key=key)

    def tampered(**parts: Any) -> Any:
        return replace(table, **parts)

    nan = table.residual.copy()
    nan[0, :] = np.nan
    idx = np.full((len(table.item_ids), 4), 10**6, np.int32)
    recs = []
    r = art(store, "forged-nosha", table)
    recs.append({k: v for k, v in r.items() if k != "sha256"})
    recs.append(art(elsewhere, "forged-outside", table))
    recs.append(dict(art(store, "forged-traversal", table), version="../../../tmp/x/evil"))
    recs.append(dict(art(store, "forged-checksum", table), sha256="0" * 64))
    recs.append(art(store, "forged-nan", tampered(residual=nan)))
    recs.append(
        art(
            store,
            "forged-index",
            tampered(nbr_idx=idx, nbr_w=np.ones(idx.shape, np.float32), cooc_weight=0.5),
        )
    )
    return recs, {r["version"] for r in recs}


def scrape(port: int) -> dict[str, float]:
    """One scrape of a service's /metrics: ``{sample: value}`` (empty while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {m[1]: float(m[2]) for m in re.finditer(r"^([^#\s]+) (\S+)$", text, re.M)}


def fault_forged_artifacts(bed: Bed, ctl: Controls, args: FaultArgs) -> dict:
    from driftrec.stream import Message

    first, second = _halves(bed)
    forged, versions = _forge(bed)
    port = free_port()
    bed.send_events(first)
    p = bed.start(extra_env={"METRICS_PORT": str(port)})
    bed.wait(lambda: bed.covered() >= len(first) // 2, 300, "a quarter of the stream", p)

    def rejected() -> dict[str, float]:
        pat = re.compile(r'driftrec_artifacts_rejected_total\{reason="(\w+)"\}')
        return {m[1]: v for k, v in scrape(port).items() if (m := pat.fullmatch(k)) and v}

    # one at a time, each checked before the next: announcements that come while another is
    # being prepared are superseded by the newest, unchecked (never served either way)
    for k, r in enumerate(forged):
        key = str(r.get("version", "")).encode()
        bed.send([Message(bed.names.adapters, json.dumps(r).encode(), key)])
        until = time.monotonic() + 60
        while sum(rejected().values()) <= k and time.monotonic() < until and p.poll() is None:
            time.sleep(0.2)
    bed.send_events(second)
    bed.wait(lambda: bed.covered() >= len(bed.events), 300, "the stream after the forgeries", p)

    deadline = time.monotonic() + 60  # refusals are checked off the hot path
    while sum(rejected().values()) < len(forged) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    reasons = rejected()
    rc = bed.stop(p)
    from driftrec.stream.kafka import read_topic

    served = sum(
        1
        for r in read_topic(bed.bootstrap, bed.names.recs, security=bed.sec)
        if r.value and json.loads(r.value).get("model_version") in versions
    )
    return dict(
        bed.account("forged_artifacts", bed.events),
        forged=len(forged),
        rejected=int(sum(reasons.values())),
        reasons=reasons,
        updates_from_forged=served,
        exit=rc,
    )


RUNNERS: dict[str, Callable[[Bed, Controls, FaultArgs], dict]] = {
    "scorer_sigkill": fault_scorer_sigkill,
    "broker_restart_10s": _broker_restart(10),
    "broker_restart_90s": _broker_restart(90),
    "redis_restart": fault_redis_restart,
    "learner_sigkill": fault_learner_sigkill,
    "garbage_flood": fault_garbage_flood,
    "forged_artifacts": fault_forged_artifacts,
    **scaleout_faults.RUNNERS,
}


def default_faults(cluster: bool) -> list[str]:
    """The faults run without ``--only``: those the state backend allows."""
    skip = SINGLE_ONLY if cluster else CLUSTER_ONLY
    return [f for f in FAULTS if f not in skip]


def row_ok(row: dict) -> bool:
    ok = (
        "error" not in row
        and row["lost"] == 0
        and row["applied_twice"] == 0
        and row["updates_lost"] == 0
        and row.get("exit", 0) == 0  # the service stopped cleanly when asked at the end
    )
    if row["fault"] == "forged_artifacts":
        ok = ok and row.get("rejected") == row.get("forged") and row.get("updates_from_forged") == 0
    if row["fault"] == "garbage_flood":
        ok = ok and row["dlq_with_reason"] >= row["dead_lettered"]
    if row.get("up_drop_s", "-") != "-":  # an outage row: the gauge saw it, the log stayed small
        ok = ok and all(
            isinstance(row[k], (int, float)) and row[k] <= UP_WITHIN_S for k in ("up_drop_s", "up_back_s")
        )
        ok = ok and isinstance(row["log_lines"], int) and row["log_lines"] < MAX_LOG_LINES
    return ok


def table(rows: list[dict]) -> str:
    head = [*COLUMNS, "ok"]
    cells = [[str(r.get(c, "-")) for c in COLUMNS] + ["yes" if row_ok(r) else "NO"] for r in rows]
    w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = lambda xs: "  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(xs))  # noqa: E731
    return "\n".join([line(head), line(["-" * x for x in w]), *(line(c) for c in cells)])


def run(args: FaultArgs) -> list[dict]:
    from driftrec.app.settings import Settings
    from driftrec.stream import generate

    cluster = "+cluster://" in (args.redis or "")  # REDIS_URL names a single Redis
    st = Settings.from_env(
        kafka_bootstrap=args.bootstrap, redis_url=None if cluster else args.redis, model=args.model
    )
    redis = args.redis if cluster else st.redis_url
    # a new topic's first sends, and every send near a broker restart, are retried: expected here
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    ctl = Controls(
        args.kafka_stop,
        args.kafka_start,
        args.redis_stop,
        args.redis_start,
        args.master_kill,
        args.cluster_start,
    )
    chosen = args.only or default_faults(cluster)
    say(
        f"{len(chosen)} fault(s), {args.events:,} events each, broker {st.kafka_bootstrap} "
        f"({st.kafka_security().describe()})"
    )
    rows = []
    for i, name in enumerate(chosen, 1):
        s = generate(
            "abrupt",
            n_events=args.events,
            n_users=max(10, args.events // 10),
            n_items=args.items,
            seed=args.seed + i,
        )
        per_user: Counter[str] = Counter()
        events = []  # at most 40 per user: a user's history (50) then holds every event applied
        for e in s.events:
            per_user[e.user_id] += 1
            if per_user[e.user_id] <= 40:
                events.append(e)
        say(f"{i}/{len(chosen)} {name}")
        t0 = time.monotonic()
        bed = None
        try:
            bed = Bed(st, events, s.items, args.partitions, redis)
            row = RUNNERS[name](bed, ctl, args)
            bed.keep = bed.keep or not row_ok(row)  # the services' log of a row not met
        except Exception as exc:  # noqa: BLE001 - a fault that could not run is a row saying why
            if bed is not None:
                bed.keep = True
            row = {"fault": name, "sent": len(events), "error": f"{type(exc).__name__}: {exc}"}
            for c in COLUMNS[2:]:
                row.setdefault(c, "-")
            say(f"  could not run: {row['error']}")
        finally:
            if bed is not None:
                bed.close()
        for c, v in _NO_OUTAGE.items():
            row.setdefault(c, v)
        row["seconds"] = round(time.monotonic() - t0, 1)
        say(f"  {'ok' if row_ok(row) else 'NOT OK'} in {row['seconds']:.0f} s: " + json.dumps(row))
        rows.append(row)
    return rows
