"""``driftrec eval``: the drift tests (DESIGN.md, "Evaluation protocol").

One prequential pass over the same events evaluates, side by side:

- ``driftrec``: the scorer (real-time user vectors) + the learner (LoRA adapters and
  learned item residuals/biases) trained at its triggers on events already applied;
  every accepted version is hot-swapped into the scorer between two batches;
- ``driftrec_no_lora``: the same with every learned part but the adapters (ablation);
- when named, the variants of :data:`driftrec.evaluation.systems.VARIANTS`: ``driftrec``
  ranking from the candidate index (``driftrec_index``) or serving float16 item rows
  (``driftrec_f16``);
- ``frozen``: the scorer alone (base encoder, real-time user vectors, popularity prior);
- the baselines of :mod:`driftrec.evaluation.baselines`.

It prints a table (HR@k, NDCG@k, MRR@k overall and per window, events to recover after a
known shift), writes a plot, ``summary.json`` and ``table.txt`` under ``--report`` and,
with ``--json``, prints the summary as the last line of stdout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from driftrec.stream import Event, Item

from . import prequential as pq
from .systems import ALL_SYSTEMS, KNOWN_SYSTEMS, VARIANTS, ScorerSystem, build_systems

__all__ = [
    "ALL_SYSTEMS",
    "KNOWN_SYSTEMS",
    "VARIANTS",
    "EvalArgs",
    "ScorerSystem",
    "build_systems",
    "format_tables",
    "run_eval",
    "summarise",
]

log = logging.getLogger("driftrec.eval")


# ---- reporting ---------------------------------------------------------------------------
def summarise(
    res: pq.PrequentialRun, systems: Sequence[Any], window: int, shift_ts: int | None, shift_index: int | None
) -> dict[str, Any]:
    k = res.k
    cold = res.cold()
    post = res.target_index >= shift_index if shift_index is not None else None
    out: dict[str, Any] = {
        "events": res.n_events,
        "shift_ts": shift_ts,
        "targets": int(len(res.target_index)),
        "cold_targets": int(cold.sum()),
        "cold_events": pq.COLD_EVENTS,
        "post_shift_targets": None if post is None else int(post.sum()),
        "k": k,
        "window": window,
        "shift_index": shift_index,
        "systems": {},
    }
    positions = {s.name: res.systems[s.name].positions for s in systems}
    below = pq.windows_below(positions, k, window)
    if below is not None:
        out["guard"] = {"systems": [n for n in pq.GUARD_SYSTEMS if n in below], "margin": pq.GUARD_MARGIN}
    versus = pq.versus_best(positions, k)
    for s in systems:
        r = res.systems[s.name]
        m = pq.metrics(r.positions, k)
        cold_hr = pq.metrics(r.positions[cold], k)["hr"] if cold.any() else None
        post_hr = pq.metrics(r.positions[post], k)["hr"] if post is not None and post.any() else None
        rec = (
            pq.recovery(r.positions, k, window, res.target_index, shift_index)
            if shift_index is not None
            else {"events": None, "pre": None}
        )
        d: dict[str, Any] = {
            f"hr_at_{k}": round(m["hr"], 4),
            f"ndcg_at_{k}": round(m["ndcg"], 4),
            "mrr": round(m["mrr"], 4),
            f"cold_hr_at_{k}": None if cold_hr is None else round(cold_hr, 4),
            f"post_shift_hr_at_{k}": None if post_hr is None else round(post_hr, 4),
            "recovery_events": rec["events"],
            "pre_shift_hr": None if rec["pre"] is None else round(rec["pre"], 4),
            "seconds": round(r.seconds, 1),
        }
        if below is not None:  # the per-window guard: windows below the best of the counts
            d["windows_below_popularity"] = len(below[s.name])
            d["windows_below_popularity_at"] = below[s.name]
        if versus is not None:  # overall, against the best count, with the noise of the difference
            v = versus[s.name]
            d["hr_vs_best_count"] = {
                "reference": v["reference"],
                "diff": round(v["diff"], 4),
                "se": round(v["se"], 4),
                "z": None if v["z"] is None else round(v["z"], 2),
            }
        if r.swaps or (isinstance(s, ScorerSystem) and s.trainings):
            d["swaps"] = len(r.swaps)
            d["trainings"] = len(s.trainings)
            d["train_s"] = round(s.train_s, 1)
            first = s.trainings[0]  # the cost of the first round (a day-one calibration, or a training)
            d["first_train_s"] = first.get("train_s")
            d["first_train_reason"] = first.get("reason")
            d["day_one_rounds"] = sum(t.get("reason") == "day_one" for t in s.trainings)
            ups = [t.get("adapter_update") for t in s.trainings]
            if any(u in ("kept", "dropped") for u in ups):  # what the adapters added
                d["adapter_rounds"] = sum(u in ("kept", "dropped") for u in ups)
                d["adapters_kept"] = ups.count("kept")
            d["cooc_weight_last"] = next(
                (t["cooc_weight"] for t in reversed(s.trainings) if t.get("accepted") and "cooc_weight" in t),
                None,
            )
            d["age_weight_last"] = next(
                (t["age_weight"] for t in reversed(s.trainings) if t.get("accepted") and "age_weight" in t),
                None,
            )
        if isinstance(s, ScorerSystem):
            d.update(s.serving())
        out["systems"][s.name] = d
    return out


def format_tables(
    res: pq.PrequentialRun, summary: Mapping[str, Any], window: int, max_windows: int | None = None
) -> str:
    k = res.k
    names = list(summary["systems"])
    w = max(12, max(len(n) for n in names) + 1)
    lines = [
        f"{'system':<{w}} {'HR@' + str(k):>7} {'NDCG@' + str(k):>8} {'MRR':>7} {'cold HR':>8} "
        f"{'post HR':>8} {'recovery':>9}"
    ]

    def f4(x: float | None, width: int = 8) -> str:
        return f"{'-':>{width}}" if x is None else f"{x:>{width}.4f}"

    for n in names:
        d = summary["systems"][n]
        r = d["recovery_events"]
        rs = "-" if summary["shift_ts"] is None else ("never" if r is None else str(r))
        lines.append(
            f"{n:<{w}} {d[f'hr_at_{k}']:>7.4f} {d[f'ndcg_at_{k}']:>8.4f} {d['mrr']:>7.4f} "
            f"{f4(d.get(f'cold_hr_at_{k}'))} {f4(d.get(f'post_shift_hr_at_{k}'))} {rs:>9}"
        )
    lines.append(
        f"cold HR: HR@{k} on the {summary.get('cold_targets', 0)} targets whose item had fewer "
        f"than {pq.COLD_EVENTS} earlier events; post HR: on the targets after the shift"
    )
    guard = summary.get("guard")
    if guard:
        below = ", ".join(
            f"{n} {summary['systems'][n]['windows_below_popularity']}"
            + (
                f" ({' '.join(map(str, at))})"
                if (at := summary["systems"][n]["windows_below_popularity_at"])
                else ""
            )
            for n in names
        )
        lines.append(
            f"windows below the best of {'/'.join(guard['systems'])} by more than {guard['margin']} "
            f"(HR@{k}; which windows): {below}"
        )
        vs = [(n, summary["systems"][n].get("hr_vs_best_count")) for n in names]
        if any(v for _, v in vs):
            ref = next(v["reference"] for _, v in vs if v)
            lines.append(
                f"HR@{k} against the best count overall ({ref}), +/- one standard error of the "
                "paired difference: "
                + ", ".join(f"{n} {v['diff']:+.4f} +/- {v['se']:.4f}" for n, v in vs if v and n != ref)
            )
    lines.append("")
    blocks = {n: pq.tumbling(res.systems[n].positions, k, window) for n in names}
    nb = len(next(iter(blocks.values()))) if blocks else 0
    lines.append(f"HR@{k} per window of {window} target events (event position at the window's end)")
    short = {
        "driftrec": "driftrec",
        "driftrec_no_lora": "no_lora",
        "driftrec_index": "index",
        "driftrec_f16": "f16",
        "frozen": "frozen",
        "popularity": "pop",
        "recent_popularity": "recent",
        "item_knn": "knn",
        "river_mf": "mf",
        "newest": "newest",
        "content_tfidf": "tfidf",
    }
    cols = [short.get(n, n[:8]) for n in names]
    lines.append(f"{'window':>6} {'events':>8} " + " ".join(f"{c:>8}" for c in cols))
    rows = range(nb)
    if max_windows is not None and nb > max_windows:
        step = int(np.ceil(nb / max_windows))
        rows = sorted(set(range(0, nb, step)) | {nb - 1})
    ends = {}
    for b in rows:
        end = blocks[names[0]][b]["start"] + blocks[names[0]][b]["n"] - 1
        ends[b] = pos = int(res.target_index[end]) + 1 if len(res.target_index) else 0
        lines.append(f"{b:>6} {pos:>8} " + " ".join(f"{blocks[n][b]['hr']:>8.4f}" for n in names))
    cold = res.cold()
    if cold.any():  # the same windows, their cold targets only
        lines.append("")
        lines.append(
            f"cold HR@{k} per window (targets whose item had < {pq.COLD_EVENTS} earlier events; "
            f"'cold' = how many in the window)"
        )
        lines.append(f"{'window':>6} {'events':>8} {'cold':>6} " + " ".join(f"{c:>8}" for c in cols))
        for b in rows:
            s0 = blocks[names[0]][b]["start"]
            sl = slice(s0, s0 + blocks[names[0]][b]["n"])
            c = cold[sl]
            vals = [pq.metrics(res.systems[n].positions[sl][c], k)["hr"] if c.any() else None for n in names]
            lines.append(f"{b:>6} {ends[b]:>8} {int(c.sum()):>6} " + " ".join(f4(v) for v in vals))
    if max_windows is not None and nb > max_windows:
        lines.append(f"(every {int(np.ceil(nb / max_windows))}th window shown; all of them in table.txt)")
    return "\n".join(lines)


def plot(path: str, res: pq.PrequentialRun, window: int, shift_index: int | None, title: str) -> None:
    from driftrec.app.plots import plot_windowed_hr

    series = {}
    n = len(res.target_index)
    step = max(1, window // 10)
    pick = (
        np.unique(np.concatenate([np.arange(min(window, n) - 1, n, step), [n - 1]]))
        if n
        else np.zeros(0, int)
    )
    pick = pick[pick >= 0]
    for name, r in res.systems.items():
        hr = pq.sliding_hr(r.positions, res.k, window)
        series[name] = (res.target_index[pick].tolist(), hr[pick].tolist())
    swaps = res.systems["driftrec"].swaps if "driftrec" in res.systems else []
    plot_windowed_hr(
        path,
        series,
        shift=shift_index,
        swaps=swaps,
        title=title,
        ylabel=f"HR@{res.k}, trailing {window} targets",
    )
    cold = res.cold()
    nc = int(cold.sum())
    if nc:  # the same on the cold targets: <source>-cold-hr.png beside it
        wc = max(1, min(window, nc))
        pick = np.unique(np.concatenate([np.arange(wc - 1, nc, max(1, wc // 10)), [nc - 1]]))
        at = res.target_index[cold][pick].tolist()
        cs = {
            name: (at, pq.sliding_hr(r.positions[cold], res.k, wc)[pick].tolist())
            for name, r in res.systems.items()
        }
        plot_windowed_hr(
            cold_plot_path(path),
            cs,
            shift=shift_index,
            swaps=swaps,
            title=f"{title}; cold targets ({nc})",
            ylabel=f"cold HR@{res.k}, trailing {wc} cold targets",
        )


def cold_plot_path(path: str) -> str:
    """Where :func:`plot` writes the cold targets' plot beside ``path``."""
    root, ext = os.path.splitext(path)
    return f"{root.removesuffix('-hr')}-cold-hr{ext}"


