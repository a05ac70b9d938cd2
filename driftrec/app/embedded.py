"""The embedded runner: scorer and learner in one process over the in-process transport.

No Kafka, no Redis: a :class:`stream.MemoryBroker` carries the same topics the Kafka
runtime uses, the scorer runs in one thread and the learner in another (it never stalls
the scorer: training happens off the scorer's thread, swaps happen between batches).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftrec.learner import Learner, TrainResult
from driftrec.scorer import BatchResult, Scorer, SwapEvent, SwapManager
from driftrec.state import StateStore
from driftrec.stream import Event, Item, MemoryBroker, Message, TopicNames, encode, encode_item

from .runtime import LearnerWorker, ScorerWorker, parse_announcement

log = logging.getLogger("driftrec.embedded")


class PipelineError(RuntimeError):
    """A pipeline thread stopped on an error (e.g. a send its sink did not acknowledge)."""


@dataclass
class Observed:
    """What the runner saw, for reports: live hits and model events."""

    hits: list[tuple[int, bool, str]] = field(default_factory=list)  # (event ts, hit, version)
    swaps: list[tuple[int, SwapEvent]] = field(default_factory=list)  # (event ts at swap, swap)
    trainings: list[tuple[int, TrainResult, dict[str, Any] | None]] = field(default_factory=list)
    last_ts: int = 0


class EmbeddedPipeline:
    """Wires a scorer worker and a learner worker to one :class:`MemoryBroker`.

    Parameters
    ----------
    scorer, swaps : the scorer core and its swap manager
    learner : the learner core (None runs the scorer alone: the frozen system)
    state : the state backend (``memory://`` by default)
    artifact_dir : where the learner writes artifacts
    """

    def __init__(
        self,
        scorer: Scorer,
        swaps: SwapManager,
        learner: Learner | None,
        state: StateStore,
        artifact_dir: str,
        base_model: str,
        names: TopicNames = TopicNames(),
        broker: MemoryBroker | None = None,
        batch_size: int = 256,
        batch_ms: int = 50,
    ) -> None:
        self.broker = broker or MemoryBroker()
        self.names = names
        self.state = state
        self.observed = Observed()
        self.batch_size, self.batch_ms = batch_size, batch_ms
        self.scorer_worker = ScorerWorker(scorer, state, self.broker, names, swaps, on_batch=self._on_batch)
        swaps.on_swap = self._on_swap
        if swaps.store is None:  # announced uris must resolve inside the learner's store
            swaps.store = artifact_dir
        self.learner_worker = (
            LearnerWorker(
                learner, self.broker, artifact_dir, state, base_model, names, on_result=self._on_result
            )
            if learner is not None
            else None
        )
        self._stop = threading.Event()
        self._draining = threading.Event()  # no new trainings (the run is ending)
        self._ads: Any = None
        self._ads_lock = threading.Lock()
        self._lsrc: Any = None
        self._learner_rounds = 0  # completed poll(+train) rounds of the learner thread
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self.training = threading.Event()

    # ---- callbacks -------------------------------------------------------------------
    def _on_batch(self, result: BatchResult, ms: float) -> None:
        for e, hit in result.hits:
            self.observed.hits.append((e.ts, hit, result.version))
            self.observed.last_ts = max(self.observed.last_ts, e.ts)

    def _on_swap(self, ev: SwapEvent) -> None:
        self.observed.swaps.append((self.observed.last_ts, ev))

    def _on_result(self, res: TrainResult, record: dict[str, Any] | None) -> None:
        self.observed.trainings.append((self.observed.last_ts, res, record))

    # ---- producing -------------------------------------------------------------------
    def publish_items(self, items: Sequence[Item]) -> None:
        self.broker.send_many([Message(self.names.items, encode_item(i), i.item_id.encode()) for i in items])

    def publish_events(self, events: Sequence[Event]) -> None:
        self.broker.send_many(
            [Message(self.names.for_type(e.type), encode(e), e.user_id.encode()) for e in events]
        )

    def publish_raw(self, topic: str, values: Sequence[bytes], key: bytes | None = None) -> None:
        self.broker.send_many([Message(topic, v, key) for v in values])

    # ---- threads ---------------------------------------------------------------------
    def start(self, skip_items: bool = True) -> None:
        """Start the scorer (and learner) threads. With ``skip_items`` the catalog already on
        the items topic is taken as known (it was encoded into the base table)."""
        topics_in = list(self.names.events) + [self.names.items]
        src = self.broker.consumer(topics_in, "scorer")
        src.seek(self.scorer_worker.start_offsets())
        if skip_items:
            src.seek({(self.names.items, p): o for p, o in self.broker.end_offsets(self.names.items).items()})
        ads = self.broker.consumer([self.names.adapters], "scorer-adapters")
        self._ads = ads
        self._spawn("driftrec-scorer", self._scorer_loop, src, ads)
        if self.learner_worker is not None:
            lsrc = self.broker.consumer(list(self.names.events) + [self.names.recs], "learner")
            self._lsrc = lsrc
            self._spawn("driftrec-learner", self._learner_loop, lsrc)

    def _spawn(self, name: str, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # surfaced by check()
                log.exception("%s failed", name)
                self._errors.append(exc)
                self._stop.set()

        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _scorer_loop(self, src: Any, ads: Any) -> None:
        w = self.scorer_worker
        while not self._stop.is_set():
            with self._ads_lock:  # wait_idle must not see "consumed" before "submitted"
                for r in ads.poll(16, 0):
                    rec = parse_announcement(r.value)
                    if rec is not None:
                        w.swaps.submit(rec)  # type: ignore[union-attr]
            w.run_once(src, self.batch_size, self.batch_ms)

    def _learner_loop(self, src: Any) -> None:
        lw = self.learner_worker
        assert lw is not None
        while not self._stop.is_set():
            # Drain what is there before training: a learner that fell behind trains once on
            # the newest window instead of once per backlog chunk.
            recs = src.poll(2048, 100)
            while recs:
                lw.handle(recs, train=False)
                offs: dict[tuple[str, int], int] = {}
                for r in recs:
                    offs[(r.topic, r.partition)] = r.offset + 1
                src.commit(offs)
                recs = src.poll(2048, 0) if not self._stop.is_set() else []
            if not self._draining.is_set() and lw.learner.due() is not None:
                self.training.set()
                try:
                    lw.maybe_train()
                finally:
                    self.training.clear()
            self._learner_rounds += 1

    def check(self) -> None:
        if self._errors:
            raise PipelineError(f"a pipeline thread failed: {self._errors[0]!r}") from self._errors[0]

    def processed(self) -> int:
        c = self.scorer_worker.stats.counts
        return c.processed + c.dead_lettered

    def lag(self) -> int:
        total = 0
        for t in list(self.names.events):
            for p, end in self.broker.end_offsets(t).items():
                total += end - self.broker.committed("scorer", t, p)
        return total

    def wait_idle(self, timeout: float = 60.0, learner_too: bool = False) -> bool:
        """Wait until the scorer has consumed everything; with ``learner_too`` also until the
        learner has seen everything, made its training decision, and any new version has been
        swapped in."""
        deadline = time.monotonic() + timeout
        mark: int | None = None
        while time.monotonic() < deadline:
            self.check()
            if self.lag() == 0:
                if not learner_too or self.learner_worker is None:
                    return True
                swaps = self.scorer_worker.swaps
                with self._ads_lock:
                    quiet = (
                        not self.training.is_set()
                        and self._lsrc.lag() == 0
                        and not swaps.busy
                        and self._ads.lag() == 0
                    )  # type: ignore[union-attr]
                if not quiet:
                    mark = None
                elif mark is None:
                    mark = self._learner_rounds
                elif self._learner_rounds >= mark + 2:  # a whole round began after all was seen
                    return True
            time.sleep(0.02)
        return False

    def finish(self, timeout: float = 300.0) -> bool:
        """End of input: start no new training, let a running one finish and be swapped in."""
        self._draining.set()
        return self.wait_idle(timeout, learner_too=True)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)
        self.scorer_worker.swaps.wait()  # type: ignore[union-attr]
        self.scorer_worker.swaps.maybe_swap()  # type: ignore[union-attr]
        self.check()

    def summary(self) -> dict[str, Any]:
        st = self.scorer_worker.stats
        lw = self.learner_worker
        published = sum(1 for _, _, rec in self.observed.trainings if rec is not None)
        return {
            "events_in": st.counts.consumed,
            "events_processed": st.counts.processed,
            "dead_lettered": st.counts.dead_lettered,
            "dead_letter_reasons": dict(st.counts.by_reason),
            "counts_reconcile": st.counts.reconciled,
            "recs_published": st.recs,
            "duplicates_skipped": st.duplicates,
            "adapters_trained": len(self.observed.trainings),
            "adapters_published": published,
            "adapters_swapped": len(self.observed.swaps),
            "adapters_rejected": len(self.scorer_worker.swaps.rejected),  # type: ignore[union-attr]
            "serving_version": self.scorer_worker.scorer.version,
            "learner_events": lw.seen if lw else 0,
        }


def dlq_records(broker: MemoryBroker, names: TopicNames) -> list[dict[str, Any]]:
    """The dead-letter topic as dicts (reason, source topic, offset, raw)."""
    out = []
    for r in broker.records(names.dlq):
        h = {k: v.decode() for k, v in r.headers}
        out.append({**h, "raw": r.value})
    return out


def count_json(broker: MemoryBroker, topic: str) -> int:
    return sum(1 for r in broker.records(topic) if json.loads(r.value))
