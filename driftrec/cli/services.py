"""``driftrec topics create | replay | scorer | learner | adapters``: the services' flags and
commands (the services: :mod:`driftrec.app.scorer_service`, :mod:`driftrec.app.learner_service`;
the admin commands: :mod:`driftrec.app.admin`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from driftrec.app import admin
from driftrec.app.checks import check_kafka
from driftrec.app.learner_service import LEARNER_GROUP, run_learner
from driftrec.app.metrics import Metrics
from driftrec.app.scorer_service import SCORER_GROUP, run_scorer, run_scorer_faust
from driftrec.app.settings import Settings
from driftrec.stream import TopicNames

from .flags import flag_float, flag_int, flag_path


# ---------------------------------------------------------------- arguments ---
def _common(p: argparse.ArgumentParser, state: bool = True, model: bool = False) -> None:
    g = p.add_argument_group("connections (flags override the environment)")
    g.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (KAFKA_BOOTSTRAP)")
    g.add_argument("--topic-prefix", metavar="NAME", help="namespace for every topic (TOPIC_PREFIX)")
    if state:
        g.add_argument(
            "--state", metavar="URL", help="state backend, e.g. redis://127.0.0.1:6379/0 (STATE_URL)"
        )
    if model:
        g.add_argument("--model", metavar="PATH", help="encoder model directory (DRIFTREC_MODEL)")
        g.add_argument("--artifacts", metavar="DIR", help="artifact store directory (ARTIFACT_DIR)")
        g.add_argument("--device", choices=["auto", "cpu", "cuda"], help="DRIFTREC_DEVICE")
        g.add_argument(
            "--metrics-port",
            type=flag_int(0, 65535),
            metavar="PORT",
            help="serve Prometheus metrics on PORT (METRICS_PORT; 0 = off)",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    o = {
        "kafka_bootstrap": getattr(args, "bootstrap", None),
        "topic_prefix": getattr(args, "topic_prefix", None),
        "state_url": getattr(args, "state", None),
        "model": getattr(args, "model", None),
        "artifact_dir": getattr(args, "artifacts", None),
        "device": getattr(args, "device", None),
        "metrics_port": getattr(args, "metrics_port", None),
    }
    # the services' defaults (settings.VARS): comment encoding off the hot path (async), and
    # batches up to SCORER_BATCH_SIZE's service default: a poll returns what is there, up to
    # this: small batches when live, large ones (a user's events coalesced, fixed costs
    # shared) when there is a backlog
    s = Settings.from_env(service=True, **o)
    if getattr(args, "command", None) in ("topics", "replay", "scorer", "learner"):
        check_kafka(
            s.kafka_bootstrap,
            "--bootstrap" if o["kafka_bootstrap"] else "KAFKA_BOOTSTRAP",
            security=s.kafka_security(),
        )
    return s


def add_parser(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "topics",
        help="Kafka topic bootstrap",
        formatter_class=fmt,
        description="Create the driftrec topics (idempotent): events.clicks, events.likes, "
        "events.comments, items (compacted), adapters (compacted, 1 partition), "
        "recs.updates, events.dlq.",
    )
    tsub = p.add_subparsers(dest="topics_command", metavar="ACTION")
    c = tsub.add_parser("create", help="create missing topics")
    _common(c, state=False)
    c.add_argument(
        "--partitions", type=flag_int(1, 10_000), default=3, help="partitions of the keyed topics (default 3)"
    )
    c.add_argument(
        "--retention-hours",
        type=flag_float(above=0),
        default=24 * 7,
        help="retention of events/recs (default 168)",
    )
    c.set_defaults(func=cmd_topics_create)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    p = sub.add_parser(
        "replay",
        help="replay an event log into Kafka",
        formatter_class=fmt,
        description="Send a recorded log to Kafka: the catalog to `items` first, then events "
        "keyed by user_id to their per-type topic, paced by event time.\n\n"
        "  driftrec replay events.jsonl --items items.jsonl --to kafka --speed 60\n"
        "  driftrec replay ml-100k --format movielens --to kafka --rate 1000",
    )
    p.add_argument(
        "log_path", nargs="?", metavar="LOG", type=flag_path(), help="the event log (or use --log)"
    )
    p.add_argument("--log", dest="log_opt", metavar="PATH", type=flag_path(), help="the event log")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "csv", "movielens"])
    p.add_argument(
        "--items", metavar="PATH", type=flag_path("file"), help="item catalog JSONL (jsonl/csv formats)"
    )
    p.add_argument("--to", default="kafka", choices=["kafka"], help="destination (kafka)")
    p.add_argument(
        "--speed",
        type=flag_float(0),
        default=0.0,
        help="event-time speed-up: 0 = as fast as possible (default), 60 = 60x real time",
    )
    p.add_argument(
        "--rate", type=flag_float(0), default=0.0, help="a steady N events/s instead of event-time pacing"
    )
    p.add_argument(
        "--limit", type=flag_int(0), default=0, help="send only the first N events (by time; 0: all)"
    )
    p.add_argument(
        "--restamp",
        action="store_true",
        help="set each event's ts to the wall-clock send time (latency measurements)",
    )
    p.add_argument("--create-topics", action="store_true", help="create missing topics first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p, state=False)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "scorer",
        help="run the scorer service (Kafka + state)",
        formatter_class=fmt,
        description="Consume events.* and items, update user state, publish recs.updates, "
        "dead-letter bad records to events.dlq, hot-swap announced adapters.",
    )
    _common(p, model=True)
    p.add_argument(
        "--runtime",
        choices=["kafka", "faust"],
        default="kafka",
        help="kafka: the aiokafka poll loop (default); faust: the faust-streaming app",
    )
    p.add_argument("--group", default=SCORER_GROUP, help=f"consumer group (default {SCORER_GROUP})")
    p.add_argument(
        "--exit-when-idle",
        type=flag_float(0),
        default=0.0,
        metavar="S",
        help="exit after S seconds without records (tests, batch jobs)",
    )
    p.add_argument(
        "--max-seconds", type=flag_float(0), default=0.0, help="exit after this long (0 = run until stopped)"
    )
    p.add_argument(
        "--reset-state",
        action="store_true",
        help="start over although the state has no offsets while the group has committed some "
        "(the state was lost: every event still on the topics is applied again)",
    )
    p.set_defaults(func=cmd_scorer)

    p = sub.add_parser(
        "learner",
        help="run the learner service (Kafka + artifact store)",
        formatter_class=fmt,
        description="Consume events.* on its own group, fine-tune LoRA adapters when due, write "
        "artifacts to ARTIFACT_DIR, register and announce them on `adapters`.",
    )
    _common(p, model=True)
    p.add_argument("--group", default=LEARNER_GROUP, help=f"consumer group (default {LEARNER_GROUP})")
    p.add_argument(
        "--exit-when-idle",
        type=flag_float(0),
        default=0.0,
        metavar="S",
        help="exit after S seconds without records",
    )
    p.add_argument("--train-on-exit", action="store_true", help="train once more before exiting (tests)")
    p.set_defaults(func=cmd_learner)

    p = sub.add_parser(
        "adapters",
        help="list model versions, roll back",
        formatter_class=fmt,
        description="  driftrec adapters list\n  driftrec adapters rollback VERSION   "
        "re-announce VERSION; running scorers swap to it",
    )
    asub = p.add_subparsers(dest="adapters_command", metavar="ACTION")
    a = asub.add_parser("list", help="registered versions; * marks the serving one")
    _common(a)
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=cmd_adapters_list)
    a = asub.add_parser("rollback", help="re-announce an earlier version (or 'base': no adapter)")
    _common(a)
    a.add_argument("version", metavar="VERSION")
    a.set_defaults(func=cmd_adapters_rollback)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


# ------------------------------------------------------------------ commands ---
def cmd_topics_create(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    out = admin.ensure_topics(
        s.kafka_bootstrap,
        TopicNames(s.topic_prefix),
        args.partitions,
        int(args.retention_hours * 3600 * 1000),
        security=s.kafka_security(),
    )
    for name, what in out.items():
        print(f"{name}: {what}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    path = args.log_path or args.log_opt
    if not path:
        print("driftrec replay: error: give the log: driftrec replay LOG --to kafka", file=sys.stderr)
        return 2
    s = settings_from_args(args)
    out = admin.replay_log(
        s,
        path,
        args.format,
        args.items,
        args.limit,
        args.speed,
        args.rate,
        args.restamp,
        create=args.create_topics,
        progress=not args.no_progress,
    )
    print(json.dumps(out))
    return 0


def _metrics_port_label(args: argparse.Namespace) -> str:
    return "--metrics-port" if getattr(args, "metrics_port", None) is not None else "METRICS_PORT"


def cmd_scorer(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    metrics = Metrics("scorer")
    metrics.serve(s.metrics_port, label=_metrics_port_label(args))
    if args.runtime == "faust":
        summary = run_scorer_faust(s, args.group, metrics, args.exit_when_idle, args.reset_state)
    else:
        summary = run_scorer(
            s,
            args.group,
            metrics,
            args.exit_when_idle,
            args.max_seconds,
            own_process=True,
            reset_state=args.reset_state,
        )
    # non-zero when an output was not acknowledged: consumed != processed + dead-lettered
    return 0 if summary["counts_reconcile"] else 1


def cmd_learner(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    metrics = Metrics("learner")
    metrics.serve(s.metrics_port, label=_metrics_port_label(args))
    return run_learner(s, args.group, metrics, args.exit_when_idle, args.train_on_exit)


def cmd_adapters_list(args: argparse.Namespace) -> int:
    cur, recs = admin.adapter_versions(settings_from_args(args))
    if args.json:
        print(json.dumps({"current": cur, "versions": recs}, indent=1))
        return 0
    known = {r.get("version") for r in recs}
    # the registry's pointer, which every scorer loads at start, whatever it names
    note = " (not a registered version)" if cur and cur != "base" and cur not in known else ""
    print(f"current: {cur or 'base'}{note}")
    if not recs:
        print("no adapter versions registered")
        return 0
    print(f"  {'version':<28} {'created':<20} {'events':>7}  val HR@10 (current -> candidate)")
    for r in recs:
        mark = "*" if r.get("version") == cur else " "
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.get("created_ts", 0) / 1000))
        m = r.get("metrics", {})
        hr = f"{m.get('val_hr_current', float('nan')):.4f} -> {m.get('val_hr_candidate', float('nan')):.4f}"
        print(f"{mark} {r['version']:<28} {created:<20} {r.get('window', {}).get('n_events', 0):>7}  {hr}")
    return 0


def cmd_adapters_rollback(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    try:
        topic = admin.rollback(s, args.version)
    except admin.RollbackRefused as exc:
        print(f"driftrec adapters rollback: error: {exc}", file=sys.stderr)
        return 2
    print(f"re-announced {args.version} on {topic}; running scorers swap to it between two batches")
    return 0
