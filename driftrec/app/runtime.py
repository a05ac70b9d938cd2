"""Service loops that wire the cores to transports and state, the same for the embedded
runner and Kafka: the scorer worker and the learner worker."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from driftrec.learner import Learner, TrainResult
from driftrec.scorer import BatchResult, Scorer, SwapManager
from driftrec.state import StateStore, StateWrite, UserState
from driftrec.stream import (
    DecodeCounts,
    Event,
    EventSink,
    EventSource,
    Item,
    ItemTombstone,
    Message,
    Record,
    Rejected,
    TimeBounds,
    TopicNames,
    dead_letter,
    decode,
    decode_item_record,
)

from .adaptation import Publisher

try:  # C JSON encoder for recs.updates (one message per changed user per batch)
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    _orjson = None

log = logging.getLogger("driftrec.runtime")

#: How often the scorer worker asks the state to delete users past USER_TTL_DAYS.
EXPIRE_EVERY_S = 60.0


def _rec_bytes(rec: Mapping[str, Any]) -> bytes:
    if _orjson is not None:
        try:
            return _orjson.dumps(rec)
        except TypeError:  # what orjson refuses (a lone surrogate in an id), the stdlib writes
            pass
    return json.dumps(rec, separators=(",", ":")).encode()


def _key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def _positions(offsets: Mapping[str, int]) -> dict[tuple[str, int], int]:
    """``{"topic:partition": offset}`` (as stored with the state) -> ``{(topic, partition): offset}``."""
    out = {}
    for k, v in offsets.items():
        t, p = k.rsplit(":", 1)
        out[(t, int(p))] = v
    return out


@dataclass
class WorkerStats:
    counts: DecodeCounts = field(default_factory=DecodeCounts)
    batches: int = 0
    recs: int = 0
    duplicates: int = 0
    skipped_committed: int = 0
    items: int = 0
    items_removed: int = 0  # items deleted by an items-topic tombstone
    batch_ms: list[float] = field(default_factory=list)
    #: the last batch's oldest record: its age (now - its Kafka timestamp) when the batch's
    #: updates were made, in ms; None when its records carry no timestamp
    oldest_age_ms: float | None = None


@dataclass
class _Outcome:
    """What a batch adds to the counts, once its outputs are acknowledged (``rejected``: its
    dead letters; ``recs``: its recs.updates) and its state is committed (``processed``)."""

    processed: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    recs: int = 0


class ScorerWorker:
    """One batch at a time: decode -> dead-letter the bad -> scorer core -> send outputs
    (recs.updates, events.dlq) -> commit state with offsets -> commit the consumer.

    Records at offsets that the state already covers are skipped, so a restart after a
    crash neither loses nor double-applies an event.

    ``cache_users`` > 0 keeps a write-through cache of that many user states (least
    recently used out): a user's state is read from the store once, then served from the
    cache, which is updated only after a successful state commit. That is only correct
    while this worker is the only writer of its users, i.e. while it owns every partition
    their events can arrive on: the caller turns it on with :meth:`set_cache_valid` after
    each assignment it has checked (the cache is emptied on every assignment).
    """

    def __init__(
        self,
        scorer: Scorer,
        state: StateStore,
        sink: EventSink,
        names: TopicNames = TopicNames(),
        swaps: SwapManager | None = None,
        group: str = "scorer",
        clock: Callable[[], float] = time.time,
        on_batch: Callable[[BatchResult, float], None] | None = None,
        cache_users: int = 0,
        time_bounds: TimeBounds | None = TimeBounds(),
    ) -> None:
        self.scorer, self.state, self.sink, self.names = scorer, state, sink, names
        self.swaps, self.group, self.clock = swaps, group, clock
        #: plausible event times against ``clock`` (None: only the year-9999 ceiling); the
        #: rest is dead-lettered as ts_out_of_range before it reaches the core
        self.time_bounds = time_bounds
        self.stats = WorkerStats()
        self.on_batch = on_batch
        self._committed = {k: v for k, v in state.offsets(group).items()}
        self.cache_users = cache_users
        self._cache: OrderedDict[str, UserState] = OrderedDict()
        self._cache_on = False
        self._next_expire = 0.0

    def start_offsets(self) -> dict[tuple[str, int], int]:
        """Where to resume: the offsets stored with the state, read afresh (another instance
        may have advanced them before a partition moved here). Called on every partition
        assignment: the user cache is emptied and off until :meth:`set_cache_valid`."""
        self._cache.clear()
        self._cache_on = False
        self._committed = dict(self.state.offsets(self.group))
        return _positions(self._committed)

    @property
    def cached(self) -> int:
        """How many user states the cache holds now."""
        return len(self._cache)

    def forget_cached(self, user_ids: Sequence[str]) -> int:
        """Drop forgotten users from the user cache (their state is gone from the store);
        returns how many were cached."""
        return sum(self._cache.pop(u, None) is not None for u in user_ids)

    def set_cache_valid(self, valid: bool) -> None:
        """Whether this worker is now the only writer of the users of its partitions."""
        self._cache.clear()
        self._cache_on = bool(valid) and self.cache_users > 0

    def _get_users(
        self, user_ids: Sequence[str], shards: Mapping[str, int] | None = None
    ) -> dict[str, UserState]:
        out: dict[str, UserState] = {}
        if self._cache_on:
            cache = self._cache
            out = {u: cache[u] for u in user_ids if u in cache}
        if len(out) < len(user_ids):
            out.update(self.state.get_many([u for u in user_ids if u not in out], shards))
        return out

    def _cache_put(self, users: Mapping[str, UserState]) -> None:
        if not self._cache_on:
            return
        cache = self._cache
        for u, st in users.items():
            cache[u] = st
            cache.move_to_end(u)
        while len(cache) > self.cache_users:
            cache.popitem(last=False)

    def handle(self, records: Sequence[Record]) -> dict[tuple[str, int], int]:
        """Process one batch; returns the consumer offsets to commit."""
        t0 = time.perf_counter()
        st = self.stats
        events: list[Event] = []
        items: list[Item] = []
        catalog: dict[str, Item | None] = {}  # item id -> its last record (None: a tombstone)
        n_tombstones = 0
        out: list[Message] = []
        rejected: list[Rejected] = []
        offsets: dict[str, int] = {}
        shards: dict[str, int] = {}  # user -> the partition its events come from (StateWrite.shards)
        tb = self.time_bounds
        ts_range = tb.window(int(self.clock() * 1000)) if tb is not None else None
        for r in records:
            k = _key(r.topic, r.partition)
            if r.offset < self._committed.get(k, 0):
                st.skipped_committed += 1
                continue
            offsets[k] = max(offsets.get(k, 0), r.offset + 1)
            st.counts.consumed += 1
            if r.topic == self.names.items:
                d = decode_item_record(r.key, r.value)
            else:
                d = decode(r.value, ts_range)
            if isinstance(d, Event):
                events.append(d)
                shards[d.user_id] = r.partition
            elif isinstance(d, Item):
                items.append(d)
                catalog[d.item_id] = d
            elif isinstance(d, ItemTombstone):
                n_tombstones += 1
                catalog[d.item_id] = None
            else:
                rejected.append(d)
                out.append(dead_letter(d, r, self.names.dlq))
        n_items = len(items) + n_tombstones
        # the items topic is a table: the last record of an id in the batch is what it is now
        items = [d for d in catalog.values() if d is not None]
        gone = [i for i, d in catalog.items() if d is None]
        if gone:
            self.scorer.remove_items(gone)
            if self.swaps is not None:
                for i in gone:
                    self.swaps.texts.pop(i, None)
            st.items_removed += len(gone)
        if items and self.swaps is not None:
            # the items topic is a table: re-reading it must not re-encode what is known
            known = self.swaps.texts
            items = [i for i in items if known.get(i.item_id) != i.text]
        if items:
            self.scorer.add_items(items)
            if self.swaps is not None:
                self.swaps.texts.update({i.item_id: i.text for i in items})
            st.items += len(items)
        users = self._get_users(sorted({e.user_id for e in events}), shards)
        result = self.scorer.learn_many(events, users)
        # counted once acknowledged and committed (_acknowledged, _commit): consumed =
        # processed + dead-lettered holds only when every output of the run was acknowledged
        outcome = _Outcome(len(events) + n_items, rejected, len(result.recs))
        st.duplicates += result.duplicates
        now = int(self.clock() * 1000)
        stamped = [r.timestamp_ms for r in records if r.timestamp_ms > 0]
        st.oldest_age_ms = float(now - min(stamped)) if stamped else None
        for rec in result.recs:
            rec["emitted_ts"] = now
            out.append(Message(self.names.recs, _rec_bytes(rec), rec["user_id"].encode()))
        write = StateWrite(result.users, result.item_pop, offsets, self.group, shards, result.pop_added)
        if out:
            self.sink.send_many(out)
        self._acknowledged(outcome)
        done = self._commit(write, outcome)
        st.batches += 1
        ms = (time.perf_counter() - t0) * 1000
        st.batch_ms.append(ms)
        if len(st.batch_ms) > 100_000:
            del st.batch_ms[:50_000]
        if self.on_batch:
            self.on_batch(result, ms)
        return done

    def _acknowledged(self, outcome: _Outcome) -> None:
        """Count a batch's outputs: the sink has acknowledged every one of them."""
        st = self.stats
        for r in outcome.rejected:
            st.counts.add_rejected(r)
        st.recs += outcome.recs

    def _commit(self, write: StateWrite, outcome: _Outcome) -> dict[tuple[str, int], int]:
        if not (write.offsets or write.users):
            return {}
        self.state.commit(write)
        self.stats.counts.processed += outcome.processed
        self._committed.update(write.offsets)
        self._cache_put(write.users)
        return _positions(write.offsets)

    def run_once(self, source: EventSource, max_records: int, timeout_ms: int) -> int:
        """Poll, handle, commit; then swap in a prepared version if one is ready."""
        recs = source.poll(max_records, timeout_ms)
        offs = self.handle(recs) if recs else {}
        if offs:
            source.commit(offs)
        if self.swaps is not None:
            self.swaps.maybe_swap()
        now = time.monotonic()
        if now >= self._next_expire:  # USER_TTL_DAYS: expired users leave the store and the cache
            self._next_expire = now + EXPIRE_EVERY_S
            self.forget_cached(self.state.expire_users())
        return len(recs)


