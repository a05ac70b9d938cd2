"""``driftrec demo``: the whole pipeline in one process on a synthetic stream with a shift
(its flags: :mod:`driftrec.cli.demo`)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("driftrec.demo")

MALFORMED = [
    b"{not json",
    b'{"event_id":"bad-1","type":"like","item_id":"i1","ts":1}',
    b'{"event_id":"bad-2","type":"share","user_id":"u1","item_id":"i1","ts":1}',
    b'{"event_id":"bad-3","type":"click","user_id":"u1","item_id":"i1","ts":"yesterday"}',
    b'{"event_id":"bad-4","type":"comment","user_id":"u1","item_id":"i1","ts":5}',
    b"[1, 2, 3]",
    b"\xff\xfe not utf-8",
]


@dataclass(frozen=True)
class DemoArgs:
    """What ``driftrec demo`` runs: the synthetic stream, its pace and the learner's cadence."""

    scenario: str
    events: int
    users: int
    items: int
    seed: int
    #: the ``emerging`` scenario's knobs (:data:`driftrec.stream.synthetic.EMERGING_DEFAULTS`)
    emerging: dict[str, Any]
    rate: float  # events per second fed to the scorer (0: as fast as possible)
    malformed: float  # share of malformed records injected
    train_every: int
    model: str | None
    device: str
    report: str | None  # the report folder (default reports/demo-SCENARIO)
    window: int  # target events per HR@10 window in the plot
    json: bool  # print the summary as JSON on the last line


def run(args: DemoArgs) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from driftrec.stream import TopicNames, generate

    from .embedded import PipelineError
    from .process import tune_gc
    from .settings import Settings
    from .system import SystemSpec, build_system, open_store

    tune_gc()
    t_start = time.perf_counter()
    settings = Settings.from_env(model=args.model)
    report = Path(args.report or f"reports/demo-{args.scenario}")
    report.mkdir(parents=True, exist_ok=True)
    artifacts = report / "artifacts"
    err = sys.stderr
    print(f"driftrec demo: scenario={args.scenario} events={args.events} seed={args.seed}", file=err)
    stream = generate(
        args.scenario,
        n_events=args.events,
        n_users=args.users,
        n_items=args.items,
        seed=args.seed,
        **args.emerging,
    )
    print("loading encoders ...", file=err)
    # serving and standby encoders on the cpu, the trainer where --device says
    spec = replace(
        SystemSpec.from_settings(settings),
        device="cpu",
        train_device=args.device,
        learner=replace(settings.learner, train_every=args.train_every, seed=args.seed),
    )
    with tqdm(total=len(stream.items), desc="encode catalog", unit="item", file=err) as bar:
        system = build_system(spec, stream.items, progress=bar.update)
        bar.update(len(stream.items) - bar.n)  # cached vectors need no encoding
    state = open_store(settings)
    names = TopicNames(settings.topic_prefix)
    pipe = system.embedded(state, str(artifacts), names)
    pipe.publish_items(stream.items)
    pipe.start(skip_items=True)

    rng = np.random.default_rng(args.seed)
    n_bad = int(round(args.malformed * len(stream.events)))
    bad_at = set(rng.choice(len(stream.events), size=n_bad, replace=False).tolist()) if n_bad else set()
    total = len(stream.events) + n_bad
    done = threading.Event()

    def produce() -> None:
        t0 = time.perf_counter()
        chunk = max(1, int(args.rate / 20)) if args.rate > 0 else 500
        for s in range(0, len(stream.events), chunk):
            batch = stream.events[s : s + chunk]
            pipe.publish_events(batch)
            for j in range(s, s + len(batch)):
                if j in bad_at:
                    raw = MALFORMED[j % len(MALFORMED)]
                    pipe.publish_raw(names.events[j % 3], [raw], b"u-bad")
            if args.rate > 0:
                ahead = (s + len(batch)) / args.rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        done.set()

    producer = threading.Thread(target=produce, name="driftrec-replay", daemon=True)
    producer.start()
    failure: PipelineError | None = None
    try:
        with tqdm(total=total, desc="scorer", unit="ev", file=err) as bar:
            while True:
                pipe.check()
                n = pipe.processed()
                bar.n = n
                bar.set_postfix(
                    version=pipe.scorer_worker.scorer.version[:16],
                    swaps=len(pipe.observed.swaps),
                    refresh=False,
                )
                bar.refresh()
                if done.is_set() and n >= total and pipe.lag() == 0:
                    break
                time.sleep(0.2)
        # let a training that is running finish so its swap is part of the run
        if pipe.training.is_set():
            print("waiting for the running fine-tune to finish ...", file=err)
        pipe.finish(timeout=300)
        pipe.stop()
    except PipelineError as exc:  # the report still says what was (not) acknowledged
        failure = exc
        with contextlib.suppress(PipelineError):
            pipe.stop()
    state.close()
    summary = _summary(args, stream, pipe, time.perf_counter() - t_start)
    (report / "summary.json").write_text(json.dumps(summary, indent=2))
    if failure is None:
        _plot(report / "hr.png", pipe, stream, args)
    _print_table(summary, report)
    if args.json:
        print(json.dumps(summary))
    if failure is not None:
        print(f"driftrec demo: error: the pipeline stopped: {failure.__cause__ or failure}", file=err)
    if not summary["counts_reconcile"]:
        print(
            "driftrec demo: error: counts do not reconcile: consumed != processed + dead-lettered "
            "(acknowledged)",
            file=err,
        )
    return 0 if failure is None and summary["counts_reconcile"] else 1


