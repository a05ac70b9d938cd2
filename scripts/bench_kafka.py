#!/usr/bin/env python
"""The same as `driftrec bench kafka` (kept for older commands); prints the figures as JSON."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from driftrec.bench_kafka import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
