"""docker-compose.yml cannot run here (no Docker engine), so it is validated: it parses,
every service's command is a real CLI command, and the wiring agrees between services."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _app_services(compose):
    return {n: s for n, s in compose["services"].items() if (s.get("command") or [None])[0] == "driftrec"}


def _parser() -> argparse.ArgumentParser:
    """The CLI's parser, as driftrec.cli.main builds it."""
    from driftrec.cli import build_parser

    return build_parser()


def _volume_target(svc, source):
    for v in svc.get("volumes", []):
        src, _, rest = v.partition(":")
        if src == source:
            return rest.split(":")[0]
    return None


def test_parses_and_has_the_services(compose):
    assert {"kafka", "redis", "scorer", "learner", "replay"} <= set(compose["services"])
    assert "replay" in compose["services"]["replay"]["profiles"]


def test_every_command_exists_in_the_cli(compose, tmp_path):
    from driftrec.cli import main

    parser = _parser()
    apps = _app_services(compose)
    assert {"scorer", "learner", "replay", "topics"} <= set(apps)
    for name, svc in apps.items():
        cmd = svc["command"]
        # files on the container's /data volume: stand-ins here (the CLI checks that they exist)
        stand_in = []
        for a in cmd[1:]:
            if a.startswith("/data/"):
                f = tmp_path / a.removeprefix("/data/")
                f.parent.mkdir(parents=True, exist_ok=True)
                f.touch()
                a = str(f)
            stand_in.append(a)
        args = parser.parse_args(stand_in)  # exits (fails the test) on an unknown command or flag
        assert callable(getattr(args, "func", None)), name
        with pytest.raises(SystemExit) as exc:
            main([*cmd[1 : 3 if cmd[1] in ("topics", "adapters") else 2], "--help"])
        assert exc.value.code == 0, name


