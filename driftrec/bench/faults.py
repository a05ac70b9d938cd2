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
- ``forged_artifacts``: six forged adapter announcements mid-stream (no sha256, a uri outside
  the artifact store, a path-traversal version, a wrong checksum, NaN tensors and an
  out-of-range neighbour index behind correct checksums); all must be refused
  (``driftrec_artifacts_rejected_total``) and no update may name a forged version.

The broker and Redis are stopped and started with ``scripts/services.sh stop|up kafka|redis``
(data kept); point ``--kafka-stop`` etc. at other commands (``docker compose stop kafka``)
for other deployments. Stopping the broker disturbs every other client of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kafka import service_env

FAULTS = (
    "scorer_sigkill",
    "broker_restart_10s",
    "broker_restart_90s",
    "redis_restart",
    "learner_sigkill",
    "garbage_flood",
    "forged_artifacts",
)
COLUMNS = ("fault", "sent", "processed", "dead_lettered", "lost", "applied_twice", "updates_lost")
SERVICES_SH = str(Path(__file__).resolve().parents[2] / "scripts" / "services.sh")  # in a checkout


def say(msg: str) -> None:
    print(f"[faults] {msg}", file=sys.stderr, flush=True)


class FaultError(RuntimeError):
    """A step of a fault could not be carried out (the row says so; the suite goes on)."""


