"""A round on a sample of a large catalog (``LearnerConfig.round_items``).

A round over the whole catalog costs memory and time in proportion to it: every training
step's softmax and every validation ranking go over every row, and the round holds a
trainable copy of every row's parts with its optimiser state (about 51 KB an item: some
50 GB at a million items). Above ``round_items`` rows a round works on a sample instead
(:func:`sample_round`):

- every row the window's pairs touch (targets and histories): the rows it trains;
- the newest and the most popular rows (an eighth of the sample each), the strongest
  competitors of any target, and the rows the encode budget re-encodes first;
- a uniform sample of the other rows, each standing for ``weight`` of them: in the
  training softmax its logit carries ``log(weight)`` (the partition function estimated
  from the sample), in validation a row that outranks the target counts ``weight`` times
  (the rank estimated against the whole catalog).

Only the window's rows are trained; the other rows of the sample are negatives (a row
the window does not touch keeps its parts, as every row outside the sample does: training
every row of the sample, or moving every row outside it as the drawn rows moved on
average, did worse on ``emerging``, docs/catalogs.md). The round's candidate is put back
into the whole catalog by :meth:`RoundSample.expand`: the sample's rows replaced, the
rest as served, the round's scalars (blend, freshness curve) taken over, co-engagement
neighbours built for every row, and, where the adapter changed, the rows of the whole
catalog within the encode budget encoded under it (the newest and most engaged first, as
without a sample) and every other row marked stale (re-encoded by the scorer after the
swap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from driftrec.model import ItemTable, priority_order

from .pairs import Pair

if TYPE_CHECKING:
    from .core import Learner

#: the share of a sample given to the newest rows, and to the most popular ones
NEWEST_SHARE = 0.125
POPULAR_SHARE = 0.125


@dataclass
class RoundSample:
    """The rows of ``full`` a round works on (``rows``: those taken for themselves, then
    the uniform draw, each part ascending), as a table of their own (``table``), and how
    many rows of the catalog each stands for (``weight``: 1 for the rows taken for
    themselves, more for the drawn ones); ``trained``: the rows whose parts the round
    trains (the window's)."""

    full: ItemTable
    rows: np.ndarray
    table: ItemTable
    weight: np.ndarray
    trained: np.ndarray
    #: ``(f, w)``: the rows from ``f`` on are the uniform draw, each standing for ``w`` rows
    #: of the catalog (:func:`~driftrec.learner.gate.rank_each`)
    sampled: tuple[int, float]
    #: publication times of ``full``'s rows (-inf: unknown; None: none known), set by the
    #: learner: the freshness curve's exposure is the whole catalog's
    full_pub: np.ndarray | None = None

    @property
    def log_weight(self) -> np.ndarray:
        """``log(weight)`` per row (float32): added to a sampled row's training logit."""
        out: np.ndarray = np.log(self.weight).astype(np.float32)
        return out

    def expand(
        self,
        cand: ItemTable,
        neighbours: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]] | None = None,
        encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> ItemTable:
        """``cand`` (a table over the sample's rows) as a table of the whole catalog: its
        rows in place of theirs, every other row as ``full`` has it; where ``cand`` has
        co-engagement neighbours, ``neighbours(ids)`` builds them for every row (else
        ``full``'s are kept). Where ``cand`` has new text vectors (a new adapter), every
        other row is stale but those ``encode(stale)`` returns (rows, their vectors under
        the new adapter), whose context vectors move with their text.

        >>> full = ItemTable.from_text(["a", "b", "c"], np.eye(3, dtype=np.float32))
        >>> s = sample_round(full, [Pair(("a",), np.ones(1, np.float32), "b", 1)], None,
        ...                  np.zeros(3), 2, np.random.default_rng(0))
        >>> s.table.item_ids, s.weight.tolist()
        (['a', 'b'], [1.0, 1.0])
        >>> t = replace(s.table, bias=np.array([0.5, 1.0], np.float32))
        >>> s.expand(t).bias.tolist()
        [0.5, 1.0, 0.0]
        """
        F, sub, r = self.full, self.table, self.rows
        same = (
            cand.text is sub.text
            and (cand.residual is sub.residual or not (cand.has_residual or sub.has_residual))
            and cand.bias is sub.bias
            and cand.context is sub.context
        )
        scalars = {
            "age_edges": cand.age_edges,
            "age_lograte": cand.age_lograte,
            "age_weight": cand.age_weight,
            "context_shift": cand.context_shift,
            "text_weight": cand.text_weight,
            "pop_recent_share": cand.pop_recent_share,
            "cooc_weight": cand.cooc_weight,
        }
        if same:  # only the scalars changed (a calibration, popularity alone)
            return replace(F, **scalars)
        new_text = not (cand.text is sub.text or np.array_equal(cand.text, sub.text))
        text = F.text
        if new_text:
            text = F.text.copy()
            text[r] = cand.text
        residual = np.zeros(F.text.shape, np.float32) if not F.has_residual else F.residual.copy()
        residual[r] = cand.residual
        bias = F.bias.copy()
        bias[r] = cand.bias
        assert F.context is not None and cand.context is not None
        context = F.context.copy()
        context[r] = cand.context
        n = len(F.item_ids)
        stale = None
        if new_text:  # a new adapter: rows the round did not encode are stale
            stale = np.ones(n, bool)
            stale[r] = False if cand.stale is None else cand.stale
            if encode is not None:
                rows, vecs = encode(stale)
                if len(rows):
                    context[rows] += np.float32(cand.context_shift) * (vecs - text[rows])
                    text[rows] = vecs
                    stale[rows] = False
        elif F.stale is not None or cand.stale is not None:
            stale = np.zeros(n, bool) if F.stale is None else F.stale.copy()
            stale[r] = False if cand.stale is None else cand.stale
        nbr_idx, nbr_w = F.nbr_idx, F.nbr_w
        if neighbours is not None and (cand.nbr_idx is not None or cand.cooc_weight):
            nbr_idx, nbr_w = neighbours(F.item_ids)
        return ItemTable(
            list(F.item_ids),
            text,
            residual,
            bias,
            context,
            nbr_idx,
            nbr_w,
            stale=stale,
            **{k: v for k, v in scalars.items() if k != "cooc_weight"},
            cooc_weight=cand.cooc_weight,
        )


