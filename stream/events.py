"""Event and item schemas, validation and (de)serialisation (DESIGN.md, "Events").

Bad data is not an exception here: :func:`decode` returns :class:`Rejected` with a stable
reason code from :data:`REASONS`, and the transport sends it to ``events.dlq``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NewType

try:  # a C JSON parser for the hot path; the stdlib one decides every doubtful case
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    _orjson = None  # type: ignore[assignment]

UserId = NewType("UserId", str)
ItemId = NewType("ItemId", str)

EVENT_TYPES: tuple[str, ...] = ("click", "like", "comment")
MAX_ID_LEN = 128
MAX_TEXT_LEN = 4096
#: Records larger than this are rejected before parsing.
MAX_RECORD_BYTES = 64 * 1024
#: No event or item time beyond this (9999-12-31T23:59:59.999Z) is accepted anywhere, with
#: or without a clock: times stay exact as float64 and every decay exponent stays bounded.
MAX_TS = 253_402_300_799_999

#: Every reason code a record can be dead-lettered with, and what it means.
REASONS: dict[str, str] = {
    "oversized": f"record is larger than {MAX_RECORD_BYTES} bytes",
    "bad_encoding": "record is not UTF-8",
    "bad_json": "record is not valid JSON",
    "not_an_object": "record is JSON but not an object",
    "missing_event_id": "field event_id is missing",
    "bad_event_id": "event_id must be a string of 1..128 characters",
    "missing_type": "field type is missing",
    "unknown_type": "type is not one of click, like, comment",
    "missing_user_id": "field user_id is missing",
    "bad_user_id": "user_id must be a string of 1..128 characters",
    "missing_item_id": "field item_id is missing",
    "bad_item_id": "item_id must be a string of 1..128 characters",
    "missing_ts": "field ts is missing",
    "bad_timestamp": "ts must be an integer (epoch milliseconds) >= 0",
    "ts_out_of_range": "ts is too far ahead of the clock (EVENT_MAX_SKEW_S) or older than "
    "EVENT_MAX_AGE_DAYS, or after year 9999",
    "missing_text": "a comment needs a non-empty text",
    "bad_text": "text must be a string of at most 4096 characters",
    "missing_text_item": "an item needs a string text",
    "bad_item_tombstone": "an items tombstone (a record without a value) needs the item id, "
    "1..128 characters of UTF-8, as its key",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One user interaction. ``meta`` keeps any extra fields of the record."""

    event_id: str
    type: str
    user_id: UserId
    item_id: ItemId
    ts: int
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.meta)
        d.update(
            event_id=self.event_id, type=self.type, user_id=self.user_id, item_id=self.item_id, ts=self.ts
        )
        if self.text is not None:
            d["text"] = self.text
        return d


@dataclass(frozen=True, slots=True)
class Item:
    """A catalog item; ``text`` is what the encoder reads."""

    item_id: ItemId
    text: str
    ts: int = 0
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"item_id": self.item_id, "text": self.text, "ts": self.ts}
        if self.tags:
            d["tags"] = list(self.tags)
        return d


