"""Topic names: the one place they are spelled (DESIGN.md, "One picture")."""

from __future__ import annotations

CLICKS = "events.clicks"
LIKES = "events.likes"
COMMENTS = "events.comments"
EVENT_TOPICS: tuple[str, ...] = (CLICKS, LIKES, COMMENTS)
ITEMS = "items"
RECS = "recs.updates"
ADAPTERS = "adapters"
DLQ = "events.dlq"

#: Which input topic an event of a given type is written to.
TOPIC_FOR_TYPE = {"click": CLICKS, "like": LIKES, "comment": COMMENTS}

#: Compacted topics (latest value per key is what matters).
COMPACTED: tuple[str, ...] = (ITEMS, ADAPTERS)


def topic_for(event_type: str) -> str:
    """Return the input topic for an event type (unknown future types go to clicks).

    Examples
    --------
    >>> topic_for("like")
    'events.likes'
    >>> topic_for("hide")
    'events.clicks'
    """
    return TOPIC_FOR_TYPE.get(event_type, CLICKS)


def prefixed(prefix: str, name: str) -> str:
    """Apply an optional namespace prefix (tests and multi-tenant deployments).

    Examples
    --------
    >>> prefixed("", "items"), prefixed("t1", "items")
    ('items', 't1.items')
    """
    return f"{prefix}.{name}" if prefix else name
