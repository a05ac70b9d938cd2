"""The scorer's one-pass history weights equal Representation.weights per user, bit for bit."""

from __future__ import annotations

import numpy as np

from driftrec.model import Representation
from driftrec.scorer.history import flat_weights as _flat_weights
from driftrec.state import Interaction, UserState


def _states(rng: np.random.Generator, n_users: int) -> list[UserState]:
    out = []
    for u in range(n_users):
        h = [
            Interaction(
                f"e{u}-{j}",
                str(rng.choice(["click", "like", "comment", "hide"])),
                f"i{j}",
                int(rng.integers(0, 2_000_000_000)),
                None,
            )
            for j in range(int(rng.integers(0, 60)))
        ]
        out.append(UserState(f"u{u}", h))
    return out


def test_flat_weights_equal_per_user_weights() -> None:
    rng = np.random.default_rng(0)
    for rep in (
        Representation(),
        Representation(position_decay=1.0, half_life_ms=1234.5),
        Representation(type_weights={"like": 0.3}),
    ):
        states = _states(rng, 40)
        now = 2_000_000_000
        flat = _flat_weights(rep, states, now)
        assert flat is not None
        hist, rows, cols, wf = flat
        for b, st in enumerate(states):
            want = rep.weights([x.type for x in st.history], [x.ts for x in st.history], now)
            got = wf[rows == b]
            assert got.dtype == want.dtype and np.array_equal(got, want)
            assert cols[rows == b].tolist() == list(range(len(st.history)))
        assert hist == [x for st in states for x in st.history]


def test_flat_weights_step_aside_for_another_formula() -> None:
    class Other(Representation):
        def weights(self, types, ts, now):  # type: ignore[override]
            return np.ones(len(types), np.float32)

    states = _states(np.random.default_rng(1), 5)
    assert _flat_weights(Other(), states, 10) is None
    assert _flat_weights(Representation(), [UserState("a"), UserState("b")], 10) is None
