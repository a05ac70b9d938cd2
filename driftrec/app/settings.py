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
from driftrec.scorer.config import CANDIDATE_MODES, INDEX_SPEC_ALLOWED, ITEM_STORAGES
from driftrec.stream import KafkaSecurity, StreamConfigError, TimeBounds

from . import checks
from .checks import ConfigError, redact
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


_SC, _LC = ScorerConfig(), LearnerConfig()

#: Every environment variable driftrec reads (README "Configuration" is generated from it).
VARS: tuple[Var, ...] = (
    Var(
        "STATE_URL",
        "state_url",
        "str",
        "memory://",
        "state backend: memory://, file:///path/state.json, redis://[user:password@]host:port/db[?prefix=NAME] "
        "or redis+cluster://host:port[,host:port...][?prefix=NAME] (docs/scaling.md)",
        check=checks.state_url,
        allowed_text="memory://, file:///PATH, redis://HOST:PORT/DB, redis+cluster://HOST:PORT[,...]",
        flag="--state",
        secret=True,
    ),
    Var(
        "KAFKA_BOOTSTRAP",
        "kafka_bootstrap",
        "str",
        "127.0.0.1:9092",
        "Kafka bootstrap servers",
        check=checks.bootstrap,
        allowed_text="HOST:PORT[,HOST:PORT...]",
        flag="--bootstrap",
    ),
    Var(
        "TOPIC_PREFIX",
        "topic_prefix",
        "str",
        "",
        "namespace prepended to every topic name",
        check=checks.topic_prefix,
        allowed_text="letters, digits, '.', '_', '-' (at most 200)",
        flag="--topic-prefix",
    ),
    Var(
        "ARTIFACT_DIR",
        "artifact_dir",
        "str",
        "$DRIFTREC_CACHE/artifacts",
        "artifact store: one folder per model version",
        check=checks.directory,
        allowed_text="a directory (created if missing)",
        flag="--artifacts",
    ),
    Var(
        "DRIFTREC_CACHE",
        "cache_dir",
        "str",
        "~/.cache/driftrec",
        "caches: encoded catalog vectors, the default artifact store",
        check=checks.directory,
        allowed_text="a directory (created if missing)",
    ),
    Var(
        "DRIFTREC_MODEL",
        "model",
        "str",
        None,
        "text encoder: a local model directory or a Hugging Face id (default: the bundled all-MiniLM-L6-v2)",
        check=checks.model_ref,
        allowed_text="an existing directory or a Hugging Face id",
        flag="--model",
    ),
    Var(
        "DRIFTREC_DEVICE",
        "device",
        "choice",
        "auto",
        "where the learner trains (auto: cuda if available)",
        choices=("auto", "cpu", "cuda"),
        flag="--device",
    ),
    Var(
        "METRICS_PORT",
        "metrics_port",
        "int",
        0,
        "serve Prometheus metrics on this port (0: off)",
        lo=0,
        hi=65535,
        flag="--metrics-port",
    ),
    Var("SCORER_TOP_K", "scorer.top_k", "int", _SC.top_k, "recommendations per user", lo=1, hi=10_000),
    Var(
        "SCORER_BATCH_SIZE",
        "scorer.batch_size",
        "int",
        _SC.batch_size,
        "largest micro-batch of events",
        lo=1,
        hi=1_000_000,
        service_default=4096,
    ),
    Var(
        "SCORER_BATCH_MS",
        "scorer.batch_ms",
        "int",
        _SC.batch_ms,
        "longest wait for a micro-batch to fill (ms)",
        lo=0,
        hi=60_000,
    ),
    Var(
        "SCORER_COMMENTS",
        "scorer.comments",
        "choice",
        _SC.comments,
        "comment text as evidence: sync (in the batch), async (off the hot path), off",
        choices=("sync", "async", "off"),
        service_default="async",
    ),
    Var(
        "SCORER_RANK_PRECISION",
        "scorer.rank_precision",
        "choice",
        _SC.rank_precision,
        "first ranking pass: float32, bfloat16 or auto (bfloat16 where the CPU has it)",
        choices=("auto", "float32", "bfloat16"),
    ),
    Var(
        "SCORER_ITEM_STORAGE",
        "scorer.item_storage",
        "choice",
        _SC.item_storage,
        f"served item rows: float32, float16 (half the memory) or auto (float16 from {_SC.exact_below:,} "
        "items on, as the candidate path)",
        choices=ITEM_STORAGES,
    ),
    Var(
        "SCORER_CANDIDATES",
        "scorer.candidates",
        "choice",
        _SC.candidates,
        "exact scores every item; index ranks candidates (ANN index, fresh, co-engaged, popular "
        "items) with the same score; auto: index from SCORER_EXACT_BELOW items on",
        choices=CANDIDATE_MODES,
    ),
    Var(
        "SCORER_EXACT_BELOW",
        "scorer.exact_below",
        "int",
        _SC.exact_below,
        "catalog size from which auto ranks from candidates",
        lo=0,
        hi=10**9,
    ),
    Var(
        "SCORER_ANN_K",
        "scorer.ann_k",
        "int",
        _SC.ann_k,
        "candidates a user takes from the index (more: recall up, events/s down)",
        lo=1,
        hi=4096,
    ),
    Var(
        "SCORER_ANN_SCAN",
        "scorer.ann_scan",
        "int",
        _SC.ann_scan,
        "the most rows a query may scan in the index; the lists it scans are chosen within it "
        "(more: recall up on large catalogs, events/s down)",
        lo=1,
        hi=1_000_000,
    ),
    Var(
        "SCORER_INDEX_SPEC",
        "scorer.index_spec",
        "str",
        _SC.index_spec,
        "the candidate index as a faiss factory string; auto: by catalog size (docs/catalogs.md)",
        check=checks.index_spec,
        allowed_text=INDEX_SPEC_ALLOWED,
    ),
    Var(
        "SCORER_THREADS", "scorer_threads", "int", 1, "BLAS/torch threads of a scorer process", lo=1, hi=1024
    ),
    Var(
        "SCORER_CACHE_USERS",
        "scorer_cache_users",
        "int",
        200_000,
        "user states a scorer keeps cached while it owns its users (0: off)",
        lo=0,
        hi=100_000_000,
    ),
    Var(
        "LEARNER_WINDOW",
        "learner.window_events",
        "int",
        _LC.window_events,
        "events in the rolling window",
        lo=8,
        hi=10_000_000,
    ),
    Var(
        "LEARNER_TRAIN_EVERY",
        "learner.train_every",
        "int",
        _LC.train_every,
        "events between trainings",
        lo=1,
        hi=100_000_000,
    ),
    Var(
        "LEARNER_LORA_EVERY",
        "learner.lora_every",
        "int",
        _LC.lora_every,
        "fine-tune the adapters on every n-th training (and on drift)",
        lo=1,
        hi=1_000_000,
    ),
    Var(
        "LEARNER_NEW_WORDS",
        "learner.new_word_jump",
        "float",
        _LC.new_word_jump,
        "an adapter round when the share of recent engagements on posts with words no round has "
        "learned rises this much (0: off)",
        lo=0.0,
        hi=1.0,
    ),
    Var(
        "LEARNER_CONTEXT_SHIFT",
        "learner.context_shift",
        "float",
        _LC.context_shift,
        "how far a version's context vectors (the history side) move with the adapter's text "
        "vectors (0: they stay in the base encoder's space; a round leaves them where "
        "validation says the move hurts)",
        lo=0.0,
        hi=4.0,
    ),
    Var(
        "LEARNER_ROUND_ITEMS",
        "learner.round_items",
        "int",
        _LC.round_items,
        "above this many items a training round works on a sample of the catalog of about this "
        "many rows (the window's items, the newest, the most popular, a uniform draw of the "
        "rest): its memory and time stop growing with the catalog (0: never sample)",
        lo=0,
        hi=100_000_000,
    ),
    Var(
        "LEARNER_LORA_R",
        "lora_r",
        "int",
        8,
        "LoRA rank of the adapters (scaled by alpha = 2 x rank); scorer and learner must agree",
        lo=1,
        hi=256,
    ),
    Var(
        "REDIS_URL",
        "redis_url",
        "str",
        "redis://127.0.0.1:6379/0",
        "Redis of `driftrec bench kafka` and the integration tests",
        check=checks.redis_url,
        allowed_text="redis://..., rediss://..., unix://...",
        flag="--redis",
        secret=True,
    ),
    Var(
        "ARTIFACT_KEY",
        "artifact_key",
        "str",
        None,
        "shared key: the learner signs each artifact's manifest (HMAC-SHA256), the scorer refuses "
        "unsigned or wrongly signed ones (unset: no signing)",
        check=checks.artifact_key,
        allowed_text="at least 16 characters",
        secret=True,
    ),
    Var(
        "EVENT_MAX_SKEW_S",
        "event_max_skew_s",
        "int",
        3600,
        "events further ahead of the wall clock than this go to events.dlq (ts_out_of_range)",
        lo=0,
        hi=365 * 86400,
    ),
    Var(
        "EVENT_MAX_AGE_DAYS",
        "event_max_age_days",
        "int",
        0,
        "events older than this go to events.dlq (ts_out_of_range); 0: no bound (replays of "
        "recorded logs keep their times)",
        lo=0,
        hi=100 * 365,
    ),
    Var(
        "ITEM_MAX_AGE_DAYS",
        "item_max_age_days",
        "float",
        0.0,
        "items published more than this many days before the stream's own time (not the wall "
        "clock) are never served nor trained towards, and their rows are released "
        '(docs/operations.md, "Item expiry"); 0: never (replays keep the whole catalog)',
        lo=0.0,
        hi=100 * 365,
    ),
    Var(
        "SERVICE_RETRY_S",
        "service_retry_s",
        "int",
        300,
        "scorer and learner: how long they back off and reconnect to an unreachable Kafka or Redis "
        "before giving up (0: exit at the first error)",
        lo=0,
        hi=7 * 86400,
    ),
    # transport security (docs/operations.md, "Security"): every Kafka client (aiokafka,
    # kafka-python, faust) takes these through one driftrec.stream.KafkaSecurity
    Var(
        "KAFKA_SECURITY_PROTOCOL",
        "kafka_security_protocol",
        "choice",
        "PLAINTEXT",
        "how every Kafka client connects: TLS (SSL), SASL, or both (SASL_SSL)",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    ),
    Var(
        "KAFKA_SASL_MECHANISM",
        "kafka_sasl_mechanism",
        "choice",
        "PLAIN",
        "SASL mechanism (SASL_* protocols)",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    ),
    Var("KAFKA_SASL_USERNAME", "kafka_sasl_username", "str", None, "SASL user (SASL_* protocols)"),
    Var(
        "KAFKA_SASL_PASSWORD",
        "kafka_sasl_password",
        "str",
        None,
        "SASL password (prefer KAFKA_SASL_PASSWORD_FILE)",
        secret=True,
    ),
    Var(
        "KAFKA_SASL_PASSWORD_FILE",
        "kafka_sasl_password_file",
        "str",
        None,
        "a file holding the SASL password (a mounted secret); used when KAFKA_SASL_PASSWORD is unset",
        check=checks.readable_file,
        allowed_text="a readable file",
    ),
    Var(
        "KAFKA_SSL_CAFILE",
        "kafka_ssl_cafile",
        "str",
        None,
        "PEM CA bundle that signed the brokers' certificates (default: the system's trust store)",
        check=checks.readable_file,
        allowed_text="a readable PEM file",
    ),
    Var(
        "KAFKA_SSL_CERTFILE",
        "kafka_ssl_certfile",
        "str",
        None,
        "PEM client certificate (mutual TLS; optional)",
        check=checks.readable_file,
        allowed_text="a readable PEM file",
    ),
    Var(
        "KAFKA_SSL_KEYFILE",
        "kafka_ssl_keyfile",
        "str",
        None,
        "PEM key of the client certificate (mutual TLS)",
        check=checks.readable_file,
        allowed_text="a readable PEM file",
    ),
    Var(
        "REDIS_SSL_CAFILE",
        "redis_ssl_cafile",
        "str",
        None,
        "PEM CA bundle of a rediss:// STATE_URL/REDIS_URL (or ?ssl_ca_certs= in the URL)",
        check=checks.readable_file,
        allowed_text="a readable PEM file",
    ),
    Var(
        "REDIS_PASSWORD_FILE",
        "redis_password_file",
        "str",
        None,
        "a file holding the Redis password of STATE_URL/REDIS_URL (when the URL has none)",
        check=checks.readable_file,
        allowed_text="a readable file",
    ),
    Var(
        "USER_TTL_DAYS",
        "user_ttl_days",
        "float",
        0.0,
        "users not written for this many days lose their state (swept by the scorer every minute); 0: never",
        lo=0.0,
    ),
)
#: The declarations by variable name.
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
