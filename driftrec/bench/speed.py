"""``driftrec bench scorer|swap|reencode|learner|fuzz|kafka``: speed and memory figures of the real cores.

- ``scorer``: events/s and per-batch p50/p99 latency of :meth:`scorer.Scorer.learn_many`
  (embedded, no transport) on a synthetic catalog (default 10,000 items x 384 dims, random
  unit vectors) and 10,000 users; also the machine's own matrix-product rate measured on
  the spot, and the events/s bound it puts on brute-force ranking of this catalog (float32;
  and bfloat16 where the scorer's first pass ran in it, see :mod:`scorer.ranking`).
- ``swap``: a steady stream through the scorer in one thread while artifacts written with
  :func:`learner.write_artifact` are prepared by :class:`scorer.SwapManager` and swapped
  in between batches: the serving pause (largest idle gap between consecutive batches),
  and events dropped or applied twice (events in vs applied); see :mod:`driftrec.bench.swap`.
- ``learner``: one micro-fine-tune of a 4,096-event window (:meth:`learner.Learner.train`)
  with the default encoder (or ``--model``) on cuda or cpu, whichever is there: seconds
  per fine-tune and per step, peak memory.
- ``kafka``: on the running broker and Redis (``scripts/services.sh up``): raw client
  rates, the scorer service draining a backlog, and event-to-update latency at a steady
  rate (see :mod:`driftrec.bench.kafka`).

Each prints a table; ``--json`` adds the figures as JSON on the last line.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from driftrec.stream import Event


def _unit(rng: np.random.Generator, n: int, d: int, rows: int = 1 << 15) -> np.ndarray:
    """``n`` random unit vectors (float32), drawn ``rows`` at a time: the same numbers as one
    draw of them all, without its float64 temporaries (three times the result's size)."""
    out = np.empty((n, d), np.float32)
    for s in range(0, n, rows):
        x = rng.standard_normal((min(rows, n - s), d)).astype(np.float32)
        out[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _events(
    rng: np.random.Generator,
    n: int,
    n_users: int,
    n_items: int,
    t0: int = 1_700_000_000_000,
    prefix: str = "e",
) -> list[Event]:
    users = rng.integers(0, n_users, n)
    items = np.minimum(rng.zipf(1.3, n) - 1, n_items - 1)  # popular head, long tail
    types = np.where(rng.random(n) < 0.7, "click", "like")
    return [
        Event(f"{prefix}{k}", str(types[k]), f"u{users[k]}", f"i{items[k]}", t0 + k * 10) for k in range(n)
    ]


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / (1024.0 * 1024.0)


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set (Linux: ``/proc/self/clear_refs``), so that
    :func:`peak_rss_since_reset_mb` measures from here; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_mb() -> float | None:
    """The peak resident set since :func:`reset_peak_rss` (``VmHWM``; Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


#: The most item columns :func:`matmul_rate` multiplies: a larger catalog is timed on this
#: many and the time scaled (the rate is flat well before it; the product of a million
#: items took as much memory as the scorer being measured).
RATE_COLUMNS = 1 << 16


def matmul_rate(
    batch: int, n_items: int, dim: int, repeat: int = 5, dtype: str = "float32"
) -> dict[str, float]:
    """GFLOP/s of ``U @ V.T`` (``[batch, dim] x [dim, n_items]``; float32 with numpy, or
    bfloat16 with torch) on this machine and the events/s bound it puts on brute-force
    ranking (one user row per event). Above :data:`RATE_COLUMNS` items it is timed on
    that many and scaled."""
    rng = np.random.default_rng(1)
    cols = min(n_items, RATE_COLUMNS)
    U, V = _unit(rng, batch, dim), _unit(rng, cols, dim)
    if dtype == "bfloat16":
        import torch

        Ut, Vt = torch.from_numpy(U).bfloat16(), torch.from_numpy(V).bfloat16()
        out = torch.empty((batch, n_items), dtype=torch.bfloat16)

        def product() -> None:
            torch.matmul(Ut, Vt.T, out=out)
    else:

        def product() -> None:
            U @ V.T

    product()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - t0)
    gflops = 2.0 * batch * cols * dim / best / 1e9
    return {"gflops": round(gflops, 1), "bound_events_per_s": round(batch / (best * n_items / cols), 0)}


def _scorer(
    n_items: int, dim: int, seed: int = 0, cooc: int = 50, precision: str = "auto", batch: int = 256
) -> Any:
    from driftrec.app.system import build_scorer
    from driftrec.model import ItemTable, Representation
    from driftrec.scorer import ScorerConfig

    rng = np.random.default_rng(seed)
    table = ItemTable.from_text([f"i{j}" for j in range(n_items)], _unit(rng, n_items, dim))
    if cooc:  # as served after a training: co-engagement neighbours in the score
        nbr = rng.integers(0, n_items, (n_items, cooc)).astype(np.int32)
        table = table.with_cooc(nbr, rng.random((n_items, cooc)).astype(np.float32), 2.0)
    # the compiled ranking pass, if these batches take it, is loaded before the clock starts
    return build_scorer(
        ScorerConfig(rank_precision=precision, batch_size=batch), table, Representation(), base_model="bench"
    )


# ---- scorer --------------------------------------------------------------------------------
def bench_scorer(
    n_items: int = 10_000,
    dim: int = 384,
    n_users: int = 10_000,
    n_events: int = 60_000,
    batch: int = 1024,
    warm_events: int = 20_000,
    seed: int = 0,
    precision: str = "auto",
) -> dict[str, Any]:
    """Events/s and per-batch latency of ``Scorer.learn_many`` on a warm user population.
    ``precision``: the scorer's ``rank_precision`` (``auto``: bfloat16 first pass where the
    CPU has it natively)."""
    sc = _scorer(n_items, dim, seed, precision=precision, batch=batch)
    rng = np.random.default_rng(seed + 1)
    users: dict[str, Any] = {}
    # Warm-up: every user gets some history (their vectors are built from it).
    for s in range(0, warm_events, batch):
        r = sc.learn_many(_events(rng, min(batch, warm_events - s), n_users, n_items, prefix=f"w{s}-"), users)
        users.update(r.users)
    evs = _events(rng, n_events, n_users, n_items, t0=1_800_000_000_000)
    lat = []
    applied = 0
    t_all = time.perf_counter()
    for s in range(0, n_events, batch):
        b = evs[s : s + batch]
        t0 = time.perf_counter()
        r = sc.learn_many(b, users)
        lat.append(time.perf_counter() - t0)
        users.update(r.users)
        applied += r.applied
    wall = time.perf_counter() - t_all
    bound = matmul_rate(batch, n_items, dim)
    eps = applied / wall
    st = sc.rank_stats
    bf16: dict[str, Any] = {}
    if st is not None and st.rows:  # the bfloat16 pass ran: the bound of its product too
        b = matmul_rate(batch, n_items, dim, dtype="bfloat16")
        bf16 = {
            "bf16_matmul_gflops": b["gflops"],
            "bf16_bound_events_per_s": b["bound_events_per_s"],
            "share_of_bf16_bound": round(eps / b["bound_events_per_s"], 3),
        }
    return {
        "bench": "scorer",
        "items": n_items,
        "dim": dim,
        "users": n_users,
        "events": applied,
        "cooc_neighbours": 50,
        "rank_precision": sc.rank_precision,
        "rows_ranked_again": round(st.fallback_rows / st.rows, 4) if st and st.rows else 0.0,
        "batch": batch,
        "events_per_s": round(eps, 0),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
        "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 2),
        "matmul_gflops": bound["gflops"],
        "bound_events_per_s": bound["bound_events_per_s"],
        "share_of_bound": round(eps / bound["bound_events_per_s"], 3),
        **bf16,
        "peak_rss_mb": round(_peak_rss_mb(), 0),
    }


# ---- re-encode -----------------------------------------------------------------------------
def bench_reencode(
    n_items: int = 100_000,
    model: str | None = None,
    max_len: int = 16,
    budget: int = 4096,
    n_users: int = 10_000,
    batch: int = 256,
    limit_s: float = 300.0,
    seed: int = 0,
    device: str = "cpu",
    before_s: float = 10.0,
    precision: str = "float32",
    batching: str = "tokens",
    first_rows: int = 20_000,
) -> dict[str, Any]:
    """After a swap to a version with a new adapter, how long until the whole catalog is on
    it, and the scorer's events/s meanwhile (issue 14, item 6).

    The learner encoded ``budget`` items (newest and most engaged first) before publishing;
    the other ``n_items - budget`` rows are stale: the scorer serves their previous vectors
    and :class:`~driftrec.scorer.SwapManager` re-encodes them in the background with the real
    encoder (``max_len`` tokens per text), while one thread serves a stream as fast as it
    can. The previous version's vectors are random (their values do not change the
    timing). With ``limit_s`` reached first, the time to the full catalog is extrapolated
    from the rows re-encoded so far (``extrapolated``: true). ``precision``, ``batching``:
    how the scorer re-encodes (``ScorerConfig.reencode_precision``/``reencode_batching``);
    ``first_rows_s``: seconds from the swap until the ``first_rows`` most urgent rows (newest and
    most engaged at the swap) all serve the new version; ``newest_rows_s``: until the
    ``first_rows`` newest do."""
    import torch

    from driftrec.app.system import build_scorer, build_swaps, load_encoder
    from driftrec.model import ItemTable, Representation, write_artifact
    from driftrec.scorer import ScorerConfig
    from driftrec.stream.synthetic import FILLER, VOCAB

    rng = np.random.default_rng(seed)
    words = [w for v in VOCAB.values() for w in v] + FILLER
    ids = [f"i{j}" for j in range(n_items)]
    texts = {i: " ".join(rng.choice(words, 6)) for i in ids}
    pub = {i: 1_600_000_000_000 + j * 1000 for j, i in enumerate(ids)}
    serving = load_encoder(model, lora_r=8, max_len=max_len, device=device)
    standby = load_encoder(model, lora_r=8, max_len=max_len, device=device)
    dim = serving.dim
    old = ItemTable.from_text(ids, _unit(rng, n_items, dim))
    cfg = ScorerConfig(batch_size=batch, reencode_precision=precision, reencode_batching=batching)
    sc = build_scorer(cfg, old, Representation(), serving, item_ts=pub)
    store = tempfile.mkdtemp(prefix="driftrec-bench-reencode-")
    mgr = build_swaps(sc, texts, standby, background=True, store=store)
    g = torch.Generator().manual_seed(seed)
    lora = {n: torch.randn(t.shape, generator=g) * 0.02 for n, t in standby.lora_state().items()}
    from driftrec.model import priority_order

    first = np.sort(priority_order(np.array([pub[i] for i in ids], np.float64), None, n_items)[:budget])
    standby.load_lora_state(lora)
    t0 = time.perf_counter()
    text = old.text.copy()
    text[first] = standby.encode([texts[ids[j]] for j in first])
    learner_encode_s = time.perf_counter() - t0
    standby.reset_lora()
    stale = np.ones(n_items, bool)
    stale[first] = False
    rec = write_artifact(
        store,
        "v1",
        lora,
        serving.lora_config,
        ItemTable(ids, text, old.residual, old.bias, old.context, stale=stale),
        serving.base_model,
        {"from_ts": 0, "to_ts": 0, "n_events": 0},
        {},
    )
    evs = _events(np.random.default_rng(seed + 2), 2_000_000, n_users, n_items, t0=1_700_000_000_000)
    users: dict[str, Any] = {}
    pos = 0

    def serve(until: Callable[[], bool], at_least: int = 0) -> tuple[int, float, float]:
        """Serve batches until ``until()`` (and at least ``at_least`` of them); (events, seconds, max batch ms)."""
        nonlocal pos
        n, t1, worst, k = 0, time.perf_counter(), 0.0, 0
        while k < at_least or not until():
            k += 1
            mgr.maybe_swap()
            b0 = time.perf_counter()
            r = sc.learn_many(evs[pos % len(evs) : pos % len(evs) + batch], users)
            worst = max(worst, time.perf_counter() - b0)
            users.update(r.users)
            pos += batch
            n += r.applied
        return n, time.perf_counter() - t1, worst * 1e3

    serve(lambda: pos >= 4 * batch)  # warm-up (first batches build the ranking operands), untimed
    end0 = time.perf_counter() + before_s  # events/s before the swap, for comparison
    n_before, s_before, worst_before = serve(lambda: time.perf_counter() > end0)
    mgr.submit(rec)
    mgr.wait()
    ev = mgr.maybe_swap()
    assert ev is not None, mgr.rejected
    t_swap = time.perf_counter()
    deadline = t_swap + limit_s
    urgent = priority_order(sc.publication_times, sc.popularity, n_items)[: min(first_rows, n_items)]
    newest = np.argsort(-np.asarray(sc.publication_times), kind="stable")[: min(first_rows, n_items)]
    first_s: list[float] = []
    newest_s: list[float] = []

    def done_or_late() -> bool:
        st = sc.model.table.stale
        for rows, at in ((urgent, first_s), (newest, newest_s)):
            if not at and (st is None or not st[rows].any()):
                at.append(time.perf_counter() - t_swap)
        return st is None or time.perf_counter() > deadline

    # one batch at least: a fast re-encode still gets a figure
    n_during, s_during, worst_during = serve(done_or_late, at_least=1)
    took = time.perf_counter() - t_swap
    st = sc.model.table.stale
    left = int(st.sum()) if st is not None else 0
    served = (n_items - budget) - left
    done = max(served, mgr.reencode_encoded)  # encoded, served or waiting for its block
    mgr.stop_reencode(timeout=60)
    finished = left == 0
    rate = done / took if took > 0 else 0.0
    full_s = took if finished else ((n_items - budget) / rate if rate > 0 else float("inf"))
    return {
        "bench": "reencode",
        "items": n_items,
        "model": serving.base_model,
        "max_len": max_len,
        "device": serving.device,
        "reencode_precision": precision,
        "reencode_batching": batching,
        "learner_encoded": budget,
        "learner_encode_s": round(learner_encode_s, 2),
        "stale_at_swap": n_items - budget,
        "reencoded": done,
        "reencoded_served": served,
        "seconds": round(took, 3),  # a small catalog re-encodes in well under 0.1 s
        "finished": finished,
        "extrapolated": not finished,
        "reencode_items_per_s": round(rate, 1),
        "full_catalog_s": round(full_s, 3),
        "first_rows": len(urgent),
        "first_rows_s": round(first_s[0], 3) if first_s else None,
        "newest_rows_s": round(newest_s[0], 3) if newest_s else None,
        "events_per_s_before": round(n_before / s_before, 0),
        "events_per_s_during": round(n_during / s_during, 0) if s_during > 0 else None,
        "batch_max_ms_before": round(worst_before, 1),
        "batch_max_ms_during": round(worst_during, 1),
        "swap_pause_ms": round(ev.swap_ms, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 0),
    }


# ---- learner -------------------------------------------------------------------------------
def bench_learner(
    model: str | None = None,
    window: int = 4096,
    device: str = "auto",
    n_items: int = 1_600,
    seed: int = 0,
    use_lora: bool = True,
    progress: Callable[[int], None] | None = None,
    catalog: str = "text",
) -> dict[str, Any]:
    """One micro-fine-tune of a ``window``-event window (synthetic stream, real encoder).
    ``catalog``: ``text``, the ``abrupt`` scenario's catalog encoded by the encoder; or
    ``topics``, the topical vectors of ``driftrec bench catalog`` (no encoding: a catalog of
    a million rows in seconds) with publication times over the week before the window and
    events that follow each user's topic."""
    import torch

    from driftrec.app.system import build_learner, load_encoder
    from driftrec.learner import LearnerConfig
    from driftrec.model import ItemTable, Representation

    enc = load_encoder(model, lora_r=8 if use_lora else 0, device=device)
    t0 = time.perf_counter()
    if catalog == "text":
        from driftrec.stream.synthetic import generate

        s = generate("abrupt", n_events=window, n_items=n_items, seed=seed)
        texts = {it.item_id: it.text for it in s.items}
        table = ItemTable.from_text(list(texts), enc.encode(list(texts.values())))
        events, item_ts = s.events, None
    else:
        from .catalog import topical_window

        table, texts, events, item_ts = topical_window(n_items, window, seed, enc.dim)
    encode_s = time.perf_counter() - t0
    # lora_every=1: a full fine-tune, item parts then adapters (the default trains the
    # adapters on every 5th training only)
    cfg = LearnerConfig(
        window_events=window, train_every=window, drift=None, use_lora=use_lora, seed=seed, lora_every=1
    )
    L = build_learner(cfg, Representation(), table, texts, enc, item_ts)
    del table, texts
    L.observe_many(events)
    if enc.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    res = L.train("bench", progress=progress)
    wall = time.perf_counter() - t1
    m = res.metrics
    steps = int(m.get("steps", 0)) or 1
    lora_steps = int(m.get("lora_steps", 0))
    items_s = float(m.get("items_s", 0.0))
    out = {
        "bench": "learner",
        "device": enc.device,
        "model": enc.base_model,
        "window": window,
        "items": n_items,
        "catalog": catalog,
        # the rows the round worked on where it took a sample of the catalog (LEARNER_ROUND_ITEMS)
        "round_items": m.get("round_items", n_items),
        "use_lora": use_lora,
        "finetune_s": round(wall, 2),
        "train_s": m.get("train_s"),
        "items_stage_s": round(items_s, 2),
        "encode_catalog_s": m.get("encode_s"),
        "steps": steps,
        "item_steps": m.get("item_steps"),
        "lora_steps": lora_steps,
        "s_per_step": round(float(m.get("train_s", wall)) / steps, 3),
        "s_per_lora_step": round((float(m.get("train_s", wall)) - items_s) / lora_steps, 3)
        if lora_steps
        else None,
        "initial_encode_s": round(encode_s, 2),
        "accepted": res.accepted,
        "adapter_update": m.get("adapter_update"),
        # a kept, accepted adapter trains on the validation pairs and is encoded again
        "catchup_s": m.get("catchup_s"),
        "peak_rss_mb": round(_peak_rss_mb(), 0),
    }
    if enc.device.startswith("cuda"):
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 0)
    return out


