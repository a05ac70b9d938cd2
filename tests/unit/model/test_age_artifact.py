"""The freshness curve travels with an artifact and is checked like the other tensors."""

from __future__ import annotations

import numpy as np
import pytest

from driftrec.model import ArtifactError, ItemTable, load_artifact, write_artifact


def test_age_curve_roundtrips_through_an_artifact(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32)).with_age(
        np.array([0.0, 1000.0, 60_000.0]), np.array([1.5, 0.0, -2.0]), 0.75
    )
    rec = write_artifact(tmp_path, "v1", {}, None, t, "base", {"from_ts": 0, "to_ts": 1, "n_events": 2}, {})
    back = load_artifact(rec).items
    assert back.age_weight == 0.75
    assert back.age_edges is not None and back.age_edges.tolist() == [0.0, 1000.0, 60_000.0]
    assert back.age_prior(np.array([5.0, 2e6])).tolist() == pytest.approx([1.125, -1.5])
    plain = load_artifact(
        write_artifact(
            tmp_path,
            "v2",
            {},
            None,
            ItemTable.from_text(["a"], np.ones((1, 2), np.float32)),
            "base",
            {"from_ts": 0, "to_ts": 1, "n_events": 1},
            {},
        )
    ).items
    assert not plain.has_age_prior and plain.age_edges is None


def test_a_bad_age_curve_is_refused() -> None:
    t = ItemTable.from_text(["a"], np.ones((1, 2), np.float32))
    with pytest.raises(ArtifactError):
        t.with_age(np.array([0.0, 10.0]), np.array([np.nan, 0.0]), 1.0)
    with pytest.raises(ArtifactError):
        t.with_age(np.array([5.0, 1.0]), np.array([0.0, 0.0]), 1.0)
