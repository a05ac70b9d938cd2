"""Hot-swap: prepare a new version off the hot path, swap one reference between batches.

DESIGN.md, "Hot-swap protocol", steps 2-4: verify checksums and compatibility, load,
build the index in a background thread; the runtime calls :meth:`SwapManager.maybe_swap`
between two batches, which replaces the serving model in one assignment. A bad artifact
is rejected with a log line and the current version keeps serving.

Announcements are untrusted (item 5): with ``store`` (``ARTIFACT_DIR``) a ``uri`` must
resolve to ``<store>/<version>``, with ``key`` (``ARTIFACT_KEY``) the manifest must carry
the learner's HMAC; :func:`driftrec.model.load_artifact` checks those, the checksums and
every tensor, and ``on_reject(version, reason, message)`` hears of each refusal (the
services count them: ``driftrec_artifacts_rejected_total{reason}``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftrec.model import (
    ArtifactError,
    ModelLoadError,
    TextEncoder,
    check_version,
    load_artifact,
    priority_order,
    zero_at_init,
)
from driftrec.model.expiry import COMPACT_SHARE, expired_mask, without_rows

from .core import Scorer, ServingModel
from .expiry import align_ts, rows_from

log = logging.getLogger("driftrec.scorer.swap")

#: The announcement that rolls back to the base encoder (no adapter, nothing learned).
BASE_RECORD = {"version": "base", "uri": "base:"}


@dataclass
class SwapEvent:
    version: str
    previous: str
    prepare_s: float
    swap_ms: float
    at: float


class SwapManager:
    """Prepares announced versions in the background and swaps them in between batches.

    Parameters
    ----------
    scorer : the scorer whose serving model is replaced
    texts : item id -> text of the whole catalog (items the artifact lacks are encoded)
    standby : a second encoder (same base) that the next version is loaded into, so the
        serving one is never modified in place; after a swap the roles exchange
    store : the artifact store (``ARTIFACT_DIR``): announced ``uri``s must resolve to
        ``<store>/<version>`` (``None``: not checked; every service sets it)
    key : the shared ``ARTIFACT_KEY``; when set, an unsigned or wrongly signed
        announcement is refused
    """

    def __init__(
        self,
        scorer: Scorer,
        texts: Mapping[str, str] | None = None,
        standby: TextEncoder | None = None,
        background: bool = True,
        store: str | None = None,
        key: bytes | str | None = None,
    ) -> None:
        self.scorer = scorer
        self._base = scorer.model  # what ``BASE_RECORD`` rolls back to
        self.texts = dict(texts or {})
        self._standby = standby
        self._background = background
        self._lock = threading.Lock()
        self._ready: ServingModel | None = None
        self._same_as: Any = None  # weakref to the table the ready model's ids were compared with
        self._rows: tuple[Any, np.ndarray] | None = None  # (weakref to that table, rows_from it)
        self._thread: threading.Thread | None = None
        self._pending: dict[str, Any] | None = None  # the next announcement (submit)
        #: versions replaced by a later announcement before they were prepared
        self.superseded: list[str] = []
        self.swaps: list[SwapEvent] = []
        self.rejected: list[tuple[str, str]] = []
        #: the reason code of each entry of :attr:`rejected` (``REJECT_REASONS``)
        self.rejected_reasons: list[str] = []
        self.store, self.key = store, key
        self.on_reject: Callable[[str, str, str], None] | None = None
        self._prepare_s = 0.0
        self._retired: list[ServingModel] = []  # replaced versions, freed off the serving thread
        self.on_swap: Callable[[SwapEvent], None] | None = None
        # background re-encoding of a swapped-in version's stale rows
        self.reencode_chunk = REENCODE_CHUNK
        self.reencode_patch = REENCODE_PATCH
        self._patch: tuple[ServingModel, Any] | None = None  # (model, the table it patches)
        self._patched = threading.Event()
        self._reencoder: tuple[threading.Thread, threading.Event] | None = None
        #: (version, rows re-encoded and served so far, seconds since its swap) of the latest
        #: re-encoding; ``reencode_encoded``: rows encoded so far (served or not yet)
        self.reencoded: tuple[str, int, float] | None = None
        self.reencode_encoded = 0
        #: called between two batches after each re-encoded block is served: (version,
        #: rows re-encoded so far, rows still stale)
        self.on_reencode: Callable[[str, int, int], None] | None = None
        # compaction: the serving table without its expired rows (item_max_age_ms)
        self._compactor: threading.Thread | None = None
        self._compacted: tuple[ServingModel, Any, np.ndarray, list[str]] | None = None
        self._next_compact = 0.0
        self.compact_every_s = COMPACT_CHECK_S
        #: (rows released, seconds to build the table and its index) of each compaction
        self.compactions: list[tuple[int, float]] = []

    @property
    def busy(self) -> bool:
        """A version is being prepared, is ready and waits for the next batch boundary, or
        waits to be prepared."""
        return (
            (self._thread is not None and self._thread.is_alive())
            or self._ready is not None
            or self._pending is not None
        )

    def submit(self, record: Mapping[str, Any]) -> None:
        """Start preparing ``record`` (an ``adapters`` announcement). Never raises for a bad
        artifact: it is logged and listed in :attr:`rejected`. Never waits (with
        ``background``): while another version is being prepared, or is ready and waits
        for its swap, or the table is being compacted, ``record`` waits as the next one
        and starts at the first batch boundary after that (:meth:`maybe_swap`); a later
        announcement replaces a waiting one (listed in :attr:`superseded`: the newest
        version is the one to serve, and preparing one at 1M items takes minutes)."""
        log.info("preparing adapter %r", str(record.get("version"))[:80])
        if not self._background:
            self._prepare(dict(record))
            return
        with self._lock:
            if self._occupied():
                if self._pending is not None:
                    skipped = str(self._pending.get("version"))[:80]
                    self.superseded.append(skipped)
                    log.info("adapter %r superseded before it was prepared", skipped)
                self._pending = dict(record)
                return
            self._start(dict(record))

    def _occupied(self) -> bool:
        """A version is being prepared or waits for its swap, or a compaction is built."""
        return (
            (self._thread is not None and self._thread.is_alive())
            or self._ready is not None
            or (self._compactor is not None and self._compactor.is_alive())
        )

    def _start(self, record: dict[str, Any]) -> None:
        self._thread = threading.Thread(
            target=self._prepare, args=(record,), name="driftrec-swap-prepare", daemon=True
        )
        self._thread.start()

    def _start_pending(self) -> None:
        """Between two batches: start the waiting announcement once nothing occupies the
        preparation (a thread start, well under a millisecond)."""
        if self._pending is None:
            return
        with self._lock:
            if self._pending is not None and not self._occupied():
                record, self._pending = self._pending, None
                self._start(record)

    @property
    def pending(self) -> str | None:
        """The version of the announcement waiting to be prepared, if any."""
        p = self._pending
        return None if p is None else str(p.get("version"))[:80]

    def wait(self, timeout: float | None = None) -> None:
        """Until the version being prepared is ready (or ``timeout`` seconds); a waiting
        announcement is started and waited for too where nothing is ready to swap."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for t in (self._compactor, self._thread):
                if t is not None:
                    t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if self._pending is None or self._ready is not None:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._start_pending()

    def _prepare(self, record: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        version = str(record.get("version", "?"))[:80]
        cur = self.scorer.model
        enc = self._standby if self._standby is not None else cur.encoder
        try:
            if record.get("uri") == BASE_RECORD["uri"]:
                check_version(record.get("version"))
                table, lora, manifest = self._base.table, {}, dict(self._base.manifest)
            else:
                art = load_artifact(
                    record,
                    expect_dim=cur.table.dim,
                    expect_base=cur.manifest.get("base_model") or None,
                    expect_lora=enc.lora_config if enc is not None else None,
                    store=self.store,
                    key=self.key,
                    storage=self.scorer.config.storage_for,
                )
                table, lora, manifest = art.items, art.lora, dict(art.manifest)
                table = table.stored(self.scorer.config.storage_for(len(table.item_ids)))
            if enc is not None:
                same_adapter = _same_adapter(lora, cur.encoder)
                if lora:
                    enc.load_lora_state(lora)
                elif enc.lora_config:
                    enc.reset_lora()
                missing = [i for i in cur.table.item_ids if table.index(i) < 0 and i in self.texts]
                missing = self._unexpired(missing)
                if missing:
                    texts = [self.texts[i] for i in missing]
                    table = table.with_items(missing, enc.encode(texts), enc.encode(texts, base=True))
                if table.stale is not None:
                    table = self._fill_stale(table, cur, same_adapter, enc)
            drop = expired_mask(align_ts(self.scorer._ts_by_id, table)[0], self.scorer.expiry_cutoff)
            if drop is not None:  # expired rows are not carried into the new version
                table = without_rows(table, drop)[0]
            model = ServingModel(version, table, cur.rep, enc, manifest)
            self.scorer.prepare(model)
        except (ArtifactError, ModelLoadError, OSError, ValueError, RuntimeError) as exc:
            reason = (
                exc.reason
                if isinstance(exc, ArtifactError)
                else "incompatible"
                if isinstance(exc, ModelLoadError)
                else "load_error"
            )
            log.error("rejected adapter %r (%s): %s; still serving %s", version, reason, exc, cur.version)
            self.rejected.append((version, str(exc)))
            self.rejected_reasons.append(reason)
            if self.on_reject is not None:
                try:
                    self.on_reject(version, reason, str(exc))
                except Exception:  # pragma: no cover - a metrics hook never stops serving
                    log.exception("on_reject hook failed")
            return
        # compared here, off the serving thread; the swap only checks it is still that table
        same = model.table.item_ids == cur.table.item_ids
        same_as = weakref.ref(cur.table) if same else None
        rows = None if same else (weakref.ref(cur.table), rows_from(cur.table, model.table))
        with self._lock:
            self._ready, self._same_as, self._rows = model, same_as, rows
            self._prepare_s = time.perf_counter() - t0

    def maybe_swap(self) -> SwapEvent | None:
        """Between two batches: swap in a prepared version, if one is ready."""
        with self._lock:
            model, self._ready = self._ready, None
            same_as, self._same_as = self._same_as, None
            rows, self._rows = self._rows, None
            prep = self._prepare_s
        if model is None:
            self._apply_patch()
            self._compact()
            self._start_pending()
            return None
        t0 = time.perf_counter()
        based_on = rows[0]() if rows is not None else None
        args = (model, same_as() if same_as is not None else None)
        if rows is not None and based_on is not None:  # another catalog: gathered by row
            old = self.scorer.swap(*args, rows=(based_on, rows[1]))
        else:
            old = self.scorer.swap(*args)
        ev = SwapEvent(model.version, old.version, prep, (time.perf_counter() - t0) * 1000, time.time())
        if model.encoder is not None and old.encoder is not model.encoder:
            self._standby = old.encoder  # the old serving encoder is free now
        self._retire(old)
        del old
        self.swaps.append(ev)
        log.info(
            "swapped in %s (was %s; prepared in %.2f s, swap %.3f ms)",
            ev.version,
            ev.previous,
            prep,
            ev.swap_ms,
        )
        self._start_reencode(model)
        self._start_pending()
        if self.on_swap:
            self.on_swap(ev)
        return ev

    # ---- compaction (item_max_age_ms) -------------------------------------------------
    def _unexpired(self, ids: list[str]) -> list[str]:
        """``ids`` without the expired items (by the scorer's times and cutoff)."""
        cut, get = self.scorer.expiry_cutoff, self.scorer._ts_by_id.get
        if cut == -np.inf:
            return ids
        return [i for i in ids if not -np.inf < get(i, -np.inf) < cut]

    def _compact(self) -> None:
        """Between two batches: serve the compacted table if one is ready (and the table
        it compacts is still served, and no version is being prepared: that one drops
        the expired rows itself); else, at most every ``COMPACT_CHECK_S``, start building
        one where expired rows are ``COMPACT_SHARE`` of the served table or more. The
        table and its index are built off the serving thread (with ``background``); the
        swap gathers the rows' times and popularity (:meth:`Scorer.swap`'s ``rows``)."""
        with self._lock:
            c, self._compacted = self._compacted, None
        sc = self.scorer
        if c is not None:
            model, based_on, kept, gone = c
            if sc.model.table is based_on and not self.busy:
                old = sc.swap(model, rows=(based_on, kept))
                self._retire(old)
                del old
                for i in gone:
                    self.texts.pop(i, None)
                log.info("compacted the item table: %d expired rows released", len(gone))
            return
        t = self._compactor
        now = time.monotonic()
        if (
            sc.expiry_cutoff == -np.inf
            or now < self._next_compact
            or self.busy
            or (t is not None and t.is_alive())
            or (self._reencoder is not None and self._reencoder[0].is_alive())
        ):
            return
        self._next_compact = now + self.compact_every_s
        m = sc.model
        drop = expired_mask(sc.publication_times, sc.expiry_cutoff)
        if drop is None or drop.sum() < COMPACT_SHARE * len(m.table.item_ids):
            return
        if not self._background:
            self._build_compacted(m, drop)
            self._compact()
            return
        self._compactor = threading.Thread(
            target=self._build_compacted, args=(m, drop), name="driftrec-compact", daemon=True
        )
        self._compactor.start()

    def _build_compacted(self, m: ServingModel, drop: np.ndarray) -> None:
        t0 = time.perf_counter()
        table, kept = without_rows(m.table, drop)
        model = ServingModel(m.version, table, m.rep, m.encoder, m.manifest)
        self.scorer.prepare(model)
        gone = [m.table.item_ids[j] for j in np.flatnonzero(drop).tolist()]
        self.compactions.append((len(gone), time.perf_counter() - t0))
        with self._lock:
            self._compacted = (model, m.table, kept, gone)

    # ---- background re-encoding ---------------------------------------------------------
    def _fill_stale(self, table: Any, cur: ServingModel, same_adapter: bool, enc: TextEncoder) -> Any:
        """Rows the learner left stale: under the serving adapter (an item-parts-only
        version), those the scorer has re-encoded since are taken from the serving table;
        without background re-encoding (``background=False``), every stale row is encoded
        here, before the swap."""
        ct = cur.table
        if same_adapter and ct.item_ids == table.item_ids:
            cur_stale = ct.stale if ct.stale is not None else np.zeros(len(ct.item_ids), bool)
            rows = np.flatnonzero(table.stale & ~cur_stale)
            if rows.size:
                table = table.with_text(rows, ct.text[rows])
        if table.stale is not None and not self._background:
            rows = np.flatnonzero(table.stale)
            ids = table.item_ids
            table = table.with_text(rows, enc.encode([self.texts.get(ids[j], "") for j in rows]))
        return table

    def _start_reencode(self, model: ServingModel) -> None:
        """Stop re-encoding an earlier version; start on ``model``'s stale rows, if any."""
        if self._reencoder is not None:
            self._reencoder[1].set()
            self._reencoder = None
        with self._lock:
            self._patch = None
        self._patched.set()
        if model.table.stale is None or model.encoder is None:
            return
        stop = threading.Event()
        t = threading.Thread(
            target=self._reencode,
            args=(model.version, model.encoder, stop, time.perf_counter()),
            name="driftrec-reencode",
            daemon=True,
        )
        self._reencoder = (t, stop)
        t.start()

    def _reencode(self, version: str, enc: TextEncoder, stop: threading.Event, t0: float) -> None:
        """Encode ``version``'s stale rows in :func:`priority_order` (newest and most
        engaged first), a chunk at a time; every ``reencode_patch`` rows, build the patched
        table and its operands here (off the serving thread) and hand it to
        :meth:`maybe_swap`, which serves it between two batches. Items not re-encoded yet
        keep the previous version's vectors meanwhile."""
        done = 0
        pending: dict[str, np.ndarray] = {}
        st0 = self.scorer.model.table.stale
        # a block every tenth of the stale rows (at least a chunk, at most reencode_patch)
        block = max(
            self.reencode_chunk, min(self.reencode_patch, int(st0.sum()) // 10 if st0 is not None else 0)
        )
        self.reencode_encoded = 0
        cfg = self.scorer.config
        how = {  # what differs from the encoder's own way (an encoder may know no other)
            k: v
            for k, v in (("precision", cfg.reencode_precision), ("batching", cfg.reencode_batching))
            if getattr(enc, k, v) != v
        }
        queue = _Priority(self.scorer)
        try:
            while not stop.is_set():
                m = self.scorer.model
                t = m.table
                if m.version != version or t.stale is None:
                    return
                chunk, last = queue.next(t, pending, self.reencode_chunk)
                if chunk:
                    ids = [t.item_ids[j] for j in chunk]
                    vecs = enc.encode([self.texts.get(i, "") for i in ids], **how)
                    if stop.is_set():
                        return
                    pending.update(zip(ids, vecs))
                    self.reencode_encoded += len(ids)
                if pending and (len(pending) >= block or last):
                    self._patched.clear()
                    cur = self.scorer.model
                    if cur.version != version:
                        return
                    keep = [(cur.table.index(i), v) for i, v in pending.items() if cur.table.index(i) >= 0]
                    rows = np.array([k for k, _ in keep], np.int64)
                    new = cur.table.with_text(
                        rows,
                        np.stack([v for _, v in keep]) if keep else np.zeros((0, cur.table.dim), np.float32),
                    )
                    patched = ServingModel(version, new, cur.rep, cur.encoder, cur.manifest)
                    self.scorer.prepare(patched)
                    with self._lock:
                        self._patch = (patched, cur.table)
                    self._patched.wait()
                    if self.scorer.model.table is new:  # served: these rows are done
                        done += len(pending)
                        pending.clear()
                        self.reencoded = (version, done, time.perf_counter() - t0)
                elif not chunk:
                    return
        except Exception:  # pragma: no cover - serving goes on with the vectors it has
            log.exception("background re-encoding of %s failed; its stale items keep older vectors", version)

    def _apply_patch(self) -> None:
        """Between two batches: serve the latest re-encoded block, if one is ready and the
        table it patches is still the one served."""
        with self._lock:
            patch, self._patch = self._patch, None
        if patch is None:
            return
        model, based_on = patch
        if self.scorer.model.table is based_on and self.scorer.model.version == model.version:
            old = self.scorer.swap(model, based_on)
            self._retire(old)
            del old
            st = model.table.stale
            left = int(st.sum()) if st is not None else 0
            if self.on_reencode is not None:
                self.on_reencode(model.version, len(model.table.item_ids) - left, left)
        self._patched.set()

    def close(self, timeout: float = 30.0) -> None:
        """Wait for a version being prepared and stop the re-encoding: no thread of this
        manager is left inside the encoder when the process exits."""
        for t in (self._thread, self._compactor):
            if t is not None:
                t.join(timeout)
        self.stop_reencode(timeout)

    def stop_reencode(self, timeout: float | None = None) -> None:
        """Stop the background re-encoding (if any) and wait for its thread."""
        r, self._reencoder = self._reencoder, None
        if r is not None:
            r[1].set()
            self._patched.set()
            r[0].join(timeout)

    def wait_reencoded(self, timeout: float | None = None) -> bool:
        """Block until the serving version has no stale rows left (serving between two
        batches must go on meanwhile: :meth:`maybe_swap` applies the blocks). For tests and
        benchmarks; returns whether it finished."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        while self.scorer.model.table.stale is not None:
            if deadline is not None and time.perf_counter() > deadline:
                return False
            self.maybe_swap()
            time.sleep(0.005)
        return True

    def _retire(self, old: ServingModel) -> None:
        """Free the replaced version on another thread: giving back its arrays' memory took
        0.3-3 ms of the serving thread at a swap (10,000 x 384 items)."""
        with self._lock:
            self._retired.append(old)
        t = threading.Timer(RETIRE_AFTER_S, self._free_retired)
        t.daemon = True
        t.start()

    def _free_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        del retired  # the last references: freed here, not on the serving thread


#: Items encoded per step of the background re-encoding, and rows re-encoded before a
#: block of them is served (each block costs a copy of the table, built off the serving thread).
REENCODE_CHUNK = 256
REENCODE_PATCH = 4096
#: How long the background re-encoding keeps one priority order (newest and most engaged
#: first) before it ranks the stale rows again by the popularity of then. Ranking a
#: million rows took ~1 s, as long as encoding a chunk: it was done before every chunk.
REORDER_S = 10.0


class _Priority:
    """The stale rows of the serving table in :func:`priority_order`, taken a chunk at a
    time: the order is computed once and walked, and computed again when the catalog
    changes (items added) or after :data:`REORDER_S`."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.ids: Any = None  # the item id list the order is of
        self.order = np.zeros(0, np.int64)
        self.pos = 0
        self.at = 0.0

    def next(self, t: Any, pending: Mapping[str, Any], n: int) -> tuple[list[int], bool]:
        """Up to ``n`` stale rows of ``t`` not in ``pending``, most urgent first, and whether
        they are the last ones."""
        now = time.perf_counter()
        if self.ids is not t.item_ids or now - self.at > REORDER_S:
            sc = self.scorer
            self.order = priority_order(sc.publication_times, sc.popularity, len(t.item_ids))
            self.ids, self.pos, self.at = t.item_ids, 0, now
        out: list[int] = []
        ids, order, stale = t.item_ids, self.order, t.stale
        while len(out) < n and self.pos < len(order):
            part = order[self.pos : self.pos + 4 * n]
            used = len(part)
            for q in np.flatnonzero(stale[part]).tolist():
                j = int(part[q])
                if ids[j] not in pending:
                    out.append(j)
                    if len(out) == n:
                        used = q + 1  # the rest of this part is looked at next time
                        break
            self.pos += used
        return out, self.pos >= len(order)


def _same_adapter(lora: Mapping[str, Any], enc: TextEncoder | None) -> bool:
    """Whether ``lora`` (empty: the base encoder) is the adapter ``enc`` serves with."""
    if enc is None or not enc.lora_config:
        return not lora
    cur = enc.lora_state()
    if not lora:
        return all(not bool(t.any()) for n, t in cur.items() if zero_at_init(n))
    return cur.keys() == lora.keys() and all(bool((cur[n] == lora[n].to(cur[n].dtype)).all()) for n in cur)


#: How often the served table's expired rows are counted (for compaction).
COMPACT_CHECK_S = 1.0
#: How long a replaced version is kept before a timer thread frees it (the serving thread
#: has long dropped its own reference by then).
RETIRE_AFTER_S = 0.5
