"""The item table: the catalog as one model version sees it (:class:`ItemTable`).

What the scorer ranks and the learner trains; an artifact (:mod:`driftrec.model.artifacts`)
stores one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ArtifactError


@dataclass
class ItemTable:
    """The catalog as one model version sees it.

    Two sides, so that "users of A go on to B" is expressible (a single shared vector per
    item can only say "A is like A"):

    - target side: ``vectors = text + residual`` (text under this version's adapter plus a
      learned residual) and a learned ``bias``: what is ranked;
    - context side: ``context`` (base-encoder text plus a learned context residual): what a
      user's history is made of;
    - co-engagement: optional top neighbours per item (``nbr_idx``, ``nbr_w``: cosine of
      co-engagement counts, see :mod:`driftrec.model.cooc`), added to scores with ``cooc_weight``;
    - freshness: optional, how engagement varies with an item's age (time since its
      publication ``ts``), learned from the window: ``age_lograte[b]`` is the log engagement
      rate of items whose age is in ``[age_edges[b], age_edges[b + 1])`` (ms; the last bin
      open), relative to the average; ``age_weight`` times it is added to scores
      (:meth:`age_prior`);
    - storage: nothing is held twice where it is equal. A zero residual (the base version:
      :func:`zero_rows`, or ``None``) is a read-only view that takes no memory, and
      ``vectors`` then *is* ``text``; ``context=None`` means the text vectors themselves
      (``context`` *is* ``text``). Tables are values: their arrays are never written in
      place (every ``with_*`` builds new ones), so sharing them is safe;
    - re-encoding: optional ``stale`` (bool ``[n]``): rows whose ``text`` is still a
      previous version's (the learner encoded only the newest and most engaged items under
      this version's adapter); the scorer re-encodes them in the background after a swap;
    - ``context_shift`` (``LearnerConfig.context_shift``): each context vector carries this
      much of (its text vector - its base-encoder text vector), so that a history of posts
      named by a word the adapter has learned says that word's topic. Items added to the
      table (:meth:`with_items`) and rows re-encoded (:meth:`with_text`) keep that so.
    - the blend: ``text_weight`` scales the user-item term (``vectors`` are ``text_weight``
      times ``text + residual``) against the rest of the score (bias, live popularity,
      freshness, co-engagement); chosen on validation (``LearnerConfig.text_weights``): a
      catalog whose text says little about what users engage is served mostly by its
      popularity. 0: the text term is off;
    - ``pop_recent_share``: how much of the live popularity term is recent popularity
      (decayed by events, ``Representation.pop_recent_half_life_events``) rather than the
      long one (decayed by the clock, ``pop_half_life_ms``), in [0, 1]; chosen on
      validation (``LearnerConfig.pop_recent_shares``). 0: the long term alone.
    """

    item_ids: list[str]
    text: np.ndarray
    residual: np.ndarray
    bias: np.ndarray
    context: np.ndarray | None = None
    nbr_idx: np.ndarray | None = None
    nbr_w: np.ndarray | None = None
    cooc_weight: float = 0.0
    age_edges: np.ndarray | None = None
    age_lograte: np.ndarray | None = None
    age_weight: float = 0.0
    stale: np.ndarray | None = None
    context_shift: float = 0.0
    text_weight: float = 1.0
    pop_recent_share: float = 0.0
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        text = self.text
        # the text as rows held as they are (float32, or float16 for a table stored so:
        # :meth:`stored`), else as float32: what the vectors and the context are where
        # nothing was learned
        as32 = _rows(text)
        if _is_zero(self.residual):
            self.residual = zero_rows(np.shape(text))
        if self.context is None:
            self.context = as32
        if (
            self.text.shape[0] != n
            or self.residual.shape != self.text.shape
            or self.bias.shape != (n,)
            or self.context.shape != self.text.shape
        ):
            raise ArtifactError(
                f"item table shapes disagree: {n} ids, text {self.text.shape}, "
                f"residual {self.residual.shape}, bias {self.bias.shape}, "
                f"context {self.context.shape}"
            )
        if (self.nbr_idx is None) != (self.nbr_w is None) or (
            self.nbr_idx is not None
            and self.nbr_w is not None
            and (self.nbr_idx.shape != self.nbr_w.shape or self.nbr_idx.shape[0] != n)
        ):
            raise ArtifactError("item table neighbours: nbr_idx and nbr_w must both be [n_items, m]")
        e, g = self.age_edges, self.age_lograte
        if (e is None) != (g is None) or (
            e is not None
            and g is not None
            and (
                e.ndim != 1
                or e.shape != g.shape
                or e.size == 0
                or e[0] != 0
                or not (np.all(np.isfinite(e)) and np.all(np.isfinite(g)) and np.all(np.diff(e) > 0))
                or not math.isfinite(self.age_weight)
            )
        ):
            raise ArtifactError(
                "item table freshness: age_edges (increasing from 0, ms) and "
                "age_lograte must both be finite [n_bins], age_weight finite"
            )
        if not (math.isfinite(self.context_shift) and 0.0 <= self.context_shift <= 4.0):
            raise ArtifactError(f"item table context_shift {self.context_shift!r} is not in [0, 4]")
        if not (math.isfinite(self.text_weight) and 0.0 <= self.text_weight <= 16.0):
            raise ArtifactError(f"item table text_weight {self.text_weight!r} is not in [0, 16]")
        if not (math.isfinite(self.pop_recent_share) and 0.0 <= self.pop_recent_share <= 1.0):
            raise ArtifactError(f"item table pop_recent_share {self.pop_recent_share!r} is not in [0, 1]")
        if e is not None:
            self.age_edges = np.asarray(e, np.float64)
            self.age_lograte = np.asarray(g, np.float32)
        if self.stale is not None:
            if np.shape(self.stale) != (n,):
                raise ArtifactError(
                    f"item table stale rows: a [{n}] mask expected, got {np.shape(self.stale)}"
                )
            self.stale = np.asarray(self.stale, bool)
            if not self.stale.any():
                self.stale = None
        self._index = {i: k for k, i in enumerate(self.item_ids)}
        if self.has_residual:
            v = self.text + self.residual  # float16 where both are (a table stored so)
            self.vectors: np.ndarray = v if v.dtype in (np.float32, np.float16) else v.astype(np.float32)
        else:  # text + 0: the text rows themselves
            self.vectors = as32
        if self.text_weight != 1.0:  # a new array (in the rows' own precision): the text stays
            self.vectors = (self.vectors * self.vectors.dtype.type(self.text_weight)).astype(
                self.vectors.dtype, copy=False
            )
        self.context = _rows(self.context)

    def stored(self, dtype: str = "float32") -> ItemTable:
        """This table with its text and context rows held in ``dtype``: ``float32`` (as
        every table is made), or ``float16`` (half the memory; the scorer's
        ``ScorerConfig.item_storage``): the learned residual too, and the vectors are then
        the float16 text where nothing was learned, else text + residual in float16; every
        number computed from them is rounded so. Itself where it is held so already.

        >>> t = ItemTable.from_text(["a"], np.array([[0.1, 0.2]], np.float32)).stored("float16")
        >>> t.text.dtype.name, t.vectors is t.text, t.context is t.text, t.vectors.tolist()
        ('float16', True, True, [[0.0999755859375, 0.199951171875]])
        >>> t.with_items(["b"], np.array([[1.0, 0.0]], np.float32)).text.dtype.name
        'float16'
        """
        if dtype not in ("float32", "float16"):
            raise ValueError(f"item storage {dtype!r}: float32 or float16")
        dt = np.dtype(dtype)
        assert self.context is not None
        learned = self.has_residual
        if self.text.dtype == dt and self.context.dtype == dt and (not learned or self.residual.dtype == dt):
            return self
        text = np.ascontiguousarray(self.text, dt)
        context = text if self.context is self.text else np.ascontiguousarray(self.context, dt)
        residual = np.ascontiguousarray(self.residual, dt) if learned else self.residual
        return replace(self, text=text, residual=residual, context=context)

    @property
    def has_residual(self) -> bool:
        """Whether a learned residual is held (else ``residual`` is a zero view and
        ``vectors`` the text vectors themselves).

        >>> t = ItemTable.from_text(["a"], np.ones((1, 2), np.float32))
        >>> t.has_residual, t.vectors is t.text, t.context is t.text, t.residual.tolist()
        (False, True, True, [[0.0, 0.0]])
        """
        return not _is_zero(self.residual)

    @classmethod
    def from_text(cls, item_ids: list[str], text: np.ndarray) -> ItemTable:
        """The base version: text vectors on both sides, nothing learned yet."""
        text = np.asarray(text, np.float32)
        return cls(list(item_ids), text, zero_rows(text.shape), np.zeros(len(item_ids), np.float32), None)

    @property
    def has_age_prior(self) -> bool:
        """Whether :meth:`age_prior` adds anything (a curve with a weight)."""
        return bool(self.age_weight) and self.age_lograte is not None

    def age_prior(self, age_ms: np.ndarray) -> np.ndarray:
        """``age_weight`` times the learned log rate at ``age_ms`` (float32; negative ages,
        not yet published, count as age 0): linear in log age between the bins' centres
        (the first bin's at half its width, the last's at 1.41x its left edge), flat beyond
        the first and last centre. So of two items in one bin the younger one scores
        higher where engagement decays with age, as it would with a curve that has no
        bins: on a fast feed the newest posts of a bin are the likeliest.

        Examples
        --------
        >>> t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32)).with_age(
        ...     np.array([0.0, 1000.0]), np.array([1.0, -1.0]), 0.5)
        >>> t.age_prior(np.array([10.0, 5000.0, -3.0])).tolist()
        [0.5, -0.5, 0.5]
        >>> a, b = t.age_prior(np.array([600.0, 900.0]))  # between the centres (500, 1414)
        >>> bool(0.5 > a > b > -0.5)
        True
        """
        if not self.has_age_prior:
            return np.zeros(len(age_ms), np.float32)
        assert self.age_edges is not None and self.age_lograte is not None
        e = self.age_edges.astype(np.float64)
        right = np.append(e[1:], e[-1] * 2.0)
        centres = np.where(e > 0, np.sqrt(np.maximum(e, 1.0) * right), right / 2.0)
        x = np.log1p(np.maximum(np.asarray(age_ms, np.float64), 0.0))
        out: np.ndarray = (
            np.float32(self.age_weight) * np.interp(x, np.log1p(centres), self.age_lograte)
        ).astype(np.float32)
        return out

    def with_age(self, edges: np.ndarray | None, lograte: np.ndarray | None, weight: float) -> ItemTable:
        """The same item parts with another freshness curve and weight."""
        return replace(self, age_edges=edges, age_lograte=lograte, age_weight=float(weight))

    @property
    def dim(self) -> int:
        return int(self.text.shape[1])

    def index(self, item_id: str) -> int:
        """The row of ``item_id``, -1 if the table does not hold it."""
        return self._index.get(item_id, -1)

    @property
    def row_index(self) -> Mapping[str, int]:
        """Item id -> row, for callers that map many ids at once (its ``get`` at C speed).
        Read-only: the table's own lookup, not a copy.

        >>> t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
        >>> list(map(t.row_index.get, ["b", "x", "a"], [-1] * 3))
        [1, -1, 0]
        """
        return self._index

    def with_items(
        self,
        item_ids: list[str],
        text: np.ndarray,
        base_text: np.ndarray | None = None,
        prev_base: Mapping[str, np.ndarray] | None = None,
    ) -> ItemTable:
        """A copy with new items appended (nothing learned for them yet) or texts replaced.

        ``text`` is under this version's adapter (target side), ``base_text`` under the base
        encoder (context side; defaults to ``text``); a new item's context is
        ``base_text + context_shift * (text - base_text)``. An edited item keeps its context
        (what was learned for it), but with ``prev_base`` (item id -> the base-encoder
        vector of its text before the edit) the shift its old text put there is swapped for
        the new text's, so that ``context - context_shift * (text - base_text)`` stays what
        was learned."""
        base_text = text if base_text is None else base_text
        shift = np.float32(self.context_shift)
        prev = dict(prev_base) if prev_base is not None and self.context_shift else {}
        ids = list(self.item_ids)
        assert self.context is not None
        edits, new_t, new_c = [], [], []
        for iid, vec, cvec in zip(item_ids, text, base_text):
            k = self._index.get(iid, -1)
            if k >= 0:
                edits.append((k, iid, vec, cvec))
            else:
                ids.append(iid)
                new_t.append(vec)
                new_c.append(cvec + shift * (np.asarray(vec) - cvec))
        nv = np.asarray(new_t, np.float32) if new_t else None
        nc = np.asarray(new_c, np.float32) if new_c else None
        # only what changes is copied, each array once (appending by vstack copied twice)
        t = _grown(self.text, nv)
        c = self.context
        if c is self.text and not edits and (nc is None or (nv is not None and np.array_equal(nc, nv))):
            c = t  # the context is still the text vectors
        elif nc is not None or prev:
            c = _grown(c, nc)
        st = None if self.stale is None else self.stale.copy()
        for k, iid, vec, cvec in edits:
            if iid in prev:
                c[k] += shift * ((vec - cvec) - (t[k] - prev[iid]))
                prev[iid] = np.asarray(cvec, np.float32)  # an id twice in one call
            t[k] = vec
            if st is not None:
                st[k] = False  # encoded now, under this version's adapter
        r, b = self.residual, self.bias
        if nv is not None:
            r = _grown(r, np.zeros_like(nv)) if self.has_residual else zero_rows(t.shape)
            b = np.concatenate([b, np.zeros(len(nv), np.float32)])
        ni, nw = self.nbr_idx, self.nbr_w
        if ni is not None and nw is not None and len(ids) > ni.shape[0]:
            pad = len(ids) - ni.shape[0]
            ni = np.vstack([ni, np.full((pad, ni.shape[1]), -1, ni.dtype)])
            nw = np.vstack([nw, np.zeros((pad, nw.shape[1]), nw.dtype)])
        if st is not None and len(ids) > len(st):
            st = np.concatenate([st, np.zeros(len(ids) - len(st), bool)])
        return ItemTable(
            ids,
            t,
            r,
            b,
            c,
            ni,
            nw,
            self.cooc_weight,
            self.age_edges,
            self.age_lograte,
            self.age_weight,
            st,
            self.context_shift,
            self.text_weight,
            self.pop_recent_share,
        )

    def with_text(self, rows: np.ndarray, text: np.ndarray) -> ItemTable:
        """A copy whose ``text`` rows ``rows`` are replaced (encoded under this version's
        adapter: no longer stale); every learned part stays.

        >>> t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
        >>> t = ItemTable(t.item_ids, t.text, t.residual, t.bias, t.context, stale=np.array([True, True]))
        >>> u = t.with_text(np.array([1]), np.array([[0.0, 2.0]], np.float32))
        >>> u.stale.tolist(), u.vectors[1].tolist(), t.vectors[1].tolist()
        ([True, False], [0.0, 2.0], [0.0, 1.0])
        """
        t = self.text.copy()
        t[rows] = text
        st = None if self.stale is None else self.stale.copy()
        if st is not None:
            st[rows] = False
        c = self.context
        if self.context_shift and c is not None:  # the context moves with the text
            c = c.copy()
            c[rows] += np.float32(self.context_shift) * (t[rows] - self.text[rows])
        return replace(self, text=t, stale=st, context=c)

    def with_text_weight(self, weight: float) -> ItemTable:
        """The same item parts with another blend (``text_weight``).

        >>> t = ItemTable.from_text(["a"], np.array([[1.0, 2.0]], np.float32)).with_text_weight(0.5)
        >>> t.vectors.tolist(), t.text.tolist()
        ([[0.5, 1.0]], [[1.0, 2.0]])
        """
        return replace(self, text_weight=float(weight))

    def with_pop_recent_share(self, share: float) -> ItemTable:
        """The same item parts with another mix of the popularity term (``pop_recent_share``).

        >>> ItemTable.from_text(["a"], np.ones((1, 2), np.float32)).with_pop_recent_share(0.5).pop_recent_share
        0.5
        """
        return replace(self, pop_recent_share=float(share))

    def with_cooc(self, nbr_idx: np.ndarray | None, nbr_w: np.ndarray | None, weight: float) -> ItemTable:
        """The same item parts with other co-engagement neighbours and weight."""
        return replace(self, nbr_idx=nbr_idx, nbr_w=nbr_w, cooc_weight=float(weight))


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` itself where it is a C-contiguous float32 or float16 array, else ``a`` as float32."""
    if isinstance(a, np.ndarray) and a.dtype in (np.float32, np.float16) and a.flags.c_contiguous:
        return a
    out: np.ndarray = np.ascontiguousarray(a, np.float32)
    return out


def zero_rows(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only float32 zero array of ``shape`` that takes no memory (a broadcast view):
    the residual of a table where nothing was learned.

    >>> z = zero_rows((1_000_000, 384))
    >>> z.shape, float(z.sum()), z.base.nbytes
    ((1000000, 384), 0.0, 4)
    """
    return np.broadcast_to(np.float32(0.0), shape)


def _is_zero(a: np.ndarray | None) -> bool:
    """``None``, empty, or a view made by :func:`zero_rows` (every element the one zero)."""
    if a is None:
        return True
    if not isinstance(a, np.ndarray):
        return False
    return a.size == 0 or (all(s == 0 for s in a.strides) and not a.flat[0])


def _grown(a: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """A new array: ``a`` with ``rows`` appended below (a copy of ``a`` when ``rows`` is None)."""
    if rows is None:
        same: np.ndarray = a.copy()
        return same
    dt = a.dtype if a.dtype == np.float16 else np.result_type(a, rows)  # a float16 table stays so
    out = np.empty((a.shape[0] + rows.shape[0],) + a.shape[1:], dt)
    out[: a.shape[0]] = a
    out[a.shape[0] :] = rows
    return out