@dataclass(frozen=True)
class TimeBounds:
    """Which event times are plausible at a given clock reading (DESIGN.md, the ``ts`` rule).

    ``max_skew_ms``: how far ahead of the clock an event may be (producers' clocks drift;
    default 1 h). ``max_age_ms``: how far behind it (``None``: no bound; replays of recorded
    logs, MovieLens 1997-98 or a synthetic log starting at 0, keep their times, and an old
    event's weight only decays). The services pass the wall clock; the log readers of
    ``driftrec eval``/``replay`` pass the wall clock too (a recorded log holds no future).

    Examples
    --------
    >>> TimeBounds().window(now_ms=10_000_000)
    (0, 13600000)
    >>> TimeBounds(max_skew_ms=0, max_age_ms=1000).window(now_ms=5000)
    (4000, 5000)
    """

    max_skew_ms: int = 3_600_000
    max_age_ms: int | None = None

    def __post_init__(self) -> None:
        if self.max_skew_ms < 0 or (self.max_age_ms is not None and self.max_age_ms < 0):
            raise ValueError("TimeBounds: max_skew_ms and max_age_ms must be >= 0")

    def window(self, now_ms: int) -> tuple[int, int]:
        """``(lo, hi)``: the event times accepted at clock ``now_ms``, both inclusive."""
        lo = 0 if self.max_age_ms is None else max(0, now_ms - self.max_age_ms)
        return lo, min(MAX_TS, now_ms + self.max_skew_ms)

    def now_window(self) -> tuple[int, int]:
        """:meth:`window` at the wall clock (entry points only: the cores take no clock)."""
        import time

        return self.window(int(time.time() * 1000))


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that failed decoding: the original bytes, a reason code and a detail."""

    raw: bytes
    reason: str
    detail: str
    stage: str = "decode"


Decoded = Event | Rejected


def encode(event: Event) -> bytes:
    """Serialise an event as compact UTF-8 JSON.

    Examples
    --------
    >>> encode(Event("e1", "click", UserId("u1"), ItemId("i1"), 5))
    b'{"event_id":"e1","type":"click","user_id":"u1","item_id":"i1","ts":5}'
    """
    return json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


def encode_item(item: Item) -> bytes:
    """Serialise an item as compact UTF-8 JSON."""
    return json.dumps(item.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


#: Top-level value types for which orjson and the stdlib json parse a record identically
#: (strings, 64-bit integers, booleans, null). Anything else (floats, which orjson also
#: returns for integers beyond 64 bits; nested values; parse errors) is parsed again by
#: the stdlib, so validation and every dead-letter reason stay exactly as they were.
_FAST_TYPES = frozenset((str, int, bool, type(None)))


def _parse(raw: bytes | str) -> tuple[dict[str, Any] | None, Rejected | None]:
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_RECORD_BYTES:
        return None, Rejected(data, "oversized", f"{len(data)} bytes > {MAX_RECORD_BYTES}")
    if _orjson is not None:
        try:
            obj = _orjson.loads(data)  # validates UTF-8 itself
        except _orjson.JSONDecodeError:
            pass
        else:
            if type(obj) is dict and all(type(v) in _FAST_TYPES for v in obj.values()):
                return obj, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Rejected(data, "bad_encoding", str(exc))
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return None, Rejected(data, "bad_json", str(exc)[:200])
    except RecursionError:
        return None, Rejected(data, "bad_json", "values nested too deeply to parse")
    if not isinstance(obj, dict):
        return None, Rejected(data, "not_an_object", f"got {type(obj).__name__}")
    try:  # JSON escapes can spell lone surrogates, which no UTF-8 store or topic accepts
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        return None, Rejected(data, "bad_encoding", f"a string holds a lone surrogate: {exc}"[:200])
    except RecursionError:
        return None, Rejected(data, "bad_json", "values nested too deeply to parse")
    return obj, None


def _check_id(obj: dict[str, Any], name: str, data: bytes) -> Rejected | None:
    if name not in obj or obj[name] is None:
        return Rejected(data, f"missing_{name}", f"{name} is required")
    v = obj[name]
    if not isinstance(v, str) or not (1 <= len(v) <= MAX_ID_LEN):
        short = "event_id" if name == "event_id" else name
        return Rejected(data, f"bad_{short}", f"{name}={v!r:.80} must be a string of 1..{MAX_ID_LEN} chars")
    return None


_EVENT_FIELDS = frozenset(("event_id", "type", "user_id", "item_id", "ts", "text"))


def decode(raw: bytes | str, ts_range: tuple[int, int] | None = None) -> Decoded:
    """Validate one record and return an :class:`Event`, or :class:`Rejected` with a reason.

    ``ts_range``: ``(lo, hi)`` event times accepted (:meth:`TimeBounds.window`); a time
    outside it, or after :data:`MAX_TS` in any case, is ``ts_out_of_range``.

    Examples
    --------
    >>> decode(b'{"event_id":"e1","type":"like","user_id":"u","item_id":"i","ts":7}').type
    'like'
    >>> decode(b'{"event_id":"e1","type":"like","item_id":"i","ts":7}').reason
    'missing_user_id'
    >>> decode(b'not json').reason
    'bad_json'
    >>> decode(b'{"event_id":"e","type":"comment","user_id":"u","item_id":"i","ts":1}').reason
    'missing_text'
    >>> decode(b'{"event_id":"e","type":"like","user_id":"u","item_id":"i","ts":9223372036854775807}').reason
    'ts_out_of_range'
    >>> decode(b'{"event_id":"e","type":"like","user_id":"u","item_id":"i","ts":7200001}', (0, 7200000)).reason
    'ts_out_of_range'
    """
    obj, rej = _parse(raw)
    if rej is not None:
        return rej
    assert obj is not None
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    for name in ("event_id",):
        r = _check_id(obj, name, data)
        if r:
            return r
    if "type" not in obj or obj["type"] is None:
        return Rejected(data, "missing_type", "type is required")
    etype = obj["type"]
    if etype not in EVENT_TYPES:
        return Rejected(data, "unknown_type", f"type={etype!r:.40}; known: {', '.join(EVENT_TYPES)}")
    for name in ("user_id", "item_id"):
        r = _check_id(obj, name, data)
        if r:
            return r
    if "ts" not in obj or obj["ts"] is None:
        return Rejected(data, "missing_ts", "ts (epoch ms) is required")
    ts = obj["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        return Rejected(data, "bad_timestamp", f"ts={ts!r:.40} must be a non-negative integer (epoch ms)")
    if ts > MAX_TS or (ts_range is not None and not ts_range[0] <= ts <= ts_range[1]):
        lo, hi = ts_range if ts_range is not None else (0, MAX_TS)
        return Rejected(
            data,
            "ts_out_of_range",
            f"ts={ts!r:.40} is outside the plausible event times {lo}..{min(hi, MAX_TS)} (epoch ms)",
        )
    text = obj.get("text")
    if etype == "comment":
        if text is None or (isinstance(text, str) and not text.strip()):
            return Rejected(data, "missing_text", "a comment needs a non-empty text")
        if not isinstance(text, str) or len(text) > MAX_TEXT_LEN:
            return Rejected(data, "bad_text", f"text must be a string of at most {MAX_TEXT_LEN} chars")
    else:
        text = None  # ignored for other types (DESIGN.md)
    meta = {k: v for k, v in obj.items() if k not in _EVENT_FIELDS} if obj.keys() - _EVENT_FIELDS else {}
    return Event(obj["event_id"], etype, UserId(obj["user_id"]), ItemId(obj["item_id"]), int(ts), text, meta)


@dataclass(frozen=True, slots=True)
class ItemTombstone:
    """A record without a value on ``items``, keyed by an item id (a Kafka tombstone; the
    topic is compacted): the item is deleted from ranking in every scorer and from the
    learner's training targets. Publishing the item again brings it back."""

    item_id: ItemId


