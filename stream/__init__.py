"""stream: the wire. Event and item schemas, validation, topics, transports, replay, DLQ."""

from __future__ import annotations

from . import topics
from .deadletter import dead_letter
from .errors import StreamConfigError, StreamError, StreamSecurityError, StreamUnavailable
from .events import (
    EVENT_TYPES,
    MAX_TS,
    REASONS,
    DecodeCounts,
    Event,
    Item,
    ItemId,
    ItemTombstone,
    Rejected,
    TimeBounds,
    UserId,
    decode,
    decode_item,
    decode_item_record,
    encode,
    encode_item,
)
from .memory import MemoryBroker, MemorySource
from .ports import EventSink, EventSource, Message, Record
from .readers import FORMATS, Log, LogFormatError, read_log, write_jsonl
from .security import KafkaSecurity
from .synthetic import SCENARIO_HELP, SCENARIOS, SyntheticStream, generate
from .topics import TopicNames

__all__ = [
    "EVENT_TYPES",
    "FORMATS",
    "MAX_TS",
    "REASONS",
    "SCENARIOS",
    "SCENARIO_HELP",
    "DecodeCounts",
    "Event",
    "EventSink",
    "StreamConfigError",
    "StreamError",
    "StreamSecurityError",
    "StreamUnavailable",
    "EventSource",
    "Item",
    "ItemTombstone",
    "ItemId",
    "KafkaSecurity",
    "Log",
    "LogFormatError",
    "MemoryBroker",
    "MemorySource",
    "Message",
    "Record",
    "Rejected",
    "SyntheticStream",
    "TimeBounds",
    "TopicNames",
    "UserId",
    "dead_letter",
    "decode",
    "decode_item",
    "decode_item_record",
    "encode",
    "encode_item",
    "generate",
    "read_log",
    "topics",
    "write_jsonl",
]
