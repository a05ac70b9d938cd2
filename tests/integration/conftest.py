"""Real-broker fixtures: a Kafka broker and redis-server (``scripts/services.sh up``).

Every test gets its own topic prefix and Redis key namespace, so tests never see each
other's records or state. Without CI the integration tests are skipped when the services
are unreachable; with ``CI=true`` an unreachable broker or Redis is a failure.

``KAFKA_BOOTSTRAP`` (default 127.0.0.1:9092) and ``REDIS_URL`` (default
redis://127.0.0.1:6379/0) point at the services.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

KAFKA = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unreachable(what: str, exc: BaseException) -> None:
    msg = f"{what} unreachable: {exc}. Start the services: scripts/services.sh up"
    if _in_ci():
        pytest.fail(f"CI=true: {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    try:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=KAFKA.split(","), request_timeout_ms=5000, client_id="driftrec-tests"
        )
        admin.list_topics()
        admin.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        _unreachable(f"Kafka at {KAFKA}", exc)
    return KAFKA


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        _unreachable(f"Redis at {REDIS}", exc)
    return REDIS


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from driftrec.model import make_tiny_model
    from driftrec.stream.synthetic import vocabulary

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"), vocabulary())


@pytest.fixture
def prefix() -> str:
    return f"it{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topics(kafka_bootstrap, prefix):
    """Creates this test's topics (2 partitions) under its prefix; deletes them after."""
    from driftrec.app.admin import all_topics, ensure_topics
    from driftrec.stream import TopicNames

    names = TopicNames(prefix)
    ensure_topics(kafka_bootstrap, names, partitions=2)
    yield names
    try:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), client_id="driftrec-tests")
        admin.delete_topics(all_topics(names), timeout_ms=10_000)
        admin.close()
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass


@pytest.fixture
def state_url(redis_url, prefix):
    """A Redis namespace of this test; dropped after."""
    from driftrec.state.redis import RedisStateStore

    url = f"{redis_url}?prefix={prefix}"
    yield url
    s = RedisStateStore.from_url(url)
    s.drop()
    for extra in ("ref", "run"):
        RedisStateStore.from_url(f"{redis_url}?prefix={prefix}-{extra}").drop()
    s.close()


@pytest.fixture
def settings(kafka_bootstrap, state_url, prefix, tiny_model, tmp_path):
    """Settings of this test's services (tiny model, CPU, its topics and state)."""
    from driftrec.app.settings import Settings

    return Settings.from_env(
        env={},
        kafka_bootstrap=kafka_bootstrap,
        state_url=state_url,
        topic_prefix=prefix,
        model=tiny_model,
        artifact_dir=str(tmp_path / "artifacts"),
        cache_dir=str(tmp_path / "cache"),
        device="cpu",
    )


@pytest.fixture
def service_env(settings) -> dict[str, str]:
    """The environment a `driftrec scorer|learner` subprocess of this test runs with."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        STATE_URL=settings.state_url,
        TOPIC_PREFIX=settings.topic_prefix,
        DRIFTREC_MODEL=str(settings.model),
        ARTIFACT_DIR=settings.artifact_dir,
        DRIFTREC_CACHE=settings.cache_dir,
        DRIFTREC_DEVICE="cpu",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env