def sample_round(
    full: ItemTable,
    pairs: Sequence[Pair],
    pub: np.ndarray | None,
    pop: np.ndarray,
    size: int,
    rng: np.random.Generator,
) -> RoundSample:
    """The sample of ``full`` a round over ``pairs`` works on (see the module doc), about
    ``size`` rows: every row the pairs touch, the newest rows by publication time ``pub``
    (None: unknown) and the most popular by ``pop`` (an eighth of ``size`` each), and a
    uniform draw of the rest (at least a quarter of ``size``, all of it where it fits)."""
    n = len(full.item_ids)
    index = full.row_index
    touched: set[int] = set()
    for p in pairs:
        touched.add(index.get(p.target, -1))
        touched.update(index.get(i, -1) for i in p.ctx_items)
    touched.discard(-1)
    trained = np.zeros(n, bool)
    trained[list(touched)] = True
    forced = trained.copy()
    if pub is not None and np.isfinite(pub).any():
        k = min(n, int(size * NEWEST_SHARE))
        forced[np.argpartition(-pub, k - 1)[:k]] = True
    k = min(n, int(size * POPULAR_SHARE))
    if k:
        forced[np.argpartition(-np.asarray(pop, np.float64), k - 1)[:k]] = True
    rest = np.flatnonzero(~forced)
    s = min(len(rest), max(size - int(forced.sum()), size // 4))
    drawn = np.sort(rng.choice(rest, s, replace=False)) if s else np.zeros(0, np.int64)
    rows = np.concatenate([np.flatnonzero(forced), drawn])
    weight = np.ones(len(rows), np.float64)
    w = len(rest) / s if s else 1.0
    weight[len(rows) - s :] = w
    return RoundSample(full, rows, _rows_of(full, rows), weight, trained[rows], (len(rows) - s, w))


def sample_for(learner: Learner, pairs: Sequence[Pair], rng: np.random.Generator) -> RoundSample | None:
    """The sample of ``learner``'s catalog a round over ``pairs`` works on, above
    ``round_items`` rows; None below (the whole catalog)."""
    full, size = learner.table, learner.config.round_items
    if not size or len(full.item_ids) <= size:
        return None
    pub = learner._pub_vector(full) if learner.item_ts else None
    smp = sample_round(full, pairs, pub, learner._pop_vector(full), size, rng)
    smp.full_pub = pub
    return smp


@contextmanager
def on_sample(
    learner: Learner, pairs: Sequence[Pair], rng: np.random.Generator
) -> Iterator[RoundSample | None]:
    """The round of ``learner`` over ``pairs`` on :func:`sample_for`'s sample (None: the
    whole catalog) while the block runs: its validation ranks count the drawn rows'
    weights (:meth:`Learner.evaluate_each`)."""
    smp = learner._sample = sample_for(learner, pairs, rng)
    try:
        yield smp
    finally:
        learner._sample = None


def expanded(learner: Learner, smp: RoundSample, cand: ItemTable) -> ItemTable:
    """A round's table over the sample ``smp`` as a table of the whole catalog
    (:meth:`RoundSample.expand`); under a new adapter, the catalog's rows within
    ``encode_budget`` encoded, newest and most engaged first (as
    :func:`~driftrec.learner.candidate.encode_rows` picks them without a sample)."""
    enc, full = learner.encoder, smp.full

    def encode(stale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert enc is not None
        budget, n = learner.config.encode_budget, len(full.item_ids)
        order = np.arange(n)
        if budget and n > budget:
            order = priority_order(smp.full_pub, learner._pop_vector(full), n)[:budget]
        rows = np.sort(order)
        rows = rows[stale[rows]]
        texts = [learner.texts.get(full.item_ids[int(j)], "") for j in rows]
        return rows, enc.encode(texts) if len(rows) else np.zeros((0, full.dim), np.float32)

    nbrs = None if learner.neighbours is None else learner.neighbours.neighbours
    return smp.expand(cand, nbrs, None if enc is None else encode)


def _rows_of(t: ItemTable, rows: np.ndarray) -> ItemTable:
    """The table of ``t``'s rows ``rows``, float32; co-engagement neighbours
    kept where both ends are among the rows."""
    assert t.context is not None
    nbr_idx = nbr_w = None
    if t.nbr_idx is not None and t.nbr_w is not None:
        to_sub = np.full(len(t.item_ids) + 1, -1, np.int64)
        to_sub[rows] = np.arange(len(rows))
        ni = t.nbr_idx[rows].astype(np.int64)
        nbr_idx = to_sub[np.where(ni >= 0, ni, len(t.item_ids))].astype(t.nbr_idx.dtype)
        nbr_w = np.where(nbr_idx >= 0, t.nbr_w[rows], 0).astype(t.nbr_w.dtype)
    residual = t.residual[rows].astype(np.float32) if t.has_residual else None
    text = t.text[rows].astype(np.float32)
    context = None if t.context is t.text else t.context[rows].astype(np.float32)
    return ItemTable(
        [t.item_ids[int(j)] for j in rows],
        text,
        residual if residual is not None else np.zeros(0, np.float32),
        t.bias[rows].astype(np.float32),
        context,
        nbr_idx,
        nbr_w,
        t.cooc_weight,
        t.age_edges,
        t.age_lograte,
        t.age_weight,
        None if t.stale is None else t.stale[rows],
        t.context_shift,
        t.text_weight,
        t.pop_recent_share,
    )
