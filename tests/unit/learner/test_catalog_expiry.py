"""Item expiry in the learner (LearnerConfig.item_max_age_ms, learner.catalog) and the
ITEM_MAX_AGE_DAYS setting."""

from __future__ import annotations

import numpy as np
import pytest

from driftrec.app.settings import ConfigError, Settings
from driftrec.learner import Learner, LearnerConfig
from driftrec.model import ItemTable, Representation
from driftrec.stream import Event

DAY = 86_400_000


def _learner(n: int = 8, max_age: int = 3 * DAY) -> Learner:
    ids = [f"i{j}" for j in range(n)]
    t = ItemTable.from_text(ids, np.eye(n, dtype=np.float32))
    cfg = LearnerConfig(window_events=64, item_max_age_ms=max_age)
    return Learner(
        cfg, Representation(), t, {i: i for i in ids}, None, {i: j * DAY for j, i in enumerate(ids)}
    )


def test_learner_drops_expired_targets_popularity_and_rows() -> None:
    lr = _learner()
    lr.observe_many([Event(f"a{k}", "like", f"u{k % 3}", f"i{k % 2}", k) for k in range(6)])
    assert lr.expiry is not None and lr.expiry.expired == 0 and "i0" in lr.popularity.acc
    lr.observe_many([Event(f"b{k}", "like", f"u{k % 3}", "i5", 3 * DAY + k) for k in range(6)])
    assert lr.expiry.expired == 1 and "i0" in lr.removed and "i0" not in lr.popularity.acc  # i0 (day 0)
    pairs, _ = lr._window_pairs()
    assert pairs and all(p.target != "i0" for p in pairs)
    assert "i0" in lr.table.item_ids  # one row of eight: not compacted yet
    lr.observe_many([Event("c", "like", "u1", "i6", 5 * DAY + 1)])  # i1, i2 expire: 3 of 8
    assert lr.table.item_ids == [f"i{j}" for j in range(3, 8)] and lr.expiry.compactions == 1
    assert "i0" not in lr.texts and "i0" not in lr.item_ts and not lr.removed
    assert all(p.target in lr.table.item_ids for p in lr._window_pairs()[0])


def test_off_by_default() -> None:
    lr = _learner(max_age=0)
    lr.observe_many([Event("a", "like", "u", "i0", 400 * DAY)])
    assert lr.expiry is None and not lr.removed and len(lr.table.item_ids) == 8


def test_setting_parses_days_into_both_cores_and_says_what_is_wrong() -> None:
    s = Settings.from_env({"ITEM_MAX_AGE_DAYS": "1.5"})
    assert s.scorer.item_max_age_ms == s.learner.item_max_age_ms == 129_600_000
    d = Settings.from_env({})
    assert d.item_max_age_days == 0 and d.scorer.item_max_age_ms == d.learner.item_max_age_ms == 0
    for bad, why in (("-1", "out of range"), ("week", "not a number")):
        with pytest.raises(ConfigError) as e:
            Settings.from_env({"ITEM_MAX_AGE_DAYS": bad})
        assert str(e.value) == f"ITEM_MAX_AGE_DAYS={bad!r}: {why}; allowed: a number from 0 to 36500"
