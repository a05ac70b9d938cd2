"""Settings for the entry points: every environment variable driftrec reads, declared once.

:data:`VARS` is the table: each :class:`Var` names one variable, its type, default, bounds
or allowed choices and a one-line meaning. :meth:`Settings.from_env` builds the settings from
it (once, at an entry point; command-line flags override); code below the entry points
receives config objects and never reads the environment. A bad value is a
:class:`ConfigError` whose message is one line naming the variable, its value (passwords
redacted) and what is allowed; the CLI prints it and exits with status 2. The checks of
the values, and of the services' reachability, are in :mod:`driftrec.app.checks`; the
``driftrec settings`` command (the README's table, ``--check``) in :mod:`driftrec.cli`.

>>> Settings.from_env({"SCORER_TOP_K": "5", "SCORER_COMMENTS": "off"}).scorer.top_k
5
>>> Settings.from_env({"SCORER_TOP_K": "0"})
Traceback (most recent call last):
...
driftrec.app.checks.ConfigError: SCORER_TOP_K='0': out of range; allowed: an integer from 1 to 10000
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from driftrec.learner import LearnerConfig
from driftrec.model import Representation
from driftrec.scorer import ScorerConfig
from driftrec.stream import KafkaSecurity, StreamConfigError, TimeBounds

from . import checks
from .checks import ConfigError, redact
from .declarations import VARS
from .variables import Var

__all__ = [
    "ConfigError",
    "Settings",
    "VARS",
    "VARS_BY_NAME",
    "Var",
    "check_env",
    "redact",
]


def _cache_default() -> str:
    return str(Path.home() / ".cache" / "driftrec")


VARS_BY_NAME = {v.name: v for v in VARS}
_BY_FIELD = {v.field: v for v in VARS}


@dataclass(frozen=True)
class Settings:
    """Everything an entry point needs, with defaults that run on a laptop (see :data:`VARS`)."""

    state_url: str = "memory://"
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    artifact_dir: str = field(default_factory=lambda: str(Path(_cache_default()) / "artifacts"))
    cache_dir: str = field(default_factory=_cache_default)
    model: str | None = None
    device: str = "auto"
    lora_r: int = 8
    max_len: int = 32
    metrics_port: int = 0
    scorer_threads: int = 1
    scorer_cache_users: int = 200_000
    redis_url: str = "redis://127.0.0.1:6379/0"
    artifact_key: str | None = None
    event_max_skew_s: int = 3600
    event_max_age_days: int = 0
    item_max_age_days: float = 0.0
    service_retry_s: int = 300
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_sasl_password_file: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    redis_ssl_cafile: str | None = None
    redis_password_file: str | None = None
    user_ttl_days: float = 0.0
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    rep: Representation = field(default_factory=Representation)

    def time_bounds(self) -> TimeBounds:
        """The plausible event times of the services (``EVENT_MAX_SKEW_S``, ``EVENT_MAX_AGE_DAYS``)."""
        return TimeBounds(
            self.event_max_skew_s * 1000,
            self.event_max_age_days * 86_400_000 if self.event_max_age_days else None,
        )

    def kafka_security(self) -> KafkaSecurity:
        """The :class:`driftrec.stream.security.KafkaSecurity` of every Kafka client
        (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_*``); a combination that
        does not work is a :class:`ConfigError` (one line, no password)."""
        password = self.kafka_sasl_password
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not password and self.kafka_sasl_password_file:
            password = checks.read_secret_file(self.kafka_sasl_password_file, "KAFKA_SASL_PASSWORD_FILE")
        try:
            return KafkaSecurity(
                self.kafka_security_protocol,
                self.kafka_sasl_mechanism if sasl else None,
                self.kafka_sasl_username if sasl else None,
                password if sasl else None,
                self.kafka_ssl_cafile,
                self.kafka_ssl_certfile,
                self.kafka_ssl_keyfile,
            )
        except StreamConfigError as exc:
            raise ConfigError(str(exc)) from None

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments of ``open_state``/``RedisStateStore.from_url`` for a Redis URL:
        the CA bundle (``REDIS_SSL_CAFILE``) and the password (``REDIS_PASSWORD_FILE``); and
        for every backend ``user_ttl_days`` (``USER_TTL_DAYS``) when set."""
        out: dict[str, Any] = {}
        if self.user_ttl_days:
            out["user_ttl_days"] = self.user_ttl_days
        if self.redis_ssl_cafile:
            out["ssl_ca_certs"] = self.redis_ssl_cafile
        if self.redis_password_file:
            out["password"] = checks.read_secret_file(self.redis_password_file, "REDIS_PASSWORD_FILE")
        return out

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, service: bool = False, **overrides: Any
    ) -> Settings:
        """Settings from ``env`` (default ``os.environ``); an empty value counts as unset.
        ``service``: the Kafka services' defaults (:attr:`Var.service_default`).
        ``overrides`` (command-line flags; ``None`` = not given) win over the environment."""
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        bad = set(overrides) - known
        if bad:
            raise ConfigError(f"unknown settings {sorted(bad)}")
        top: dict[str, Any] = {}
        sub: dict[str, dict[str, Any]] = {"scorer": {}, "learner": {}}
        cache = env.get("DRIFTREC_CACHE") or None
        for var in VARS:
            raw = env.get(var.name)
            if raw is not None and raw.strip() != "":
                value = var.parse(raw)
            elif service and var.service_default is not None:
                value = var.service_default
            elif var.name == "ARTIFACT_DIR":
                value = str(Path(cache or _cache_default()) / "artifacts")
            elif var.name == "DRIFTREC_CACHE":
                value = _cache_default()
            else:
                value = var.default
            head, _, rest = var.field.partition(".")
            if rest:
                sub[head][rest] = value
            else:
                top[head] = value
        for name, value in overrides.items():
            if value is None:
                continue
            decl = _BY_FIELD.get(name)
            if decl is not None and isinstance(value, str):
                value = decl.parse(value, label=decl.flag or name)
            top[name] = value
        base = cls()
        try:
            scorer = top.pop("scorer", None) or replace(base.scorer, **sub["scorer"])
            learner = top.pop("learner", None) or replace(base.learner, **sub["learner"])
        except ValueError as exc:  # a combination the core refuses (each value alone was fine)
            raise ConfigError(str(exc)) from None
        age_ms = round(top.get("item_max_age_days", 0.0) * 86_400_000)
        if age_ms:  # ITEM_MAX_AGE_DAYS: one setting, both cores
            scorer = replace(scorer, item_max_age_ms=age_ms)
            learner = replace(learner, item_max_age_ms=age_ms)
        return cls(scorer=scorer, learner=learner, **top)


def check_env(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per bad variable in ``env`` (default ``os.environ``); empty when all are fine."""
    env = os.environ if env is None else env
    errors = []
    for var in VARS:
        raw = env.get(var.name)
        if raw is not None and raw.strip() != "":
            try:
                var.parse(raw)
            except ConfigError as exc:
                errors.append(str(exc))
    return errors
