"""Admin commands on the services' topics and registry: ``driftrec topics create``,
``driftrec replay``, ``driftrec adapters list|rollback`` (their flags: :mod:`driftrec.cli.services`),
and reading the catalog off the ``items`` topic (both services start with it)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from driftrec.model import path_from_uri
from driftrec.scorer import BASE_RECORD
from driftrec.state import open_state
from driftrec.stream import (
    Item,
    ItemTombstone,
    Message,
    Record,
    TopicNames,
    decode_item_record,
    read_log,
)
from driftrec.stream.kafka import RETENTION_MS, KafkaSink, create_topics, read_topic
from driftrec.stream.replay import replay_to_kafka

from .process import tune_gc
from .settings import Settings

log = logging.getLogger("driftrec.services")


class RollbackRefused(ValueError):
    """The version cannot be rolled back to (not registered, or its artifact is gone)."""


# ------------------------------------------------------------------- topics ---
def all_topics(names: TopicNames) -> list[str]:
    return [*names.events, names.items, names.recs, names.adapters, names.dlq]


def ensure_topics(
    bootstrap: str,
    names: TopicNames,
    partitions: int = 3,
    retention_ms: int | None = None,
    security: Any = None,
) -> dict[str, str]:
    return create_topics(
        bootstrap,
        all_topics(names),
        partitions,
        compacted=[names.items, names.adapters],
        dlq=names.dlq,
        retention_ms=retention_ms or RETENTION_MS,
        single_partition=[names.adapters],
        security=security,
    )


def load_catalog(bootstrap: str, topic: str, security: Any = None) -> list[Item]:
    """The catalog on the (compacted) items topic: :func:`catalog_of` its records."""
    items, bad = catalog_of(read_topic(bootstrap, topic, security=security))
    if bad:
        log.warning(
            "%d invalid records on %s ignored for the catalog (the scorer dead-letters them)", bad, topic
        )
    return items


def catalog_of(records: Iterable[Record]) -> tuple[list[Item], int]:
    """The items a run of the items topic leaves, and how many of its records are invalid.

    The records are applied in offset order (per partition, where a key's records are): an
    item record sets its item, a tombstone (a key, no value) deletes the key's item, so that
    an item deleted after it was published is not brought back while compaction has not yet
    removed its earlier records.

    >>> from driftrec.stream import Item, Record, encode_item
    >>> rec = lambda o, k, v: Record("items", 0, o, k, v)
    >>> a, b = Item("a", "first"), Item("b", "second")
    >>> items, bad = catalog_of([rec(0, b"a", encode_item(a)), rec(1, b"b", encode_item(b)),
    ...                          rec(2, b"a", b""), rec(3, None, b"")])
    >>> [i.item_id for i in items], bad
    (['b'], 1)
    """
    catalog: dict[str, Item] = {}
    bad = 0
    for r in sorted(records, key=_position):
        d = decode_item_record(r.key, r.value)
        if isinstance(d, Item):
            catalog[d.item_id] = d
        elif isinstance(d, ItemTombstone):
            catalog.pop(d.item_id, None)
        else:
            bad += 1
    return list(catalog.values()), bad


def _position(r: Record) -> tuple[int, int]:
    return r.partition, r.offset


# ------------------------------------------------------------------- replay ---
def replay_log(
    s: Settings,
    path: str,
    fmt: str = "jsonl",
    items: str | None = None,
    limit: int = 0,
    speed: float = 0.0,
    rate: float = 0.0,
    restamp: bool = False,
    create: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Send the log at ``path`` to Kafka: the catalog to ``items`` first, then the events
    (the first ``limit`` by time; 0: all) keyed by user to their per-type topic, paced by
    event time (``speed`` times real time; 0: as fast as possible) or at a steady ``rate``.
    ``restamp``: each event's ts is its send time. ``create``: create missing topics first.
    Returns the figures of the run."""
    lg = read_log(path, fmt, items)
    events = sorted(lg.events, key=lambda e: e.ts)
    if limit:
        events = events[:limit]
    if lg.rejected:
        reasons: dict[str, int] = {}
        for r in lg.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        log.warning(
            "%d lines of %s are not valid events and are not sent: %s", len(lg.rejected), path, reasons
        )
    names = TopicNames(s.topic_prefix)
    if create:
        ensure_topics(s.kafka_bootstrap, names, security=s.kafka_security())
    # the loaded log out of the collector's walks: with the default thresholds its
    # collections held a 2,000 events/s replay of 20,000 ML-100K events up to 240-370 ms
    # behind its schedule (a burst for the consumers)
    tune_gc()
    st = replay_to_kafka(
        events,
        lg.items,
        s.kafka_bootstrap,
        s.topic_prefix,
        speed,
        rate,
        restamp,
        progress=progress,
        security=s.kafka_security(),
    )
    return {
        "items": st.items,
        "events": st.events,
        "by_topic": st.by_topic,
        "seconds": round(st.seconds, 3),
        "events_per_s": round(st.rate, 1),
        "max_behind_ms": round(st.max_behind_ms, 1),
        "not_sent_invalid": len(lg.rejected),
    }


# ----------------------------------------------------------------- adapters ---
def adapter_versions(s: Settings) -> tuple[str | None, list[dict[str, Any]]]:
    """The serving version (None: the base encoder) and every registered one."""
    st = open_state(s.state_url, **s.redis_options())
    try:
        recs = st.records()
        cur = st.current()
    finally:
        st.close()
    return cur, recs


def rollback(s: Settings, version: str) -> str:
    """Re-announce ``version`` (or ``base``: no adapter, nothing learned) on the adapters
    topic: running scorers swap to it between two batches. Returns the topic;
    :class:`RollbackRefused` when the version is not registered or its artifact is gone."""
    st = open_state(s.state_url, **s.redis_options())
    try:
        recs = st.records()
    finally:
        st.close()
    rec = next((r for r in recs if r.get("version") == version), None)
    if version == BASE_RECORD["version"]:
        rec = dict(BASE_RECORD)  # the base encoder, no adapter, nothing learned
    elif rec is None:
        known = ", ".join(r["version"] for r in recs) or "none"
        raise RollbackRefused(f"version {version!r} is not registered (known: {known})")
    if rec["uri"] != BASE_RECORD["uri"] and not (path_from_uri(rec["uri"]) / "manifest.json").exists():
        raise RollbackRefused(f"the artifact of {version} is gone ({rec['uri']})")
    names = TopicNames(s.topic_prefix)
    sink = KafkaSink(s.kafka_bootstrap, security=s.kafka_security())
    try:
        sink.send_many([Message(names.adapters, json.dumps(rec).encode(), version.encode())])
    finally:
        sink.close()
    return names.adapters
