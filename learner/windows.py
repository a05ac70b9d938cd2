"""Rolling windows of recent events, bounded by count and by event-time age."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Stamped(Generic[T]):
    ts: int
    value: T


class RollingWindow(Generic[T]):
    """Keep at most ``max_events`` values, none older than ``max_age_ms`` behind the newest.

    Examples
    --------
    >>> w = RollingWindow(max_events=3, max_age_ms=100)
    >>> for t in (0, 10, 20, 30, 200): w.add(t, t)
    >>> [x.ts for x in w]
    [200]
    >>> w.add(210, "x"); len(w), w.span()
    (2, (200, 210))
    """

    def __init__(self, max_events: int = 4096, max_age_ms: int | None = None) -> None:
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        self.max_events = max_events
        self.max_age_ms = max_age_ms
        self._q: deque[Stamped[T]] = deque()
        self._newest = 0

    def add(self, ts: int, value: T) -> None:
        self._q.append(Stamped(ts, value))
        self._newest = max(self._newest, ts)
        while len(self._q) > self.max_events:
            self._q.popleft()
        if self.max_age_ms is not None:
            cutoff = self._newest - self.max_age_ms
            while self._q and self._q[0].ts < cutoff:
                self._q.popleft()

    def retain(self, keep: list[bool]) -> int:
        """Keep the values whose flag is true (one flag per value, oldest first); returns
        how many went. (Forgetting a user: the caller knows whose each value is.)

        >>> w = RollingWindow(10)
        >>> for t in range(4): w.add(t, t)
        >>> w.retain([True, False, True, False]), [x.value for x in w]
        (2, [0, 2])
        """
        if len(keep) != len(self._q):
            raise ValueError(f"{len(keep)} flags for {len(self._q)} values")
        before = len(self._q)
        self._q = deque(x for x, k in zip(self._q, keep) if k)
        return before - len(self._q)

    def __len__(self) -> int:
        return len(self._q)

    def __iter__(self) -> Iterator[Stamped[T]]:
        return iter(list(self._q))

    def span(self) -> tuple[int, int]:
        if not self._q:
            return (0, 0)
        return (min(x.ts for x in self._q), self._newest)