# ---- the command ---------------------------------------------------------------------------
LABELS = {
    "events_per_s": "events/s",
    "p50_ms": "batch p50 (ms)",
    "p99_ms": "batch p99 (ms)",
    "matmul_gflops": "matrix product (GFLOP/s)",
    "bound_events_per_s": "float32 ranking bound (events/s)",
    "share_of_bound": "share of the float32 bound",
    "rank_precision": "ranking first pass",
    "rows_ranked_again": "rows ranked again in float32 (share)",
    "bf16_matmul_gflops": "bfloat16 matrix product (GFLOP/s)",
    "bf16_bound_events_per_s": "bfloat16 product bound (events/s)",
    "share_of_bf16_bound": "share of that bound",
    "max_pause_ms": "max pause: a released batch waiting (ms)",
    "max_pause_at_swap_ms": "pause at a swap (ms)",
    "median_gap_ms": "median pause (ms)",
    "max_gap_incl_idle_ms": "max gap incl. idle ahead of the stream (ms)",
    "finetune_s": "micro-fine-tune (s)",
    "s_per_step": "per step (s)",
    "items_stage_s": "item-parts stage (s)",
    "s_per_lora_step": "per adapter step (s)",
    "catchup_s": "catch-up on the validation pairs, re-encoding included (s)",
    "peak_rss_mb": "peak RSS (MB)",
    "cuda_max_allocated_mb": "CUDA max allocated (MB)",
}


def format_table(res: dict[str, Any]) -> str:
    w = max(len(LABELS.get(k, k)) for k in res)
    return "\n".join(f"{LABELS.get(k, k):<{w}}  {v}" for k, v in res.items())
