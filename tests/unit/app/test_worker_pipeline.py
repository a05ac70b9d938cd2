"""The scorer worker's pipeline: a batch's outputs are acknowledged while the next batch is
scored. Same state, offsets and updates as the plain worker; a batch's state is committed
only after its outputs were acknowledged; nothing waits in flight after a flush."""

from __future__ import annotations

from test_worker_cache import NAMES, ListSink, _batches, _worker

from driftrec.app.runtime import ScorerWorker
from driftrec.state.memory import MemoryStateStore


class AckLaterSink(ListSink):
    """Records what was sent and when the caller waited for its acknowledgement."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log

    def send_many_async(self, messages):
        n = len(self.log)
        self.sent.extend(messages)
        self.log.append(("sent", n))
        return lambda: self.log.append(("acked", n))


class LoggingStore(MemoryStateStore):
    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log

    def commit(self, write) -> None:
        self.log.append(("commit", dict(write.offsets)))
        super().commit(write)


def _pipelined(cache_users: int) -> tuple[ScorerWorker, LoggingStore, AckLaterSink, list]:
    ref, _, _ = _worker(0)
    log: list = []
    store, sink = LoggingStore(log), AckLaterSink(log)
    w = ScorerWorker(ref.scorer, store, sink, NAMES, group="g", cache_users=cache_users, pipeline=True)
    return w, store, sink, log


def test_pipelined_worker_gives_the_same_state_offsets_and_updates() -> None:
    for cache_users in (0, 100):
        plain, s1, sink1 = _worker(0)
        piped, s2, sink2, _ = _pipelined(cache_users)
        assert piped.pipeline and not plain.pipeline  # a sink without send_many_async: plain
        if cache_users:
            piped.start_offsets()
            piped.set_cache_valid(True)
        for batch in _batches():
            plain.handle(batch)
            piped.handle(batch)
        assert s2.offsets("g") != s1.offsets("g")  # the last batch is still in flight
        piped.flush()
        assert piped._inflight is None
        strip = [(m.key, m.value.split(b'"emitted_ts"')[0]) for m in sink1.sent]
        assert strip and strip == [(m.key, m.value.split(b'"emitted_ts"')[0]) for m in sink2.sent]
        u1, u2 = s1.users(), s2.users()
        assert set(u1) == set(u2) and all(u1[u].same_as(u2[u]) for u in u1)
        assert s1.offsets("g") == s2.offsets("g")


def test_state_is_committed_after_its_outputs_are_acknowledged() -> None:
    w, store, _, log = _pipelined(0)
    batches = _batches()
    returned = [w.handle(b) for b in batches[:3]]
    # batch 0 is committed while batch 1 is handled, before batch 1's outputs go out
    assert returned[0] == {}
    assert returned[1] == {(NAMES.for_type("like"), 0): 15}
    kinds = [k for k, _ in log]
    # a batch's outputs go out only after the previous batch's were acknowledged and its
    # state committed: never two batches' outputs in flight
    assert kinds == ["sent", "acked", "commit", "sent", "acked", "commit", "sent"]
    acked = [n for k, n in log if k == "acked"]
    assert acked == [0, 3]  # the log positions of batch 0's and batch 1's sends
    # the store lags one batch; flush closes the gap and returns what it covered
    assert store.offsets("g") == {f"{NAMES.for_type('like')}:0": 30}
    assert w.flush() == {(NAMES.for_type("like"), 0): 45}
    assert w.flush() == {}


def test_a_new_assignment_flushes_first() -> None:
    w, store, _, _ = _pipelined(100)
    w.handle(_batches()[0])
    assert store.offsets("g") == {}
    assert w.start_offsets() == {(NAMES.for_type("like"), 0): 15}
    assert w._inflight is None