def test_env_wiring_agrees(compose):
    services = compose["services"]
    apps = _app_services(compose)
    envs = {n: s["environment"] for n, s in apps.items()}
    for key in ("KAFKA_BOOTSTRAP", "STATE_URL", "TOPIC_PREFIX", "ARTIFACT_DIR"):
        values = {str(e.get(key)) for e in envs.values()}
        assert len(values) == 1, f"{key} differs between services: {values}"
    env = next(iter(envs.values()))
    # the broker address names the kafka service and its advertised listener
    host, port = env["KAFKA_BOOTSTRAP"].split(":")
    assert host in services
    kenv = services[host]["environment"]
    assert f"PLAINTEXT://{host}:{port}" in kenv["KAFKA_ADVERTISED_LISTENERS"]
    assert "controller" in kenv["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    image = services[host]["image"]
    assert image.startswith("apache/kafka:") and image.split(":")[1][0].isdigit(), "pin the broker version"
    # Redis: the state URL names the redis service; AOF is on
    r = urlsplit(env["STATE_URL"])
    assert r.scheme == "redis" and r.hostname in services
    assert "--appendonly" in services[r.hostname]["command"]
    assert services[r.hostname]["command"][services[r.hostname]["command"].index("--appendonly") + 1] == "yes"
    # the artifact store: the same named volume, mounted at ARTIFACT_DIR, in scorer and learners
    for name in ("scorer", "learner", "learner-gpu"):
        assert _volume_target(services[name], "artifacts") == env["ARTIFACT_DIR"], name
    assert "artifacts" in compose["volumes"]
    # every app service waits for the topics and for redis
    for name in ("scorer", "learner"):
        assert set(services[name]["depends_on"]) >= {"topics", "redis"}


def test_gpu_learner_is_optional(compose):
    gpu = compose["services"]["learner-gpu"]
    assert gpu["profiles"] == ["gpu"]
    dev = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert dev["capabilities"] == ["gpu"]
    assert "deploy" not in compose["services"]["learner"]


def test_dockerfile_installs_the_cli():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in text and "COPY driftrec" in text


# ------------------------------------------------------------ the secured variant ---
SECURE = ROOT / "docker-compose.secure.yml"


def _merge(base, over):
    """``docker compose -f base -f over``: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else v
        return out
    return over


@pytest.fixture(scope="module")
def secure(compose) -> dict:
    return _merge(compose, yaml.safe_load(SECURE.read_text()))


def test_secure_variant_commands_and_env(secure):
    from driftrec.app.settings import VARS_BY_NAME

    apps = _app_services(secure)  # the commands are docker-compose.yml's (checked above)
    assert {"scorer", "learner", "learner-gpu", "replay", "topics"} <= set(apps)
    for name, svc in apps.items():
        env = svc["environment"]
        unknown = set(env) - set(VARS_BY_NAME)
        assert not unknown, f"{name}: {unknown} are not settings"
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert urlsplit(env["STATE_URL"]).scheme == "rediss"
        # secrets are files, never values in the compose file
        assert "KAFKA_SASL_PASSWORD" not in env and urlsplit(env["STATE_URL"]).password is None
        for key in (
            "KAFKA_SASL_PASSWORD_FILE",
            "KAFKA_SSL_CAFILE",
            "REDIS_PASSWORD_FILE",
            "REDIS_SSL_CAFILE",
        ):
            path = env[key]
            assert path.startswith("/run/secrets/"), (name, key)
            secret = path.rsplit("/", 1)[1]
            assert secret in svc["secrets"], (name, key)
            assert secret in secure["secrets"], (name, key)


def test_secure_variant_wiring_agrees(secure):
    services = secure["services"]
    envs = [s["environment"] for s in _app_services(secure).values()]
    for key in ("KAFKA_BOOTSTRAP", "STATE_URL", "KAFKA_SASL_USERNAME", "TOPIC_PREFIX", "ARTIFACT_DIR"):
        assert len({str(e.get(key)) for e in envs}) == 1, key
    env = envs[0]
    host, port = env["KAFKA_BOOTSTRAP"].split(":")
    kenv = services[host]["environment"]
    assert kenv["KAFKA_ADVERTISED_LISTENERS"] == f"SASL_SSL://{host}:{port}"  # no PLAINTEXT left
    assert "PLAINTEXT://:" not in kenv["KAFKA_LISTENERS"].replace("CONTROLLER", "")
    assert "SCRAM-SHA-512" in kenv["KAFKA_SASL_ENABLED_MECHANISMS"]
    assert "SASL_SSL:SASL_SSL" in kenv["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    # the SCRAM users exist before the topics are created; the app user is the one configured
    users = services["kafka-users"]
    assert services["topics"]["depends_on"]["kafka-users"]["condition"] == "service_completed_successfully"
    assert f"{env['KAFKA_SASL_USERNAME']}:kafka_client_password" in " ".join(users["command"])
    assert env["KAFKA_SASL_PASSWORD_FILE"].endswith("/kafka_client_password")
    # Redis: TLS only, on the port of STATE_URL, ACL file, AOF still on
    r = urlsplit(env["STATE_URL"])
    cmd = services[r.hostname]["command"]
    assert cmd[cmd.index("--port") + 1] == "0" and cmd[cmd.index("--tls-port") + 1] == str(r.port)
    assert "--aclfile" in cmd and cmd[cmd.index("--appendonly") + 1] == "yes"
    assert "--tls" in " ".join(services[r.hostname]["healthcheck"]["test"])
    # the secret files are the ones `scripts/services.sh pki secrets` makes
    for s in secure["secrets"].values():
        assert s["file"].startswith("./secrets/"), s
    script = (ROOT / "scripts" / "services.sh").read_text()
    for f in ("ca.pem", "server.pem", "server.key", "kafka-client.password", "redis.acl", "kafka_jaas.conf"):
        assert f in script, f


# ------------------------------------------------------------ the cluster variant ---
CLUSTER = ROOT / "docker-compose.cluster.yml"


@pytest.fixture(scope="module")
def cluster(compose) -> dict:
    return _merge(compose, yaml.safe_load(CLUSTER.read_text()))


def _nodes(cluster) -> dict:
    return {n: s for n, s in cluster["services"].items() if "--cluster-enabled" in (s.get("command") or [])}


def test_cluster_variant_has_three_masters_and_three_replicas(cluster):
    nodes = _nodes(cluster)
    assert len(nodes) == 6 and "redis" in nodes  # the base file's redis is the first node
    volumes = set()
    for name, svc in nodes.items():
        cmd = svc["command"]
        assert cmd[0] == "redis-server" and cmd[cmd.index("--cluster-enabled") + 1] == "yes", name
        assert cmd[cmd.index("--appendonly") + 1] == "yes", name  # AOF, as the single Redis
        assert cmd[cmd.index("--cluster-announce-hostname") + 1] == name, name
        assert cmd[cmd.index("--cluster-preferred-endpoint-type") + 1] == "hostname", name
        assert "ping" in svc["healthcheck"]["test"], name
        target = [v for v in svc["volumes"] if v.endswith(":/data")]
        assert len(target) == 1, name
        volumes.add(target[0].split(":")[0])
    assert len(volumes) == 6 and volumes <= set(cluster["volumes"])  # one volume each
    create = cluster["services"]["redis-cluster-create"]
    assert create["restart"] == "no"
    assert {n: d["condition"] for n, d in create["depends_on"].items()} == dict.fromkeys(
        nodes, "service_healthy"
    )
    script = create["command"][-1]
    assert "--cluster-replicas 1" in script and "--cluster-yes" in script
    assert all(f" {n}" in script for n in nodes)  # every node joins
    assert "cluster_known_nodes:6" in script  # a later start leaves the cluster as it is


def test_cluster_variant_state_url_names_the_nodes(cluster):
    from driftrec.app import checks
    from driftrec.state.redis_cluster import parse_cluster_url

    nodes = _nodes(cluster)
    apps = _app_services(cluster)
    assert {"scorer", "learner", "learner-gpu", "replay", "topics"} <= set(apps)
    urls = {svc["environment"]["STATE_URL"] for svc in apps.values()}
    assert len(urls) == 1, urls
    (url,) = urls
    checks.state_url(url)  # STATE_URL's own check passes
    d = parse_cluster_url(url)
    assert d["wait_replicas"] == 1  # a commit is on a replica before it counts
    assert d["nodes"] and all(host in nodes and port == 6379 for host, port in d["nodes"])
    for name in ("scorer", "learner", "learner-gpu", "replay"):
        dep = apps[name]["depends_on"]["redis-cluster-create"]
        assert dep["condition"] == "service_completed_successfully", name
    # everything else is the base file's: one broker, one artifact store
    for key in ("KAFKA_BOOTSTRAP", "TOPIC_PREFIX", "ARTIFACT_DIR"):
        assert len({str(s["environment"].get(key)) for s in apps.values()}) == 1, key
