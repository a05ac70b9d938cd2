"""Property tests of the decoders: whatever bytes arrive, the result is an
Event or a rejection with a reason and the original bytes, never an exception; and a
rejection always makes a dead letter with that reason."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftrec.stream import (
    EVENT_TYPES,
    Event,
    Item,
    Record,
    Rejected,
    dead_letter,
    decode,
    decode_item,
    encode,
    encode_item,
)

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: JSON values of any shape: what a producer with a bug (or an attacker) may send
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(["event_id", "type", "user_id", "item_id", "ts", "text"])
#: objects with the event's field names and values of any type
event_like = st.dictionaries(field_names, json_values | st.sampled_from(EVENT_TYPES), max_size=6)


def _check(raw: bytes) -> None:
    out = decode(raw)
    assert isinstance(out, Event | Rejected)
    if isinstance(out, Rejected):
        assert out.reason and out.raw == raw
        headers = dict(dead_letter(out, Record("events.likes", 0, 1, None, raw)).headers)
        assert headers["reason"] == out.reason.encode()
    else:  # what passed is a well-formed event: it survives its own round trip
        assert out.type in EVENT_TYPES and out.user_id and out.item_id and out.ts >= 0
        assert decode(encode(out)) == out


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_an_event_or_a_rejection_with_a_reason(raw: bytes) -> None:
    _check(raw)


@FAST
@given(json_values)
def test_any_json_value_gives_an_event_or_a_rejection(value: object) -> None:
    _check(json.dumps(value).encode())


@FAST
@given(event_like)
def test_objects_shaped_like_events_give_an_event_or_a_rejection(obj: dict) -> None:
    _check(json.dumps(obj).encode())


@FAST
@given(event_like, st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=4))
def test_truncated_and_corrupted_events_give_an_event_or_a_rejection(
    obj: dict, cut: int, junk: bytes
) -> None:
    raw = json.dumps(obj).encode()
    _check(raw[:cut])
    _check(raw[:cut] + junk + raw[cut:])


@FAST
@given(
    st.text(min_size=1, max_size=30),
    st.sampled_from(EVENT_TYPES),
    st.text(min_size=1, max_size=30),
    st.text(min_size=1, max_size=30),
    st.integers(min_value=0, max_value=2**53),
    st.text(min_size=1, max_size=50),
)
def test_valid_events_round_trip(eid: str, etype: str, user: str, item: str, ts: int, text: str) -> None:
    e = Event(eid, etype, user, item, ts, text if etype == "comment" else None)
    out = decode(encode(e))
    # ids or texts the schema refuses (e.g. only whitespace, lone surrogates) are rejected
    # with a reason; everything else comes back exactly
    assert out == e or (isinstance(out, Rejected) and out.reason)


@FAST
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_item_records_give_an_item_or_a_rejection(raw: bytes) -> None:
    out = decode_item(raw)
    assert isinstance(out, Item | Rejected)
    if isinstance(out, Rejected):
        assert out.reason and out.raw == raw
    else:
        assert decode_item(encode_item(out)) == out
