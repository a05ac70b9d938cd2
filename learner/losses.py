"""The training losses of a round, in torch: next-item softmax over the catalog (or a set of
its rows) and the adapter stage's text-only term.

A pair is a user's weighted history (``ctx_idx`` rows of the catalog, -1 padded, with
weights ``ctx_w``) and the item engaged next (``tgt``). The user vector is the weighted
mean of the history's context-side vectors ``C``; the items it ranks are target-side
vectors. The user's seen items are no negatives (they cannot be recommended), and with
``late = (publication times [N], pair times [B])`` neither are items not yet published at
the pair's time (nobody could have been shown them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from driftrec.model import ItemTable


def softmax_loss(
    C: Any,
    V: Any,
    bias: Any,
    prior: Any,
    ctx_idx: Any,
    ctx_w: Any,
    tgt: Any,
    temperature: float,
    columns: Any = None,
    late: Any = None,
) -> Any:
    """Softmax of (user context -> target) with seen items masked, in torch: over the whole
    catalog, or over ``columns`` (sorted item rows that contain every target). The context is
    the weighted mean of context-side vectors ``C``; candidates are target-side ``V``.
    ``late``: ``(publication times [N], pair times [B])``: items not yet published at a
    pair's time are no negatives of it (as nobody could have been shown them).

    >>> import torch
    >>> C, V = torch.eye(3), torch.eye(3)[[2, 0, 1]]  # item 1's target vector: item 0's context
    >>> zero, hist, w = torch.zeros(3), torch.tensor([[0]]), torch.ones(1, 1)
    >>> near = softmax_loss(C, V, zero, zero, hist, w, torch.tensor([1]), 0.1)
    >>> far = softmax_loss(C, V, zero, zero, hist, w, torch.tensor([2]), 0.1)
    >>> bool(near < 1e-3 < far)
    True
    """
    import torch

    N, d = V.shape
    idx = torch.where(ctx_idx >= 0, ctx_idx, torch.full_like(ctx_idx, N))
    w = torch.where(ctx_idx >= 0, ctx_w, torch.zeros_like(ctx_w))
    # the weighted history as a [B, N] weight matrix: one product instead of a [B, H, d] gather
    W = w.new_zeros(ctx_idx.shape[0], N + 1).scatter_add_(1, idx, w)[:, :N]
    ctx = (W @ C) / w.sum(1, keepdim=True).clamp(min=1e-9)
    mask = torch.zeros(ctx.shape[0], N + 1, dtype=torch.bool)
    seen = torch.where(idx == tgt.unsqueeze(1), torch.full_like(idx, N), idx)
    mask.scatter_(1, seen, True)
    if late is not None:
        mask[:, :N] |= _unpublished(late, tgt, N)
    if columns is None:
        logits = ctx @ V.T / temperature + bias + prior
        return torch.nn.functional.cross_entropy(logits.masked_fill(mask[:, :N], float("-inf")), tgt)
    logits = ctx @ V[columns].T / temperature + bias[columns] + prior[columns]
    logits = logits.masked_fill(mask[:, columns], float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.searchsorted(columns, tgt))


def text_loss(
    C: Any,
    tg: Any,
    g_t: Any,
    ctx_idx: Any,
    ctx_w: Any,
    tgt: Any,
    temperature: float,
    fresh_w: np.ndarray,
    late: Any = None,
) -> Any:
    """The text-only term of the adapter stage: each pair whose target is among the rows
    ``g_t`` (sorted) ranks its target's adapter text vector ``tg`` (no residual, no bias)
    against the other rows' (the user's seen items masked, and with ``late`` those not yet
    published at the pair's time), cross-entropy weighted by ``fresh_w`` of the target
    (normalised to mean 1 over the pairs used). 0 when no pair has its target in ``g_t``.

    >>> import torch
    >>> C = torch.eye(3)
    >>> tg = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    >>> ctx_idx, ctx_w = torch.tensor([[0], [1]]), torch.ones(2, 1)
    >>> good = text_loss(C, tg, torch.tensor([0, 1]), ctx_idx, ctx_w, torch.tensor([0, 1]), 0.1, np.ones(3))
    >>> bad = text_loss(C, tg.flip(0), torch.tensor([0, 1]), ctx_idx, ctx_w, torch.tensor([0, 1]), 0.1, np.ones(3))
    >>> bool(good < bad)
    True
    """
    import torch

    rows = torch.isin(tgt, g_t)
    if not bool(rows.any()):
        return tg.sum() * 0.0
    ctx_idx, ctx_w, tgt = ctx_idx[rows], ctx_w[rows], tgt[rows]
    if late is not None:
        late = (late[0], late[1][rows])
    N = C.shape[0]
    idx = torch.where(ctx_idx >= 0, ctx_idx, torch.full_like(ctx_idx, N))
    w = torch.where(ctx_idx >= 0, ctx_w, torch.zeros_like(ctx_w))
    W = w.new_zeros(ctx_idx.shape[0], N + 1).scatter_add_(1, idx, w)[:, :N]
    ctx = (W @ C) / w.sum(1, keepdim=True).clamp(min=1e-9)
    logits = ctx @ tg.T / temperature
    seen = torch.zeros(len(tgt), N + 1, dtype=torch.bool)
    seen.scatter_(1, torch.where(idx == tgt.unsqueeze(1), torch.full_like(idx, N), idx), True)
    hide = seen[:, g_t]
    if late is not None:
        hide |= _unpublished(late, tgt, N)[:, g_t]
    logits = logits.masked_fill(hide, float("-inf"))
    pw = torch.from_numpy(fresh_w[tgt.numpy()].astype(np.float32))
    ce = torch.nn.functional.cross_entropy(logits, torch.searchsorted(g_t, tgt), reduction="none")
    return (ce * pw).sum() / pw.sum()


def table_loss(
    table: ItemTable, ctx_idx: Any, ctx_w: Any, tgt: Any, prior: Any, temperature: float, limit: int = 1024
) -> float:
    """:func:`softmax_loss` of ``table`` as served (its context vectors, its text vectors plus
    residuals, its biases) on the first ``limit`` pairs, without gradients: what a round
    reports before and after it trains.

    >>> import torch
    >>> t = ItemTable.from_text(["a", "b", "c"], np.eye(3, dtype=np.float32))
    >>> hist, w, zero = torch.tensor([[0], [1]]), torch.ones(2, 1), torch.zeros(3)
    >>> near = table_loss(t, hist, w, torch.tensor([0, 1]), zero, 0.1)  # their own history
    >>> far = table_loss(t, hist, w, torch.tensor([2, 2]), zero, 0.1)
    >>> near < 1e-3 < far
    True
    """
    import torch

    with torch.no_grad():
        n = min(limit, len(tgt))
        return float(
            softmax_loss(
                torch.from_numpy(table.context),
                torch.from_numpy(table.vectors),
                torch.from_numpy(table.bias),
                prior,
                ctx_idx[:n],
                ctx_w[:n],
                tgt[:n],
                temperature,
            )
        )


def _unpublished(late: Any, tgt: Any, N: int) -> Any:
    """``[B, N]``: items published after each pair's time (never the pair's own target)."""
    import torch

    pub, ts = late
    out = pub.unsqueeze(0) > ts.unsqueeze(1)
    out[torch.arange(len(tgt)), tgt] = False
    return out