@dataclass
class Controls:
    """Shell commands that stop and start the broker and Redis, keeping their data."""

    kafka_stop: str = f"{SERVICES_SH} stop kafka"
    kafka_start: str = f"{SERVICES_SH} up kafka"
    redis_stop: str = f"{SERVICES_SH} stop redis"
    redis_start: str = f"{SERVICES_SH} up redis"

    def run(self, which: str) -> None:
        cmd = getattr(self, which)
        try:
            r = subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=180)
        except FileNotFoundError:
            flag = "--" + which.replace("_", "-")
            raise FaultError(
                f"`{cmd}`: no such program. Run driftrec faults from a checkout (scripts/services.sh), "
                f"or say how to do it with {flag} (e.g. {flag} 'docker compose "
                f"{which.split('_')[1]} {which.split('_')[0]}')"
            ) from None
        if r.returncode != 0:
            raise FaultError(f"`{cmd}` failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")

    def stopped(self, which: str, address: str) -> None:
        """Runs ``<which>_stop`` and checks that ``host:port`` no longer answers (a service
        that ``scripts/services.sh`` did not start is left running by it)."""
        self.run(f"{which}_stop")
        host, _, port = address.rpartition(":")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((host or "127.0.0.1", int(port)), timeout=1).close()
            except OSError:
                return
            if time.monotonic() > deadline:
                raise FaultError(
                    f"{address} still answers 30 s after `{self.__dict__[which + '_stop']}`: that "
                    f"{which} was not started by it. Say how to stop and start it: "
                    f"--{which}-stop/--{which}-start"
                )
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bed:
    """One fault's own topics, Redis namespace, artifact store and service processes."""

    settings: Any
    events: list[Any]
    items: list[Any]
    partitions: int
    prefix: str = field(default_factory=lambda: f"faults{uuid.uuid4().hex[:8]}")
    procs: list[subprocess.Popen] = field(default_factory=list)
    keep: bool = False  # keep the services' log (a fault that went wrong)

    def __post_init__(self) -> None:
        from driftrec.app.runtime import TopicNames
        from driftrec.app.services import ensure_topics
        from driftrec.state.redis import RedisStateStore

        st = self.settings
        self.sec = st.kafka_security()
        self.names = TopicNames(self.prefix)
        self.bootstrap = st.kafka_bootstrap
        sep = "&" if "?" in st.redis_url else "?"
        self.state_url = f"{st.redis_url}{sep}prefix={self.prefix}"
        self.redis_opts = st.redis_options()
        self.store = RedisStateStore.from_url(self.state_url, **self.redis_opts)
        self.env = dict(service_env(self.bootstrap, self.state_url, self.prefix, st.model))
        self.env["SERVICE_RETRY_S"] = "300"
        self.work = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.log_path = os.path.join(self.work, "service.log")
        ensure_topics(self.bootstrap, self.names, self.partitions, security=self.sec)
        self.send_items()

    # ---- input -------------------------------------------------------------------------
    def send(self, msgs: Sequence[Any]) -> None:
        from driftrec.stream.kafka import KafkaSink

        sink = KafkaSink(self.bootstrap, security=self.sec)
        try:
            sink.send_many(list(msgs))
        finally:
            sink.close()

    def send_items(self) -> None:
        from driftrec.stream import Message, encode_item

        self.send([Message(self.names.items, encode_item(i), i.item_id.encode()) for i in self.items])

    def send_events(self, events: Sequence[Any]) -> None:
        from driftrec.stream import Message, encode

        self.send([Message(self.names.for_type(e.type), encode(e), e.user_id.encode()) for e in events])

    def steady(self, events: Sequence[Any], chunks: int = 100, pause_s: float = 0.05) -> Any:
        """Sends ``events`` in ``chunks`` pieces from a thread, as an app would while the
        services work; a piece the broker does not acknowledge (it is down) is sent again
        until it is (a resend may write a record twice: the scorer must apply it once).
        Returns the thread; ``self.resends`` counts the pieces sent again."""
        import threading

        self.resends = 0
        step = max(1, len(events) // chunks)

        def produce() -> None:
            deadline = time.monotonic() + 900
            for i in range(0, len(events), step):
                while True:
                    try:
                        self.send_events(events[i : i + step])
                        break
                    except Exception:  # noqa: BLE001 - the fault under test; sent again
                        if time.monotonic() > deadline:
                            raise
                        self.resends += 1
                        time.sleep(1.0)
                time.sleep(pause_s)

        th = threading.Thread(target=produce, name="faults-producer", daemon=True)
        th.start()
        return th

    def end(self) -> int:
        """Records on the event topics now (resent pieces included)."""
        from kafka import KafkaConsumer, TopicPartition

        c = KafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.sec.kafka_python_kwargs()
        )
        try:
            tps = [TopicPartition(t, q) for t in self.names.events for q in (c.partitions_for_topic(t) or ())]
            return int(sum(c.end_offsets(tps).values()))
        finally:
            c.close()

    def drained(self, producer: Any) -> Callable[[], bool]:
        """True once ``producer`` is done and the scorer has committed every record."""
        end: list[int] = []  # the topics' end, read once the producer is done

        def pred() -> bool:
            if producer.is_alive():
                return False
            if not end:
                end.append(self.end())
            return self.covered() >= end[0]

        return pred

    # ---- services ----------------------------------------------------------------------
    def start(self, service: str = "scorer", extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        env = dict(self.env, **(extra_env or {}))
        cmd = [sys.executable, "-m", "driftrec.cli", service, "--group", f"{self.prefix}-{service}"]
        with open(self.log_path, "ab") as f:
            p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def log_tail(self, n: int = 1500) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def covered(self, group: str | None = None) -> int:
        """Records of the event topics the scorer has committed (its offsets in Redis)."""
        g = group or f"{self.prefix}-scorer"
        return sum(v for k, v in self.store.offsets(g).items() if not k.startswith(self.names.items + ":"))

    def wait(self, pred: Callable[[], bool], timeout: float, what: str, p: subprocess.Popen | None) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if p is not None and p.poll() is not None:
                raise FaultError(
                    f"the service exited ({p.returncode}) waiting for {what}: {self.log_tail(600)}"
                )
            if time.monotonic() > deadline:
                raise FaultError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)

    def stop(self, p: subprocess.Popen, timeout: float = 60) -> int:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout)
            if rc != 0:
                self.keep = True
                say(f"  the service exited {rc} on SIGTERM; its log ends:\n{self.log_tail(3000)}")
            return rc
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
            raise FaultError("the service did not stop within 60 s of SIGTERM") from None

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        try:
            self.store.drop()
            self.store.close()
        except Exception:  # noqa: BLE001 - cleanup is best effort (Redis may be the fault)
            pass
        if self.keep:
            say(f"  the services' log is kept in {self.log_path}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.env["ARTIFACT_DIR"], ignore_errors=True)
        try:
            from kafka.admin import KafkaAdminClient

            from driftrec.app.services import all_topics

            a = KafkaAdminClient(bootstrap_servers=self.bootstrap, **self.sec.kafka_python_kwargs())
            a.delete_topics(all_topics(self.names))
            a.close()
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass

    def a_third_in(self, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Any]:
        """Starts the scorer, waits for it to read the catalog, sends the stream at a steady
        pace (:meth:`steady`) and returns once a third of it is committed: ``(the scorer,
        the producer thread)``, the moment each fault strikes."""
        p = self.start(extra_env=extra_env)
        catalog = lambda: self.store.offsets(f"{self.prefix}-scorer") != {}  # noqa: E731
        self.wait(catalog, 300, "the scorer to read the catalog", p)
        th = self.steady(self.events)
        self.wait(lambda: self.covered() >= len(self.events) // 3, 300, "a third of the stream", p)
        return p, th

    # ---- the account -------------------------------------------------------------------
    def account(self, fault: str, good: Sequence[Any], garbage: int = 0) -> dict[str, Any]:
        """The row of the table, from Redis and the topics (see the module's docstring)."""
        from driftrec.stream.kafka import read_topic

        users = self.store.users()
        good_ids = {e.event_id for e in good}
        in_history: Counter[str] = Counter()
        truncated = 0
        for u in users.values():
            in_history.update(h.event_id for h in u.history)
            truncated += u.n_events > len(u.history)
        processed = sum(1 for i in in_history if i in good_ids)
        applications = sum(u.n_events for u in users.values())
        dlq = read_topic(self.bootstrap, self.names.dlq, security=self.sec)
        where = Counter(
            (h.get("source_topic"), h.get("partition"), h.get("offset"))
            for h in ({k: v.decode(errors="replace") for k, v in r.headers} for r in dlq)
        )
        dead = len(where)
        sent = len(good) + garbage
        recs = read_topic(self.bootstrap, self.names.recs, security=self.sec)
        last: dict[str, list[str]] = {}
        for r in recs:
            if r.key is not None and r.value:
                last[r.key.decode()] = [x["item_id"] for x in json.loads(r.value)["items"]]
        updates_lost = sum(1 for uid, u in users.items() if u.topk and last.get(uid) != list(u.topk))
        row = {
            "fault": fault,
            "sent": sent,
            "processed": processed,
            "dead_lettered": dead,
            "lost": sent - processed - dead,
            "applied_twice": (applications - processed) + (sum(where.values()) - dead),
            "updates_lost": updates_lost,
            "dlq_with_reason": sum(1 for r in dlq if any(k == "reason" and v for k, v in r.headers)),
            "users": len(users),
            "updates": len(recs),
        }
        if truncated:  # histories dropped their oldest events: lost/twice are estimates
            row["histories_truncated"] = truncated
        return row


# ------------------------------------------------------------------------- faults ---
def _halves(bed: Bed) -> tuple[list[Any], list[Any]]:
    n = len(bed.events)
    return bed.events[: n // 2], bed.events[n // 2 :]


def fault_scorer_sigkill(bed: Bed, ctl: Controls, args: argparse.Namespace) -> dict:
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


def _broker_restart(down_s: float) -> Callable[[Bed, Controls, argparse.Namespace], dict]:
    def fault(bed: Bed, ctl: Controls, args: argparse.Namespace) -> dict:
        n = len(bed.events)
        p, th = bed.a_third_in()
        ctl.stopped("kafka", bed.bootstrap.split(",")[0])
        try:
            t0 = time.monotonic()  # the broker no longer answers
            at = bed.covered()
            say(f"  broker stopped at {at:,} of {n:,} events; down for {down_s:.0f} s")
            while time.monotonic() - t0 < down_s and p.poll() is None:
                time.sleep(0.5)
        finally:  # interrupted or not, the broker is started again
            ctl.run("kafka_start")
        down = time.monotonic() - t0
        alive = p.poll() is None
        say(f"  broker back after {down:.0f} s without it; the scorer {'waited' if alive else 'EXITED'}")
        if not alive:  # a row that says so, and the rest of the stream by a new scorer
            p = bed.start()
        bed.wait(bed.drained(th), 300, "the stream after the broker came back", p)
        rc = bed.stop(p)
        return dict(
            bed.account(f"broker_restart_{down_s:.0f}s", bed.events),
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


def fault_redis_restart(bed: Bed, ctl: Controls, args: argparse.Namespace) -> dict:
    from driftrec.state.redis import RedisStateStore

    p, th = bed.a_third_in()
    at = bed.covered()
    ctl.stopped("redis", _redis_address(bed.settings.redis_url))
    try:
        say("  Redis stopped; the stream goes on while it is down (5 s)")
        time.sleep(5)
        alive = p.poll() is None
    finally:  # interrupted or not, Redis is started again
        ctl.run("redis_start")
    say(f"  Redis back; the scorer {'waited' if alive else 'EXITED'}")
    bed.store.close()
    bed.store = RedisStateStore.from_url(bed.state_url, **bed.redis_opts)
    if not alive:
        p = bed.start()
    bed.wait(bed.drained(th), 300, "the stream after Redis came back", p)
    rc = bed.stop(p)
    return dict(bed.account("redis_restart", bed.events), at=at, survived=alive, exit=rc)


def fault_learner_sigkill(bed: Bed, ctl: Controls, args: argparse.Namespace) -> dict:
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


def fault_garbage_flood(bed: Bed, ctl: Controls, args: argparse.Namespace) -> dict:
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


def fault_forged_artifacts(bed: Bed, ctl: Controls, args: argparse.Namespace) -> dict:
    from driftrec.stream import Message

    first, second = _halves(bed)
    forged, versions = _forge(bed)
    port = _free_port()
    bed.send_events(first)
    p = bed.start(extra_env={"METRICS_PORT": str(port)})
    bed.wait(lambda: bed.covered() >= len(first) // 2, 300, "a quarter of the stream", p)
    bed.send(
        [
            Message(bed.names.adapters, json.dumps(r).encode(), str(r.get("version", "")).encode())
            for r in forged
        ]
    )
    bed.send_events(second)
    bed.wait(lambda: bed.covered() >= len(bed.events), 300, "the stream after the forgeries", p)

    def rejected() -> dict[str, float]:
        pat = re.compile(r'driftrec_artifacts_rejected_total\{reason="(\w+)"\}')
        return {m[1]: v for k, v in scrape(port).items() if (m := pat.fullmatch(k)) and v}

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


RUNNERS: dict[str, Callable[[Bed, Controls, argparse.Namespace], dict]] = {
    "scorer_sigkill": fault_scorer_sigkill,
    "broker_restart_10s": _broker_restart(10),
    "broker_restart_90s": _broker_restart(90),
    "redis_restart": fault_redis_restart,
    "learner_sigkill": fault_learner_sigkill,
    "garbage_flood": fault_garbage_flood,
    "forged_artifacts": fault_forged_artifacts,
}


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
    return ok


def table(rows: list[dict]) -> str:
    head = [*COLUMNS, "ok"]
    cells = [[str(r.get(c, "-")) for c in COLUMNS] + ["yes" if row_ok(r) else "NO"] for r in rows]
    w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = lambda xs: "  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(xs))  # noqa: E731
    return "\n".join([line(head), line(["-" * x for x in w]), *(line(c) for c in cells)])


def run(args: argparse.Namespace) -> list[dict]:
    from driftrec.app.settings import Settings
    from driftrec.stream import generate

    st = Settings.from_env(kafka_bootstrap=args.bootstrap, redis_url=args.redis, model=args.model)
    # a new topic's first sends, and every send near a broker restart, are retried: expected here
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.ERROR)
    ctl = Controls(args.kafka_stop, args.kafka_start, args.redis_stop, args.redis_start)
    chosen = args.only or list(FAULTS)
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
            bed = Bed(st, events, s.items, args.partitions)
            row = RUNNERS[name](bed, ctl, args)
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
        row["seconds"] = round(time.monotonic() - t0, 1)
        say(f"  {'ok' if row_ok(row) else 'NOT OK'} in {row['seconds']:.0f} s: " + json.dumps(row))
        rows.append(row)
    return rows


def add_parser(sub: Any) -> None:
    from driftrec.app.settings import flag_int

    p = sub.add_parser(
        "faults",
        help="fault suite against the running Kafka and Redis: kills, restarts, garbage, forged artifacts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP)")
    p.add_argument("--redis", default=None, help="Redis URL (default: $REDIS_URL)")
    p.add_argument("--model", default=None, help="encoder (default: $DRIFTREC_MODEL or the bundled MiniLM)")
    p.add_argument(
        "--events",
        type=flag_int(20),
        default=4000,
        help="events generated per fault (default 4000; at most 40 a user are kept)",
    )
    p.add_argument("--items", type=flag_int(8), default=300, help="catalog size (default 300)")
    p.add_argument("--partitions", type=flag_int(1, 1000), default=3, help="partitions per topic (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the streams and the garbage")
    p.add_argument(
        "--only",
        nargs="+",
        choices=FAULTS,
        metavar="FAULT",
        help=f"run these faults only (default: all): {', '.join(FAULTS)}",
    )
    ctl = Controls()
    for name, what in (
        ("kafka-stop", "stop the broker, keeping its data"),
        ("kafka-start", "start it again"),
        ("redis-stop", "stop Redis, keeping its data"),
        ("redis-start", "start it again"),
    ):
        p.add_argument(
            f"--{name}",
            default=getattr(ctl, name.replace("-", "_")),
            help=f"command to {what} (default: scripts/services.sh; e.g. 'docker compose stop kafka')",
        )
    p.add_argument("--json", action="store_true", help='last line: {"faults": [{"fault", "sent", ...}, ...]}')
    p.set_defaults(func=cmd_faults)


def cmd_faults(args: argparse.Namespace) -> int:
    rows = run(args)
    print(table(rows))
    bad = [r["fault"] for r in rows if not row_ok(r)]
    if args.json:
        print(json.dumps({"faults": rows}, separators=(",", ":")))
    if bad:
        print(f"driftrec faults: not met for {', '.join(bad)} (details above, on stderr)", file=sys.stderr)
    return 1 if bad else 0
