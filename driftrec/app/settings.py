"""Settings for the entry points, built once from the environment (prefixed names) and
overridden by command-line flags. Code below the entry points receives config objects."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from driftrec.learner import LearnerConfig
from driftrec.model import Representation
from driftrec.scorer import ScorerConfig


class ConfigError(ValueError):
    """A setting is wrong; the message names the variable or flag."""


def _cache_dir() -> str:
    return os.environ.get("DRIFTREC_CACHE", str(Path.home() / ".cache" / "driftrec"))


@dataclass(frozen=True)
class Settings:
    """Everything an entry point needs, with defaults that run on a laptop.

    Environment: ``STATE_URL`` (memory:// | file:///path | redis://host:port/db),
    ``KAFKA_BOOTSTRAP``, ``TOPIC_PREFIX``, ``ARTIFACT_DIR``, ``DRIFTREC_MODEL`` (local model
    path; default the bundled all-MiniLM-L6-v2), ``DRIFTREC_DEVICE`` (auto|cpu|cuda),
    ``SCORER_TOP_K``, ``SCORER_BATCH_SIZE``, ``SCORER_BATCH_MS``, ``SCORER_COMMENTS``,
    ``SCORER_RANK_PRECISION``, ``LEARNER_WINDOW``, ``LEARNER_TRAIN_EVERY``, ``LEARNER_LORA_R``,
    ``METRICS_PORT``, ``DRIFTREC_CACHE``.
    """

    state_url: str = "memory://"
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    artifact_dir: str = field(default_factory=lambda: str(Path(_cache_dir()) / "artifacts"))
    cache_dir: str = field(default_factory=_cache_dir)
    model: str | None = None
    device: str = "auto"
    lora_r: int = 8
    max_len: int = 32
    metrics_port: int = 0
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    rep: Representation = field(default_factory=Representation)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if env is None else env

        def num(name: str, default: int) -> int:
            v = env.get(name)
            if v in (None, ""):
                return default
            try:
                return int(v)
            except ValueError:
                raise ConfigError(f"{name}={v!r} must be an integer") from None

        base = cls()
        s = cls(
            state_url=env.get("STATE_URL", base.state_url),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", base.kafka_bootstrap),
            topic_prefix=env.get("TOPIC_PREFIX", ""),
            artifact_dir=env.get("ARTIFACT_DIR", base.artifact_dir),
            cache_dir=env.get("DRIFTREC_CACHE", base.cache_dir),
            model=env.get("DRIFTREC_MODEL") or None,
            device=env.get("DRIFTREC_DEVICE", "auto"),
            lora_r=num("LEARNER_LORA_R", base.lora_r),
            metrics_port=num("METRICS_PORT", 0),
            scorer=replace(base.scorer, top_k=num("SCORER_TOP_K", base.scorer.top_k),
                           batch_size=num("SCORER_BATCH_SIZE", base.scorer.batch_size),
                           batch_ms=num("SCORER_BATCH_MS", base.scorer.batch_ms),
                           comments=env.get("SCORER_COMMENTS", base.scorer.comments),
                           rank_precision=env.get("SCORER_RANK_PRECISION", base.scorer.rank_precision)),
            learner=replace(base.learner, window_events=num("LEARNER_WINDOW", base.learner.window_events),
                            train_every=num("LEARNER_TRAIN_EVERY", base.learner.train_every),
                            lora_every=num("LEARNER_LORA_EVERY", base.learner.lora_every)),
        )
        known = {f.name for f in fields(cls)}
        bad = set(overrides) - known
        if bad:
            raise ConfigError(f"unknown settings {sorted(bad)}")
        return replace(s, **{k: v for k, v in overrides.items() if v is not None})
