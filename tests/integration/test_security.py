"""Transport security against the real thing (issue 15, build 4): the secured pair of
``scripts/services.sh up-secure`` — a second broker whose only client listener is SASL_SSL
with SCRAM-SHA-512 users (a throwaway CA), and a TLS-only redis-server with an ACL user.

Through the app's own clients: topic creation (kafka-python admin), a produce/consume round
trip (aiokafka KafkaSink/KafkaSource), a bounded read (kafka-python consumer) and a replay
(kafka-python producer); a wrong password and an untrusted certificate are one-line errors
naming what failed, without the password; a rediss:// round trip with the ACL user's password.
Skipped when the secured pair is not running, except with ``CI=true`` (scripts/test.sh
starts it), where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from driftrec.stream import Event, KafkaSecurity, Message, StreamSecurityError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def secure_env() -> dict[str, str]:
    """The settings `scripts/services.sh env-secure` prints (the secured pair's addresses,
    CA and password files)."""
    script = str(ROOT / "scripts" / "services.sh")
    st = subprocess.run([script, "status-secure"], capture_output=True, text=True)
    if st.returncode != 0:
        msg = f"the secured Kafka/Redis pair is not running ({st.stdout.strip()}); start it: scripts/services.sh up-secure"
        if _in_ci():
            pytest.fail(f"CI=true: {msg}", pytrace=False)
        pytest.skip(msg)
    out = subprocess.run([script, "env-secure"], capture_output=True, text=True, check=True).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export ") :].partition("=")
            env[k] = v
    return env


@pytest.fixture(scope="module")
def password(secure_env) -> str:
    return Path(secure_env["KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()


@pytest.fixture(scope="module")
def security(secure_env, password) -> KafkaSecurity:
    return KafkaSecurity(
        "SASL_SSL",
        "SCRAM-SHA-512",
        secure_env["KAFKA_SASL_USERNAME"],
        password,
        secure_env["KAFKA_SSL_CAFILE"],
    )


@pytest.fixture(scope="module")
def bootstrap(secure_env) -> str:
    return secure_env["KAFKA_BOOTSTRAP"]


@pytest.fixture
def names(bootstrap, security):
    from driftrec.app.admin import ensure_topics
    from driftrec.stream import TopicNames

    names = TopicNames(f"sec{uuid.uuid4().hex[:8]}")
    out = ensure_topics(bootstrap, names, partitions=2, security=security)
    assert set(out.values()) == {"created"}
    return names


def test_settings_build_the_security_from_the_env(secure_env, security):
    from driftrec.app.settings import Settings

    s = Settings.from_env({k: v for k, v in secure_env.items() if k.startswith("KAFKA_")})
    assert s.kafka_security() == security  # the password comes from KAFKA_SASL_PASSWORD_FILE
    assert s.kafka_security().password == security.password
    assert security.password not in repr(s) and security.password not in repr(s.kafka_security())


def test_round_trip_over_sasl_ssl(bootstrap, security, names):
    """Topic creation above; aiokafka producer and group consumer; kafka-python bounded read."""
    from driftrec.stream.kafka import KafkaSink, KafkaSource, read_topic

    topic = names.recs
    sink = KafkaSink(bootstrap, security=security, timeout_s=15)
    try:
        sink.send_many([Message(topic, f"v{i}".encode(), f"u{i}".encode()) for i in range(50)])
    finally:
        sink.close()
    src = KafkaSource(bootstrap, [topic], f"{names.prefix or 'sec'}-group", security=security, timeout_s=15)
    got: list = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < 50 and time.monotonic() < deadline:
            recs = src.poll(500, 200)
            got.extend(recs)
            if recs:
                src.commit({(r.topic, r.partition): r.offset + 1 for r in recs})
    finally:
        src.close()
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(50))
    assert len(read_topic(bootstrap, topic, security=security, timeout_s=15)) == 50


def test_replay_over_sasl_ssl(bootstrap, security, names):
    from driftrec.stream.kafka import read_topic
    from driftrec.stream.replay import replay_to_kafka

    now = int(time.time() * 1000)
    events = [Event(f"e{i}", "click", f"u{i % 7}", f"i{i % 11}", now + i) for i in range(200)]
    st = replay_to_kafka(events, [], bootstrap, names.prefix, progress=False, security=security)
    assert st.events == 200 and len(st.by_topic) == 1
    (topic,) = st.by_topic
    assert len(read_topic(bootstrap, topic, security=security, timeout_s=15)) == 200


def _wrong(security: KafkaSecurity, **change) -> KafkaSecurity:
    from dataclasses import replace

    return replace(security, **change)


def test_wrong_password_is_a_one_line_authentication_error(bootstrap, security):
    from driftrec.stream.kafka import KafkaSink, create_topics

    bad = _wrong(security, password="Wrong-pass-4242")
    t0 = time.monotonic()
    with pytest.raises(StreamSecurityError) as e:
        KafkaSink(bootstrap, security=bad, timeout_s=10)
    msg = str(e.value)
    assert "authentication" in msg and "\n" not in msg and "Wrong-pass-4242" not in msg
    assert security.password not in msg
    assert time.monotonic() - t0 < 20
    with pytest.raises(StreamSecurityError, match="authentication"):  # kafka-python (admin) too
        create_topics(bootstrap, ["never-made"], security=bad)


def test_untrusted_certificate_is_a_one_line_tls_error(bootstrap, security, secure_env):
    from driftrec.stream.kafka import KafkaSource

    other_ca = str(Path(secure_env["KAFKA_SSL_CAFILE"]).with_name("other-ca.pem"))
    with pytest.raises(StreamSecurityError) as e:
        KafkaSource(bootstrap, ["x"], None, security=_wrong(security, cafile=other_ca), timeout_s=10)
    msg = str(e.value)
    assert msg.startswith("TLS to Kafka") and "not trusted" in msg and "\n" not in msg
    assert security.password not in msg


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "driftrec.cli", *args], capture_output=True, text=True, env=full, timeout=120
    )


def test_cli_topics_create_over_sasl_ssl_and_with_a_wrong_password(secure_env, password, tmp_path):
    env = {k: v for k, v in secure_env.items() if k.startswith("KAFKA_")}
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    ok = _cli(["topics", "create", "--topic-prefix", prefix, "--partitions", "1"], env)
    assert ok.returncode == 0, ok.stderr
    assert f"{prefix}.items: created" in ok.stdout or "created" in ok.stdout
    wrong = tmp_path / "wrong.password"
    wrong.write_text("Wrong-pass-4242\n")
    bad = _cli(["topics", "create", "--topic-prefix", prefix], dict(env, KAFKA_SASL_PASSWORD_FILE=str(wrong)))
    assert bad.returncode == 2
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "authentication" in lines[0], bad.stderr
    assert "Wrong-pass-4242" not in bad.stderr + bad.stdout and password not in bad.stderr + bad.stdout


def test_bench_kafka_clients_over_sasl_ssl_without_printing_the_password(
    secure_env, bootstrap, password, tmp_path, capfd, caplog
):
    """The Kafka clients of `driftrec bench kafka`, with the security the bench takes from
    the settings: the raw rates (kafka-python producer and consumer) produce and read back
    every message, and the latency probe, in a process of its own that reads the security
    from the environment it inherits, reads the updates sent to it. The password is in none
    of their output (this process's, the probe's, and the clients' logs, even at DEBUG)."""
    import json
    import logging

    from kafka.admin import KafkaAdminClient

    from driftrec.app.settings import Settings
    from driftrec.bench.kafka import raw_rates, start_probe
    from driftrec.stream.kafka import KafkaSink, create_topics, read_topic

    kenv = {k: v for k, v in secure_env.items() if k.startswith("KAFKA_")}
    sec = Settings.from_env(kenv).kafka_security()  # as `driftrec bench kafka` does
    assert sec.protocol == "SASL_SSL" and sec.password == password
    prefix = f"benchsec{uuid.uuid4().hex[:8]}"
    raw_topic, recs_topic = f"{prefix}.raw", f"{prefix}.recs"
    create_topics(bootstrap, [raw_topic, recs_topic], 2, security=sec)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **kenv)
    updates = [
        Message(recs_topic, json.dumps({"event_id": f"e{i}", "event_ts": 0}).encode(), b"u%d" % i)
        for i in range(20)
    ]
    try:
        with caplog.at_level(logging.DEBUG):
            raw = raw_rates(bootstrap, raw_topic, 1000, b"x" * 100, security=sec, timeout_s=30)
            assert raw["messages"] == 1000 and raw["produce_per_s"] > 0 and raw["consume_per_s"] > 0
            assert len(read_topic(bootstrap, raw_topic, security=sec, timeout_s=15)) == 1000

            pr, paths = start_probe(env, bootstrap, recs_topic, str(tmp_path))
            try:
                deadline = time.monotonic() + 20
                while (
                    not os.path.exists(paths["ready"]) and pr.poll() is None and time.monotonic() < deadline
                ):
                    time.sleep(0.05)
                assert os.path.exists(paths["ready"]), f"the probe is not ready (exit status {pr.poll()})"
                sink = KafkaSink(bootstrap, security=sec, timeout_s=15)
                try:
                    sink.send_many(updates)
                finally:
                    sink.close()
                time.sleep(1.5)  # an empty long poll of the probe lasts 100 ms
                Path(paths["stop"]).touch()
                assert pr.wait(20) == 0
            finally:
                if pr.poll() is None:
                    pr.kill()
        arrivals = [json.loads(line) for line in open(paths["arrivals.jsonl"])]
        assert sorted(a[0] for a in arrivals) == sorted(f"e{i}" for i in range(20))
    finally:
        a = KafkaAdminClient(bootstrap_servers=bootstrap, **sec.kafka_python_kwargs())
        a.delete_topics([raw_topic, recs_topic])
        a.close()
    out = capfd.readouterr()
    assert caplog.text  # the clients did log
    assert password not in out.out + out.err + caplog.text


