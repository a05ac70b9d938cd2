"""``driftrec bench scorer|swap|reencode|learner|fuzz|kafka|state|scale|cache|catalog``: the
flags and the command (the measurements: :mod:`driftrec.bench.speed`, :mod:`driftrec.bench.fuzz`,
:mod:`driftrec.bench.kafka`, :mod:`driftrec.bench.state`, :mod:`driftrec.bench.scale`,
:mod:`driftrec.bench.cache`, :mod:`driftrec.bench.catalog`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tqdm import tqdm

from driftrec.app.process import tune_gc
from driftrec.app.settings import Settings
from driftrec.bench import kafka as bench_kafka
from driftrec.bench import speed
from driftrec.bench.fuzz import run_fuzz
from driftrec.bench.kafka import KafkaBenchArgs
from driftrec.learner import LearnerConfig
from driftrec.scorer.config import CANDIDATE_MODES, ITEM_STORAGES

from .flags import flag_float, flag_int, options


def cmd_bench(args: argparse.Namespace) -> int:
    kind = args.what
    tune_gc()  # as the services run
    if kind == "scorer":
        res = speed.bench_scorer(
            args.items, args.dim, args.users, args.events, args.batch, precision=args.precision
        )
    elif kind == "swap":
        from driftrec.bench.swap import bench_swap

        res = bench_swap(
            args.items,
            args.dim,
            args.users,
            args.events,
            args.batch,
            args.swaps,
            args.rate,
            precision=args.precision,
            candidates=args.candidates,
            item_storage=args.item_storage,
            at_once=args.at_once,
        )
    elif kind == "reencode":
        res = speed.bench_reencode(
            args.items,
            args.model,
            args.max_len,
            args.budget,
            args.users,
            args.batch,
            args.limit_s,
            device=args.device,
            precision=args.reencode_precision,
            batching=args.reencode_batching,
        )
    elif kind == "fuzz":
        with tqdm(
            total=args.records,
            desc="fuzzed records",
            file=sys.stderr,
            disable=args.json and not sys.stderr.isatty(),
        ) as bar:
            res = run_fuzz(
                args.records, args.good, args.seed, args.model, progress=lambda n: bar.update(n - bar.n)
            )
        ok = (
            res["drained"]
            and res["counts_reconcile"]
            and res["rejected_not_on_dlq"] == 0
            and res["on_dlq_not_fuzzed"] == 0
            and res["on_dlq_with_reason"] == res["on_dlq"] == res["dead_lettered"]
        )
        print("driftrec bench fuzz")
        print(json.dumps(res, indent=1))
        if args.json:
            print(json.dumps(res, separators=(",", ":")))
        if not ok:
            print(
                "driftrec bench fuzz: error: a rejected record is missing from events.dlq, or counts do not reconcile",
                file=sys.stderr,
            )
        return 0 if ok else 1
    elif kind == "catalog":
        from driftrec.bench.catalog import format_result, run_catalog_bench

        with tqdm(total=args.events, desc="timed events", unit="ev", file=sys.stderr) as bar:
            res = run_catalog_bench(
                args.items,
                args.events,
                args.users,
                args.candidates,
                args.seed,
                lambda n: bar.update(n - bar.n),
                batch=args.batch,
                recall_users=args.recall_users,
                catalog=args.catalog,
                index_spec=args.index_spec,
                ann_scan=args.ann_scan,
                ann_k=args.ann_k,
                item_storage=args.item_storage,
            )
        print(f"driftrec bench catalog (--items {args.items})")
        print(format_result(res))
        if args.json:
            print(json.dumps(res, separators=(",", ":")))
        return 0
    elif kind == "state":
        from driftrec.bench.state import run_state_bench

        with tqdm(total=args.users, desc="users written", unit="user", file=sys.stderr) as bar:
            res = run_state_bench(
                args.url,
                args.users,
                args.shards,
                args.batch,
                args.history,
                lambda done, total: bar.update(done - bar.n),
                user_ttl_days=args.ttl_days,
            )
        print("driftrec bench state")
        print(json.dumps(res, indent=1))
        if args.json:
            print(json.dumps(res, separators=(",", ":")))
        return 0
    elif kind == "cache":
        from driftrec.bench.cache import run_cache_bench

        with tqdm(total=args.users, desc="users", unit="user", file=sys.stderr) as bar:
            res = run_cache_bench(
                args.users,
                args.cache_users,
                args.batch,
                args.history,
                progress=lambda n: bar.update(n - bar.n),
            )
        print("driftrec bench cache")
        print(json.dumps(res, indent=1))
        if args.json:
            print(json.dumps(res, separators=(",", ":")))
        return 0
    elif kind == "scale":
        from driftrec.bench import scale

        res = scale.run(options(scale.ScaleBenchArgs, args))
        print("driftrec bench scale")
        print(scale.format_table(res))
        if args.json:
            print(json.dumps(res, separators=(",", ":")))
        return 0
    elif kind == "kafka":
        res = bench_kafka.run(options(KafkaBenchArgs, args))
        print("driftrec bench kafka")
        print(json.dumps(res, indent=1))
        if args.json:
            print(json.dumps(res, separators=(",", ":")))
        return 0
    else:
        c = LearnerConfig()
        per_epoch = -(-int(args.window * (1 - c.val_share)) // c.batch_size)
        total = min(c.item_max_steps, c.epochs * per_epoch) + (
            0 if args.no_lora else min(c.max_steps, c.epochs * per_epoch)
        )
        with tqdm(
            total=total,
            desc="fine-tune steps",
            file=sys.stderr,
            disable=args.json and not sys.stderr.isatty(),
            leave=False,
        ) as bar:
            res = speed.bench_learner(
                args.model,
                args.window,
                args.device,
                args.items,
                use_lora=not args.no_lora,
                progress=lambda n: bar.update(n - bar.n),
                catalog=args.catalog,
            )
    print(f"driftrec bench {kind}")
    print(speed.format_table(res))
    if args.json:
        print(json.dumps(res, separators=(",", ":")))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="speed and memory figures: scorer, swap, reencode, learner, fuzz, kafka, state, scale, "
        "cache, catalog",
        description=speed.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    benches = p.add_subparsers(dest="what", metavar="BENCH", required=True)
    helps = {
        "scorer": "events/s and batch latency of the scorer core (embedded)",
        "swap": "serving pause and lost/duplicated events during hot-swaps",
        "learner": "seconds per micro-fine-tune of a 4,096-event window, peak memory",
        "reencode": "after a swap: time until the catalog is re-encoded in the background, "
        "and the scorer's events/s meanwhile",
        "fuzz": "hostile records (random bytes, corrupted events, deep nesting, huge ids, bad "
        "times...) through the scorer's input path: every rejected one on events.dlq with a reason",
    }
    for name, text in helps.items():
        q = benches.add_parser(name, help=text, description=text)
        q.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
        if name in ("scorer", "swap"):
            q.add_argument("--items", type=flag_int(1), default=10_000, help="catalog size")
            q.add_argument("--dim", type=flag_int(1, 65_536), default=384, help="vector dimensions")
            q.add_argument("--users", type=flag_int(1), default=10_000, help="users")
            q.add_argument("--events", type=flag_int(1), default=60_000, help="events to time")
            q.add_argument(
                "--batch",
                type=flag_int(1),
                default=1024 if name == "scorer" else 256,
                help="micro-batch size",
            )
            q.add_argument(
                "--precision",
                default="auto",
                choices=("auto", "float32", "bfloat16"),
                help="first pass of the ranking (SCORER_RANK_PRECISION; auto: bfloat16 where the "
                "CPU has it natively; the ranking is exact either way)",
            )
        if name == "swap":
            q.add_argument("--swaps", type=flag_int(0), default=5, help="hot-swaps during the run")
            q.add_argument(
                "--rate", type=flag_float(above=0), default=4_000.0, help="steady stream rate, events/s"
            )
            q.add_argument(
                "--candidates",
                choices=CANDIDATE_MODES,
                default="auto",
                help="SCORER_CANDIDATES (index: each version's candidate index is built in the "
                "background before it serves; auto: index from SCORER_EXACT_BELOW items on)",
            )
            q.add_argument(
                "--item-storage",
                choices=ITEM_STORAGES,
                default=None,
                help="SCORER_ITEM_STORAGE (default auto: float16 from SCORER_EXACT_BELOW items on)",
            )
            q.add_argument(
                "--at-once",
                action="store_true",
                help="announce each version at its place even while the previous one is being "
                "prepared (as the scorer service does); default: once the previous one serves",
            )
        if name == "reencode":
            q.add_argument("--items", type=flag_int(2), default=100_000, help="catalog size")
            q.add_argument("--model", default=None, help="encoder path (default all-MiniLM-L6-v2)")
            q.add_argument("--max-len", type=flag_int(4, 512), default=16, help="tokens per text")
            q.add_argument(
                "--budget",
                type=flag_int(1),
                default=4096,
                help="items the learner encoded before publishing (the rest are stale)",
            )
            q.add_argument("--users", type=flag_int(1), default=10_000, help="users")
            q.add_argument("--batch", type=flag_int(1), default=256, help="micro-batch size")
            q.add_argument(
                "--limit-s",
                type=flag_float(above=0),
                default=300.0,
                help="stop after this long and extrapolate the time to the full catalog",
            )
            q.add_argument(
                "--device", default="cpu", choices=("auto", "cpu", "cuda"), help="where it encodes"
            )
            q.add_argument(
                "--reencode-precision",
                default="float32",
                choices=("float32", "bfloat16"),
                help="how the scorer re-encodes (bfloat16: autocast, within cosine 0.9999 of float32)",
            )
            q.add_argument(
                "--reencode-batching",
                default="tokens",
                choices=("tokens", "chars"),
                help="batches of texts sorted by token count (tokens) or character length (chars)",
            )
        if name == "fuzz":
            q.add_argument("--records", type=flag_int(1), default=100_000, help="fuzzed records")
            q.add_argument("--good", type=flag_int(0), default=5_000, help="good events mixed in")
            q.add_argument("--seed", type=flag_int(0), default=0, help="random seed")
            q.add_argument("--model", default=None, help="encoder path (default all-MiniLM-L6-v2)")
        if name == "learner":
            q.add_argument(
                "--items", type=flag_int(1), default=1_600, help="catalog size (re-encoded after training)"
            )
            q.add_argument("--window", type=flag_int(8), default=4096, help="window in events")
            q.add_argument("--model", default=None, help="encoder path (default all-MiniLM-L6-v2)")
            q.add_argument(
                "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where it trains"
            )
            q.add_argument("--no-lora", action="store_true", help="train the item parts only (no adapters)")
            q.add_argument(
                "--catalog",
                default="text",
                choices=("text", "topics"),
                help="text: a synthetic catalog encoded by the encoder; topics: topical vectors, "
                "no encoding (for catalogs of a million items)",
            )
        q.set_defaults(func=cmd_bench)
    text = (
        "a catalog of N items through the scorer: events/s, batch p50/p99, peak RSS, the candidate "
        "index's build time and recall/speed curve, recall@10 of the served top-10 against exact"
    )
    q = benches.add_parser("catalog", help=text, description=text)
    q.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    q.add_argument("--items", type=flag_int(1), default=100_000, help="catalog size (default 100,000)")
    q.add_argument("--events", type=flag_int(1), default=60_000, help="events to time")
    q.add_argument("--users", type=flag_int(1), default=10_000, help="users")
    q.add_argument(
        "--candidates",
        choices=CANDIDATE_MODES,
        default="auto",
        help="SCORER_CANDIDATES: exact ranks every item; index takes candidates from the ANN "
        "index, fresh, co-engaged and popular items and re-ranks them exactly; auto: index from "
        "SCORER_EXACT_BELOW items on",
    )
    q.add_argument(
        "--catalog",
        choices=("random", "topics"),
        default="random",
        help="random unit vectors, or vectors grouped around topics (closer to text embeddings)",
    )
    q.add_argument("--index-spec", default="auto", help="a faiss index factory string, or auto")
    q.add_argument(
        "--ann-scan",
        type=flag_int(1),
        default=None,
        help="the most rows a query may scan in the index (default 1,024; the lists scanned are "
        "tuned within it)",
    )
    q.add_argument("--ann-k", type=flag_int(1), default=None, help="candidates taken from the index per user")
    q.add_argument(
        "--item-storage",
        choices=ITEM_STORAGES,
        default=None,
        help="SCORER_ITEM_STORAGE: the item rows in float32 or float16 (half the memory); auto "
        "(default): float16 from SCORER_EXACT_BELOW items on",
    )
    q.add_argument("--batch", type=flag_int(1), default=1024, help="micro-batch size")
    q.add_argument("--recall-users", type=flag_int(1), default=256, help="users sampled for recall@10")
    q.add_argument("--seed", type=flag_int(0), default=0, help="random seed")
    q.set_defaults(func=cmd_bench)
    text = "bytes per user in Redis, redis-server RSS, commands per event, commit latency"
    q = benches.add_parser("state", help=text, description=text)
    q.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    q.add_argument(
        "--url",
        default=None,
        required=True,
        help="STATE_URL to write to: redis://HOST:PORT/0 or redis+cluster://HOST:PORT[,...] "
        "(a fresh prefix is used and removed)",
    )
    q.add_argument("--users", type=flag_int(1), default=100_000, help="users written (default 100,000)")
    q.add_argument("--shards", type=flag_int(1), default=12, help="partitions of the events topics")
    q.add_argument("--batch", type=flag_int(1), default=256, help="events (new users) per batch")
    q.add_argument("--history", type=flag_int(1), default=50, help="interactions per user")
    q.add_argument(
        "--ttl-days", type=flag_float(above=0), default=None, help="USER_TTL_DAYS (adds the last-write index)"
    )
    q.set_defaults(func=cmd_bench)
    text = "replay -> Kafka -> scorer -> recs.updates throughput and latency, raw client rates"
    q = benches.add_parser(
        "kafka",
        help=text,
        description=bench_kafka.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    _kafka_arguments(q)
    q.set_defaults(func=cmd_bench)
    _scale_parser(benches)
    text = "the scorer's user cache (SCORER_CACHE_USERS) at a million users: RSS and its length"
    q = benches.add_parser("cache", help=text, description=text)
    q.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    q.add_argument("--users", type=flag_int(1), default=1_000_000, help="distinct users (default 1,000,000)")
    q.add_argument(
        "--cache-users",
        type=flag_int(0),
        default=Settings.scorer_cache_users,
        help=f"SCORER_CACHE_USERS (default {Settings.scorer_cache_users:,}, the service's)",
    )
    q.add_argument("--batch", type=flag_int(1), default=4096, help="records per batch (default 4,096)")
    q.add_argument(
        "--history", type=flag_int(0, 50), default=10, help="interactions each user comes back with"
    )
    q.set_defaults(func=cmd_bench)


def _counts(raw: str) -> list[int]:
    """``--scorers 1,2,4``: scorer counts, each 1 to 64."""
    try:
        out = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or any(not 1 <= k <= 64 for k in out):
        raise argparse.ArgumentTypeError(f"{raw!r}: allowed: counts from 1 to 64, comma-separated (1,2,4)")
    return out


def _scale_parser(benches: Any) -> None:
    """``driftrec bench scale`` (:class:`driftrec.bench.scale.ScaleBenchArgs`)."""
    from driftrec.bench import scale

    text = "events/s and per CPU core, and event-to-update latency, by scorer processes in one group"
    q = benches.add_parser(
        "scale", help=text, description=scale.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    q.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    q.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP)")
    q.add_argument(
        "--redis",
        default=None,
        help="the scorers' state: redis://HOST:PORT/DB or redis+cluster://HOST:PORT[,...] "
        "(default: $REDIS_URL)",
    )
    q.add_argument("--model", default=None, help="encoder (default: $DRIFTREC_MODEL or the bundled MiniLM)")
    q.add_argument(
        "--scorers", type=_counts, default=[1, 2, 4], help="scorer processes per run (default 1,2,4)"
    )
    q.add_argument("--partitions", type=flag_int(1, 10_000), default=12, help="partitions of each topic")
    q.add_argument("--events", type=flag_int(1), default=100_000, help="backlog drained per run")
    q.add_argument(
        "--rate", type=flag_float(above=0), default=1000.0, help="steady rate of the latency run (events/s)"
    )
    q.add_argument("--seconds", type=flag_float(above=0), default=20.0, help="length of the latency run")
    q.add_argument("--users", type=flag_int(1), default=10_000, help="users in the synthetic stream")
    q.add_argument("--items", type=flag_int(8), default=2000, help="catalog size")
    q.set_defaults(func=cmd_bench)


def _kafka_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of ``driftrec bench kafka`` (:class:`driftrec.bench.kafka.KafkaBenchArgs`)."""
    ap.add_argument(
        "--bootstrap",
        default=None,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or 127.0.0.1:9092)",
    )
    ap.add_argument(
        "--redis",
        default=None,
        help="Redis for the scorer's state (default: $REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    ap.add_argument("--model", default=None, help="encoder (default: $DRIFTREC_MODEL or the bundled MiniLM)")
    ap.add_argument("--events", type=flag_int(1), default=20_000, help="backlog size for the throughput run")
    ap.add_argument("--raw", type=flag_int(1), default=100_000, help="messages for the raw rates")
    ap.add_argument("--rate", type=flag_float(above=0), default=1000.0, help="steady rate of the latency run")
    ap.add_argument("--seconds", type=flag_float(above=0), default=20.0, help="length of the latency run")
    ap.add_argument("--users", type=flag_int(1), default=2000, help="users in the synthetic stream")
    ap.add_argument("--items", type=flag_int(8), default=2000, help="catalog size")
    ap.add_argument("--partitions", type=flag_int(1, 10_000), default=3, help="partitions of each topic")
    ap.add_argument("--runtime", choices=["kafka", "faust"], default="kafka", help="the scorer's runtime")
    ap.add_argument(
        "--scorers",
        type=flag_int(1, 64),
        default=1,
        help="scorer processes in one consumer group (scale-out; default 1)",
    )