def _hr(hits: list[tuple[int, bool, str]], lo: int | None, hi: int | None) -> float | None:
    xs = [h for ts, h, _ in hits if (lo is None or ts >= lo) and (hi is None or ts < hi)]
    return round(float(np.mean(xs)), 4) if xs else None


def _summary(args: DemoArgs, stream: Any, pipe: Any, wall: float) -> dict[str, Any]:
    s = pipe.summary()
    hits = pipe.observed.hits
    shift = stream.shift_ts
    last_ts = stream.events[-1].ts
    tail = shift + (last_ts - shift) // 2
    s.update(
        {
            "scenario": args.scenario,
            "seed": args.seed,
            "hr_at_10_before_shift": _hr(hits, None, shift),
            "hr_at_10_after_shift": _hr(hits, shift, None),
            "hr_at_10_late_after_shift": _hr(hits, tail, None),
            "hr_at_10_by_version": {
                v: _hr([h for h in hits if h[2] == v], None, None) for v in dict.fromkeys(h[2] for h in hits)
            },
            "shift_ts": shift,
            "swaps": [
                {
                    "version": ev.version,
                    "at_event_ts": ts,
                    "swap_ms": round(ev.swap_ms, 3),
                    "prepare_s": round(ev.prepare_s, 2),
                }
                for ts, ev in pipe.observed.swaps
            ],
            "trainings": [
                {
                    "at_event_ts": ts,
                    "accepted": r.accepted,
                    **{
                        k: r.metrics.get(k)
                        for k in (
                            "reason",
                            "steps",
                            "loss_before",
                            "loss_after",
                            "val_hr_current",
                            "val_hr_candidate",
                            "train_s",
                            "encode_s",
                        )
                    },
                }
                for ts, r, _ in pipe.observed.trainings
            ],
            "wall_s": round(wall, 1),
        }
    )
    return s


def _plot(path: Path, pipe: Any, stream: Any, args: DemoArgs) -> None:
    from .plots import plot_windowed_hr

    hits = pipe.observed.hits
    t0 = stream.events[0].ts
    w = max(1, args.window)
    xs, ys = [], []
    for s in range(0, max(0, len(hits) - w + 1), max(1, w // 5)):
        win = hits[s : s + w]
        xs.append((win[-1][0] - t0) / 60000)
        ys.append(float(np.mean([h for _, h, _ in win])))
    plot_windowed_hr(
        str(path),
        {"driftrec (live, published top-10)": (xs, ys)},
        shift=(stream.shift_ts - t0) / 60000,
        swaps=[(ts - t0) / 60000 for ts, _ in pipe.observed.swaps],
        title=f"driftrec demo: {args.scenario} shift, windowed HR@10 ({w} target events)",
        xlabel="event time (minutes)",
    )


def _print_table(s: dict[str, Any], report: Path) -> None:
    rows = [
        ("events in", s["events_in"]),
        ("processed", s["events_processed"]),
        ("dead-lettered", f"{s['dead_lettered']} {s['dead_letter_reasons']}"),
        ("counts reconcile", s["counts_reconcile"]),
        ("recs published", s["recs_published"]),
        (
            "adapters trained / published / swapped",
            f"{s['adapters_trained']} / {s['adapters_published']} / {s['adapters_swapped']}",
        ),
        ("serving version", s["serving_version"]),
        ("HR@10 before shift", s["hr_at_10_before_shift"]),
        ("HR@10 after shift", s["hr_at_10_after_shift"]),
        ("HR@10 late after shift", s["hr_at_10_late_after_shift"]),
        ("wall time (s)", s["wall_s"]),
        ("report", str(report)),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
