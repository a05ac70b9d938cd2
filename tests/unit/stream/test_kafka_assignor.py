"""The scorers' consumer group deals partitions by range: a member gets the same partition
numbers of every events topic, so one user's events (keyed by user id, one partition number
on every topic) reach one scorer, the only writer of the user's state."""

from __future__ import annotations

import pytest

pytest.importorskip("aiokafka")

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata  # noqa: E402

from driftrec.app.scorer_service import owns_its_users  # noqa: E402
from driftrec.stream.kafka_source import assignors  # noqa: E402

TOPICS = ["p.events.clicks", "p.events.comments", "p.events.likes", "p.items"]


class _Cluster:
    def __init__(self, partitions: int) -> None:
        self.n = partitions

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.n))


@pytest.mark.parametrize(("members", "partitions"), [(2, 3), (2, 12), (3, 12), (4, 12), (5, 12)])
def test_every_member_owns_its_users(members: int, partitions: int) -> None:
    (assignor,) = assignors()
    meta = {f"m{i}": ConsumerProtocolMemberMetadata(0, TOPICS, b"") for i in range(members)}
    out = assignor.assign(_Cluster(partitions), meta)
    dealt: list[tuple[str, int]] = []
    for member in meta:
        tps = [(t, p) for t, ps in out[member].assignment for p in ps]
        dealt += tps
        assert owns_its_users(tps, TOPICS[:3], lambda t: partitions), (member, tps)
    assert sorted(dealt) == sorted((t, p) for t in TOPICS for p in range(partitions))
