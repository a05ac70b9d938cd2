"""The scorer worker's write-through user cache: same results as reading the store every
batch, emptied on every assignment, off unless the caller says this worker owns its users."""

from __future__ import annotations

import numpy as np

from driftrec.app.runtime import ScorerWorker, TopicNames
from driftrec.model import ItemTable, Representation
from driftrec.scorer import Scorer, ScorerConfig
from driftrec.scorer.core import ServingModel
from driftrec.state import StateWrite, UserState
from driftrec.state.memory import MemoryStateStore
from driftrec.stream import Event, Record, encode

NAMES = TopicNames("t")


class ListSink:
    def __init__(self) -> None:
        self.sent: list = []

    def send_many(self, messages) -> None:
        self.sent.extend(messages)


def _worker(cache_users: int) -> tuple[ScorerWorker, MemoryStateStore, ListSink]:
    ids = [f"i{k}" for k in range(12)]
    vecs = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    scorer = Scorer(
        ScorerConfig(top_k=3), ServingModel("v0", ItemTable.from_text(ids, vecs), Representation())
    )
    store, sink = MemoryStateStore(), ListSink()
    return ScorerWorker(scorer, store, sink, NAMES, group="g", cache_users=cache_users), store, sink


def _batches() -> list[list[Record]]:
    rng = np.random.default_rng(1)
    topic = NAMES.for_type("like")
    out, off = [], 0
    for _ in range(8):
        batch = []
        for _ in range(15):
            u = f"u{rng.integers(5)}"
            e = Event(f"e{off}", "like", u, f"i{rng.integers(12)}", 1_000 + off)
            batch.append(Record(topic, 0, off, u.encode(), encode(e)))
            off += 1
        out.append(batch)
    return out


def test_cache_gives_the_same_state_and_recs_as_reading_the_store() -> None:
    plain, s1, sink1 = _worker(0)
    cached, s2, sink2 = _worker(100)
    cached.start_offsets()
    cached.set_cache_valid(True)
    reads = []
    get_many = s2.get_many
    s2.get_many = lambda ids, shards=None: (reads.append(list(ids)), get_many(ids))[1]  # type: ignore[method-assign]
    for batch in _batches():
        plain.handle(batch)
        cached.handle(batch)
    assert [m.value for m in sink1.sent] != [] and len(sink1.sent) == len(sink2.sent)
    for a, b in zip(sink1.sent, sink2.sent):  # emitted_ts comes from the wall clock
        assert (a.key, a.value.split(b'"emitted_ts"')[0]) == (b.key, b.value.split(b'"emitted_ts"')[0])
    u1, u2 = s1.users(), s2.users()
    assert set(u1) == set(u2) and all(u1[u].same_as(u2[u]) for u in u1)
    assert s1.offsets("g") == s2.offsets("g")
    # each user was read from the store once, then served from the cache
    assert sum(len(r) for r in reads) == len(u2)


def test_cache_is_emptied_on_assignment_and_off_until_validated() -> None:
    w, store, _ = _worker(100)
    w.start_offsets()
    w.set_cache_valid(True)
    w.handle(_batches()[0])
    assert w._cache
    # another instance wrote a user while the partitions were elsewhere
    store.commit(StateWrite(users={"u0": UserState("u0", n_events=99)}))
    w.start_offsets()  # a new assignment
    assert not w._cache and not w._cache_on
    assert w._get_users(["u0"])["u0"].n_events == 99
    w.set_cache_valid(False)  # e.g. not co-partitioned: the store is read every batch
    w.handle(_batches()[1])
    assert not w._cache


def test_cache_is_bounded() -> None:
    w, _, _ = _worker(2)
    w.set_cache_valid(True)
    w.handle(_batches()[0])
    assert len(w._cache) == 2