# ------------------------------------------------------------------------- redis ---
def test_rediss_round_trip_with_acl_user_and_password(secure_env):
    from driftrec.app.settings import Settings
    from driftrec.state import StateWrite, UserState, open_state

    s = Settings.from_env({k: v for k, v in secure_env.items() if k.startswith(("REDIS_", "STATE_"))})
    ns = f"sec{uuid.uuid4().hex[:8]}"
    st = open_state(f"{s.state_url}?prefix={ns}", **s.redis_options())
    try:
        st.commit(StateWrite(users={"u1": UserState("u1")}, offsets={"t:0": 5}, group="g"))
        assert st.offsets("g") == {"t:0": 5} and "u1" in st.get_many(["u1"])
    finally:
        st.drop()
        st.close()


def test_rediss_refusals_are_named_without_the_password(secure_env):
    from driftrec.state import StateConfigError, StateUnavailable
    from driftrec.state.redis import RedisStateStore

    url = secure_env["REDIS_URL"]
    ca = secure_env["REDIS_SSL_CAFILE"]
    pw = Path(secure_env["REDIS_PASSWORD_FILE"]).read_text().strip()
    with pytest.raises(StateConfigError) as e:  # refused credentials: not an outage
        RedisStateStore.from_url(url, ssl_ca_certs=ca, password="Wrong-pass-4242")
    assert "refused the password" in str(e.value) and "Wrong-pass-4242" not in str(e.value)
    with pytest.raises(StateUnavailable) as e:
        RedisStateStore.from_url(url, ssl_ca_certs=str(Path(ca).with_name("other-ca.pem")), password=pw)
    assert str(e.value).startswith("TLS to Redis") and pw not in str(e.value)
    # the password in the URL, the CA in the query
    host = url.split("@", 1)[1]
    st = RedisStateStore.from_url(f"rediss://driftrec:{pw}@{host}?ssl_ca_certs={ca}")
    st.close()