class LearnerWorker:
    """Consumes events (and recs.updates for the hit signal), trains when due, writes the
    artifact, registers it and announces it on the adapters topic.

    Durability (the window lives in memory): the worker knows where each pair of the
    window came from (topic, partition, offset, user), so :meth:`window_start` is, per
    partition, the offset of the oldest record still in the window (else the next one to
    read). That is what the consumer group commits: a learner restarted after a crash
    re-reads its topics from there and rebuilds the same window. :meth:`checkpoint` keeps
    in the state store (next to the registry) the positions consumed, the positions at the
    last training and the counters; :meth:`restore` reads them back, so that re-read
    records are not counted as new (``seen``) nor towards the next training
    (``train_every``) when they were trained on already.
    """

    def __init__(
        self,
        learner: Learner,
        sink: EventSink,
        store_dir: str,
        registry: StateStore | None,
        base_model: str,
        names: TopicNames = TopicNames(),
        on_result: Callable[[TrainResult, dict[str, Any] | None], None] | None = None,
        version_prefix: str = "v",
        time_bounds: TimeBounds | None = TimeBounds(),
        artifact_key: bytes | str | None = None,
        group: str = "learner",
    ) -> None:
        self.learner, self.sink, self.store_dir = learner, sink, store_dir
        self.group = group
        self.registry, self.base_model, self.names = registry, base_model, names
        self.on_result = on_result
        self.time_bounds = time_bounds  # as the scorer's: implausible times never reach the window
        self.publisher = Publisher(learner, store_dir, registry, self._announce, base_model, version_prefix)
        self.publisher.key = artifact_key  # ARTIFACT_KEY: announcements carry the manifest's HMAC
        self._topk: dict[str, set[str]] = {}
        self.results: list[tuple[TrainResult, dict[str, Any] | None]] = []
        self.seen = 0
        #: trainings before this process (restored), plus those of results (:attr:`trainings`)
        self.trainings_before = 0
        #: (partition key, offset, user) of each pair of the learner's window, oldest first
        self._origin: deque[tuple[str, int, str]] = deque()
        self.position: dict[str, int] = {}  # "topic:partition" -> next offset consumed
        self.trained: dict[str, int] = {}  # the positions when the last training started
        self._resume: dict[str, int] = {}  # the positions before a restart (re-read below)
        self._assigned_once = False
        #: user -> epoch ms of its forget request: its events up to then are left out
        self.forgotten: dict[str, int] = {}
        self.dropped_forgotten = 0

    def _announce(self, record: dict[str, Any]) -> None:
        self.sink.send_many(
            [Message(self.names.adapters, json.dumps(record).encode(), record["version"].encode())]
        )

    def handle(self, records: Sequence[Record], train: bool = True) -> TrainResult | None:
        events: list[Event] = []
        items: list[Item] = []
        ts_range = self.time_bounds.now_window() if self.time_bounds is not None else None
        at: list[tuple[str, int]] = []
        position, forgotten = self.position, self.forgotten
        for r in records:
            k = _key(r.topic, r.partition)
            if r.offset + 1 > position.get(k, 0):
                position[k] = r.offset + 1
            if r.topic == self.names.recs:
                if not r.value:  # a tombstone: the user was forgotten
                    if r.key:
                        self._topk.pop(r.key.decode("utf-8", "replace"), None)
                    continue
                try:
                    rec = json.loads(r.value)
                    self._topk[rec["user_id"]] = {x["item_id"] for x in rec["items"]}
                except (ValueError, KeyError, TypeError, RecursionError):
                    pass
                continue
            if r.topic == self.names.items:
                d = decode_item_record(r.key, r.value)
            else:
                d = decode(r.value, ts_range)
            if isinstance(d, ItemTombstone):
                if items:  # in record order: what came before the tombstone first
                    self.learner.add_items(items)
                    items = []
                self.learner.remove_items([d.item_id])
                continue
            if isinstance(d, Event):
                t = forgotten.get(d.user_id)
                if t is not None and d.ts <= t:
                    self.dropped_forgotten += 1
                    continue
                events.append(d)
                at.append((k, r.offset))
            elif isinstance(d, Item):
                items.append(d)
        if items:
            self.learner.add_items(items)
        if events:
            resume, trained = self._resume, self.trained
            new = [o >= resume.get(k, 0) for k, o in at]  # False: re-read after a restart
            hits = [
                e.item_id in self._topk.get(e.user_id, ())
                for e, n in zip(events, new)
                if n and e.type in ("like", "comment")
            ]
            self.learner.observe_hits(hits)
            before = self.learner.since_train
            self.learner.observe_many(events)
            done = sum(1 for k, o in at if o < trained.get(k, 0))  # trained on before a restart
            if done:
                self.learner.since_train = max(before, self.learner.since_train - done)
            # the window's order: observe_many adds the events sorted by ts (a stable sort)
            origin = self._origin
            for i in sorted(range(len(events)), key=lambda j: events[j].ts):
                origin.append((at[i][0], at[i][1], events[i].user_id))
            while len(origin) > len(self.learner.window):  # the window drops its oldest
                origin.popleft()
            self.seen += sum(new)
        if train:
            return self.maybe_train()
        return None

    def maybe_train(self) -> TrainResult | None:
        reason = self.learner.due()
        if reason is None:
            return None
        return self.train(reason)

    def train(self, reason: str) -> TrainResult:
        log.info("learner: training (%s) on a window of %d events", reason, len(self.learner.window))
        self.trained = dict(self.position)  # what this training covers: all consumed
        res, record = self.publisher.train(reason)
        self.results.append((res, record))
        if self.on_result:
            self.on_result(res, record)
        self.checkpoint()
        return res

    # ---- durability -----------------------------------------------------------------
    def _groups(self) -> tuple[str, str, str]:
        g = self.group
        return f"{g}/position", f"{g}/trained", f"{g}/counters"

    def window_start(self) -> dict[tuple[str, int], int]:
        """Per partition consumed: the offset of its oldest record in the window, else the
        next offset to read. Re-reading from here rebuilds the window."""
        start = dict(self.position)
        for k, o, _ in self._origin:
            if o < start.get(k, o + 1):
                start[k] = o
        return _positions(start)

    def checkpoint(self) -> None:
        """Positions, positions at the last training and counters to the state store."""
        reg = self.registry
        if reg is None:
            return
        g_pos, g_trained, g_counters = self._groups()
        reg.commit(StateWrite(offsets=dict(self.position), group=g_pos))
        if self.trained:
            reg.commit(StateWrite(offsets=dict(self.trained), group=g_trained))
        reg.commit(StateWrite(offsets={"seen": self.seen, "trainings": self.trainings}, group=g_counters))

    @property
    def trainings(self) -> int:
        """Training rounds of this group (restored) and of this process; a day-one
        calibration round (reason ``day_one``, nothing trained) is not one."""
        return self.trainings_before + sum(res.reason != "day_one" for res, _ in self.results)

    def restore(self) -> None:
        """Read back :meth:`checkpoint` and the forgotten users (before the first poll)."""
        reg = self.registry
        if reg is None:
            return
        g_pos, g_trained, g_counters = self._groups()
        self._resume = dict(reg.offsets(g_pos))
        self.trained = dict(reg.offsets(g_trained))
        counters = reg.offsets(g_counters)
        self.seen = int(counters.get("seen", 0))
        self.trainings_before = int(counters.get("trainings", 0))
        if self.trainings_before:  # a version of this stream may be serving: no day one
            self.learner.skip_day_one()
        self.refresh_forgotten()

    def start_offsets(self) -> dict[tuple[str, int], int]:
        """For ``KafkaSource(start_offsets=...)``: the first assignment starts where the
        group committed (the window's start); a later one (a rebalance) where this process
        is, so that nothing is added to the window twice."""
        if not self._assigned_once:
            self._assigned_once = True
            return {}
        return _positions(self.position)

    def refresh_forgotten(self) -> list[str]:
        """Read the forgotten users; drop the pairs of newly forgotten ones from the window
        and what the learner holds per user. Returns the users newly dropped."""
        reg = self.registry
        if reg is None:
            return []
        now = dict(reg.forgotten())
        fresh = [u for u, t in now.items() if self.forgotten.get(u) != t]
        self.forgotten = now
        if fresh:
            gone = set(fresh)
            keep = [u not in gone for _, _, u in self._origin]
            if len(keep) == len(self.learner.window) and not all(keep):
                n = self.learner.window.retain(keep)
                self._origin = deque(o for o, k in zip(self._origin, keep) if k)
                log.info("learner: %d events of %d forgotten users left the window", n, len(fresh))
            self.learner.forget_users(fresh)
        return fresh

    def run_once(
        self, source: EventSource, max_records: int, timeout_ms: int, drain_limit: int = 100_000
    ) -> int:
        """Poll and observe everything available (a learner that fell behind trains once on
        the newest window, not once per backlog chunk), then train if due."""
        n = 0
        recs = source.poll(max_records, timeout_ms)
        while recs:
            self.handle(recs, train=False)
            n += len(recs)
            # not 0 ms: the drain waits briefly for the rest of a backlog
            recs = source.poll(max_records, 50) if n < drain_limit else []
        if n:
            # the state first: a group commit ahead of it would only make a restart re-read more
            self.checkpoint()
            source.commit(self.window_start())
        self.maybe_train()
        return n


def parse_announcement(value: bytes) -> Mapping[str, Any] | None:
    try:
        rec = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) and "version" in rec and "uri" in rec else None
