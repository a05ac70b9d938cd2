"""Drift signals with river: ADWIN or Page-Hinkley on the live hit rate."""

from __future__ import annotations

from collections.abc import Iterable


class HitRateDrift:
    """Feed hits (1) and misses (0) of published recommendations; reports a drop.

    Examples
    --------
    >>> d = HitRateDrift("adwin")
    >>> import random; rnd = random.Random(0)
    >>> any(d.update_many([rnd.random() < 0.5 for _ in range(2000)] + [False] * 2000))
    True
    """

    def __init__(self, method: str = "adwin", delta: float = 0.002) -> None:
        from river import drift

        if method == "adwin":
            self._det = drift.ADWIN(delta=delta)
        elif method in ("page_hinkley", "ph"):
            self._det = drift.PageHinkley(mode="down")
        else:
            raise ValueError(f"unknown drift method {method!r}; use adwin or page_hinkley")
        self.method = method
        self.n = 0
        self.detections = 0

    def update_many(self, hits: Iterable[bool]) -> list[bool]:
        out = []
        for h in hits:
            self._det.update(1.0 if h else 0.0)
            self.n += 1
            fired = bool(self._det.drift_detected)
            self.detections += fired
            out.append(fired)
        return out
