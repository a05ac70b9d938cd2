from __future__ import annotations

import json

import pytest

from driftrec.stream import (
    REASONS,
    DecodeCounts,
    Event,
    Record,
    dead_letter,
    decode,
    decode_item,
    decode_item_record,
    encode,
)
from driftrec.stream.events import MAX_RECORD_BYTES, MAX_TEXT_LEN

GOOD = {"event_id": "e1", "type": "like", "user_id": "u1", "item_id": "i1", "ts": 1_700_000_000_000}


def raw(**changes: object) -> bytes:
    d = dict(GOOD)
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d).encode()


def test_good_event_roundtrips_and_keeps_meta() -> None:
    e = decode(raw(app="ios", text="ignored for likes"))
    assert isinstance(e, Event)
    assert (e.event_id, e.type, e.user_id, e.item_id, e.ts) == ("e1", "like", "u1", "i1", GOOD["ts"])
    assert e.text is None and e.meta == {"app": "ios"}
    assert decode(encode(e)) == e


def test_comment_keeps_text() -> None:
    e = decode(raw(type="comment", text="great goal"))
    assert isinstance(e, Event) and e.text == "great goal"


CASES = [
    (b"x" * (MAX_RECORD_BYTES + 1), "oversized"),
    (b"\xff\xfe{}", "bad_encoding"),
    (b"{nope", "bad_json"),
    (b"[1,2]", "not_an_object"),
    (raw(event_id=...), "missing_event_id"),
    (raw(event_id=""), "bad_event_id"),
    (raw(event_id="x" * 129), "bad_event_id"),
    (raw(type=...), "missing_type"),
    (raw(type="share"), "unknown_type"),
    (raw(user_id=...), "missing_user_id"),
    (raw(user_id=7), "bad_user_id"),
    (raw(item_id=...), "missing_item_id"),
    (raw(item_id=["a"]), "bad_item_id"),
    (raw(ts=...), "missing_ts"),
    (raw(ts="2024-01-01"), "bad_timestamp"),
    (raw(ts=-1), "bad_timestamp"),
    (raw(ts=True), "bad_timestamp"),
    (raw(ts=1.5), "bad_timestamp"),
    (raw(ts=2**63 - 1), "ts_out_of_range"),
    (raw(ts=10**20), "ts_out_of_range"),
    (raw(type="comment"), "missing_text"),
    (raw(type="comment", text="  "), "missing_text"),
    (raw(type="comment", text="x" * (MAX_TEXT_LEN + 1)), "bad_text"),
    (raw(type="comment", text=5), "bad_text"),
]


@pytest.mark.parametrize("data,reason", CASES, ids=[c[1] + str(i) for i, c in enumerate(CASES)])
def test_every_reason(data: bytes, reason: str) -> None:
    r = decode(data)
    assert not isinstance(r, Event)
    assert r.reason == reason
    assert r.raw == data  # the original bytes, unchanged
    assert r.detail


def test_every_event_reason_is_tested_and_documented() -> None:
    tested = {reason for _, reason in CASES}
    item_only = {"missing_text_item", "bad_item_tombstone"}  # tested in test_item_validation
    assert tested | item_only == set(REASONS)


def test_item_validation() -> None:
    it = decode_item(b'{"item_id":"m1","text":"Heat (1995) Action","tags":["a"],"ts":3}')
    assert it.item_id == "m1" and it.tags == ("a",) and it.ts == 3
    assert decode_item(b'{"item_id":"m1"}').reason == "missing_text_item"
    assert decode_item(b'{"text":"x"}').reason == "missing_item_id"
    assert decode_item_record(None, None).reason == "bad_item_tombstone"


def test_dead_letter_headers() -> None:
    rej = decode(raw(user_id=...))
    m = dead_letter(rej, Record("events.likes", 2, 41, b"k", rej.raw), "events.dlq")
    h = dict(m.headers)
    assert m.topic == "events.dlq" and m.value == rej.raw and m.key == b"k"
    assert h["reason"] == b"missing_user_id" and h["source_topic"] == b"events.likes"
    assert h["partition"] == b"2" and h["offset"] == b"41" and h["detail"]


def test_counts_reconcile() -> None:
    c = DecodeCounts()
    for data in [raw(), b"{", raw(type="x"), raw(event_id="e2")]:
        c.consumed += 1
        d = decode(data)
        if isinstance(d, Event):
            c.processed += 1
        else:
            c.add_rejected(d)
    assert c.reconciled and c.processed == 2 and c.by_reason == {"bad_json": 1, "unknown_type": 1}


TRICKY = [
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":NaN}',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":123456789012345678901234567890}',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":18446744073709551615}',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":1e3}',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5,"x":1.5,"y":{"a":[1,2]}}',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5,"big":1e400}',
    b'{"event_id":"e1","type":"comment","user_id":"u","item_id":"i","ts":5,"text":"\\ud800 lone"}',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5,"user_id":"u2"}',
    b'\xef\xbb\xbf{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5}',
    b' {"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5}\n',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5} x',
    b'{"event_id":"\xc3\xa9\xe2\x82\xac","type":"like","user_id":"u","item_id":"i","ts":5,"n":null,"b":true}',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5,"t":"\xed\xa0\x80"}',
    b'"just a string"',
    b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":5,"deep":'
    + b"[" * 200
    + b"]" * 200
    + b"}",
]


@pytest.mark.parametrize("data", [c for c, _ in CASES] + TRICKY)
def test_fast_json_path_decides_exactly_as_the_stdlib(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    import driftrec.stream.events as ev

    fast = ev.decode(data)
    monkeypatch.setattr(ev, "_orjson", None)
    slow = ev.decode(data)
    assert type(fast) is type(slow)
    if isinstance(slow, Event):
        assert fast == slow and fast.meta == slow.meta and type(fast.ts) is type(slow.ts)
    else:
        assert (fast.reason, fast.detail, fast.raw) == (slow.reason, slow.detail, slow.raw)


def test_poison_records_are_rejected_not_raised() -> None:
    # nested deeper than the parser's recursion limit (yet under the size limit): a reason,
    # not an exception that would kill the scorer on this record at every restart
    deep = (
        b'{"event_id":"e","type":"like","user_id":"u","item_id":"i","ts":1,"x":'
        + b"[" * 20_000
        + b"]" * 20_000
        + b"}"
    )
    assert len(deep) < MAX_RECORD_BYTES
    r = decode(deep)
    assert r.reason == "bad_json" and "nested" in r.detail, r.detail
    # a lone surrogate spelled as a JSON escape would later fail every UTF-8 write
    lone = b'{"event_id":"e","type":"comment","user_id":"u","item_id":"i","ts":1,"text":"hi \\ud800"}'
    assert decode(lone).reason == "bad_encoding"
    ok = b'{"event_id":"e","type":"comment","user_id":"u","item_id":"i","ts":1,"text":"hi \\ud83d\\ude00"}'
    assert decode(ok).text == "hi \U0001f600"