def _one_blas_thread() -> Any:
    """The loop multiplies many tiny matrices (conflict-free batches are often a single
    event): a multi-threaded BLAS spends more time waking threads than computing (8 ms
    instead of 0.1 ms per 1 x 384 x 1682 product on a busy 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


# ---- the command -------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalArgs:
    """What ``driftrec eval`` evaluates (its flags: :mod:`driftrec.cli.evaluation`)."""

    scenario: str | None  # a synthetic stream (None: ``log``)
    log: str | None  # an event log (JSONL, CSV or the MovieLens folder)
    format: str
    items: str | None  # the item catalog of a JSONL or CSV log
    events: int | None  # the first N events of the log (synthetic: generate N; default 20000)
    systems: str  # comma-separated names of :data:`ALL_SYSTEMS`
    model: str | None
    device: str | None
    train_every: int | None
    lora_every: int | None
    drift: str | None  # the learner's drift trigger ("none": off; None: the settings')
    window: int | None  # target events per window (None: about 1/20 of the targets)
    targets: str  # comma-separated event types scored
    shift_ts: int | None  # a known shift (epoch ms) in a log
    k: int
    max_batch: int
    seed: int
    #: the ``emerging`` scenario's knobs (:data:`driftrec.stream.synthetic.EMERGING_DEFAULTS`)
    emerging: dict[str, Any]
    report: str  # folder for the PNG, table.txt, summary.json
    json: bool  # print the summary as JSON on the last line
    no_progress: bool
    #: the scorer systems' ``ScorerConfig.candidates`` (auto: the index from
    #: ``exact_below`` items on) and ``item_storage`` (None: the config's default)
    candidates: str = "auto"
    item_storage: str | None = None
    #: the index's faiss factory string (``ScorerConfig.index_spec``; auto: by catalog size)
    index_spec: str = "auto"


def eval_scorer_config(args: EvalArgs) -> Any:
    """The scorer systems' configuration: seen items excluded without a cap (every system
    alike), on the path and with the item storage of the flags."""
    from driftrec.scorer import ScorerConfig

    cfg = ScorerConfig(seen_limit=1_000_000, candidates=args.candidates, index_spec=args.index_spec)
    return cfg if args.item_storage is None else replace(cfg, item_storage=args.item_storage)


def load_stream(args: EvalArgs) -> tuple[list[Event], list[Item], int | None, str]:
    if args.log:
        from driftrec.app.settings import ConfigError
        from driftrec.stream import read_log

        log_ = read_log(args.log, args.format, args.items)
        if not log_.events:
            first = f" (first: {log_.rejected[0].reason})" if log_.rejected else ""
            raise ConfigError(
                f"--log {args.log!r}: no valid event in it; {len(log_.rejected)} records "
                f"rejected{first}; allowed: a log with at least one valid event"
            )
        if log_.rejected:
            log.warning(
                "%d records of %s were rejected (first: %s)",
                len(log_.rejected),
                args.log,
                log_.rejected[0].reason,
            )
        events = log_.events[: args.events] if args.events else log_.events
        items = list(log_.items)
        if not items:
            raise ConfigError("the log has no item catalog: pass --items PATH (JSONL or CSV)")
        return events, items, args.shift_ts, os.path.basename(os.path.normpath(args.log))
    from driftrec.stream.synthetic import generate

    s = generate(args.scenario, n_events=args.events or 20_000, seed=args.seed, **args.emerging)
    shift = args.shift_ts if args.shift_ts is not None else s.shift_ts
    return list(s.events), list(s.items), shift, args.scenario


def run_eval(args: EvalArgs) -> int:
    from tqdm import tqdm

    from driftrec.app.process import tune_gc
    from driftrec.app.settings import Settings
    from driftrec.model import Representation

    tune_gc()
    t_start = time.perf_counter()
    st = Settings.from_env()
    events, items, shift_ts, source = load_stream(args)
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    lcfg = st.learner if args.train_every is None else replace(st.learner, train_every=args.train_every)
    if args.lora_every is not None:
        lcfg = replace(lcfg, lora_every=args.lora_every)
    lcfg = replace(lcfg, seed=args.seed)
    if args.drift is not None:
        lcfg = replace(lcfg, drift=None if args.drift == "none" else args.drift)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    quiet = args.no_progress
    bar = tqdm(
        total=len(items), desc="encoding catalog", unit="item", file=sys.stderr, disable=quiet, leave=False
    )
    # the versions the learners publish during the run (up to ~1 GB on a long log): removed
    # with the run, whatever ends it
    artifact_dir = tempfile.mkdtemp(prefix="driftrec-eval-artifacts-")
    try:
        systems = build_systems(
            names,
            items,
            model=args.model or st.model,
            cache_dir=st.cache_dir,
            learner_config=lcfg,
            rep=Representation(),
            scorer_config=eval_scorer_config(args),
            device=args.device or st.device,
            lora_r=st.lora_r,
            max_len=st.max_len,
            seed=args.seed,
            artifact_dir=artifact_dir,
            progress=bar.update,
        )
        bar.close()
        bar = tqdm(
            total=len(events),
            desc=f"eval {source}",
            unit="ev",
            file=sys.stderr,
            disable=quiet,
            smoothing=0.05,
        )
        with _one_blas_thread():
            from driftrec.app.system import publication_times

            pub = publication_times(items)
            res = pq.run(
                events,
                systems,
                k=args.k,
                targets=targets,
                max_batch=args.max_batch,
                progress=bar.update,
                publications=None if pub is None else list(pub.values()),
            )
    finally:
        shutil.rmtree(artifact_dir, ignore_errors=True)
    bar.close()
    n_t = len(res.target_index)
    window = args.window or pq.auto_window(n_t)
    shift_index = pq.shift_index_of(events, shift_ts)
    summary = summarise(res, systems, window, shift_ts, shift_index)
    summary["source"] = source
    summary["wall_s"] = round(time.perf_counter() - t_start, 1)
    full = format_tables(res, summary, window)
    report = args.report
    os.makedirs(report, exist_ok=True)
    png = os.path.join(report, f"{source}-hr.png")
    title = f"{source}: {res.n_events} events, {n_t} targets" + (
        f", shift at event {shift_index}" if shift_index is not None else ""
    )
    plot(png, res, window, shift_index, title)
    with open(os.path.join(report, "table.txt"), "w") as fh:
        fh.write(full + "\n")
    with open(os.path.join(report, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    print(
        f"driftrec eval: {source}, {res.n_events} events ({n_t} targets: {','.join(targets)}), "
        f"{summary['wall_s']} s"
    )
    print(format_tables(res, summary, window, max_windows=24))
    for s in systems:
        if isinstance(s, ScorerSystem) and s.trainings:
            acc = sum(1 for m in s.trainings if m.get("accepted"))
            print(
                f"{s.name}: {len(s.trainings)} trainings, {acc} accepted (hot-swaps), "
                f"{s.train_s:.1f} s training"
            )
    cold_png = f", {cold_plot_path(png)}" if res.cold().any() else ""
    print(
        f"report: {png}{cold_png}, {os.path.join(report, 'table.txt')}, {os.path.join(report, 'summary.json')}"
    )
    if args.json:
        print(json.dumps(summary, separators=(",", ":")))
    return 0
