"""Process-level tuning shared by every long-running driftrec command."""

from __future__ import annotations

import os

#: Thread-pool settings that an entry point (``driftrec``'s command) applies before numpy
#: and torch load (a value already in the environment wins). The scorer alternates numpy's
#: OpenBLAS (the score product) with torch's OpenMP pool (top-k, user vectors); by default
#: each pool's idle threads spin for a while after a call (OpenBLAS ~2^28 cycles, libgomp's
#: spin count) and, on a machine with few cores, the pool that works next shares its cores
#: with the other's spinners. On the 2-core test machine that made the top-k after the
#: product take ~45 ms instead of ~5, and ``driftrec bench scorer`` ran at 10,900-11,500
#: events/s instead of 13,400-13,500. Neither setting slowed ``driftrec bench learner``
#: (13.2 s vs 12.7 s).
THREAD_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}


def set_thread_env() -> None:
    """Apply :data:`THREAD_ENV` where unset. An entry point calls it before numpy and torch
    are imported (they read these once, as they load); importing driftrec changes nothing."""
    for k, v in THREAD_ENV.items():
        os.environ.setdefault(k, v)


def tune_gc() -> None:
    """For a long-running process (a service, the embedded pipeline, a benchmark or an
    evaluation): move everything loaded at start (torch, transformers, the catalog) out of
    the collector's sight and collect the young generation less often. A batch allocates
    tens of thousands of small containers, and with the default thresholds the collector
    kept walking every user's history: ``driftrec bench scorer`` ran at 2,461 events/s with
    the defaults and 3,639 with this, on the same (busy) machine."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
