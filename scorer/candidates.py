"""Candidates for large catalogs, ranked with the exact score.

Below ``ScorerConfig.exact_below`` items (``candidates="auto"``) the scorer scores every
item (the exact path, also the reference). From there on (or always, with
``candidates="index"``) each user's candidates come from several sources, and only they
are scored, with the full score of the exact path (``u . v / temperature + bias``, the
popularity and freshness priors, co-engagement; seen items, items not yet published and
removed items out):

- **the index**: the ``ann_k`` best items by ``u . v / temperature + bias`` from an
  approximate inner-product index over the target side (:class:`~driftrec.scorer.ann.AnnIndex`);
- **fresh**: every item published within ``fresh_ms`` of the batch's time (the newest
  ``fresh_max``), so that a post with no engagement yet reaches users as it does on the
  exact path;
- **co-engagement**: every neighbour the exact path would add co-engagement to (the
  neighbours of the user's recent history);
- **popular**: the ``popular_k`` items with the most decayed engagement, and the most
  popular items of the index lists the user's query scans (``LIST_POPULAR`` of each of the
  first ``LIST_LISTS``): the index ranks by ``u . v`` alone, and where items form topics
  the ones that win are often a topic's popular ones;
- **changed**: items added or edited since the index was built (until they are folded
  into it).

Fresh, popular and changed items are the same for every user of a batch: they are scored
as one dense product. The rest are per user (:mod:`driftrec.scorer._gather`).

The index's lifecycle: built in :meth:`CandidateRanker.prepare` (the swap manager calls it
off the serving thread for each version) and taken with its table when that table is
served; items added through :meth:`Scorer.add_items` are scored for every user until more
than ``SIDE_MAX`` have gathered, then folded into the index; removed items
(:meth:`Scorer.remove_items`) and expired ones (:mod:`.expiry`; taken out of the index
``EXPIRED_DROP`` at a time) are never candidates, on either path. Rows whose vector or
bias is not finite are never indexed and never served. Items published after the ranking
time are held out of the index until it passes their time (:mod:`.pending`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from driftrec.model import ItemTable, Representation, cooc_entries, top_k
from driftrec.state import UserState

from .ann import AnnIndex, finite_rows, query_side
from .expiry import align_ts
from .pending import IndexState as _State
from .pending import fold, held, no_pending, publish, with_pending

if TYPE_CHECKING:
    from .config import ScorerConfig
    from .core import Scorer

log = logging.getLogger("driftrec.scorer.candidates")

#: Changed rows (added or edited since the index was built) scored for every user before
#: they are folded into the index.
SIDE_MAX = 2048
#: Index results asked for beyond ``ann_k``: as many as the batch's longest seen list, up to
#: this (they are dropped as seen).
SEEN_EXTRA = 32
#: A table served without being prepared is indexed between two batches up to this size;
#: above it the previous index serves until the next prepare.
SYNC_BUILD_MAX = 200_000
#: The most popular items of each of the first ``LIST_LISTS`` lists a user's query scans
#: (``LIST_POPULAR`` of each) are candidates too: the index ranks by ``u . v`` alone, and
#: on a topical catalog the items that win are a topic's popular ones. Recomputed every
#: ``LIST_POP_EVERY`` batches.
LIST_LISTS, LIST_POPULAR, LIST_POP_EVERY = 8, 16, 8
#: Expired rows (``item_max_age_ms``) are taken out of the serving index this many at a time.
EXPIRED_DROP = 1024


@dataclass
class CandidateStats:
    """What the candidate path did: batches and rows ranked, own candidates per row
    (index and co-engagement, after duplicates and seen items), shared candidates per
    batch, index builds (with the last one's seconds) and folds."""

    batches: int = 0
    rows: int = 0
    own: int = 0
    shared: int = 0
    builds: int = 0
    build_s: float = 0.0
    folds: int = 0


def _ptr(rows: np.ndarray, B: int) -> np.ndarray:
    p = np.zeros(B + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=B), out=p[1:])
    return p


