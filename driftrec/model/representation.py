"""How users and items become scores: the one definition both scorer and learner use.

user vector  u = sum_j w_j * v(item_j) / sum_j w_j  over the user's recent history, with
             w_j = type_weight * 0.5 ** (age_j / half_life) * position_decay ** (rank from newest)
             plus comment texts (encoded) as extra evidence
score(i)     = u . v_i / temperature + bias_i
             + pop_weight * ((1 - s) * log1p(popularity_i) + s * log1p(recent_popularity_i))
             popularity decays by the clock (pop_half_life_ms), recent popularity by events
             (pop_recent_half_life_events); s is the version's ItemTable.pop_recent_share
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Representation:
    """Parameters of the user representation and the score (shared by scorer and learner)."""

    type_weights: Mapping[str, float] = field(
        default_factory=lambda: {"click": 1.0, "like": 2.0, "comment": 3.0}
    )
    half_life_ms: float = 7 * 24 * 3600 * 1000.0
    position_decay: float = 0.9
    history: int = 50
    comment_weight: float = 1.0
    temperature: float = 0.1
    pop_weight: float = 0.5
    #: the long popularity term decays by the stream's clock: half its weight after a day
    pop_half_life_ms: float = 24 * 3600 * 1000.0
    #: the recent popularity term decays by events (the ones that count it): half its
    #: weight after this many, whatever the stream's pace (a replay as a live stream). How
    #: much of the popularity term it is: ``ItemTable.pop_recent_share``, fitted on
    #: validation (``LearnerConfig.pop_recent_shares``)
    pop_recent_half_life_events: float = 5000.0

    def __post_init__(self) -> None:
        from .errors import ModelError

        if not 0 < self.position_decay <= 1:
            raise ModelError("position_decay must be in (0, 1]")
        if self.half_life_ms <= 0 or self.pop_half_life_ms <= 0:
            raise ModelError("half-lives must be > 0 ms")
        if not self.pop_recent_half_life_events >= 1:
            raise ModelError("pop_recent_half_life_events must be >= 1")
        if self.temperature <= 0:
            raise ModelError("temperature must be > 0")

    def weights(self, types: Sequence[str], ts: Sequence[int], now: int) -> np.ndarray:
        """Weights of a history (oldest first) as seen at time ``now``.

        Examples
        --------
        >>> r = Representation(half_life_ms=1000, position_decay=1.0)
        >>> r.weights(["click", "like"], [0, 1000], now=1000).round(3).tolist()
        [0.5, 2.0]
        """
        n = len(types)
        if n == 0:
            return np.zeros(0, np.float32)
        tw = np.array([self.type_weights.get(t, 1.0) for t in types], np.float64)
        age = np.maximum(0, now - np.asarray(ts, np.float64))
        pos = self.position_decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
        return (tw * np.exp(-LN2 * age / self.half_life_ms) * pos).astype(np.float32)

    def pop_increment(self, etype: str, ts: int) -> float:
        """Log-space increment of an item's decayed popularity for one event."""
        return math.log(max(self.type_weights.get(etype, 1.0), 1e-6)) + LN2 * ts / self.pop_half_life_ms

    def pop_recent_increment(self, etype: str, n: int) -> float:
        """Log-space increment of an item's recent popularity for one event, the ``n``-th
        (from 1) of the events that count it: its full weight after ``n`` events."""
        return (
            math.log(max(self.type_weights.get(etype, 1.0), 1e-6))
            + LN2 * n / self.pop_recent_half_life_events
        )

    def pop_recent_now(self, log_acc: np.ndarray, n: int) -> np.ndarray:
        """The log of each item's recent popularity after ``n`` events, from the log
        accumulators of :meth:`pop_recent_increment` (-inf = never seen)."""
        return np.asarray(log_acc, np.float64) - LN2 * n / self.pop_recent_half_life_events

    def pop_prior(
        self, log_acc: np.ndarray, now: int, recent: np.ndarray | None = None, share: float = 0.0
    ) -> np.ndarray:
        """``pop_weight * log1p(popularity at now)`` from log accumulators (-inf = never seen);
        with ``recent`` (the log of each item's recent popularity: :meth:`pop_recent_now`)
        and ``share`` > 0, that share of the term is recent popularity instead.

        Examples
        --------
        >>> r = Representation(pop_weight=1.0, pop_half_life_ms=1000)
        >>> acc = np.array([-np.inf, r.pop_increment("click", 0)])
        >>> [round(float(x), 3) for x in r.pop_prior(acc, now=1000)]
        [0.0, 0.405]
        >>> [round(float(x), 3) for x in r.pop_prior(acc, 1000, np.array([np.log(3.0), -np.inf]), share=0.5)]
        [0.693, 0.203]
        """
        if self.pop_weight == 0:
            return np.zeros(len(log_acc), np.float32)
        x = log_acc - LN2 * now / self.pop_half_life_ms
        if not share or recent is None:
            return (self.pop_weight * np.logaddexp(0.0, x)).astype(np.float32)
        mixed: np.ndarray = (1.0 - share) * np.logaddexp(0.0, x) + share * np.logaddexp(0.0, recent)
        return (self.pop_weight * mixed).astype(np.float32)


