from __future__ import annotations

import time

import numpy as np

from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.scorer import Scorer, ScorerConfig, ServingModel
from driftrec.stream import Event


def _scorer(tiny_model: str, mode: str) -> Scorer:
    enc = TextEncoder(tiny_model, lora_r=2)
    ids = ["a", "b", "c"]
    table = ItemTable.from_text(ids, enc.encode(["goal striker", "pasta garlic", "album guitar"]))
    return Scorer(ScorerConfig(comments=mode), ServingModel("v0", table, Representation(pop_weight=0), enc))


def test_comment_text_is_evidence(tiny_model: str) -> None:
    with_text = _scorer(tiny_model, "sync")
    without = _scorer(tiny_model, "off")
    ev = [Event("e1", "comment", "u", "a", 1, "pasta garlic oven sauce")]
    v1 = with_text.learn_many(ev, {}).users["u"].vector
    v0 = without.learn_many(ev, {}).users["u"].vector
    assert not np.allclose(v1, v0)


def test_async_comments_arrive_on_the_next_update(tiny_model: str) -> None:
    sync, asyn = _scorer(tiny_model, "sync"), _scorer(tiny_model, "async")
    ev1 = [Event("e1", "comment", "u", "a", 1, "pasta garlic oven sauce")]
    ev2 = [Event("e2", "click", "u", "b", 2)]
    r_sync = sync.learn_many(ev2, sync.learn_many(ev1, {}).users)
    r1 = asyn.learn_many(ev1, {})
    deadline = time.monotonic() + 10
    while "e1" not in asyn._comment_cache and time.monotonic() < deadline:
        time.sleep(0.01)
    r2 = asyn.learn_many(ev2, r1.users)
    assert np.allclose(r2.users["u"].vector, r_sync.users["u"].vector, atol=1e-5)


def test_close_ends_the_comment_thread_after_the_batch_in_hand(tiny_model: str) -> None:
    """A scorer that stops waits for its comment encoder: a process exiting while that
    thread is inside the encoder aborted ("terminate called without an active exception",
    exit -6, seen by `driftrec faults`)."""
    s = _scorer(tiny_model, "async")
    s.learn_many([Event("e1", "comment", "u", "a", 1, "pasta garlic oven sauce")], {})
    worker = s._comments
    assert worker is not None and worker._t.is_alive()
    s.close(timeout=10)
    assert not worker._t.is_alive()
    assert s._comments is None
    s.close()  # twice is harmless
