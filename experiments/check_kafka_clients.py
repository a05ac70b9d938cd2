#!/usr/bin/env python3
"""Check that the Python Kafka clients driftrec uses work against a broker.

Runs, against $KAFKA_BOOTSTRAP (default 127.0.0.1:9092), a bounded set of
round trips and prints one OK/FAIL line per step:

  kafka-python : admin create_topics with configs, describe_configs,
                 produce (acks=all), consume in a group + commit, committed
                 offsets via admin, idempotent producer, delete_topics
  aiokafka     : admin create_topics, produce, consume in a group + commit,
                 committed(), idempotent producer, transactional producer with
                 send_offsets_to_transaction (what faust's exactly_once uses)
  faust        : a faust-streaming worker (subprocess) whose agent counts a
                 topic into a Table; checks the count and the group's commit

Usage:  scripts/services.sh up
        KAFKA_BOOTSTRAP=127.0.0.1:9092 $VENV/bin/python experiments/check_kafka_clients.py [--skip-faust]

Every client connects with the transport security of driftrec's settings
(KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*; see `driftrec settings`), e.g. against
the SASL_SSL broker of `scripts/services.sh up-secure`:

        eval "$(scripts/services.sh env-secure)"; $VENV/bin/python experiments/check_kafka_clients.py

The password is never printed.

Exit status 0 only if no step FAILs (SKIP = feature missing from that client
version). CHECK_VERBOSE=1 prints tracebacks. Topics it creates are named
driftrec-check-<random> and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid

from driftrec.app.settings import Settings

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
N = 20
RESULTS: list[tuple[str, bool, str]] = []
#: The clients' transport security (a driftrec.stream.security.KafkaSecurity), from the
#: environment (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*); set in main().
SEC = None


def kp_kw() -> dict:
    """The security keyword arguments of kafka-python's clients."""
    return SEC.kafka_python_kwargs() if SEC is not None else {}


def aio_kw() -> dict:
    """The security keyword arguments of aiokafka's clients."""
    return SEC.aiokafka_kwargs() if SEC is not None else {}


def scrub(text: str) -> str:
    """``text`` without the SASL password (should a client ever put it in an error)."""
    return SEC.scrub(text) if SEC is not None else text


def kp_new_topics(admin, specs: dict) -> None:
    """create_topics for kafka-python 3.x (dict form) or 2.x (NewTopic list).

    specs: {name: {"num_partitions": int, "replication_factor": int, "configs": {...}}}
    """
    if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3
        admin.create_topics(specs, timeout_ms=15000)
        return
    from kafka.admin import NewTopic

    admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=o.get("num_partitions", 1),
                replication_factor=o.get("replication_factor", 1),
                topic_configs=o.get("configs", {}),
            )
            for name, o in specs.items()
        ],
        timeout_ms=15000,
    )


def kp_group_offsets(admin, group: str) -> dict:
    """{TopicPartition: OffsetAndMetadata} for one group, kafka-python 2.x or 3.x."""
    if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3
        return admin.list_group_offsets({group: None})[group]
    return admin.list_consumer_group_offsets(group)


class Skip(Exception):
    """Raised by a step whose feature this client version lacks."""


def step(name: str, fn, *args):
    t0 = time.monotonic()
    try:
        detail = fn(*args)
        ok = True
    except Skip as exc:
        print(f"SKIP {name:<48} {time.monotonic() - t0:5.1f}s  {exc}", flush=True)
        return True
    except Exception as exc:  # noqa: BLE001 - report every failure
        ok = False
        detail = scrub(f"{type(exc).__name__}: {exc}")
        if os.environ.get("CHECK_VERBOSE"):
            print(scrub(traceback.format_exc()), end="", file=sys.stderr)
    dt = time.monotonic() - t0
    RESULTS.append((name, ok, str(detail or "")))
    print(f"{'OK  ' if ok else 'FAIL'} {name:<48} {dt:5.1f}s  {detail or ''}", flush=True)
    return ok


# ------------------------------------------------------------ kafka-python --


