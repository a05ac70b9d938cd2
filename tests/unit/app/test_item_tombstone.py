"""An items-topic tombstone (a record without a value, keyed by the item id) deletes the
item: no scorer recommends it again, the learner stops training towards it, and publishing
the item again brings it back (DESIGN.md, items)."""

from __future__ import annotations

import numpy as np

from driftrec.app.runtime import ScorerWorker
from driftrec.learner import Learner, LearnerConfig
from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.scorer import Scorer, ScorerConfig, ServingModel
from driftrec.state import MemoryStateStore
from driftrec.stream import (
    Event,
    Item,
    ItemTombstone,
    Record,
    TopicNames,
    decode_item_record,
    encode,
    encode_item,
)

NAMES = TopicNames("t")
IDS = [f"i{k}" for k in range(30)]
T0 = 1_700_000_000_000


class ListSink:
    def __init__(self) -> None:
        self.sent: list = []

    def send_many(self, messages) -> None:
        self.sent.extend(messages)


def _worker(model_dir: str) -> tuple[ScorerWorker, ListSink]:
    enc = TextEncoder(model_dir, lora_r=0)
    table = ItemTable.from_text(IDS, enc.encode(IDS))
    scorer = Scorer(ScorerConfig(top_k=10), ServingModel("v0", table, Representation(), enc))
    sink = ListSink()
    return ScorerWorker(scorer, MemoryStateStore(), sink, NAMES, group="g", time_bounds=None), sink


def _likes(start: int, n: int, item: str | None = None, who: str = "u") -> list[Record]:
    """``n`` likes (of ``item``, else of items i0..i9 in turn) by users who0..who19."""
    out = []
    for k in range(start, start + n):
        e = Event(f"e{k}", "like", f"{who}{k % 20}", item or f"i{k % 10}", T0 + k * 1000)
        out.append(Record(NAMES.for_type("like"), 0, k, e.user_id.encode(), encode(e)))
    return out


def _served(sink: ListSink) -> set[str]:
    import json

    return {x["item_id"] for m in sink.sent if m.topic == NAMES.recs for x in json.loads(m.value)["items"]}


def test_decode_item_record() -> None:
    assert decode_item_record(b"i7", None) == ItemTombstone("i7")
    assert decode_item_record(b"i7", b"") == ItemTombstone("i7")
    for key in (None, b"", b"\xff\xfe", b"x" * 129):
        assert decode_item_record(key, None).reason == "bad_item_tombstone"
    assert isinstance(decode_item_record(b"i7", encode_item(Item("i7", "text"))), Item)


def test_a_tombstone_removes_the_item_from_every_recommendation(tiny_model: str) -> None:
    w, sink = _worker(tiny_model)
    w.handle(_likes(0, 200, item="i25", who="fan"))  # i25 the most popular
    w.handle(_likes(200, 40))
    assert "i25" in _served(sink)  # in the readers' top-10
    w.handle([Record(NAMES.items, 0, 0, b"i25", None), Record(NAMES.items, 0, 1, None, None)])
    sink.sent.clear()
    w.handle(_likes(240, 200, who="v"))
    assert _served(sink) and "i25" not in _served(sink)
    c = w.stats.counts
    assert w.stats.items_removed == 1 and c.dead_lettered == 1  # the keyless one, with its reason
    assert c.consumed == c.processed + c.dead_lettered
    dlq = [m for m in sink.sent if m.topic == NAMES.dlq]
    assert all(dict(m.headers)["reason"] == b"bad_item_tombstone" for m in dlq)


def test_publishing_the_item_again_brings_it_back(tiny_model: str) -> None:
    w, sink = _worker(tiny_model)
    w.handle(_likes(0, 200, item="i25", who="fan"))
    w.handle([Record(NAMES.items, 0, 0, b"i25", None)])
    w.handle([Record(NAMES.items, 0, 1, b"i25", encode_item(Item("i25", "back again")))])
    sink.sent.clear()
    w.handle(_likes(200, 100, item="i25", who="fan"))
    w.handle(_likes(300, 40))
    assert "i25" in _served(sink)


def test_the_last_record_of_an_id_in_a_batch_wins(tiny_model: str) -> None:
    w, sink = _worker(tiny_model)
    w.handle(_likes(0, 200, item="i25", who="fan"))
    gone_then_back = [
        Record(NAMES.items, 0, 0, b"i25", None),
        Record(NAMES.items, 0, 1, b"i25", encode_item(Item("i25", "edited"))),
    ]
    w.handle(gone_then_back)
    sink.sent.clear()
    w.handle(_likes(200, 40))
    assert "i25" in _served(sink)


def test_the_learner_stops_training_towards_a_deleted_item() -> None:
    rng = np.random.default_rng(0)
    table = ItemTable.from_text(IDS, rng.normal(size=(len(IDS), 8)).astype(np.float32))
    ln = Learner(
        LearnerConfig(use_lora=False, drift=None), Representation(), table, {i: i for i in IDS}, None
    )
    ln.observe_many([Event(f"e{k}", "like", f"u{k % 5}", f"i{k % 4}", T0 + k) for k in range(40)])
    before = {p.target for p in ln._window_pairs()[0]}
    assert "i3" in before
    ln.remove_items(["i3"])
    assert {p.target for p in ln._window_pairs()[0]} == before - {"i3"}
    ln.add_items([Item("i3", "i3")])  # published again
    assert {p.target for p in ln._window_pairs()[0]} == before


def test_a_restart_reads_the_catalog_without_deleted_items(monkeypatch) -> None:
    """load_catalog (both services start with it) applies the items topic in offset order
    per key: a tombstone deletes the item whose earlier records compaction has not yet
    removed, and a later record brings it back."""
    from driftrec.app import admin

    def rec(part: int, off: int, key: bytes | None, item: Item | bytes | None) -> Record:
        value = encode_item(item) if isinstance(item, Item) else item
        return Record(NAMES.items, part, off, key, value or b"")  # no value: b"" (to_record)

    a, b, c = Item("a", "first a", 1), Item("b", "b", 2), Item("c", "c", 3)
    records = [  # two partitions, read interleaved and not in offset order
        rec(1, 1, b"c", None),
        rec(0, 2, b"a", None),
        rec(0, 0, b"a", a),
        rec(1, 0, b"c", c),
        rec(0, 1, b"b", b),
        rec(0, 3, b"b", None),
        rec(0, 4, b"b", Item("b", "b again", 5)),
        rec(0, 5, None, None),  # a tombstone without a key: invalid
        rec(1, 2, b"d", b"{not json"),
    ]
    seen: dict[str, object] = {}

    def read_topic(bootstrap: str, topic: str, security: object = None) -> list[Record]:
        seen.update(bootstrap=bootstrap, topic=topic)
        return list(records)

    monkeypatch.setattr(admin, "read_topic", read_topic)
    items = admin.load_catalog("broker:9092", NAMES.items)
    assert seen == {"bootstrap": "broker:9092", "topic": NAMES.items}
    assert [(i.item_id, i.text) for i in items] == [("b", "b again")]
    assert admin.catalog_of(records)[1] == 2
