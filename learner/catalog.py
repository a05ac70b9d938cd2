"""The learner's catalog: items added or edited, deleted (an items-topic tombstone) and
expired (``LearnerConfig.item_max_age_ms``, :mod:`driftrec.model.expiry`).

An expired item is what a deleted one is (no training target, no popularity) from the
first batch whose newest event is more than the maximum age after its publication; once
expired items hold a quarter of the table's rows (``COMPACT_SHARE``), their rows, texts,
times and cached base vectors leave the learner (the table's arrays are copied once, off
any serving path). The window keeps its pairs (a restarted learner re-reads the records
the window holds, per pair), but a pair whose target expired is never trained on.
Publishing an expired item again with a newer time brings it back; with its old time it
expires again at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from driftrec.model.expiry import COMPACT_SHARE, ItemClock, without_rows
from driftrec.stream import Item

if TYPE_CHECKING:
    from .core import Learner


def add_items(learner: Learner, items: Sequence[Item]) -> None:
    """:meth:`Learner.add_items`."""
    if not items:
        return
    enc = learner.encoder
    # an edited item's context swaps its old text's shift for the new one's
    # (ItemTable.with_items): the old text's base vector, taken before the text changes
    edited = [it.item_id for it in items if learner.table.index(it.item_id) >= 0]
    prev = (
        dict(zip(edited, learner._base_rows(edited)))
        if enc is not None and edited and learner.table.context_shift
        else None
    )
    learner.removed.difference_update(it.item_id for it in items)  # published again: back
    for it in items:
        learner.texts[it.item_id] = it.text
        if learner.item_ts or it.ts:
            learner.item_ts[it.item_id] = it.ts
    expiry = learner.expiry
    if expiry is not None:
        for it in items:
            expiry.publish(it.item_id, learner.item_ts.get(it.item_id))
    if enc is not None:
        texts = [it.text for it in items]
        base = enc.encode(texts, base=True)
        if learner.config.context_shift > 0 or learner.table.context_shift:
            learner._base_text.update((it.item_id, v) for it, v in zip(items, base))
        else:
            for it in items:
                learner._base_text.pop(it.item_id, None)
        learner.table = learner.table.with_items([it.item_id for it in items], enc.encode(texts), base, prev)
    else:
        known = [it for it in items if learner.table.index(it.item_id) < 0]
        if known:
            raise ValueError("adding items without an encoder: give the learner the encoder")


def remove_items(learner: Learner, item_ids: Sequence[str]) -> None:
    """:meth:`Learner.remove_items`."""
    learner.removed.update(item_ids)
    learner.popularity.remove(item_ids)


class LearnerExpiry:
    """The learner's expiry: the items' publication times against its newest event time
    (:class:`driftrec.model.expiry.ItemClock`), and the expired items whose rows are
    still in its table (released by :meth:`compact`)."""

    def __init__(self, max_age_ms: int, item_ts: dict[str, int]) -> None:
        self.clock = ItemClock(max_age_ms, item_ts)
        self.pending: set[str] = set()  # expired, row still in the table
        #: items expired so far, and table compactions
        self.expired = 0
        self.compactions = 0

    def publish(self, item_id: str, ts: int | None) -> None:
        self.pending.discard(item_id)
        if ts is not None:
            self.clock.publish(item_id, ts)

    def advance(self, learner: Learner) -> list[str]:
        """Expire what the learner's newest event time expires; compact the table when
        expired rows are ``COMPACT_SHARE`` of it. Returns the items expired now."""
        gone = self.clock.advance(learner.last_ts)
        if gone:
            remove_items(learner, gone)
            self.expired += len(gone)
            index = learner.table.row_index
            self.pending.update(i for i in gone if i in index)
        if self.pending and len(self.pending) >= COMPACT_SHARE * len(learner.table.item_ids):
            self.compact(learner)
        return gone

    def compact(self, learner: Learner) -> None:
        """Release the rows (and texts, times, base vectors) of the expired items."""
        t = learner.table
        drop = np.zeros(len(t.item_ids), bool)
        rows = [r for r in map(t.row_index.get, self.pending) if r is not None]
        drop[rows] = True
        learner.table = without_rows(t, drop)[0]
        for i in self.pending:
            learner.texts.pop(i, None)
            learner.item_ts.pop(i, None)
            learner._base_text.pop(i, None)
            learner.removed.discard(i)  # no row: never a target
        self.pending.clear()
        self.compactions += 1
