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
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from driftrec.model import ArtifactError, ModelLoadError, TextEncoder, load_artifact
from driftrec.model.artifacts import check_version

from .core import Scorer, ServingModel

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

    def __init__(self, scorer: Scorer, texts: Mapping[str, str] | None = None,
                 standby: TextEncoder | None = None, background: bool = True,
                 store: str | None = None, key: bytes | str | None = None) -> None:
        self.scorer = scorer
        self._base = scorer.model  # what ``BASE_RECORD`` rolls back to
        self.texts = dict(texts or {})
        self._standby = standby
        self._background = background
        self._lock = threading.Lock()
        self._ready: ServingModel | None = None
        self._same_as: Any = None  # weakref to the table the ready model's ids were compared with
        self._thread: threading.Thread | None = None
        self.swaps: list[SwapEvent] = []
        self.rejected: list[tuple[str, str]] = []
        #: the reason code of each entry of :attr:`rejected` (``REJECT_REASONS``)
        self.rejected_reasons: list[str] = []
        self.store, self.key = store, key
        self.on_reject: Callable[[str, str, str], None] | None = None
        self._prepare_s = 0.0
        self._retired: list[ServingModel] = []  # replaced versions, freed off the serving thread
        self.on_swap: Callable[[SwapEvent], None] | None = None

    @property
    def busy(self) -> bool:
        """A version is being prepared or is ready and waits for the next batch boundary."""
        return (self._thread is not None and self._thread.is_alive()) or self._ready is not None

    def submit(self, record: Mapping[str, Any]) -> None:
        """Start preparing ``record`` (an ``adapters`` announcement). Never raises for a bad
        artifact: it is logged and listed in :attr:`rejected`."""
        log.info("preparing adapter %r", str(record.get("version"))[:80])
        if self._background:
            self.wait()
            self._thread = threading.Thread(target=self._prepare, args=(dict(record),),
                                            name="driftrec-swap-prepare", daemon=True)
            self._thread.start()
        else:
            self._prepare(dict(record))

    def wait(self, timeout: float | None = None) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

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
                art = load_artifact(record, expect_dim=cur.table.dim,
                                    expect_base=cur.manifest.get("base_model") or None,
                                    expect_lora=enc.lora_config if enc is not None else None,
                                    store=self.store, key=self.key)
                table, lora, manifest = art.items, art.lora, dict(art.manifest)
            if enc is not None:
                if lora:
                    enc.load_lora_state(lora)
                elif enc.lora_config:
                    enc.reset_lora()
                missing = [i for i in cur.table.item_ids if table.index(i) < 0 and i in self.texts]
                if missing:
                    texts = [self.texts[i] for i in missing]
                    table = table.with_items(missing, enc.encode(texts), enc.encode(texts, base=True))
            model = ServingModel(version, table, cur.rep, enc, manifest)
            self.scorer.prepare(model)
        except (ArtifactError, ModelLoadError, OSError, ValueError, RuntimeError) as exc:
            reason = (exc.reason if isinstance(exc, ArtifactError)
                      else "incompatible" if isinstance(exc, ModelLoadError) else "load_error")
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
        same_as = weakref.ref(cur.table) if model.table.item_ids == cur.table.item_ids else None
        with self._lock:
            self._ready, self._same_as = model, same_as
            self._prepare_s = time.perf_counter() - t0

    def maybe_swap(self) -> SwapEvent | None:
        """Between two batches: swap in a prepared version, if one is ready."""
        with self._lock:
            model, self._ready = self._ready, None
            same_as, self._same_as = self._same_as, None
            prep = self._prepare_s
        if model is None:
            return None
        t0 = time.perf_counter()
        old = self.scorer.swap(model, same_as() if same_as is not None else None)
        ev = SwapEvent(model.version, old.version, prep, (time.perf_counter() - t0) * 1000, time.time())
        if model.encoder is not None and old.encoder is not model.encoder:
            self._standby = old.encoder  # the old serving encoder is free now
        self._retire(old)
        del old
        self.swaps.append(ev)
        log.info("swapped in %s (was %s; prepared in %.2f s, swap %.3f ms)",
                 ev.version, ev.previous, prep, ev.swap_ms)
        if self.on_swap:
            self.on_swap(ev)
        return ev


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


#: How long a replaced version is kept before a timer thread frees it (the serving thread
#: has long dropped its own reference by then).
RETIRE_AFTER_S = 0.5