def logaddexp(x: float, y: float) -> float:
    """``log(exp(x) + exp(y))`` of two Python floats, as ``numpy.logaddexp`` computes it
    (-inf = nothing yet), without a numpy scalar call per event.

    >>> logaddexp(float("-inf"), 1.5), round(logaddexp(0.0, 0.0), 6)
    (1.5, 0.693147)
    """
    if x == y:
        return x + LN2
    d = x - y
    if d > 0:
        return x + math.log1p(math.exp(-d))
    if d <= 0:
        return y + math.log1p(math.exp(d))
    return math.nan


def user_vectors(
    hist_idx: np.ndarray,
    hist_w: np.ndarray,
    item_vectors: np.ndarray,
    extra: np.ndarray | None = None,
    extra_w: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted mean of history item vectors, batched.

    ``hist_idx`` is ``[B, H]`` row indices into ``item_vectors`` (-1 = padding or unknown
    item), ``hist_w`` the matching weights. ``extra``/``extra_w`` add per-user evidence
    (summed comment vectors and their total weight).

    Examples
    --------
    >>> V = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    >>> user_vectors(np.array([[0, 1, -1]]), np.array([[1.0, 3.0, 9.0]]), V).tolist()
    [[0.25, 0.75]]
    """
    import torch

    valid = hist_idx >= 0
    w = np.where(valid, hist_w, 0.0).astype(np.float32)
    idx = np.where(valid, hist_idx, 0).astype(np.int64, copy=False)
    if item_vectors.dtype == np.float16:  # rows held in half precision: the rows used, as float32
        used, inv = np.unique(idx, return_inverse=True)
        idx, item_vectors = inv.reshape(idx.shape), item_vectors[used]
    # a weighted gather-sum without materialising the [B, H, d] rows (10x faster than the
    # einsum over them at B=1024, H=50, d=384)
    num = torch.nn.functional.embedding_bag(
        torch.from_numpy(idx),
        torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32)),
        per_sample_weights=torch.from_numpy(w),
        mode="sum",
    ).numpy()
    den = w.sum(1)
    if extra is not None and extra_w is not None:
        num = num + extra
        den = den + extra_w
    out: np.ndarray = (num / np.maximum(den, 1e-9)[:, None]).astype(np.float32)
    return out


def scores(
    users: np.ndarray,
    item_vectors: np.ndarray,
    bias: np.ndarray,
    prior: np.ndarray,
    temperature: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``[B, N]`` scores ``users @ item_vectors.T / temperature + bias + prior``: one matrix
    product and one pass over its result. ``out``: a ``[B, N]`` float32 buffer to write into
    (a fresh 40 MB result is page-faulted in on every batch otherwise).

    Examples
    --------
    >>> V = np.eye(2, dtype=np.float32)
    >>> scores(np.array([[1.0, 0.0]], np.float32), V, np.zeros(2, np.float32), np.ones(2, np.float32), 0.5)
    array([[3., 1.]], dtype=float32)
    """
    u = users.astype(np.float32, copy=False) * np.float32(1.0 / temperature)  # [B, d], not [B, N]
    s: np.ndarray = np.matmul(u, item_vectors.T, out=out)
    s += (bias + prior).astype(np.float32, copy=False)
    return s


#: Columns per block of :func:`_blocked_topk`.
TOPK_BLOCK = 64


def _blocked_topk(s: Any, k: int, bs: int) -> tuple[Any, Any]:
    """Exact row-wise top-``k`` of a large float tensor ``s`` in two cheap passes instead of
    one selection over every column: the maximum of each block of ``bs`` columns, the
    ``k`` best blocks, then the top ``k`` of those blocks' columns. Exact: if an element
    of a row's top ``k`` were in a block outside the ``k`` best blocks, those ``k`` blocks'
    maxima would be ``k`` elements at least as large (equal values may come out in another
    order than ``torch.topk`` over the whole row gives). Columns past the last whole block
    are always candidates. About 2x faster than ``torch.topk`` on a 1024 x 10,000 score
    matrix. Returns (indices, values), best first."""
    import torch

    B, N = s.shape
    nb = N // bs
    m = nb * bs
    blocks = s[:, :m].unflatten(1, (nb, bs))
    kb = min(k, nb)
    _, bi = torch.topk(blocks.amax(2), kb, dim=1, sorted=False)
    cand = blocks[torch.arange(B).unsqueeze(1), bi].flatten(1)  # [B, kb * bs]
    if m < N:  # the columns past the last whole block are always candidates
        cand = torch.cat([cand, s[:, m:]], 1)
    val, j = torch.topk(cand, k, dim=1, sorted=True)
    in_block = j < kb * bs
    col = torch.where(in_block, bi.gather(1, (j // bs).clamp(max=kb - 1)) * bs + j % bs, m + j - kb * bs)
    return col, val


def top_k(
    s: np.ndarray, k: int, exclude: Sequence[Sequence[int]] = (), inplace: bool = False, stable: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` row indices and scores per row, best first, skipping ``exclude[b]``.

    The one top-k of the project: the learner, the scorer's exact pass and the evaluation's
    baselines all call it. ``inplace=True`` lets it write the exclusions into ``s`` (saves
    a copy of a fresh score matrix). Large matrices use ``torch.topk`` (several times
    faster than ``argpartition`` on 1024 x 10,000), which orders equal scores as it
    pleases; ``stable=True`` puts equal scores in column (catalog) order instead, so that
    a list does not depend on the selection algorithm (counts tie often: many items have
    the same number of events). No NaN.

    Examples
    --------
    >>> idx, _ = top_k(np.array([[0.1, 0.9, 0.5, 0.7]]), 2, exclude=[[1]])
    >>> idx.tolist()
    [[3, 2]]
    >>> top_k(np.array([[1.0, 2.0, 1.0, 2.0, 1.0]]), 3, stable=True)[0].tolist()
    [[1, 3, 0]]
    """
    lens = [len(ex) for ex in exclude]
    if any(lens):
        s = s if inplace else s.copy()
        rows = np.repeat(np.arange(len(lens)), lens)
        cols = np.fromiter(itertools.chain.from_iterable(exclude), np.int64, count=len(rows))
        s[rows, cols] = -np.inf
    k = min(k, s.shape[1])
    if k == 0:
        return np.zeros((s.shape[0], 0), np.int64), np.zeros((s.shape[0], 0), s.dtype)
    if stable:
        return _stable_top(s, k)
    if s.size >= 1 << 18:
        import torch

        st = torch.from_numpy(np.ascontiguousarray(s))
        if s.shape[1] >= 16 * TOPK_BLOCK and k <= 64:
            idx_t, val_t = _blocked_topk(st, k, TOPK_BLOCK)
            return idx_t.numpy(), val_t.numpy()
        val_t, idx_t = torch.topk(st, k, dim=1, sorted=True)
        return idx_t.numpy(), val_t.numpy()
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    ps = np.take_along_axis(s, part, 1)
    order = np.argsort(-ps, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, 1)
    return idx, np.take_along_axis(ps, order, 1)


def _stable_top(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``k`` of ``S`` (``1 <= k <= S.shape[1]``), equal scores in column order."""
    B = S.shape[0]
    kth = -np.partition(-S, k - 1, axis=1)[:, k - 1 : k]  # each row's k-th largest value
    above, tied = S > kth, S == kth
    need = k - above.sum(1, keepdims=True)  # how many of the tied ones make the cut: the first
    cols = np.nonzero(above | (tied & (np.cumsum(tied, axis=1) <= need)))[1].reshape(B, k)
    ps = np.take_along_axis(S, cols, 1)
    order = np.argsort(-ps, axis=1, kind="stable")  # cols ascending: ties stay in column order
    return np.take_along_axis(cols, order, 1), np.take_along_axis(ps, order, 1)
