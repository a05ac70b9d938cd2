"""Baselines of the drift tests, run through the same prequential loop as driftrec.

- :class:`Popularity` - global counts of every event (all types count 1).
- :class:`RecentPopularity` - counts decayed by arrival order (half-life in events, so
  the same setting means the same thing on any log, whatever its clock).
- :class:`ItemKNN` - item co-occurrence (items engaged by the same user), cosine
  normalised; a user's score for item j is the sum of similarities of j to the user's
  recent items.
- :class:`RiverMF` - ``river.reco.BiasedMF`` trained online with one positive (the event)
  and sampled negatives per event; ranking reads its weights into numpy (exactly
  ``predict_one`` over the catalog, vectorised).

Every baseline ranks the catalog plus any item seen in the stream, and excludes the
items the user has engaged with.

Examples
--------
>>> from driftrec.stream import Event
>>> p = Popularity(["a", "b", "c"])
>>> p.learn_many([Event("1", "click", "u", "b", 1), Event("2", "click", "v", "c", 2)])
>>> p.learn_many([Event("3", "click", "w", "b", 3)])
>>> p.rank_many(["u", "x"], now=4, k=2)
[['c', 'a'], ['b', 'c']]
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from driftrec.stream import Event


class Catalog:
    """A growing item index: catalog items first, unknown stream items appended."""

    def __init__(self, item_ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        for i in item_ids:
            self.add(i)

    def add(self, item_id: str) -> int:
        k = self.index.get(item_id)
        if k is None:
            k = self.index[item_id] = len(self.ids)
            self.ids.append(item_id)
        return k

    def __len__(self) -> int:
        return len(self.ids)


def _grow(a: np.ndarray, n: int, fill: float = 0.0) -> np.ndarray:
    if a.shape[0] >= n:
        return a
    new = np.full((max(n, 2 * a.shape[0], 16),) + a.shape[1:], fill, a.dtype)
    new[: a.shape[0]] = a
    return new


def stable_top(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``k`` columns of ``S`` and their scores, best first; equal scores in
    catalog (column) order, so that a baseline's list does not depend on how a selection
    algorithm happens to order ties (counts tie often: many items have the same number of
    events). ``1 <= k <= S.shape[1]``; no NaN.

    Examples
    --------
    >>> stable_top(np.array([[1.0, 2.0, 1.0, 2.0, 1.0]]), 3)[0].tolist()
    [[1, 3, 0]]
    """
    B = S.shape[0]
    kth = -np.partition(-S, k - 1, axis=1)[:, k - 1:k]  # each row's k-th largest value
    above, tied = S > kth, S == kth
    need = k - above.sum(1, keepdims=True)  # how many of the tied ones make the cut: the first
    cols = np.nonzero(above | (tied & (np.cumsum(tied, axis=1) <= need)))[1].reshape(B, k)
    ps = np.take_along_axis(S, cols, 1)
    order = np.argsort(-ps, axis=1, kind="stable")  # cols ascending: ties stay in column order
    return np.take_along_axis(cols, order, 1), np.take_along_axis(ps, order, 1)


class _Base:
    """Seen-item bookkeeping and top-k over a score matrix, shared by the baselines."""

    name = "base"

    def __init__(self, item_ids: Iterable[str] = ()) -> None:
        self.cat = Catalog(item_ids)
        self.seen: dict[str, list[int]] = {}
        self._seen_set: dict[str, set[int]] = {}
        self.swaps: list[int] = []

    def _see(self, e: Event) -> tuple[int, bool]:
        k = self.cat.add(e.item_id)
        s = self._seen_set.setdefault(e.user_id, set())
        new = k not in s
        if new:
            s.add(k)
            self.seen.setdefault(e.user_id, []).append(k)
        return k, new

    def _top(self, S: np.ndarray, users: Sequence[str], k: int) -> list[list[str]]:
        n = len(self.cat)
        S = S[:, :n]
        for b, u in enumerate(users):
            ex = self.seen.get(u)
            if ex:
                S[b, ex] = -np.inf
        kk = min(k, n)
        if kk == 0:
            return [[] for _ in users]
        idx, ps = stable_top(S, kk)
        ok = np.isfinite(ps)
        ids = self.cat.ids
        return [[ids[j] for j, g in zip(row, good) if g] for row, good in zip(idx, ok)]


class Popularity(_Base):
    """Global popularity: every event adds one to its item."""

    name = "popularity"

    def __init__(self, item_ids: Iterable[str] = ()) -> None:
        super().__init__(item_ids)
        self.counts = np.zeros(max(16, len(self.cat)), np.float64)

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            k, _ = self._see(e)
            self.counts = _grow(self.counts, k + 1)
            self.counts[k] += 1.0

    def _scores(self, users: Sequence[str], now: int) -> np.ndarray:
        # Ties broken towards the catalog order (stable).
        return np.repeat(self.counts[None, :], len(users), 0)

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        return self._top(self._scores(users, now), users, k)


class RecentPopularity(Popularity):
    """Popularity with exponential decay by arrival order: an event counts
    ``0.5 ** (events since / half_life)``. Kept in log space (no overflow)."""

    name = "recent_popularity"

    def __init__(self, item_ids: Iterable[str] = (), half_life: float = 5_000.0) -> None:
        super().__init__(item_ids)
        self.half_life = float(half_life)
        self.counts = np.full(max(16, len(self.cat)), -np.inf, np.float64)
        self.n = 0

    def learn_many(self, events: Sequence[Event]) -> None:
        c = math.log(2.0) / self.half_life
        for e in events:
            k, _ = self._see(e)
            self.counts = _grow(self.counts, k + 1, -np.inf)
            self.counts[k] = np.logaddexp(self.counts[k], c * self.n)
            self.n += 1


