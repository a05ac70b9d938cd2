"""driftrec: wiring (CLI, settings, the embedded runner, evaluation and benchmarks)."""

from __future__ import annotations

import os as _os

#: Thread-pool settings applied before numpy and torch load (a value already in the
#: environment wins). The scorer alternates numpy's OpenBLAS (the score product) with
#: torch's OpenMP pool (top-k, user vectors); by default each pool's idle threads spin for
#: a while after a call (OpenBLAS ~2^28 cycles, libgomp's spin count) and, on a machine
#: with few cores, the pool that works next shares its cores with the other's spinners.
#: On the 2-core test machine that made the top-k after the product take ~45 ms instead
#: of ~5, and ``driftrec bench scorer`` ran at 10,900-11,500 events/s instead of
#: 13,400-13,500. Neither setting slowed ``driftrec bench learner`` (13.2 s vs 12.7 s).
THREAD_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}
for _k, _v in THREAD_ENV.items():
    _os.environ.setdefault(_k, _v)

__version__ = "0.1.0"
__all__ = ["THREAD_ENV", "__version__"]
