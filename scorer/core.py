"""The scorer core: apply a micro-batch of events, update user vectors, rank, emit changes.

Pure: no Kafka, Redis, environment or wall clock. The caller reads user state before
:meth:`Scorer.learn_many` and writes ``result.users`` (with its offsets) after it.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np

from driftrec.model import (
    ItemTable,
    Representation,
    TextEncoder,
    cooc_entries,
    top_k,
    user_vectors,
)
from driftrec.state import Interaction, UserState
from driftrec.stream import Event, Item

from .candidates import CandidateRanker
from .comments import CommentWorker
from .config import ScorerConfig
from .expiry import align_pop, align_ts, realign, stream_time
from .history import copy_state, flat_weights, item_of
from .popularity import StreamPopularity
from .ranking import MAX_MARGIN, MIN_CELLS, Bf16Ranker, CoocRange, RankStats, RowAdds, resolve_precision

_log = logging.getLogger("driftrec.scorer")
MAX_COMMENT_CHARS = 512


@dataclass
class ServingModel:
    """One model version as the scorer serves it: the item table and (optionally) the
    encoder with this version's adapter, used for new items and comment text."""

    version: str
    table: ItemTable
    rep: Representation
    encoder: TextEncoder | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchResult:
    """What one batch produced. ``hits`` lists (event, hit) for target events, where hit
    means the item was in the user's last published top-k before the event."""

    users: dict[str, UserState]
    recs: list[dict[str, Any]]
    item_pop: dict[str, float]
    hits: list[tuple[Event, bool]]
    applied: int
    duplicates: int
    version: str
    #: (user_id, item_id, log-space popularity increment) per applied event: what a
    #: sharded state backend adds to the user's shard (``item_pop`` holds the totals)
    pop_added: list[tuple[str, str, float]] = field(default_factory=list)