class ItemKNN(_Base):
    """Item co-occurrence kNN.

    ``C[i, j]`` counts users who engaged with both i and j (each user-item pair once);
    similarity is cosine, ``C[i, j] / sqrt(n_i n_j)``; a user's score of j is the sum of
    similarities of j to the user's last ``recent`` distinct items (0 = all of them; on
    ML-100K 10 gives HR@10 0.190, 50 gives 0.171, all 0.167). Dense ``N x N``
    float32 (``max_items`` guards memory: 10,000 items = 400 MB).
    """

    name = "item_knn"

    def __init__(self, item_ids: Iterable[str] = (), recent: int = 10, max_items: int = 20_000) -> None:
        super().__init__(item_ids)
        self.recent = recent
        self.max_items = max_items
        n = max(16, len(self.cat))
        self.C = np.zeros((n, n), np.float32)
        self.n_i = np.zeros(n, np.float32)

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            prev = self.seen.get(e.user_id, [])
            k, new = self._see(e)
            if not new:
                continue
            if len(self.cat) > self.C.shape[0]:
                if len(self.cat) > self.max_items:
                    raise MemoryError(f"item_knn keeps a dense {self.max_items}^2 matrix; the stream "
                                      f"has more items: leave item_knn out with --systems")
                n = min(self.max_items, max(len(self.cat), 2 * self.C.shape[0]))
                C = np.zeros((n, n), np.float32)
                C[: self.C.shape[0], : self.C.shape[0]] = self.C
                self.C = C
                self.n_i = _grow(self.n_i, n)
            h = np.asarray(prev[:-1], np.int64)  # prev now ends with k
            if h.size:
                self.C[k, h] += 1.0
                self.C[h, k] += 1.0
            self.n_i[k] += 1.0

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        n = len(self.cat)
        inv = 1.0 / np.sqrt(np.maximum(self.n_i[:n], 1.0))
        S = np.zeros((len(users), n), np.float64)
        for b, u in enumerate(users):
            h = self.seen.get(u)
            if h:
                r = h[-self.recent:] if self.recent else h
                S[b] = inv[r] @ self.C[r, :n]  # gather the rows: O(len(r) * n)
        S *= inv[None, :]
        # Users without history (and ties): popularity, scaled below any co-occurrence.
        S += 1e-6 * (self.n_i[:n] / max(1.0, float(self.n_i[:n].max())))[None, :]
        return self._top(S, users, k)


class RiverMF(_Base):
    """``river.reco.BiasedMF`` on implicit feedback: the event's item is a 1, ``negatives``
    items sampled by popularity are 0s. Ranking = ``predict_one`` over the catalog, read
    from the model's weights (kept in a numpy mirror updated for every item it touches)."""

    name = "river_mf"

    def __init__(self, item_ids: Iterable[str] = (), n_factors: int = 16, negatives: int = 4,
                 lr: float = 0.05, l2: float = 0.001, seed: int = 0) -> None:
        from river import optim, reco

        super().__init__(item_ids)
        self.model = reco.BiasedMF(n_factors=n_factors, bias_optimizer=optim.SGD(lr),
                                   latent_optimizer=optim.SGD(lr), l2_bias=l2, l2_latent=l2,
                                   latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
                                   seed=seed)
        self.negatives = negatives
        self.rng = np.random.default_rng(seed)
        self.d = n_factors
        n = max(16, len(self.cat))
        self.Q = np.zeros((n, n_factors), np.float64)
        self.qb = np.zeros(n, np.float64)
        self._recent: list[int] = []  # a reservoir of recent item indexes, sampled for negatives

    def learn_many(self, events: Sequence[Event]) -> None:
        m = self.model
        touched: set[int] = set()
        for e in events:
            k, _ = self._see(e)
            u = e.user_id
            m.learn_one(u, e.item_id, 1.0)
            touched.add(k)
            if self._recent:
                seen = self._seen_set.get(u, set())
                rec = self._recent
                for r in self.rng.integers(0, len(rec), size=self.negatives):
                    j = rec[int(r)]
                    if j in seen:
                        continue
                    m.learn_one(u, self.cat.ids[j], 0.0)
                    touched.add(j)
            self._recent.append(k)
            if len(self._recent) > 20_000:
                del self._recent[:10_000]
        n = len(self.cat)
        self.Q = _grow(self.Q, n)
        self.qb = _grow(self.qb, n)
        for j in touched:
            iid = self.cat.ids[j]
            v = m.i_latents.get(iid)
            if v is not None:
                self.Q[j] = v
            self.qb[j] = m.i_biases.get(iid, 0.0)

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        m = self.model
        n = len(self.cat)
        P = np.zeros((len(users), self.d), np.float64)
        ub = np.zeros(len(users), np.float64)
        for b, u in enumerate(users):
            v = m.u_latents.get(u)
            if v is not None:
                P[b] = v
                ub[b] = m.u_biases.get(u, 0.0)
        S = P @ self.Q[:n].T + self.qb[None, :n] + ub[:, None]
        return self._top(S, users, k)


BASELINES = {"popularity": Popularity, "recent_popularity": RecentPopularity,
             "item_knn": ItemKNN, "river_mf": RiverMF}
