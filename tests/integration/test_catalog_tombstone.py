"""Both services start with the catalog read off the items topic (``load_catalog``): an
item deleted by a tombstone stays deleted while the topic still holds its earlier record.

Run: ``scripts/services.sh up && pytest -m integration tests/integration``.
"""

from __future__ import annotations

import pytest

from driftrec.stream import Item, Message, encode_item

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_load_catalog_applies_tombstones(kafka_bootstrap, topics) -> None:
    from driftrec.app.admin import load_catalog
    from driftrec.stream.kafka import KafkaSink

    def item(iid: str, text: str) -> Message:
        return Message(topics.items, encode_item(Item(iid, text, 1)), iid.encode())

    def tombstone(iid: str) -> Message:
        return Message(topics.items, None, iid.encode())  # type: ignore[arg-type]

    sink = KafkaSink(kafka_bootstrap)
    try:
        sink.send_many([item("a", "a"), item("b", "b"), item("c", "c")])
        sink.send_many([tombstone("a"), tombstone("b")])
        sink.send_many([item("b", "b again")])
    finally:
        sink.close()
    got = sorted((i.item_id, i.text) for i in load_catalog(kafka_bootstrap, topics.items))
    assert got == [("b", "b again"), ("c", "c")]
