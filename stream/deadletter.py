"""The dead-letter path: a rejected record becomes a message on ``events.dlq``."""

from __future__ import annotations

from .events import Rejected
from .ports import Message, Record
from .topics import DLQ


def dead_letter(rej: Rejected, record: Record | None = None, dlq_topic: str = DLQ) -> Message:
    """Original bytes unchanged as the value; why and where in the headers.

    Examples
    --------
    >>> from driftrec.stream.events import decode
    >>> m = dead_letter(decode(b"{"), Record("events.likes", 0, 7, b"u1", b"{"))
    >>> m.value, dict(m.headers)["reason"], dict(m.headers)["offset"]
    (b'{', b'bad_json', b'7')
    """
    headers = [
        ("reason", rej.reason.encode()),
        ("detail", rej.detail.encode("utf-8", "replace")[:1000]),
        ("stage", rej.stage.encode()),
        ("error_type", b"data"),
    ]
    if record is not None:
        headers += [
            ("source_topic", record.topic.encode()),
            ("partition", str(record.partition).encode()),
            ("offset", str(record.offset).encode()),
        ]
    return Message(dlq_topic, rej.raw, record.key if record else None, tuple(headers))
