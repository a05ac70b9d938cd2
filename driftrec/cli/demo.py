"""``driftrec demo`` and ``driftrec generate``: the synthetic stream's flags, and the commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from driftrec.app import demo
from driftrec.stream import SCENARIO_HELP, SCENARIOS, generate, write_jsonl
from driftrec.stream.synthetic import EMERGING_DEFAULTS, VOCAB, emerging_kwargs

from .flags import flag_float, flag_int, options


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline in one process on a synthetic stream",
        description="Run scorer and learner in one process (no Kafka, no Redis) on a synthetic "
        "social-media stream with a shift in user interest. Shows progress, prints a "
        "summary table and writes a report folder (summary.json, hr.png).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _stream_args(p)
    p.add_argument(
        "--rate",
        type=flag_float(0),
        default=150.0,
        help="events per second fed to the scorer (0 = as fast as possible)",
    )
    p.add_argument(
        "--malformed",
        type=flag_float(0, 1),
        default=0.005,
        help="share of malformed records injected (they go to events.dlq)",
    )
    p.add_argument("--train-every", type=flag_int(1), default=1500, help="learner trains every N events")
    p.add_argument(
        "--model", default=None, help="local Hugging Face model directory (default: bundled all-MiniLM-L6-v2)"
    )
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the learner trains"
    )
    p.add_argument("--report", default=None, help="report folder (default reports/demo-SCENARIO)")
    p.add_argument(
        "--window", type=flag_int(1), default=300, help="target events per HR@10 window in the plot"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    p.set_defaults(func=cmd_demo)

    g = sub.add_parser(
        "generate",
        help="write a synthetic stream (events.jsonl + items.jsonl) to a folder",
        description="Write the demo's synthetic stream as files, to replay into Kafka "
        "(driftrec replay DIR/events.jsonl --items DIR/items.jsonl --to kafka) or to "
        "evaluate (driftrec eval --log DIR/events.jsonl --items DIR/items.jsonl).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g.add_argument("out", help="folder to write events.jsonl, items.jsonl and shift.json to")
    _stream_args(g)
    g.set_defaults(func=cmd_generate)


def _stream_args(p: argparse.ArgumentParser) -> None:
    """The synthetic stream's flags, the same for demo and generate."""
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="abrupt",
        help="which drift the synthetic stream has. " + SCENARIO_HELP,
    )
    p.add_argument("--events", type=flag_int(1), default=12_000, help="events in the stream")
    p.add_argument("--users", type=flag_int(1), default=300, help="synthetic users")
    p.add_argument(
        "--items",
        type=flag_int(len(VOCAB)),
        default=1_200,
        help=f"synthetic catalog size (at least {len(VOCAB)}, one per topic)",
    )
    p.add_argument(
        "--seed",
        type=flag_int(0),
        default=0,
        help="seeds the scenario, the learner and the adapters' initial weights (default 0)",
    )
    emerging_args(p)


def _share(x: str) -> float:
    v = float(x)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{x} is not a share in [0, 1]")
    return v


def _count(x: str) -> int:
    v = int(x)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{x} must be >= 0")
    return v


def emerging_args(p: argparse.ArgumentParser) -> None:
    """The ``emerging`` scenario's knobs (demo, generate and eval; other scenarios ignore them)."""
    D = EMERGING_DEFAULTS
    p.add_argument(
        "--new-share",
        type=_share,
        default=D["new_share"],
        help="emerging: share of the engagement after the shift that goes to new posts",
    )
    p.add_argument(
        "--names-per-topic",
        type=flag_int(1),
        default=D["names_per_topic"],
        help="emerging: invented names per topic (one after another)",
    )
    p.add_argument(
        "--posts-per-name",
        type=_count,
        default=D["posts_per_name"],
        help="emerging: new posts per name (0: enough for about 1.5 engagements each)",
    )
    p.add_argument(
        "--comment-names",
        type=_share,
        default=D["comment_names"],
        help="emerging: share of the comments on new posts that use the post's name",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    return demo.run(options(demo.DemoArgs, args, emerging=emerging_kwargs(args)))


def cmd_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    s = generate(
        args.scenario,
        n_events=args.events,
        n_users=args.users,
        n_items=args.items,
        seed=args.seed,
        **emerging_kwargs(args),
    )
    n = write_jsonl(out / "events.jsonl", s.events)
    m = write_jsonl(out / "items.jsonl", s.items)
    (out / "shift.json").write_text(
        json.dumps(
            {
                "scenario": s.scenario,
                "shift_ts": s.shift_ts,
                "shifted_users": len(s.shifted_users),
                **s.params,
            }
        )
    )
    print(f"wrote {n} events and {m} items to {out} (shift at ts {s.shift_ts})")
    return 0
