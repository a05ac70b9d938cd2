"""Topic names: the one place they are spelled (DESIGN.md, "One picture")."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class TopicNames:
    """Topic names, optionally under a prefix (tests isolate themselves this way).

    Examples
    --------
    >>> names = TopicNames("t1")
    >>> names.items, names.for_type("like")
    ('t1.items', 't1.events.likes')
    >>> TopicNames().events
    ('events.clicks', 'events.likes', 'events.comments')
    """

    prefix: str = ""

    def _t(self, name: str) -> str:
        return prefixed(self.prefix, name)

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self._t(t) for t in EVENT_TOPICS)

    @property
    def items(self) -> str:
        return self._t(ITEMS)

    @property
    def recs(self) -> str:
        return self._t(RECS)

    @property
    def adapters(self) -> str:
        return self._t(ADAPTERS)

    @property
    def dlq(self) -> str:
        return self._t(DLQ)

    def for_type(self, event_type: str) -> str:
        return self._t(topic_for(event_type))
