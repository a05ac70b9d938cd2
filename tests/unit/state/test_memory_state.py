from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftrec.state import (
    Interaction,
    MemoryStateStore,
    StateConfigError,
    StateUnavailable,
    StateWrite,
    UserState,
    open_state,
)


def _user(uid: str) -> UserState:
    return UserState(
        uid,
        [Interaction("e1", "comment", "i1", 5, "nice")],
        np.arange(4, dtype=np.float32),
        "v1",
        ["i2", "i3"],
        1,
        "e1",
        ["i1"],
    )


def test_file_backend_persists_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    s = open_state(f"file://{path}")
    s.commit(StateWrite({"u1": _user("u1")}, {"i1": 3.5}, {"events.likes:0": 9}, "scorer"))
    s.register({"version": "v1", "uri": "file:///x", "sha256": "ab"})
    s.set_current("v1")
    s.close()
    t = MemoryStateStore(path)
    assert t.get_many(["u1"])["u1"].same_as(_user("u1"))
    assert t.item_pop() == {"i1": 3.5}
    assert t.offsets("scorer") == {"events.likes:0": 9}
    assert t.records()[0]["version"] == "v1" and t.current() == "v1"


def test_corrupt_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{broken")
    with pytest.raises(StateUnavailable, match="delete it"):
        MemoryStateStore(path)


def test_url_errors() -> None:
    with pytest.raises(StateConfigError, match="unknown scheme"):
        open_state("sqlite://x")
    with pytest.raises(StateConfigError, match="names no file"):
        open_state("file://")


def test_user_state_serialisation_roundtrip() -> None:
    u = _user("u9")
    back = UserState.from_json("u9", u.to_json())
    assert back.same_as(u) and back.history[0].text == "nice" and back.seen == ["i1"]