def kp_steps(topic: str, group: str) -> None:
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = None

    def admin_connect():
        nonlocal admin
        admin = KafkaAdminClient(
            bootstrap_servers=BOOTSTRAP, client_id="driftrec-check", request_timeout_ms=15000, **kp_kw()
        )

    def create():
        kp_new_topics(
            admin,
            {
                topic: {
                    "num_partitions": 2,
                    "replication_factor": 1,
                    "configs": {
                        "retention.ms": "3600000",
                        "cleanup.policy": "delete",
                        "max.message.bytes": "2097152",
                    },
                }
            },
        )
        deadline = time.time() + 15
        while topic not in admin.list_topics():
            if time.time() > deadline:
                raise RuntimeError("topic not listed after create")
            time.sleep(0.2)

    def describe():
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        text = repr(res)
        for want in ("retention.ms", "3600000", "max.message.bytes", "2097152"):
            if want not in text:
                raise RuntimeError(f"{want!r} missing from describe_configs result")

    def produce():
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=5, **kp_kw())
        futs = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(N)]
        p.flush(timeout=15)
        for f in futs:
            f.get(timeout=15)
        p.close(timeout=10)

    def consume_commit():
        c = KafkaConsumer(
            topic,
            bootstrap_servers=BOOTSTRAP,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=20000,
            **kp_kw(),
        )
        got = 0
        deadline = time.time() + 30
        while got < N and time.time() < deadline:
            for recs in c.poll(timeout_ms=1000).values():
                got += len(recs)
        if got < N:
            c.close()
            raise RuntimeError(f"consumed {got}/{N}")
        c.commit()
        committed = sum(c.committed(TopicPartition(topic, p)) or 0 for p in (0, 1))
        c.close()
        if committed != N:
            raise RuntimeError(f"committed offsets sum {committed} != {N}")
        return f"consumed {got}, committed {committed}"

    def group_offsets():
        offs = kp_group_offsets(admin, group)
        total = sum(m.offset for tp, m in offs.items() if tp.topic == topic)
        if total != N:
            raise RuntimeError(f"group offsets sum {total} != {N}: {offs}")

    def idempotent():
        if "enable_idempotence" not in KafkaProducer.DEFAULT_CONFIG:
            raise Skip(f"kafka-python {kafka.__version__} has no idempotent producer")
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, **kp_kw())
        p.send(topic, b"idem").get(timeout=15)
        p.close(timeout=10)

    if not step("kafka-python: admin connect", admin_connect):
        return
    if step("kafka-python: create_topics with configs", create):
        step("kafka-python: describe_configs", describe)
        if step("kafka-python: produce acks=all", produce):
            if step("kafka-python: consume in group + commit", consume_commit):
                step("kafka-python: admin group offsets", group_offsets)
        step("kafka-python: idempotent producer", idempotent)
    admin.close()


# ---------------------------------------------------------------- aiokafka --


async def aio_steps(topic: str, group: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def astep(name, coro_fn):
        t0 = time.monotonic()
        try:
            detail = await asyncio.wait_for(coro_fn(), timeout=60)
            ok = True
        except Exception as exc:  # noqa: BLE001
            ok = False
            detail = scrub(f"{type(exc).__name__}: {exc}")
            if os.environ.get("CHECK_VERBOSE"):
                print(scrub(traceback.format_exc()), end="", file=sys.stderr)
        RESULTS.append((name, ok, str(detail or "")))
        print(
            f"{'OK  ' if ok else 'FAIL'} {name:<48} {time.monotonic() - t0:5.1f}s  {detail or ''}", flush=True
        )
        return ok

    async def create():
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, **aio_kw())
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        topic,
                        num_partitions=2,
                        replication_factor=1,
                        topic_configs={"retention.ms": "3600000"},
                    )
                ]
            )
            for _ in range(50):
                if topic in await admin.list_topics():
                    return
                await asyncio.sleep(0.2)
            raise RuntimeError("topic not listed after create")
        finally:
            await admin.close()

    async def produce():
        p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", **aio_kw())
        await p.start()
        try:
            for i in range(N):
                await p.send_and_wait(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
        finally:
            await p.stop()

    async def consume_commit():
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=BOOTSTRAP,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **aio_kw(),
        )
        await c.start()
        try:
            got = 0
            deadline = time.time() + 30
            while got < N and time.time() < deadline:
                for recs in (await c.getmany(timeout_ms=1000)).values():
                    got += len(recs)
            if got < N:
                raise RuntimeError(f"consumed {got}/{N}")
            await c.commit()
            committed = 0
            for p in (0, 1):
                committed += (await c.committed(TopicPartition(topic, p))) or 0
            if committed != N:
                raise RuntimeError(f"committed offsets sum {committed} != {N}")
            return f"consumed {got}, committed {committed}"
        finally:
            await c.stop()

    async def idempotent():
        p = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, **aio_kw())
        await p.start()
        try:
            await p.send_and_wait(topic, b"idem")
        finally:
            await p.stop()

    async def transactional():
        p = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, transactional_id=f"driftrec-check-{uuid.uuid4().hex[:8]}", **aio_kw()
        )
        await p.start()
        try:
            async with p.transaction():
                await p.send(topic, b"txn")
                await p.send_offsets_to_transaction({TopicPartition(topic, 0): 1}, group + "-txn")
        finally:
            await p.stop()

    if await astep("aiokafka: admin create_topics", create):
        if await astep("aiokafka: produce acks=all", produce):
            await astep("aiokafka: consume in group + commit", consume_commit)
        await astep("aiokafka: idempotent producer", idempotent)
        await astep("aiokafka: transaction + send_offsets_to_txn", transactional)


