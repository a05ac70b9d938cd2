"""Item popularity as the scorer keeps it: a decayed count per item in log space, bounded
by the stream's own clock so that records far ahead of the stream cannot poison it.

Two terms (:mod:`driftrec.model.representation`): the long one decays by the clock and is
shared (the state backend holds it, every scorer adds to it); the recent one decays by
the events this scorer counts and lives in its memory only. A restarted scorer starts the
recent term from the long term's counts it was given (the state backend's), as they stand
at its first batch, and counts on from there: a version that weighs it
(``ItemTable.pop_recent_share``) ranks by what is popular from the first batch on, not by
counts that start from nothing. Several scorers
each count their own partitions' events: the recent term's half-life is then that many
times longer in time than on one scorer (the ranking it gives is the same in expectation)."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from driftrec.model import ItemTable, Representation, logaddexp
from driftrec.model.representation import LN2
from driftrec.stream import Event

#: Popularity's time bound (StreamPopularity.update): the stream's clock is the POP_BOUND_RANK-th newest
#: of the items' latest times among the last POP_CLOCK_EVENTS events; an event more than
#: POP_SLACK_HALF_LIVES popularity half-lives ahead of it adds nothing to popularity. On
#: MovieLens-100K (gaps up to 2 days, pop half-life 1 day) the newest event is at most 2.7
#: days after the 32nd newest of the last 1,024: the bound never binds there, nor on the
#: synthetic scenarios.
POP_CLOCK_EVENTS = 1024
POP_BOUND_RANK = 32
POP_SLACK_HALF_LIVES = 3.0


class StreamPopularity:
    """The items' decayed log-popularity (``by_id``), their recent popularity
    (``recent_by_id``, log accumulators of :meth:`Representation.pop_recent_increment`
    over the ``events`` counted) and the stream's clock (``clock``: the latest time an
    event adds to popularity at; ``None`` before the first batch)."""

    def __init__(self, item_pop: Mapping[str, float] | None = None) -> None:
        self.by_id: dict[str, float] = dict(item_pop or {})
        self.recent_by_id: dict[str, float] = {}
        self.events = 0
        #: the recent term's accumulators of a table's rows: (its item ids, row index, values)
        self._rows: tuple[list[str], Mapping[str, int], np.ndarray] | None = None
        #: (time, item) of the last POP_CLOCK_EVENTS events, as sent
        self.recent: deque[tuple[int, str]] = deque(maxlen=POP_CLOCK_EVENTS)
        self.clock: int | None = None

    def update(
        self, events: Sequence[Event], rep: Representation, added: list[tuple[str, str, float]] | None = None
    ) -> dict[str, float]:
        """Add ``events`` (in time order) to the items' decayed popularity; returns the new
        values of the items they touched (and appends each event's increment to ``added``).

        Bounded by the stream's own clock, not the wall clock (a replay or a backlog runs
        behind the wall clock, so a record "a few minutes from now" can be days ahead of the
        stream): the clock is the ``POP_BOUND_RANK``-th newest of the items' latest times
        among the last ``POP_CLOCK_EVENTS`` events (this batch's included), and an event more
        than ``POP_SLACK_HALF_LIVES`` popularity half-lives ahead of it adds nothing to
        popularity (it still counts for its user). Moving the clock takes records ahead on
        ``POP_BOUND_RANK`` different items: a burst on one item, from any number of users,
        does not. Normal logs are unchanged (see ``POP_CLOCK_EVENTS``). The first batch after
        a start has no history: its own times set the clock."""
        touched: dict[str, float] = {}
        if not events:
            return touched
        last = self.recent
        last.extend((e.ts, e.item_id) for e in events)
        latest: dict[str, int] = {}
        for ts, item in last:  # the items' latest times (one point per item)
            if ts > latest.get(item, -1):
                latest[item] = ts
        times = np.fromiter(latest.values(), np.float64, count=len(latest))
        k = min(POP_BOUND_RANK, len(times))
        now = int(np.partition(times, -k)[-k])
        cap = now + int(POP_SLACK_HALF_LIVES * rep.pop_half_life_ms)
        if self.clock is None and self.by_id and not self.recent_by_id:
            self._seed_recent(now, rep)
        by_id = self.by_id
        get = by_id.get
        inc_of = rep.pop_increment
        rinc_of = rep.pop_recent_increment
        recent = self.recent_by_id
        rget = recent.get
        n = self.events
        rows = self._rows
        row_of, racc = (rows[1].get, rows[2]) if rows is not None else (None, None)
        neg_inf = -np.inf
        for e in events:
            if e.ts > cap:  # far ahead of the stream: no popularity (its user has it)
                continue
            item = e.item_id
            inc = inc_of(e.type, e.ts)
            new = logaddexp(get(item, neg_inf), inc)
            if added is not None:
                added.append((e.user_id, item, inc))
            by_id[item] = new
            touched[item] = new
            n += 1
            r = recent[item] = logaddexp(rget(item, neg_inf), rinc_of(e.type, n))
            if row_of is not None and racc is not None:
                k = row_of(item)
                if k is not None:
                    racc[k] = r
        self.events = n
        self.clock = cap
        return touched

    def _seed_recent(self, now: int, rep: Representation) -> None:
        """A scorer that starts with the long term's counts (a restart: the state backend
        holds them) starts its recent term from them, as they stand at ``now`` (the first
        batch's clock): a version that weighs the recent term then ranks by what is
        popular from the first batch on, not by counts that start from nothing."""
        shift = LN2 * now / rep.pop_half_life_ms
        self.recent_by_id.update((i, x - shift) for i, x in self.by_id.items() if np.isfinite(x))
        self._rows = None

    def recent_log(self, table: ItemTable, rep: Representation) -> np.ndarray:
        """The log of the recent popularity of ``table``'s rows now (float64; -inf: none
        counted since this scorer started)."""
        rows = self._rows
        if rows is None or rows[0] is not table.item_ids:
            get = self.recent_by_id.get
            acc = np.array([get(i, -np.inf) for i in table.item_ids], np.float64)
            rows = self._rows = (table.item_ids, table.row_index, acc)
        return rep.pop_recent_now(rows[2], self.events)