def _same_prefix(old: ItemTable, new: ItemTable) -> bool:
    """Whether ``new``'s rows start with ``old``'s items, in the same order."""
    a, b = old.item_ids, new.item_ids
    return a is b or (len(b) >= len(a) and (b[: len(a)] == a if len(b) > len(a) else b == a))


def _changed_rows(old: ItemTable, new: ItemTable, chunk: int = 65_536) -> np.ndarray:
    """Rows of ``old`` whose vector or bias differs in ``new`` (same leading items)."""
    n = len(old.item_ids)
    if old.vectors is new.vectors and old.bias is new.bias:
        return np.zeros(0, np.int64)
    out = [np.flatnonzero(old.bias != new.bias[:n])]
    for s in range(0, n, chunk):
        a, b = old.vectors[s : s + chunk], new.vectors[s : s + chunk]
        out.append(s + np.flatnonzero((a != b).any(1)))
    return np.unique(np.concatenate(out))


class CandidateRanker:
    """The scorer's candidate path (see the module doc). The scorer calls :meth:`rank`
    under its batch lock; :meth:`prepare` may run on another thread."""

    def __init__(self, config: ScorerConfig) -> None:
        from ._gather import Marks

        self.config = config
        #: ``auto``, ``exact`` or ``index`` (``ScorerConfig.candidates``); tools may set it
        self.mode = config.candidates
        self.stats = CandidateStats()
        self._state: _State | None = None
        self._next: _State | None = None
        self._expect: tuple[ItemTable, list[str]] | None = None
        self._removed: set[str] = set()
        self._removed_n = 0  # changes of the removed set, for the cached masks
        self._gone: tuple[Any, int, np.ndarray] | None = None  # (table, _removed_n, mask)
        self._excl: tuple[Any, np.ndarray] | None = None  # (state's ok, rows never served)
        self._clock: float | None = None  # the latest ranking time
        self._marks = Marks()
        self._slot = np.zeros(0, np.int32)
        self._fresh: tuple[Any, np.ndarray, np.ndarray] | None = None  # (pub, order, sorted pub)
        self._expired_out: tuple[Any, int, int] | None = None  # (index, folds, expired rows out)
        self._lp: tuple[Any, int, int, np.ndarray] | None = None  # (index, folds, batch, per list)
        self._plock = threading.Lock()  # guards _next
        self._ilock = threading.Lock()  # a serving index changed in place, or copied

    # ---- which path ----------------------------------------------------------------------
    def active(self, n_items: int) -> bool:
        """Whether a catalog of ``n_items`` is ranked from candidates."""
        return self.mode == "index" or (self.mode == "auto" and n_items >= self.config.exact_below)

    @property
    def index(self) -> AnnIndex | None:
        """The index serving now (None before the first batch on this path)."""
        return self._state.index if self._state is not None else None

    @property
    def prepared_index(self) -> AnnIndex | None:
        """The index :meth:`prepare` built last, until a batch takes it (then the serving one)."""
        nxt = self._next
        return nxt.index if nxt is not None else self.index

    # ---- lifecycle -----------------------------------------------------------------------
    def prepare(
        self, table: ItemTable, rep: Representation, item_ts: Mapping[str, int] | None = None
    ) -> None:
        """The index of ``table`` before it is served (off the serving thread): the serving
        one with the changed rows scored for everyone where ``table`` only adds or edits up
        to ``SIDE_MAX`` rows, a copy of it with them indexed again where it changes up to a
        quarter of them (a re-encoded block), a new one otherwise. ``item_ts``: the items'
        publication times (those after the latest ranking time are held out)."""
        cur = self._state
        pub = align_ts(item_ts, table)[0] if item_ts else None
        reindex = max(SIDE_MAX, len(table.item_ids) // 4)
        st = self._derive(cur, table, reindex, pub) if cur is not None else None
        if st is None:
            st = self._build(table, rep, pub, self._clock)
        with self._plock:
            self._next = st

    def expect(self, table: ItemTable, item_ids: Sequence[str]) -> None:
        """``table`` (about to be served) is the serving one with ``item_ids`` added or
        edited: their rows are scored for everyone until they are folded into the index.
        An id removed before is a candidate again."""
        if self._removed.intersection(item_ids):
            self._removed.difference_update(item_ids)
            self._removed_n += 1
        self._excl = None
        self._expect = (table, list(item_ids))

    def remove(self, item_ids: Iterable[str]) -> None:
        """Never serve these items again (until they are added again)."""
        self._removed.update(item_ids)
        self._removed_n += 1
        self._excl = None

    @property
    def removed(self) -> frozenset[str]:
        return frozenset(self._removed)

    def excluded(self, table: ItemTable) -> np.ndarray | None:
        """Rows of ``table`` that are removed items (None: none), for both paths (the
        exact path has its own guard against non-finite rows: ``add_items`` lets none in)."""
        if not self._removed:
            return None
        c = self._gone
        if c is not None and c[0] is table and c[1] == self._removed_n:
            return c[2]
        rows = [r for r in map(table.row_index.get, self._removed) if r is not None]
        gone = np.zeros(len(table.item_ids), bool)
        gone[rows] = True
        self._gone = (table, self._removed_n, gone)
        return gone

    def _build(
        self, table: ItemTable, rep: Representation, pub: np.ndarray | None, clock: float | None
    ) -> _State:
        cfg = self.config
        ok = finite_rows(table.vectors, table.bias)
        hold = held(ok, pub, clock)
        index = AnnIndex.build(
            table.vectors,
            table.bias,
            rep.temperature,
            spec=cfg.index_spec,
            k=cfg.ann_k,
            recall=cfg.ann_recall,
            scan=cfg.ann_scan,
            ok=ok,
            held=hold,
        )
        self.stats.builds += 1
        self.stats.build_s = index.build_s
        log.info(
            "built the candidate index of %d items (%s, nprobe %d) in %.1f s",
            len(table.item_ids),
            index.spec,
            index.nprobe,
            index.build_s,
        )
        st = _State(table, index, ok)
        if hold is not None and pub is not None and clock is not None:  # published after clock: out
            st.pend, st.until = with_pending(no_pending(), np.flatnonzero(hold), pub), float(clock)
        return st

    def _derive(
        self, cur: _State, table: ItemTable, reindex: int = 0, pub: np.ndarray | None = None
    ) -> _State | None:
        """``cur``'s index for ``table`` (the same leading items): the changed rows (with
        those already changed) scored for everyone where they are at most ``SIDE_MAX``,
        indexed again in a copy of the index where at most ``reindex``; else None."""
        old = cur.table
        if table is old:
            return cur
        if cur.index is None or not _same_prefix(old, table):
            return None
        n_old, n = len(old.item_ids), len(table.item_ids)
        if n - n_old > max(SIDE_MAX, reindex):
            return None
        diff = _changed_rows(old, table)
        side = np.union1d(np.union1d(cur.side, diff), np.arange(n_old, n, dtype=np.int64))
        if len(side) > max(SIDE_MAX, reindex):
            return None
        ok = np.concatenate([cur.ok, np.zeros(n - n_old, bool)])
        ok[side] = finite_rows(table.vectors[side], table.bias[side])
        if len(side) <= SIDE_MAX:
            return _State(table, cur.index, ok, side, cur.pend, cur.until)
        with self._ilock:  # not while the serving thread folds rows into it
            index = cur.index.copy()
        return fold(_State(table, index, ok, side, cur.pend, cur.until), pub, nullcontext())

    def _sync(self, table: ItemTable, rep: Representation, pub: np.ndarray | None, now: int) -> _State:
        """The state of the table being served (``pub``: its rows' publication times) at
        ranking time ``now``: prepared, derived from the serving one, or (the first batch,
        or a swap that was not prepared) built here; the rows published by ``now`` in it,
        and the changed rows folded into the index once there are more than ``SIDE_MAX``."""
        st = self._state
        if st is None or st.table is not table:
            st = self._take(table, rep, pub, now)
        st = publish(st, pub, now, self._ilock)
        if len(st.side) > SIDE_MAX and st.index is not None:  # fold the changed rows in
            st = fold(st, pub, self._ilock)
            self.stats.folds += 1
        self._state = st
        self._clock = now if self._clock is None else max(self._clock, now)
        return st

    def _take(self, table: ItemTable, rep: Representation, pub: np.ndarray | None, now: int) -> _State:
        """The state of a table served for the first time."""
        st = self._state
        with self._plock:
            nxt, self._next = self._next, None
        exp, self._expect = self._expect, None
        if nxt is not None and nxt.table is table:
            st = nxt
        elif st is not None and exp is not None and exp[0] is table and _same_prefix(st.table, table):
            n_old, n = len(st.table.item_ids), len(table.item_ids)
            rows = np.array([r for r in map(table.row_index.get, exp[1]) if r is not None], np.int64)
            side = np.union1d(np.union1d(st.side, rows), np.arange(n_old, n, dtype=np.int64))
            ok = np.concatenate([st.ok, np.zeros(n - n_old, bool)])
            ok[side] = finite_rows(table.vectors[side], table.bias[side])
            st = _State(table, st.index, ok, side, st.pend, st.until)
        else:
            if nxt is not None:  # prepared for another table: kept for it
                with self._plock:
                    self._next = self._next or nxt
            base = st
            st = self._derive(base, table, 0, pub) if base is not None else None
            if (
                st is None
                and base is not None
                and base.index is not None
                and len(table.item_ids) > SYNC_BUILD_MAX
            ):
                # not prepared, and too large to build between two batches: the old index
                # goes on proposing candidates (all ranked with this table) until the next
                # prepare builds this table's
                log.warning(
                    "serving a table of %d items with the previous version's candidate index "
                    "(the swap was not prepared)",
                    len(table.item_ids),
                )
                st = _State(table, base.index, np.ones(len(table.item_ids), bool), until=float(now))
            elif st is None:
                st = self._build(table, rep, pub, now)
        self._excl = None
        return st

    def _excluded_rows(self, st: _State) -> np.ndarray:
        """Rows never served from ``st``'s table: non-finite and removed ones."""
        if self._excl is not None and self._excl[0] is st.ok:
            return self._excl[1]
        excl = ~st.ok
        gone = self.excluded(st.table)
        if gone is not None:
            excl |= gone
        self._excl = (st.ok, excl)
        return excl

    # ---- the sources ---------------------------------------------------------------------
    def _shared(self, sc: Scorer, st: _State, excl: np.ndarray, now: int) -> np.ndarray:
        """Popular, fresh and changed rows (sorted, distinct, none excluded)."""
        cfg = self.config
        parts = [st.side]
        pop = sc._pop
        P = cfg.popular_k
        if P and len(pop):
            seen = np.flatnonzero(pop > -np.inf)
            if len(seen) > P:
                seen = seen[np.argpartition(-pop[seen], P - 1)[:P]]
            parts.append(seen)
        pub = sc._pub
        if pub is not None and cfg.fresh_ms > 0 and cfg.fresh_max > 0:
            f = self._by_time(pub)
            lo = int(np.searchsorted(f[2], now - cfg.fresh_ms, "right"))
            lo = max(lo, int(np.searchsorted(f[2], sc.expiry_cutoff, "left")))  # expired: out
            hi = int(np.searchsorted(f[2], now, "right"))
            parts.append(f[1][max(lo, hi - cfg.fresh_max) : hi])
        rows = np.unique(np.concatenate(parts).astype(np.int64, copy=False))
        out: np.ndarray = rows[~excl[rows]]
        return out

    def _by_time(self, pub: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
        """(pub, the rows in time order, their times), cached for ``pub``."""
        f = self._fresh
        if f is None or f[0] is not pub:
            order = np.argsort(pub, kind="stable")
            f = self._fresh = (pub, order, pub[order])
        return f

    def _drop_expired(self, sc: Scorer, st: _State) -> None:
        """Take the expired rows (``item_max_age_ms``) out of the serving index once
        ``EXPIRED_DROP`` more (or a hundredth of its rows) have expired since: they are
        never served (their score is -inf) but would take candidate slots until the
        table is compacted. One faiss removal scans the index once, whatever its size."""
        cut, pub = sc.expiry_cutoff, sc._pub
        if cut == -np.inf or pub is None or st.index is None:
            return
        _, order, times = self._by_time(pub)
        lo = int(np.searchsorted(times, -np.inf, "right"))  # no time: never expires
        hi = int(np.searchsorted(times, cut, "left"))
        c, folds = self._expired_out, self.stats.folds  # a fold may index expired rows again
        done = c[2] if c is not None and c[0] is st.index and c[1] == folds else 0
        if hi - lo - done >= max(EXPIRED_DROP, st.index.n_rows // 100):
            with self._ilock:
                st.index.remove(order[lo:hi])
            self._expired_out = (st.index, folds, hi - lo)

    def _list_popular(self, sc: Scorer, index: AnnIndex) -> np.ndarray | None:
        """``[nlist, LIST_POPULAR]``: each list's most popular rows (-1: fewer)."""
        lo = index.list_of
        if lo is None or not self.config.popular_k:
            return None
        c = self._lp
        if (
            c is not None
            and c[0] is index
            and c[1] == self.stats.folds
            and self.stats.batches - c[2] < LIST_POP_EVERY
        ):
            return c[3]
        pop = sc._pop
        n = min(len(pop), len(lo))
        rows = np.flatnonzero(pop[:n] > -np.inf)
        rows = rows[lo[rows] >= 0]
        lst = lo[rows]
        order = np.lexsort((-pop[rows], lst))
        rows, lst = rows[order], lst[order]
        rank = np.arange(len(rows)) - np.searchsorted(lst, np.arange(index.nlist))[lst]
        keep = rank < LIST_POPULAR
        lp = np.full((index.nlist, LIST_POPULAR), -1, np.int64)
        lp[lst[keep], rank[keep]] = rows[keep]
        self._lp = (index, self.stats.folds, self.stats.batches, lp)
        return lp

    def _base(
        self, sc: Scorer, t: ItemTable, rep: Representation, cols: np.ndarray, excl: np.ndarray, now: int
    ) -> np.ndarray:
        """``bias + prior`` of columns ``cols``: the item-side column of the exact path's
        operands (:meth:`Scorer._operands` with :meth:`Scorer._time_prior`), on these
        columns only; -inf for items not yet published and excluded rows."""
        prior = sc.pop_prior(t, rep, now, cols)
        pub = sc._pub
        if pub is not None:
            p = pub[cols]
            if t.has_age_prior:
                prior += t.age_prior(now - p)
            prior[p > now] = -np.inf
            if sc.expiry_cutoff > -np.inf:  # expired (item_max_age_ms)
                prior[(p < sc.expiry_cutoff) & (p > -np.inf)] = -np.inf
        base: np.ndarray = np.add(t.bias[cols], prior, dtype=np.float32)
        base[excl[cols]] = -np.inf
        return base

    # ---- the batch -----------------------------------------------------------------------
    def rank(
        self, sc: Scorer, states: Sequence[UserState], now: int, k: int, digits: int | None = None
    ) -> tuple[np.ndarray, list[list[str]], list[list[float]]]:
        """What :meth:`Scorer._rank` returns, from candidates."""
        import torch

        from ._gather import gather

        m = sc._model
        t, rep, cfg = m.table, m.rep, self.config
        st = self._sync(t, rep, sc._pub, now)
        self._drop_expired(sc, st)
        excl = self._excluded_rows(st)
        U, hist_idx, hist_w = sc._user_vectors(states, now)
        B, N = len(states), len(t.item_ids)
        Ut = np.multiply(U, np.float32(1.0 / rep.temperature), dtype=np.float32)
        shared = self._shared(sc, st, excl, now)
        S = len(shared)
        seen = [s.seen for s in states]
        lens = np.fromiter(map(len, seen), np.int64, count=B)
        if st.index is not None and cfg.ann_k:
            # a user's history is what its vector is nearest to: seen items come first
            extra = min(int(lens.max(initial=0)), SEEN_EXTRA)
            ann, lists = st.index.search_lists(query_side(Ut, st.index.D), cfg.ann_k + extra)
            lp = self._list_popular(sc, st.index) if lists is not None else None
            if lp is not None and lists is not None:
                ann = np.concatenate(
                    [ann, lp[lists[:, : min(LIST_LISTS, st.index.nprobe)]].reshape(B, -1)], 1
                )
        else:
            ann = np.zeros((B, 0), np.int64)
        z = np.zeros(0, np.int64)
        cr, cc, cv = z, z, np.zeros(0, np.float32)
        if t.cooc_weight and t.nbr_idx is not None and t.nbr_w is not None:
            cr, cc, cv = cooc_entries(hist_idx, hist_w, t.nbr_idx, t.nbr_w, t.cooc_weight)
        scols = np.fromiter(
            map(t.row_index.get, chain.from_iterable(seen), repeat(-1)), np.int64, count=int(lens.sum())
        )
        srows = np.repeat(np.arange(B), lens)
        known = scols >= 0
        srows, scols = srows[known], scols[known]
        if len(self._slot) != N:
            self._slot = np.full(N, -1, np.int32)
        slot = self._slot
        slot[shared] = np.arange(S, dtype=np.int32)
        try:
            own_c, own_d, own_a, sh_add = gather(
                Ut,
                t.vectors,
                ann,
                _ptr(cr, B),
                np.ascontiguousarray(cc, np.int64),
                np.ascontiguousarray(cv, np.float32),
                _ptr(srows, B),
                np.ascontiguousarray(scols, np.int64),
                slot,
                S,
                self._marks,
                torch.get_num_threads(),
            )
        finally:
            slot[shared] = -1
        valid = own_c >= 0
        own = own_d
        with np.errstate(invalid="ignore"):  # a malformed row's NaN, taken out below
            cols = own_c[valid]
            if len(cols) > N:  # cheaper over the whole catalog, then picked
                own[valid] += self._base(sc, t, rep, np.arange(N), excl, now)[cols]
            else:
                own[valid] += self._base(sc, t, rep, cols, excl, now)
            own += own_a
            if S:
                sh = Ut @ t.vectors[shared].T
                sh += self._base(sc, t, rep, shared, excl, now)
                sh += sh_add
                cand = np.concatenate([own, sh], 1)
            else:
                cand = own
            cand[~np.isfinite(cand)] = -np.inf  # a malformed row never ranks
        idx, scores = top_k(cand, k, inplace=True)
        C = own.shape[1]
        cols = np.where(
            idx < C,
            np.take_along_axis(own_c, np.minimum(idx, C - 1), 1),
            shared[np.clip(idx - C, 0, max(S - 1, 0))] if S else -1,
        )
        self.stats.batches += 1
        self.stats.rows += B
        self.stats.own += int(valid.sum())
        self.stats.shared += S
        ids = t.item_ids
        if digits is not None:
            scores = np.round(scores, digits)
        cl, sl = cols.tolist(), scores.tolist()
        ids_of = ids.__getitem__
        id_rows = [list(map(ids_of, row)) for row in cl]
        if scores.size:  # fewer than k rankable candidates: the row ends in -inf; cut it
            for b in np.flatnonzero(np.isneginf(scores[:, -1])).tolist():
                n = int((scores[b] != -np.inf).sum())
                id_rows[b], sl[b] = id_rows[b][:n], sl[b][:n]
        return U, id_rows, sl


def recall_at_k(sc: Scorer, states: Sequence[UserState], now: int, k: int = 10, chunk: int = 64) -> float:
    """Mean share of each user's exact top-``k`` that the scorer's path serves (1.0 on the
    exact path), over users with at least one rankable item; ``chunk`` users at a time."""
    cand = sc._cand
    hits, n = 0.0, 0
    with sc._lock:
        mode = cand.mode
        for s in range(0, len(states), chunk):
            part = states[s : s + chunk]
            got = sc._rank(part, now, k)[1]
            try:
                cand.mode = "exact"
                ref = sc._rank(part, now, k)[1]
            finally:
                cand.mode = mode
            for g, r in zip(got, ref):
                if r:
                    hits += len(set(g) & set(r)) / len(r)
                    n += 1
    return hits / n if n else 1.0