class Scorer:
    """Real-time user representations and catalog ranking over micro-batches.

    Examples
    --------
    >>> import numpy as np
    >>> from driftrec.model import ItemTable, Representation
    >>> from driftrec.state import UserState
    >>> from driftrec.stream import Event
    >>> t = ItemTable.from_text(["a", "b", "c"], np.eye(3, dtype=np.float32))
    >>> s = Scorer(ScorerConfig(top_k=2), ServingModel("v0", t, Representation(pop_weight=0)))
    >>> r = s.learn_many([Event("e1", "like", "u1", "a", 1000)], {})
    >>> [x["item_id"] for x in r.recs[0]["items"]]  # "a" is seen, so excluded
    ['b', 'c']
    >>> r.applied, r.users["u1"].n_events
    (1, 1)
    """

    def __init__(
        self,
        config: ScorerConfig,
        model: ServingModel,
        item_pop: Mapping[str, float] | None = None,
        item_ts: Mapping[str, int] | None = None,
    ) -> None:
        self.config = config
        self._model = model
        self._popularity = StreamPopularity(item_pop)
        self._pop = align_pop(self._pop_by_id, model.table)
        # publication times (DESIGN.md, items' ts): an item is a candidate from its ts on
        self._ts_by_id: dict[str, int] = dict(item_ts or {})
        self._pub, self._pub_max = align_ts(self._ts_by_id, model.table)
        self._cutoff = -np.inf  # items published before this have expired (item_max_age_ms)
        self._comment_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._comments: CommentWorker | None = None
        self._lock = threading.Lock()  # held for a whole batch; swaps wait for it
        self._buf: np.ndarray | None = None  # the score matrix, reused batch after batch
        self._aug: tuple[np.ndarray, np.ndarray] | None = None  # (vectors, [vectors | bias+prior])
        self._next_aug: tuple[np.ndarray, np.ndarray] | None = None  # built by prepare()
        self._precision = resolve_precision(config.rank_precision)
        self._ranker = Bf16Ranker() if self._precision == "bfloat16" else None
        if self._compiled_pass():
            from ._select import warm

            warm()  # batches of the configured size will take the bfloat16 pass
        self._crange = CoocRange()
        self._cand = CandidateRanker(config)  # large catalogs: candidates, then the exact score
        if self._cand.active(len(model.table.item_ids)):
            from ._gather import warm as warm_gather

            warm_gather()

    def _compiled_pass(self) -> bool:
        """Whether batches of ``config.batch_size`` events will take the bfloat16 pass
        (and its compiled part). A larger batch given to :meth:`learn_many` may take it
        too, and then loads it first."""
        return (
            self._ranker is not None and len(self._model.table.item_ids) * self.config.batch_size >= MIN_CELLS
        )

    def ranking_ready(self) -> bool:
        """False while the compiled part of the bfloat16 ranking still has to be compiled
        (the first time on a machine, ~15 s; numba caches it on disk)."""
        if not self._compiled_pass():
            return True
        from ._select import compiled_in_cache

        return compiled_in_cache()

    def wait_ready(self) -> None:
        """Block until the ranking's compiled part is loaded (started in the background
        by the constructor), so that the first large batch does not wait for it."""
        if self._compiled_pass():
            from ._select import kernel

            kernel()

    # ---- model versions ----------------------------------------------------------------
    @property
    def model(self) -> ServingModel:
        return self._model

    @property
    def version(self) -> str:
        return self._model.version

    @property
    def popularity(self) -> np.ndarray:
        """The decayed log-popularity of each row of the serving table (float64; -inf: no
        event yet), as of the last batch."""
        return self._pop

    @property
    def publication_times(self) -> np.ndarray | None:
        """The publication time of each row of the serving table (float64 ms; -inf:
        unknown), ``None`` when no item has one."""
        return self._pub

    @property
    def candidates(self) -> CandidateRanker:
        """The candidate path of large catalogs (its index, settings and counts)."""
        return self._cand

    @property
    def rank_precision(self) -> str:
        """The first pass of large rankings: ``bfloat16`` or ``float32`` (the resolved
        ``ScorerConfig.rank_precision``)."""
        return self._precision

    @property
    def rank_stats(self) -> RankStats | None:
        """Batches and rows ranked with the bfloat16 first pass, and the rows of them ranked
        again in float32 (``None`` where the first pass is float32)."""
        return self._ranker.stats if self._ranker is not None else None

    def swap(
        self,
        model: ServingModel,
        same_catalog_as: ItemTable | None = None,
        rows: tuple[ItemTable, np.ndarray] | None = None,
    ) -> ServingModel:
        """Replace the serving model between two batches; returns the previous one.

        ``same_catalog_as``: a table whose item ids the caller has already found equal to
        ``model``'s (off the serving thread); if it is the one being served, the ids are
        not compared again here (10,000 string comparisons cost the serving thread a few
        milliseconds of its pause). ``rows``: (a table, :func:`.expiry.rows_from` it), found
        off the serving thread: if that table is served, the rows' times and popularity
        are gathered from it, not looked up by id."""
        cur = self._model.table
        ids = model.table.item_ids
        # A new version of the same catalog (the usual case) keeps the live popularity
        # vector; another catalog gets it realigned, before taking the lock.
        same = same_catalog_as is cur or ids is cur.item_ids or ids == cur.item_ids
        aligned = None if same else self._aligned(model.table, cur, rows)
        with self._lock:
            if self._model.table is not cur:  # changed meanwhile (another thread's swap)
                cur = self._model.table
                same = ids == cur.item_ids
                aligned = None if same else self._aligned(model.table, cur, rows)
            pop, pub = aligned if aligned is not None else (self._pop, (self._pub, self._pub_max))
            old, self._model, self._pop = self._model, model, pop
            self._pub, self._pub_max = pub
        return old

    def _aligned(
        self, table: ItemTable, cur: ItemTable, rows: tuple[ItemTable, np.ndarray] | None
    ) -> tuple[np.ndarray, tuple[np.ndarray | None, float]]:
        if rows is None or rows[0] is not cur:
            return align_pop(self._pop_by_id, table), align_ts(self._ts_by_id, table)
        r, ids = rows[1], table.item_ids
        pop, pub = realign(self._pop, r, ids, self._pop_by_id), self._pub
        if pub is None:  # no item has a time
            return pop, align_ts(self._ts_by_id, table)
        return pop, (p := realign(pub, r, ids, self._ts_by_id), float(p.max(initial=-np.inf)))

    @property
    def expiry_cutoff(self) -> float:
        """Items published before this (ms) have expired (``-inf``: none; ``item_max_age_ms``)."""
        return self._cutoff

    def add_items(self, items: Sequence[Item]) -> int:
        """Add or update catalog items, encoded under the serving version. Returns how many."""
        if not items:
            return 0
        m = self._model
        if m.encoder is None:
            raise ValueError("adding items needs a serving model with an encoder")
        texts = [it.text for it in items]
        vecs, base = m.encoder.encode(texts), m.encoder.encode(texts, base=True)
        ok = np.isfinite(vecs).all(1) & np.isfinite(base).all(1)
        if not ok.all():  # a malformed vector never reaches a user
            bad = [it.item_id for it, g in zip(items, ok) if not g]
            _log.warning("%d items with a non-finite vector not added (first: %r)", len(bad), bad[0][:80])
            items = [it for it, g in zip(items, ok) if g]
            vecs, base = vecs[ok], base[ok]
            if not items:
                return 0
        ids: list[str] = [it.item_id for it in items]
        table = m.table.with_items(ids, vecs, base)
        with self._lock:
            self._ts_by_id.update((it.item_id, it.ts) for it in items)
            self._cand.expect(table, ids)
        self.swap(ServingModel(m.version, table, m.rep, m.encoder, m.manifest))
        with self._lock:  # a text (and time) changed in place: the swap kept the old times
            self._pub, self._pub_max = align_ts(self._ts_by_id, self._model.table)
        return len(items)

    def remove_items(self, item_ids: Sequence[str]) -> int:
        """Never serve these items again, on either path (an items-topic tombstone, expiry);
        adding one again brings it back. Returns how many the catalog has."""
        with self._lock:
            self._cand.remove(item_ids)
            return sum(self._model.table.index(i) >= 0 for i in set(item_ids))

    # ---- the batch -------------------------------------------------------------------
    def learn_many(self, events: Sequence[Event], users: Mapping[str, UserState]) -> BatchResult:
        """Apply ``events`` (any order; applied by event time per user) to ``users``.

        Events whose ``event_id`` the user already has are skipped (replays are harmless).
        """
        with self._lock:
            return self._learn_many(events, users)

    def _learn_many(self, events: Sequence[Event], users: Mapping[str, UserState]) -> BatchResult:
        m, cfg, rep = self._model, self.config, self._model.rep
        table = m.table
        out: dict[str, UserState] = {}
        hits: list[tuple[Event, bool]] = []
        dups = 0
        last_event: dict[str, Event] = {}  # per user: the newest applied event (ties: the later one)
        pop_events: list[Event] = []
        targets, history, seen_limit = cfg.targets, rep.history, cfg.seen_limit
        for e in sorted(events, key=_ts_attr):  # stable: equal times keep their order
            uid = e.user_id
            st = out.get(uid)
            if st is None:
                prev = users.get(uid)
                st = copy_state(prev) if prev is not None else UserState(uid)
                out[uid] = st
            if st.has_event(e.event_id):
                dups += 1
                continue
            item = e.item_id
            if e.type in targets:
                hits.append((e, item in st.topk))
            text = e.text[:MAX_COMMENT_CHARS] if e.text else None
            h = st.history
            h.append(Interaction(e.event_id, e.type, item, e.ts, text))
            if len(h) > history:
                del h[: len(h) - history]
            if seen_limit:
                seen = st.seen
                if item in seen:
                    seen.remove(item)
                seen.append(item)
                if len(seen) > seen_limit:
                    del seen[: len(seen) - seen_limit]
            st.n_events += 1
            st.last_event_id = e.event_id
            last_event[uid] = e  # events come in time order: the last one is the newest
            pop_events.append(e)
        applied = len(pop_events)
        pop_added: list[tuple[str, str, float]] = []
        touched_pop = self._update_pop(pop_events, rep, table, pop_added)
        recs: list[dict[str, Any]] = []
        if last_event:
            now = max(e.ts for e in last_event.values())
            clock = self._pop_clock
            if clock is not None and now > clock:  # records far ahead do not age everyone's prior
                now = max((e.ts for e in last_event.values() if e.ts <= clock), default=clock)
            if cfg.item_max_age_ms:
                self._cutoff = max(self._cutoff, stream_time(now, clock, rep) - cfg.item_max_age_ms)
            states = [st for u, st in out.items() if u in last_event]
            U, id_rows, score_rows = self._rank(states, now, cfg.top_k, digits=5)
            version = m.version
            for b, st in enumerate(states):
                # a copy of the row: a view would keep the whole batch's matrix alive for as
                # long as any of its users is not updated again (the embedded store keeps
                # these objects)
                st.vector, st.version = U[b].copy(), version
                ids = id_rows[b]
                if ids != st.topk:
                    st.topk = ids
                    ev = last_event[st.user_id]
                    recs.append(
                        {
                            "user_id": st.user_id,
                            "items": [{"item_id": i, "score": s} for i, s in zip(ids, score_rows[b])],
                            "model_version": version,
                            "event_id": ev.event_id,
                            "event_ts": ev.ts,
                        }
                    )
        return BatchResult(out, recs, touched_pop, hits, applied, dups, m.version, pop_added)

    def _update_pop(
        self,
        events: Sequence[Event],
        rep: Representation,
        table: ItemTable,
        added: list[tuple[str, str, float]] | None = None,
    ) -> dict[str, float]:
        """:meth:`StreamPopularity.update`, and the rows of ``table`` it touched."""
        touched = self._popularity.update(events, rep, added)
        cols = np.fromiter(map(table.row_index.get, touched, repeat(-1)), np.int64, count=len(touched))
        known = cols >= 0
        if known.any():
            vals = np.fromiter(touched.values(), np.float64, count=len(touched))
            self._pop[cols[known]] = vals[known]
        return touched

    @property
    def _pop_by_id(self) -> dict[str, float]:
        return self._popularity.by_id

    @property
    def _pop_clock(self) -> int | None:
        return self._popularity.clock

    # ---- ranking -----------------------------------------------------------------------
    def rank_many(
        self, states: Sequence[UserState], now: int, k: int | None = None
    ) -> list[list[tuple[str, float]]]:
        """Current top-k (item, score) for users in ``states`` at event time ``now``."""
        with self._lock:
            _, id_rows, score_rows = self._rank(states, now, k or self.config.top_k)
            return [list(zip(i, sc)) for i, sc in zip(id_rows, score_rows)]

    def _rank(
        self, states: Sequence[UserState], now: int, k: int, digits: int | None = None
    ) -> tuple[np.ndarray, list[list[str]], list[list[float]]]:
        """User vectors ``[B, d]`` of ``states``, and per user the top-k item ids and their
        scores, best first; ``digits``: scores rounded to that many decimals."""
        m = self._model
        if self._cand.active(len(m.table.item_ids)):
            return self._cand.rank(self, states, now, k, digits)
        U, hist_idx, hist_w = self._user_vectors(states, now)
        prior = self._time_prior(m.table, self.pop_prior(m.table, m.rep, now), now)
        gone = self._cand.excluded(m.table)
        if gone is not None:
            prior[gone] = -np.inf
        B, N = len(states), len(m.table.item_ids)
        t = m.table
        cooc = bool(t.cooc_weight) and t.nbr_idx is not None and t.nbr_w is not None
        # seen items out: every user's seen list mapped to columns in one C-level pass
        seen = [st.seen for st in states]
        lens = np.fromiter(map(len, seen), np.int64, count=B)
        n_seen = int(lens.sum())
        seen_rc = None
        if n_seen:
            seen_cols = np.fromiter(
                map(t.row_index.get, chain.from_iterable(seen), repeat(-1)), np.int64, count=n_seen
            )
            seen_rows = np.repeat(np.arange(B), lens)
            known = seen_cols >= 0
            seen_rc = seen_rows[known], seen_cols[known]
        cooc_e = (
            cooc_entries(hist_idx, hist_w, t.nbr_idx, t.nbr_w, t.cooc_weight)
            if cooc and t.nbr_idx is not None and t.nbr_w is not None
            else None
        )
        adds = RowAdds.build(B, cooc_e, seen_rc)
        Ua, X = self._operands(U, m, prior)
        crange = self._crange(t, m.rep) if cooc else (0.0, 0.0)
        if self._ranker is not None and B * N >= MIN_CELLS and N > k + MAX_MARGIN and crange is not None:
            idx, sc = self._ranker.topk(Ua, X, t.vectors, k, adds, crange)
        else:
            buf = self._buf
            if buf is None or buf.shape[0] < B or buf.shape[1] != N:
                buf = self._buf = np.empty((max(B, 64), N), np.float32)
            S = np.matmul(Ua, X.T, out=buf[:B])
            adds.apply(S)
            idx, sc = top_k(S, k, inplace=True)  # S is ours: no copy
        ids = m.table.item_ids
        if digits is not None:
            sc = np.round(sc, digits)
        idx_l, sc_l = idx.tolist(), sc.tolist()  # python scalars once, not per element
        ids_of = ids.__getitem__
        id_rows = [list(map(ids_of, row)) for row in idx_l]
        if sc.size:  # a row with fewer than k rankable items ends in -inf (best first): cut it
            for b in np.flatnonzero(np.isneginf(sc[:, -1])).tolist():
                n = int((sc[b] != -np.inf).sum())
                id_rows[b], sc_l[b] = id_rows[b][:n], sc_l[b][:n]
        return U, id_rows, sc_l

    def pop_prior(
        self, t: ItemTable, rep: Representation, now: int, cols: np.ndarray | None = None
    ) -> np.ndarray:
        """The live popularity term of ``t``'s rows at ``now`` (``cols``: those rows only)."""
        pop, share = self._pop if cols is None else self._pop[cols], t.pop_recent_share
        if not share:
            return rep.pop_prior(pop, now)
        recent = self._popularity.recent_log(t, rep)
        return rep.pop_prior(pop, now, recent if cols is None else recent[cols], share)

    def _time_prior(self, t: ItemTable, prior: np.ndarray, now: int) -> np.ndarray:
        """``prior`` (a fresh array) plus the version's learned freshness prior of each
        item's age at ``now``, and ``-inf`` for items published after ``now`` (not yet
        candidates). Nothing to do, and nothing done, where no item has a publication time,
        or none is in the future and the version has no freshness prior."""
        pub = self._pub
        if pub is None:
            return prior
        future = now < self._pub_max
        if t.has_age_prior:
            prior += t.age_prior(now - pub)
        if future:
            prior[pub > now] = -np.inf
        if self._cutoff > -np.inf:  # expired (item_max_age_ms); -inf: no time, never expires
            prior[(pub < self._cutoff) & (pub > -np.inf)] = -np.inf
        return prior

    def prepare(self, model: ServingModel) -> None:
        """Build the item-side operands of ``model`` before :meth:`swap` serves it (may run
        on another thread: :class:`SwapManager` calls it while preparing a version), so that
        its first batch does not build them (a 15 MB copy, and the bfloat16 side)."""
        t = model.table
        if self._cand.active(len(t.item_ids)):  # its candidate index instead
            self._cand.prepare(t, model.rep, self._ts_by_id)
            return
        aug = (t.vectors, self._augmented(t.vectors))
        self._next_aug = aug
        if self._ranker is not None and len(t.item_ids) > self.config.top_k + MAX_MARGIN:
            self._ranker.prepare(aug[1], t.vectors)

    @staticmethod
    def _augmented(vectors: np.ndarray) -> np.ndarray:
        N, d = vectors.shape
        X = np.empty((N, d + 1), np.float32)
        X[:, :d] = vectors
        return X

    def _operands(self, U: np.ndarray, m: ServingModel, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`learner.scores` as one matrix product ``Ua @ X.T``: the item side carries
        ``bias + prior`` as an extra column and the user side a 1, so that the 40 MB score
        matrix is not passed over a second time to add them (the sums agree to float32
        rounding)."""
        t = m.table
        d = t.vectors.shape[1]
        aug = self._aug
        if aug is None or aug[0] is not t.vectors:  # a new version: one copy of its vectors
            nxt = self._next_aug
            if nxt is not None and nxt[0] is t.vectors:
                aug, self._next_aug = nxt, None  # prepared (one for a later version stays)
            else:
                aug = (t.vectors, self._augmented(t.vectors))
            self._aug = aug
        X = aug[1]
        np.add(t.bias, prior, out=X[:, d], casting="unsafe")
        Ua = np.empty((len(U), d + 1), np.float32)
        np.multiply(U, np.float32(1.0 / m.rep.temperature), out=Ua[:, :d], casting="unsafe")
        Ua[:, d] = 1.0
        return Ua, X

    def _user_vectors(
        self, states: Sequence[UserState], now: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """User vectors, and the history rows and weights they were made of."""
        m, rep = self._model, self._model.rep
        H = max((len(s.history) for s in states), default=0)
        B, d = len(states), m.table.dim
        idx = np.full((B, max(H, 1)), -1, np.int64)
        w = np.zeros((B, max(H, 1)), np.float32)
        extra = np.zeros((B, d), np.float32)
        extra_w = np.zeros(B, np.float32)
        todo: list[tuple[int, float, str, str]] = []
        get = m.table.row_index.get
        comments = m.encoder is not None and rep.comment_weight > 0 and self.config.comments != "off"
        flat = flat_weights(rep, states, now)
        if flat is not None:  # every history at once: the same numbers, no per-user numpy calls
            hist, rows, cols, wf = flat
            idx[rows, cols] = np.fromiter(map(get, map(item_of, hist), repeat(-1)), np.int64, count=len(hist))
            w[rows, cols] = wf
            if comments:
                rl = rows.tolist()
                todo = [
                    (rl[j], float(wf[j]) * rep.comment_weight, x.event_id, x.text)
                    for j, x in enumerate(hist)
                    if x.text
                ]
            states = ()  # done
        for b, st in enumerate(states):
            h = st.history
            if not h:
                continue
            wb = rep.weights([x.type for x in h], [x.ts for x in h], now)
            idx[b, : len(h)] = [get(x.item_id, -1) for x in h]
            w[b, : len(h)] = wb
            if comments:
                for x, wx in zip(h, wb):
                    if x.text:
                        todo.append((b, float(wx) * rep.comment_weight, x.event_id, x.text))
        if todo:
            self._comment_vectors(todo, extra, extra_w)
        assert m.table.context is not None
        return user_vectors(idx, w, m.table.context, extra, extra_w), idx, w

    def _comment_vectors(
        self, todo: list[tuple[int, float, str, str]], extra: np.ndarray, extra_w: np.ndarray
    ) -> None:
        cache = self._comment_cache
        missing = {key: text for _, _, key, text in todo if key not in cache}
        if missing:
            if self.config.comments == "async":
                self._comment_worker().submit(missing)
            else:
                self._store_comments(missing)
        # async: a comment not encoded yet counts from the user's next update on
        hits = [(b, wx, v) for b, wx, key, _ in todo if (v := cache.get(key)) is not None]
        if hits:  # one scatter-add, in the order of ``todo`` (as a loop of += would add)
            rows = np.fromiter((h[0] for h in hits), np.intp, count=len(hits))
            wx = np.fromiter((h[1] for h in hits), np.float32, count=len(hits))
            np.add.at(extra, rows, wx[:, None] * np.stack([h[2] for h in hits]))
            np.add.at(extra_w, rows, wx)

    def _store_comments(self, texts: Mapping[str, str]) -> None:
        encoder = self._model.encoder
        if encoder is None or not texts:
            return
        # comments are context-side evidence: the base encoder's space (any version)
        vecs = encoder.encode(list(texts.values()), base=True)
        cache = self._comment_cache
        for key, v in zip(texts, vecs):
            cache[key] = v
        while len(cache) > self.config.comment_cache:
            cache.popitem(last=False)

    def _comment_worker(self) -> CommentWorker:
        if self._comments is None:
            self._comments = CommentWorker(self._store_comments)
        return self._comments

    def close(self, timeout: float = 10.0) -> None:
        """Stop the background comment encoder and wait for it (a process that exits while
        a thread is inside the encoder can abort in native code: "terminate called
        without an active exception")."""
        c, self._comments = self._comments, None
        if c is not None:
            c.close(timeout)


_ts_attr = operator.attrgetter("ts")  # Event.ts