# ------------------------------------------------------------------- faust --


def faust_worker(topic: str, app_id: str, n: int) -> None:
    """Runs in a subprocess: count `topic` into a Table, then SIGTERM self."""
    import logging
    import tempfile

    import faust

    app = faust.App(
        app_id,
        broker=f"kafka://{BOOTSTRAP}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix=f"{app_id}-"),  # not in the working tree
        web_enabled=False,
        topic_partitions=1,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        **(SEC.faust_config() if SEC is not None else {}),
    )
    src = app.topic(topic, value_serializer="raw", key_serializer="raw")
    counts = app.Table("counts", default=int, partitions=1)
    seen = {"n": 0}

    @app.agent(src)
    async def count(stream):
        async for _value in stream:
            counts["total"] += 1
            seen["n"] += 1
            if seen["n"] == n:
                print(json.dumps({"faust_count": counts["total"]}), flush=True)
                # give the commit loop time to commit, then stop like ^C would
                asyncio.get_event_loop().call_later(3.0, os.kill, os.getpid(), signal.SIGTERM)

    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True)
    worker.execute_from_commandline()


def faust_steps(topic: str, app_id: str) -> None:
    from kafka import KafkaAdminClient, KafkaProducer

    def prepare():
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, **kp_kw())
        kp_new_topics(admin, {topic: {"num_partitions": 1, "replication_factor": 1}})
        admin.close()
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, **kp_kw())
        for i in range(N):
            p.send(topic, f"e{i}".encode())
        p.flush(timeout=15)
        p.close()

    def run_worker():
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--faust-worker", topic, app_id],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "KAFKA_BOOTSTRAP": BOOTSTRAP},
        )
        count = None
        for line in (proc.stdout + proc.stderr).splitlines():
            if '{"faust_count"' in line:  # faust routes print() into its log
                count = json.loads(line[line.index("{") :]).get("faust_count")
        if count != N:
            tail = scrub(proc.stdout + proc.stderr)[-3000:]
            raise RuntimeError(f"faust counted {count} (want {N}), exit {proc.returncode}:\n{tail}")
        return f"agent counted {count} into a Table, worker exit {proc.returncode}"

    def committed():
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, **kp_kw())
        try:
            offs = kp_group_offsets(admin, app_id)
        finally:
            admin.close()
        total = sum(m.offset for tp, m in offs.items() if tp.topic == topic)
        if total != N:
            raise RuntimeError(f"faust group committed {total} != {N}: {offs}")
        return f"group {app_id} committed {total}"

    if step("faust: create + fill source topic", prepare):
        if step("faust: worker agent counts topic", run_worker):
            step("faust: consumer group offsets committed", committed)


# -------------------------------------------------------------------- main --


def cleanup(topics: list[str]) -> None:
    try:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, **kp_kw())
        existing = set(admin.list_topics())
        doomed = [t for t in existing if any(t.startswith(p) for p in topics)]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=15000)
        admin.close()
        print(f"cleanup: deleted {len(doomed)} topic(s)")
    except Exception as exc:  # noqa: BLE001
        print(scrub(f"cleanup: could not delete test topics: {exc}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-faust", action="store_true")
    ap.add_argument("--faust-worker", nargs=2, metavar=("TOPIC", "APP_ID"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    global SEC
    # the worker subprocess inherits the environment and reads the same settings (no
    # password on a command line)
    SEC = Settings.from_env().kafka_security()
    if args.faust_worker:
        faust_worker(*args.faust_worker, N)
        return 0

    import aiokafka
    import kafka

    versions = f"kafka-python {kafka.__version__}, aiokafka {aiokafka.__version__}"
    try:
        import faust

        versions += f", faust-streaming {faust.__version__}"
    except ImportError:
        pass
    print(f"checking Kafka clients against {BOOTSTRAP} ({SEC.describe()}; {versions})", flush=True)

    run = uuid.uuid4().hex[:8]
    prefix = f"driftrec-check-{run}"
    kp_steps(f"{prefix}-kp", f"{prefix}-kp-group")
    asyncio.run(aio_steps(f"{prefix}-aio", f"{prefix}-aio-group"))
    if not args.skip_faust:
        faust_steps(f"{prefix}-faust", f"{prefix}-faustapp")
    cleanup([prefix])

    bad = [r for r in RESULTS if not r[1]]
    print(f"kafka client checks: {len(RESULTS) - len(bad)} OK, {len(bad)} FAIL")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