def decode_item_record(key: bytes | None, value: bytes | str | None) -> Item | ItemTombstone | Rejected:
    """One record of the ``items`` topic: an item, or a tombstone (no value) for its key.

    Examples
    --------
    >>> decode_item_record(b"m1", None)
    ItemTombstone(item_id='m1')
    >>> decode_item_record(None, None).reason
    'bad_item_tombstone'
    >>> decode_item_record(b"m1", b'{"item_id":"m1","text":"Toy Story"}').text
    'Toy Story'
    """
    if value is not None and len(value) > 0:
        return decode_item(value)
    try:
        item_id = key.decode("utf-8") if key is not None else ""
    except UnicodeDecodeError:
        item_id = ""
    if not 1 <= len(item_id) <= MAX_ID_LEN:
        return Rejected(b"", "bad_item_tombstone", REASONS["bad_item_tombstone"])
    return ItemTombstone(ItemId(item_id))


def decode_item(raw: bytes | str) -> Item | Rejected:
    """Validate one catalog record.

    Examples
    --------
    >>> decode_item(b'{"item_id":"m1","text":"Toy Story (1995) Animation"}').text
    'Toy Story (1995) Animation'
    >>> decode_item(b'{"item_id":"m1"}').reason
    'missing_text_item'
    """
    obj, rej = _parse(raw)
    if rej is not None:
        return rej
    assert obj is not None
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    r = _check_id(obj, "item_id", data)
    if r:
        return r
    text = obj.get("text")
    if not isinstance(text, str):
        return Rejected(data, "missing_text_item", "an item needs a string text")
    if len(text) > MAX_TEXT_LEN:
        return Rejected(data, "bad_text", f"text must be at most {MAX_TEXT_LEN} chars")
    ts = obj.get("ts", 0)
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        return Rejected(data, "bad_timestamp", f"ts={ts!r:.40} must be a non-negative integer")
    tags = obj.get("tags") or ()
    return Item(ItemId(obj["item_id"]), text, int(ts), tuple(str(t) for t in tags))


@dataclass
class DecodeCounts:
    """Running reconciliation: consumed = processed + dead_lettered, per reason.

    ``consumed`` counts records taken from the source; ``dead_lettered`` only dead letters
    that the sink acknowledged; ``processed`` only records whose outputs were acknowledged
    and whose state is committed. A send that fails leaves its batch's records consumed and
    nothing else, so :attr:`reconciled` is false for the run (the batch is redelivered).
    """

    consumed: int = 0
    processed: int = 0
    dead_lettered: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def add_rejected(self, r: Rejected) -> None:
        self.dead_lettered += 1
        self.by_reason[r.reason] = self.by_reason.get(r.reason, 0) + 1

    @property
    def reconciled(self) -> bool:
        return self.consumed == self.processed + self.dead_lettered
