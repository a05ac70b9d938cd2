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
    """The CLI's parser, built the way driftrec.cli.main builds it."""
    from driftrec.app import demo, services
    from driftrec.bench import speed as bench
    from driftrec.evaluation import harness as evaluation

    p = argparse.ArgumentParser(prog="driftrec")
    sub = p.add_subparsers(dest="command")
    for mod in (demo, evaluation, bench, services):
        mod.add_parser(sub)
    return p


def _volume_target(svc, source):
    for v in svc.get("volumes", []):
        src, _, rest = v.partition(":")
        if src == source:
            return rest.split(":")[0]
    return None


def test_parses_and_has_the_services(compose):
    assert {"kafka", "redis", "scorer", "learner", "replay"} <= set(compose["services"])
    assert "replay" in compose["services"]["replay"]["profiles"]


def test_every_command_exists_in_the_cli(compose):
    from driftrec.cli import main

    parser = _parser()
    apps = _app_services(compose)
    assert {"scorer", "learner", "replay", "topics"} <= set(apps)
    for name, svc in apps.items():
        cmd = svc["command"]
        args = parser.parse_args(cmd[1:])  # exits (fails the test) on an unknown command or flag
        assert callable(getattr(args, "func", None)), name
        with pytest.raises(SystemExit) as exc:
            main([*cmd[1:3 if cmd[1] in ("topics", "adapters") else 2], "--help"])
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
