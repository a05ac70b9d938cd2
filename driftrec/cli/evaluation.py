"""``driftrec eval``: the drift tests' flags (the run: :mod:`driftrec.evaluation.harness`)."""

from __future__ import annotations

import argparse
from typing import Any

from driftrec.evaluation import harness
from driftrec.evaluation.harness import ALL_SYSTEMS, KNOWN_SYSTEMS, VARIANTS
from driftrec.evaluation.prequential import DEFAULT_TARGETS
from driftrec.scorer.config import CANDIDATE_MODES
from driftrec.stream import SCENARIO_HELP, SCENARIOS
from driftrec.stream.synthetic import emerging_kwargs

from .demo import emerging_args
from .flags import flag_int, flag_path, options


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="drift tests: prequential evaluation with baselines",
        description=harness.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=None,
        help="a synthetic stream with a known shift (default: abrupt). " + SCENARIO_HELP,
    )
    src.add_argument("--log", type=flag_path(), help="an event log (JSONL, CSV or the MovieLens folder)")
    p.add_argument("--format", choices=("jsonl", "csv", "movielens"), default="jsonl")
    p.add_argument("--items", type=flag_path("file"), help="the item catalog for JSONL and CSV logs")
    p.add_argument(
        "--events",
        type=flag_int(1),
        default=None,
        help="use the first N events of the log (synthetic: generate N; default 20000)",
    )
    p.add_argument(
        "--systems",
        default=",".join(ALL_SYSTEMS),
        help="comma-separated: %(default)s; also, when named, "
        + ", ".join(VARIANTS)
        + " (driftrec ranking from the candidate index, serving float16 item rows)",
    )
    p.add_argument(
        "--candidates",
        choices=CANDIDATE_MODES,
        default="auto",
        help="the scorer systems' path (SCORER_CANDIDATES): exact ranks every item, index ranks "
        "the candidates of the ANN index (fresh, co-engaged, popular items too) with the same "
        "score; auto: index from SCORER_EXACT_BELOW items on (default)",
    )
    p.add_argument(
        "--index-spec",
        default="auto",
        help="the candidate index as a faiss factory string (SCORER_INDEX_SPEC), e.g. "
        "IVF40,PQ386x4fs to rank a small catalog from product-quantised lists as a large one "
        "is; auto: by catalog size (a catalog under 4,096 items gets an exact flat index)",
    )
    p.add_argument(
        "--item-storage",
        choices=("float32", "float16"),
        default=None,
        help="how the scorer systems hold their item rows (SCORER_ITEM_STORAGE; default float32 "
        "on these catalogs)",
    )
    p.add_argument("--model", default=None, help="local encoder path (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="where the learner trains")
    p.add_argument("--train-every", type=flag_int(1), default=None, help="events between trainings")
    p.add_argument(
        "--lora-every",
        type=flag_int(1),
        default=None,
        help="fine-tune the adapters on every n-th training (and on drift); the item "
        "parts train every time (default LEARNER_LORA_EVERY or 5)",
    )
    p.add_argument(
        "--drift",
        choices=("adwin", "page_hinkley", "none"),
        default=None,
        help="the learner's drift trigger (default: the settings', adwin)",
    )
    p.add_argument(
        "--window",
        type=flag_int(1),
        default=None,
        help="target events per window (default: about 1/20 of the targets, 100..1000)",
    )
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="event types scored: %(default)s")
    p.add_argument("--shift-ts", type=flag_int(0), default=None, help="a known shift (epoch ms) in a log")
    p.add_argument("-k", "--k", type=flag_int(1, 10_000), default=10, help="top-k (default 10)")
    p.add_argument("--max-batch", type=flag_int(1), default=256, help="largest conflict-free micro-batch")
    p.add_argument(
        "--seed",
        type=flag_int(0),
        default=0,
        help="seeds the synthetic scenario, the learner and the adapters' initial weights: "
        "the same command and seed give the same figures on the same machine (default 0)",
    )
    emerging_args(p)
    p.add_argument("--report", default="driftrec-report", help="folder for the PNG, table.txt, summary.json")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run_cmd(args: argparse.Namespace) -> int:
        bad = [n for n in args.systems.split(",") if n.strip() and n.strip() not in KNOWN_SYSTEMS]
        if bad:
            p.error(f"unknown systems {bad}; choose from {', '.join(KNOWN_SYSTEMS)}")
        if not args.log and not args.scenario:
            args.scenario = "abrupt"
        if args.log and args.format in ("jsonl", "csv") and not args.items:
            p.error(f"--format {args.format} needs --items PATH (the item catalog)")
        return harness.run_eval(options(harness.EvalArgs, args, emerging=emerging_kwargs(args)))

    p.set_defaults(func=run_cmd)
