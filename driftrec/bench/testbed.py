"""The test bed of ``driftrec faults``: one fault's own topics, Redis namespace, artifact
store and service processes (:class:`Bed`), and the commands that stop and start the broker
and Redis (:class:`Controls`, by default ``scripts/services.sh stop|up kafka|redis``), or
kill a master of a Redis Cluster and bring it back (``scripts/services.sh up-cluster``)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kafka import service_env

__all__ = ["SERVICES_SH", "Bed", "Controls", "FaultError", "free_port", "say"]

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
    #: kills a Redis Cluster master: a command with ``{host}`` and ``{port}`` in it, or empty
    #: for SIGKILL of the process the master names (``INFO server``), on this host
    master_kill: str = ""
    #: brings the killed node back (it rejoins as a replica of the one promoted)
    cluster_start: str = f"{SERVICES_SH} up-cluster"

    def run(self, which: str, **fill: str) -> None:
        cmd = getattr(self, which).format(**fill) if fill else getattr(self, which)
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


def free_port() -> int:
    """A TCP port free on this host now (a service's metrics port)."""
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
    #: the state's URL without a prefix: a redis:// or redis+cluster:// (None: REDIS_URL)
    redis: str | None = None
    prefix: str = field(default_factory=lambda: f"faults{uuid.uuid4().hex[:8]}")
    procs: list[subprocess.Popen] = field(default_factory=list)
    keep: bool = False  # keep the services' log (a fault that went wrong)

    def __post_init__(self) -> None:
        from driftrec.app.admin import ensure_topics
        from driftrec.stream import TopicNames

        st = self.settings
        self.sec = st.kafka_security()
        self.names = TopicNames(self.prefix)
        self.bootstrap = st.kafka_bootstrap
        base = self.redis or st.redis_url
        self.cluster = "+cluster://" in base
        sep = "&" if "?" in base else "?"
        self.state_url = f"{base}{sep}prefix={self.prefix}"
        self.redis_opts = st.redis_options()
        self.store = self.open_store()
        self.env = dict(service_env(self.bootstrap, self.state_url, self.prefix, st.model))
        self.env["SERVICE_RETRY_S"] = "300"
        self.work = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.log_path = os.path.join(self.work, "service.log")
        ensure_topics(self.bootstrap, self.names, self.partitions, security=self.sec)
        self.send_items()

    def open_store(self) -> Any:
        """The bed's state store (a single Redis or a cluster, as its URL says)."""
        from driftrec.state import open_state

        return open_state(self.state_url, **self.redis_opts)

    def redis_auth(self) -> dict[str, Any]:
        """The credentials and TLS options of the bed's Redis Cluster URL, for a
        ``redis.Redis`` of one of its nodes."""
        from driftrec.state.redis_cluster import parse_cluster_url

        opts = parse_cluster_url(self.state_url, self.redis_opts.get("ssl_ca_certs"))["options"]
        if opts.get("password") is None and self.redis_opts.get("password"):
            opts["password"] = self.redis_opts["password"]
        return opts

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
        from kafka import TopicPartition

        from driftrec.stream.kafka import consumer

        c = consumer(self.bootstrap, self.sec, enable_auto_commit=False)
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
        """Starts ``driftrec SERVICE`` in the bed's group (every scorer started joins the
        same one); its output goes to the bed's log."""
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

    def members(self) -> int:
        """Members of the scorers' consumer group once it is stable (0 while it rebalances)."""
        from .kafka import group_members

        return group_members(self.bootstrap, f"{self.prefix}-scorer", self.sec)

    def summaries(self) -> list[dict[str, Any]]:
        """The run summaries the scorers printed on exit (one JSON line each; a killed
        scorer prints none), in the order they exited."""
        text, out = self.log_tail(10**9), []
        dec = json.JSONDecoder()
        i = text.find('{"consumed"')
        while i >= 0:
            try:
                out.append(dec.raw_decode(text, i)[0])
            except ValueError:
                pass
            i = text.find('{"consumed"', i + 1)
        return out

    def wait(
        self,
        pred: Callable[[], bool],
        timeout: float,
        what: str,
        p: subprocess.Popen | Sequence[subprocess.Popen] | None,
    ) -> None:
        """Until ``pred()``; a :class:`FaultError` when one of ``p`` (a service or several)
        exits meanwhile or after ``timeout`` seconds."""
        procs = [] if p is None else [p] if isinstance(p, subprocess.Popen) else list(p)
        deadline = time.monotonic() + timeout
        while not pred():
            dead = next((q for q in procs if q.poll() is not None), None)
            if dead is not None:
                raise FaultError(
                    f"the service exited ({dead.returncode}) waiting for {what}: {self.log_tail(600)}"
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
            from driftrec.app.admin import all_topics
            from driftrec.stream.kafka import admin

            a = admin(self.bootstrap, self.sec)
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
        if row["lost"] > 0:  # what a person looks for in the kept log
            row["lost_examples"] = sorted(good_ids - set(in_history))[:5]
        return row
