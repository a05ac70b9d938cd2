"""The losses of a round (:mod:`driftrec.learner.losses`), checked against a direct
computation of the same softmax."""

from __future__ import annotations

import numpy as np
import torch

from driftrec.learner.losses import softmax_loss, table_loss, text_loss
from driftrec.model import ItemTable


def _case() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    C, V = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    bias, prior = torch.randn(5, generator=g), torch.randn(5, generator=g)
    ctx_idx = torch.tensor([[0, 1], [2, -1], [3, 4]])
    ctx_w = torch.tensor([[1.0, 3.0], [2.0, 0.0], [1.0, 1.0]])
    tgt = torch.tensor([2, 4, 3])  # the third pair's target is in its own history
    return C, V, bias, prior, ctx_idx, ctx_w, tgt


def _direct(C, V, bias, prior, ctx_idx, ctx_w, tgt, T, hide=None) -> float:
    """Cross-entropy of each pair's target over the items outside its history (its target
    excepted) and ``hide``, written out pair by pair."""
    out = []
    for b in range(len(tgt)):
        rows = [int(i) for i in ctx_idx[b] if i >= 0]
        w = ctx_w[b][: len(rows)]
        u = (w[:, None] * C[rows]).sum(0) / w.sum()
        logits = u @ V.T / T + bias + prior
        for i in rows:
            if i != int(tgt[b]):
                logits[i] = -np.inf
        for i in hide[b] if hide else ():
            logits[i] = -np.inf
        out.append(-torch.log_softmax(logits, 0)[tgt[b]])
    return float(torch.stack(out).mean())


def test_softmax_loss_is_the_cross_entropy_over_the_unseen_catalog() -> None:
    C, V, bias, prior, ctx_idx, ctx_w, tgt = _case()
    got = float(softmax_loss(C, V, bias, prior, ctx_idx, ctx_w, tgt, 0.5))
    assert np.isclose(got, _direct(C, V, bias, prior, ctx_idx, ctx_w, tgt, 0.5), atol=1e-5)
    # items published after a pair's time are no negatives of it (its own target stays)
    pub, ts = torch.tensor([0.0, 0.0, 9.0, 9.0, 0.0]), torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64)
    late = float(softmax_loss(C, V, bias, prior, ctx_idx, ctx_w, tgt, 0.5, late=(pub.double(), ts)))
    want = _direct(C, V, bias, prior, ctx_idx, ctx_w, tgt, 0.5, hide=[[3], [2, 3], [2]])
    assert np.isclose(late, want, atol=1e-5)
    # over a set of columns: the same softmax restricted to them
    cols = torch.tensor([1, 2, 3, 4])
    sub = float(softmax_loss(C, V, bias, prior, ctx_idx, ctx_w, tgt, 0.5, columns=cols))
    assert np.isclose(sub, _direct(C, V, bias, prior, ctx_idx, ctx_w, tgt, 0.5, hide=[[0]] * 3), atol=1e-5)


def test_table_loss_is_the_softmax_loss_of_the_served_vectors() -> None:
    C, V, bias, prior, ctx_idx, ctx_w, tgt = _case()
    t = ItemTable(
        [f"i{j}" for j in range(5)],
        V.numpy() * 0.5,
        V.numpy() * 0.5,  # text + residual = V
        bias.numpy(),
        C.numpy(),
    )
    want = float(softmax_loss(C, V, bias, prior, ctx_idx, ctx_w, tgt, 0.5))
    assert np.isclose(table_loss(t, ctx_idx, ctx_w, tgt, prior, 0.5), want, atol=1e-6)
    first = float(softmax_loss(C, V, bias, prior, ctx_idx[:2], ctx_w[:2], tgt[:2], 0.5))
    assert np.isclose(table_loss(t, ctx_idx, ctx_w, tgt, prior, 0.5, limit=2), first, atol=1e-6)


def test_text_loss_weighs_rarely_engaged_targets_up_and_skips_targets_outside_the_rows() -> None:
    C = torch.eye(3)
    tg = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # text vectors of rows 0 and 1
    g_t = torch.tensor([0, 1])
    ctx_idx, ctx_w = torch.tensor([[0], [2], [1]]), torch.ones(3, 1)
    tgt = torch.tensor([1, 0, 2])  # the third pair's target is outside g_t: left out
    T = 0.5
    # pair 1 (history 0 -> target 1): row 0 is seen, only row 1 is left: loss 0
    # pair 2 (history 2 -> target 0): rows 0 and 1 score 0 and 0: log 2
    for w0 in (1.0, 3.0):
        fresh_w = np.array([w0, 1.0, 1.0])
        got = float(text_loss(C, tg, g_t, ctx_idx, ctx_w, tgt, T, fresh_w))
        assert np.isclose(got, w0 * np.log(2) / (w0 + 1.0), atol=1e-6)
    none = text_loss(C, tg, g_t, ctx_idx[2:], ctx_w[2:], tgt[2:], T, np.ones(3))
    assert float(none) == 0.0
