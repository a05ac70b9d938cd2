"""Event time is untrusted (issue 15, build 1): records whose ts is too far ahead of the
clock, or beyond year 9999, go to events.dlq as ``ts_out_of_range`` and change no other
user's recommendations; replayed logs keep their (old, or tiny) times."""

from __future__ import annotations

import json

import numpy as np

from driftrec.app.runtime import ScorerWorker, TopicNames
from driftrec.model import ItemTable, Representation
from driftrec.scorer import Scorer, ScorerConfig
from driftrec.scorer.core import ServingModel
from driftrec.state.memory import MemoryStateStore
from driftrec.stream import MAX_TS, REASONS, Event, Record, TimeBounds, decode, encode, read_log

NAMES = TopicNames("t")
NOW = 1_800_000_000_000  # the workers' clock (ms)
IDS = [f"i{k}" for k in range(60)]
POISON = [2**63 - 1, 10**20]


class ListSink:
    def __init__(self) -> None:
        self.sent: list = []

    def send_many(self, messages) -> None:
        self.sent.extend(messages)


def _worker(time_bounds: TimeBounds | None = TimeBounds()) -> tuple[ScorerWorker, MemoryStateStore, ListSink]:
    vecs = np.random.default_rng(0).normal(size=(len(IDS), 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)  # unit vectors, as the encoder's
    scorer = Scorer(
        ScorerConfig(top_k=10), ServingModel("v0", ItemTable.from_text(IDS, vecs), Representation())
    )
    store, sink = MemoryStateStore(), ListSink()
    w = ScorerWorker(scorer, store, sink, NAMES, group="g", clock=lambda: NOW / 1000, time_bounds=time_bounds)
    return w, store, sink


def _clean_batches() -> list[list[Record]]:
    """40 users' likes and clicks over the last few hours, on partition 0."""
    rng = np.random.default_rng(1)
    out, off = [], 0
    for _ in range(10):
        batch = []
        for _ in range(30):
            u, etype = f"u{rng.integers(40)}", ("like", "click")[rng.integers(2)]
            e = Event(f"e{off}", etype, u, f"i{rng.integers(len(IDS))}", NOW - 5 * 3_600_000 + off * 60_000)
            batch.append(Record(NAMES.for_type(etype), 0, off, u.encode(), encode(e)))
            off += 1
        out.append(batch)
    return out


def _poison(ts_values: list[int], n: int = 50) -> list[Record]:
    """``n`` likes of one item from attackers, on partition 1 (the clean offsets stay as they are)."""
    recs = []
    for k in range(n):
        ts = ts_values[k % len(ts_values)]
        raw = json.dumps(
            {"event_id": f"p{k}", "type": "like", "user_id": f"evil{k}", "item_id": "i7", "ts": ts}
        ).encode()
        recs.append(Record(NAMES.for_type("like"), 1, k, f"evil{k}".encode(), raw))
    return recs


def _run(worker: ScorerWorker, poison: list[Record]) -> None:
    batches = _clean_batches()
    for b, batch in enumerate(batches):
        mixed = list(batch)
        if poison:  # spread over every batch, interleaved with the good records
            n = -(-len(poison) // len(batches))
            share = poison[b * n : (b + 1) * n]  # in offset order: the worker skips what it covered
            mixed = [r for pair in zip(mixed, share) for r in pair] + mixed[len(share) :]
        worker.handle(mixed)


def _top10(store: MemoryStateStore) -> dict[str, list[str]]:
    return {u: list(st.topk) for u, st in store.users().items() if not u.startswith("evil")}


def test_poison_timestamps_change_no_other_users_top10():
    clean, clean_store, _ = _worker()
    _run(clean, [])
    poisoned, store, sink = _worker()
    _run(poisoned, _poison(POISON))
    assert _top10(store) == _top10(clean_store) and len(_top10(store)) == 40
    c = poisoned.stats.counts
    assert c.by_reason == {"ts_out_of_range": 50} and c.consumed == 300 + 50
    dlq = [m for m in sink.sent if m.topic == NAMES.dlq]
    assert len(dlq) == 50 and all(dict(m.headers)["reason"] == b"ts_out_of_range" for m in dlq)
    assert poisoned.scorer._pop_by_id == clean.scorer._pop_by_id  # popularity untouched


def test_a_month_ahead_is_rejected_too_and_would_have_poisoned():
    ahead = [NOW + 30 * 86_400_000]
    clean, clean_store, _ = _worker()
    _run(clean, [])
    guarded, store, sink = _worker()
    _run(guarded, _poison(ahead))
    assert _top10(store) == _top10(clean_store)
    dlq = [m for m in sink.sent if m.topic == NAMES.dlq]
    assert len(dlq) == 50 and all(dict(m.headers)["reason"] == b"ts_out_of_range" for m in dlq)
    # without the wall-clock bound the records are applied, and the scorer's own bound (the
    # stream's clock) still keeps them out of popularity: no other user's top-10 changes
    open_, open_store, open_sink = _worker(time_bounds=None)
    _run(open_, _poison(ahead))
    assert not [m for m in open_sink.sent if m.topic == NAMES.dlq]
    assert _top10(open_store) == _top10(clean_store)


def test_decode_bounds():
    rec = b'{"event_id":"e","type":"like","user_id":"u","item_id":"i","ts":%d}'
    assert "ts_out_of_range" in REASONS
    for ts in POISON + [MAX_TS + 1]:
        assert decode(rec % ts).reason == "ts_out_of_range"  # no clock needed
    assert decode(rec % 5).ts == 5  # tiny synthetic times stay valid without a clock
    lo, hi = TimeBounds().window(NOW)
    assert decode(rec % (NOW + 3_600_000), (lo, hi)).ts == NOW + 3_600_000  # 1 h of skew is fine
    assert decode(rec % (NOW + 3_600_001), (lo, hi)).reason == "ts_out_of_range"
    assert decode(rec % 875_000_000_000, (lo, hi)).ts == 875_000_000_000  # MovieLens, 1997
    old = TimeBounds(max_age_ms=86_400_000).window(NOW)
    assert decode(rec % (NOW - 86_400_001), old).reason == "ts_out_of_range"


def test_replayed_logs_keep_old_and_small_times_and_lose_the_future(tmp_path):
    log = tmp_path / "events.jsonl"
    lines = [
        {"event_id": "a", "type": "like", "user_id": "u", "item_id": "i", "ts": 3},
        {"event_id": "b", "type": "click", "user_id": "u", "item_id": "j", "ts": 875_000_000_000},
        {"event_id": "c", "type": "like", "user_id": "v", "item_id": "i", "ts": 2**63 - 1},
        {"event_id": "d", "type": "like", "user_id": "v", "item_id": "i", "ts": 10**20},
    ]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    lg = read_log(log)
    assert [e.event_id for e in lg.events] == ["a", "b"]
    assert [r.reason for r in lg.rejected] == ["ts_out_of_range"] * 2
    ml = tmp_path / "ml"
    ml.mkdir()
    (ml / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||x|" + "|".join(["0"] * 18 + ["1"]) + "\n")
    (ml / "u.data").write_text("1\t1\t5\t874965758\n2\t1\t3\t99999999999999\n")
    lg = read_log(ml, "movielens")
    assert [e.ts for e in lg.events] == [874965758000] and lg.rejected[0].reason == "ts_out_of_range"
