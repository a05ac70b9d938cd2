"""What a round learns from: the window's pairs (a user's history before an engagement ->
the engaged item), split into training and validation pairs, as arrays over a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftrec.model import ItemTable


@dataclass(frozen=True)
class Pair:
    """User context (history before the event) -> the engaged item."""

    ctx_items: tuple[str, ...]
    ctx_w: np.ndarray
    target: str
    ts: int
    repeat: bool = False  # the user had engaged with the target before (never recommendable)


def split(pairs: Sequence[Pair], val_share: float) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, validation pairs): the newest ``val_share`` of ``pairs`` (at least
    one) validate, the older ones train. A round is judged on engagements it has not
    trained on, and the newest ones are those the version will serve next.

    >>> ps = [Pair((), np.zeros(0, np.float32), f"i{j}", j) for j in range(10)]
    >>> train, val = split(ps, 0.2)
    >>> [p.target for p in val], len(train)
    (['i8', 'i9'], 8)
    """
    n_val = max(1, int(len(pairs) * val_share))
    return list(pairs[:-n_val]), list(pairs[-n_val:])


def pair_arrays(pairs: Sequence[Pair], table: ItemTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pairs`` as rows of ``table``: history rows ``[B, H]`` (-1 pads), their weights
    ``[B, H]`` and the target rows ``[B]`` (-1: not in the table).

    >>> t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
    >>> ps = [Pair(("b",), np.ones(1, np.float32), "a", 1), Pair((), np.zeros(0, np.float32), "b", 2)]
    >>> idx, w, tgt = pair_arrays(ps, t)
    >>> idx.tolist(), w.tolist(), tgt.tolist()
    ([[1], [-1]], [[1.0], [0.0]], [0, 1])
    """
    H = max(1, max(len(p.ctx_items) for p in pairs))
    idx = np.full((len(pairs), H), -1, np.int64)
    w = np.zeros((len(pairs), H), np.float32)
    for b, p in enumerate(pairs):
        n = len(p.ctx_items)
        if n:
            idx[b, :n] = [table.index(i) for i in p.ctx_items]
            w[b, :n] = p.ctx_w
    tgt = np.array([table.index(p.target) for p in pairs], np.int64)
    return idx, w, tgt


def pair_tensors(pairs: Sequence[Pair], table: ItemTable) -> tuple[Any, Any, Any]:
    """:func:`pair_arrays` as torch tensors (sharing their memory)."""
    import torch

    idx, w, tgt = pair_arrays(pairs, table)
    return torch.from_numpy(idx), torch.from_numpy(w), torch.from_numpy(tgt)
