"""USER_TTL_DAYS in the scorer worker: between batches it asks the state to delete the users
not written for that long, and drops them from its user cache, so a user who comes back
starts afresh; every batch tells the state which partition (shard) each user's events
came from."""

from __future__ import annotations

import dataclasses

from test_worker_cache import NAMES, ListSink, _batches, _worker

from driftrec.app.runtime import ScorerWorker
from driftrec.state import StateWrite
from driftrec.state.memory import MemoryStateStore


class _Idle:
    def poll(self, max_records, timeout_ms):
        return []

    def commit(self, offsets) -> None:
        pass


def test_expired_users_leave_the_store_and_the_cache() -> None:
    ref, _, _ = _worker(0)
    now = [1_000_000.0]
    store = MemoryStateStore(user_ttl_days=1, clock=lambda: now[0])
    w = ScorerWorker(ref.scorer, store, ListSink(), NAMES, group="g", cache_users=100)
    w.start_offsets()
    w.set_cache_valid(True)
    w.handle(_batches()[0])
    users = set(store.users())
    assert users and set(w._cache) == users
    w.run_once(_Idle(), 10, 1)  # a day has not passed: nobody goes
    assert set(store.users()) == users
    now[0] += 86_400
    w._next_expire = 0.0  # the sweep runs at most every EXPIRE_EVERY_S
    w.run_once(_Idle(), 10, 1)
    assert store.users() == {} and not w._cache
    assert store.offsets("g")  # the offsets stay: nothing is replayed


def test_each_batch_names_the_partition_of_its_users() -> None:
    writes: list[StateWrite] = []

    class Recording(MemoryStateStore):
        def commit(self, write: StateWrite) -> None:
            writes.append(write)
            super().commit(write)

    ref, _, _ = _worker(0)
    w = ScorerWorker(ref.scorer, Recording(), ListSink(), NAMES, group="g")
    batch = _batches()[0]
    batch = [dataclasses.replace(r, partition=int(r.key.decode()[1:]) % 2) for r in batch]  # u<k>: k % 2
    w.handle(batch)
    (write,) = writes
    assert write.shards and all(p == int(u[1:]) % 2 for u, p in write.shards.items())
    assert set(write.shards) == set(write.users)
    assert {u for u, _, _ in write.pop_added} <= set(write.users) and write.pop_added
