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
- :class:`Newest` - the most recently published items.
- :class:`ContentTfidf` - a decayed TF-IDF profile of the words of the items (and
  comments) a user engaged, cosine with each item's text.

Every baseline ranks the catalog plus any item seen in the stream, and excludes the
items the user has engaged with. Given ``item_ts`` (item id -> publication time), an item
is a candidate only from its time on (an item first seen in the stream: from then).

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
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from driftrec.model import top_k
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


class _Base:
    """Seen-item bookkeeping and top-k over a score matrix, shared by the baselines."""

    name = "base"

    def __init__(self, item_ids: Iterable[str] = (), item_ts: Mapping[str, int] | None = None) -> None:
        self.cat = Catalog(item_ids)
        self.seen: dict[str, list[int]] = {}
        self._seen_set: dict[str, set[int]] = {}
        self.swaps: list[int] = []
        # publication times by catalog row (-inf: unknown, always a candidate)
        self.pub = np.full(max(16, len(self.cat)), -np.inf)
        if item_ts:
            self.pub[: len(self.cat)] = [item_ts.get(i, -np.inf) for i in self.cat.ids]
        self._pub_max = float(self.pub.max())

    def _see(self, e: Event) -> tuple[int, bool]:
        n = len(self.cat)
        k = self.cat.add(e.item_id)
        if k == n:  # first seen in the stream: published by now
            self.pub = _grow(self.pub, k + 1, -np.inf)
            self.pub[k] = e.ts
        s = self._seen_set.setdefault(e.user_id, set())
        new = k not in s
        if new:
            s.add(k)
            self.seen.setdefault(e.user_id, []).append(k)
        return k, new

    def _top(self, S: np.ndarray, users: Sequence[str], k: int, now: int | None = None) -> list[list[str]]:
        n = len(self.cat)
        S = S[:, :n]
        if now is not None and now < self._pub_max:  # not yet published: not a candidate
            S[:, self.pub[:n] > now] = -np.inf
        for b, u in enumerate(users):
            ex = self.seen.get(u)
            if ex:
                S[b, ex] = -np.inf
        kk = min(k, n)
        if kk == 0:
            return [[] for _ in users]
        idx, ps = top_k(S, kk, stable=True)
        ok = np.isfinite(ps)
        ids = self.cat.ids
        return [[ids[j] for j, g in zip(row, good) if g] for row, good in zip(idx, ok)]


class Popularity(_Base):
    """Global popularity: every event adds one to its item."""

    name = "popularity"

    def __init__(self, item_ids: Iterable[str] = (), item_ts: Mapping[str, int] | None = None) -> None:
        super().__init__(item_ids, item_ts)
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
        return self._top(self._scores(users, now), users, k, now)


class RecentPopularity(Popularity):
    """Popularity with exponential decay by arrival order: an event counts
    ``0.5 ** (events since / half_life)``. Kept in log space (no overflow)."""

    name = "recent_popularity"

    def __init__(
        self,
        item_ids: Iterable[str] = (),
        half_life: float = 5_000.0,
        item_ts: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(item_ids, item_ts)
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

    def __init__(
        self,
        item_ids: Iterable[str] = (),
        recent: int = 10,
        max_items: int = 20_000,
        item_ts: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(item_ids, item_ts)
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
                    raise MemoryError(
                        f"item_knn keeps a dense {self.max_items}^2 matrix; the stream "
                        f"has more items: leave item_knn out with --systems"
                    )
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
                r = h[-self.recent :] if self.recent else h
                S[b] = inv[r] @ self.C[r, :n]  # gather the rows: O(len(r) * n)
        S *= inv[None, :]
        # Users without history (and ties): popularity, scaled below any co-occurrence.
        S += 1e-6 * (self.n_i[:n] / max(1.0, float(self.n_i[:n].max())))[None, :]
        return self._top(S, users, k, now)


class RiverMF(_Base):
    """``river.reco.BiasedMF`` on implicit feedback: the event's item is a 1, ``negatives``
    items sampled by popularity are 0s. Ranking = ``predict_one`` over the catalog, read
    from the model's weights (kept in a numpy mirror updated for every item it touches)."""

    name = "river_mf"

    def __init__(
        self,
        item_ids: Iterable[str] = (),
        n_factors: int = 16,
        negatives: int = 4,
        lr: float = 0.05,
        l2: float = 0.001,
        seed: int = 0,
        item_ts: Mapping[str, int] | None = None,
    ) -> None:
        from river import optim, reco

        super().__init__(item_ids, item_ts)
        self.model = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(lr),
            latent_optimizer=optim.SGD(lr),
            l2_bias=l2,
            l2_latent=l2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
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
        return self._top(S, users, k, now)


class Newest(_Base):
    """The most recently published items (catalog ``ts``; an item first seen in the stream
    counts as published then), newest first; equal times in catalog order.

    Examples
    --------
    >>> n = Newest(["a", "b", "c"], item_ts={"a": 5, "b": 30, "c": 20})
    >>> n.learn_many([Event("1", "click", "u", "c", 25)])
    >>> n.rank_many(["u", "v"], now=25, k=3)  # b is not published at 25
    [['a'], ['c', 'a']]
    """

    name = "newest"

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self._see(e)

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        n = len(self.cat)
        S = np.repeat(np.nan_to_num(self.pub[None, :n], neginf=-1e300), len(users), 0)
        return self._top(S, users, k, now)


_WORD = re.compile(r"\w+")


class ContentTfidf(_Base):
    """A decayed TF-IDF profile of what a user engaged, cosine with each item's text.

    A user's profile is the sum of the term counts of the items they engaged (and of the
    text of their comments), weighted by event type (``type_weights``) and decayed by
    ``0.5 ** (1 / half_life)`` per later event of the user. An item is scored by the cosine
    of ``profile * idf`` and ``counts * idf``, with ``idf = ln((1 + n) / (1 + df)) + 1`` over
    the ``n`` items published so far (``df``: those whose text has the word). A new word
    counts the moment a user engages an item (or writes a comment) that has it. Ties (a
    user without a profile) go to the more engaged item.

    Examples
    --------
    >>> c = ContentTfidf(["a", "b", "c"], texts={"a": "zorvik live clip", "b": "zorvik new",
    ...                                          "c": "guitar live"})
    >>> c.learn_many([Event("1", "like", "u", "a", 1)])
    >>> c.rank_many(["u"], now=2, k=2)
    [['b', 'c']]
    """

    name = "content_tfidf"

    def __init__(
        self,
        item_ids: Iterable[str] = (),
        texts: Mapping[str, str] | None = None,
        item_ts: Mapping[str, int] | None = None,
        half_life: float = 20.0,
        type_weights: Mapping[str, float] | None = None,
    ) -> None:
        from scipy import sparse

        super().__init__(item_ids, item_ts)
        texts = texts or {}
        self.vocab: dict[str, int] = {}
        rows, cols = [], []
        for r, iid in enumerate(self.cat.ids):
            for w in _WORD.findall(texts.get(iid, "").lower()):
                rows.append(r)
                cols.append(self.vocab.setdefault(w, len(self.vocab)))
        n = len(self.cat)
        # term counts of the catalog's texts [n_items, n_words] (duplicates summed)
        self.tf = sparse.csr_matrix(
            (np.ones(len(rows), np.float64), (rows, cols)), shape=(n, max(1, len(self.vocab)))
        )
        self.tf.sum_duplicates()
        self._order = np.argsort(self.pub[:n], kind="stable")  # publication order
        self._published = 0  # items of self._order counted in df
        self.df = np.zeros(max(1, len(self.vocab)), np.float64)
        self.half_life = float(half_life)
        self.type_weights = dict(type_weights or {"click": 1.0, "like": 2.0, "comment": 3.0})
        # per user: term weights, stored divided by the decay of the user's events so far
        # (one multiplication per word instead of decaying the whole profile per event)
        self.profiles: dict[str, dict[int, float]] = {}
        self._scale: dict[str, float] = {}
        self.counts = np.zeros(max(16, n), np.float64)
        self._X: tuple[int, object, np.ndarray] | None = None  # (published, tf * idf, norms)

    def _publish(self, now: int) -> None:
        """Count the words of every item published by ``now`` into ``df``."""
        order, pub = self._order, self.pub
        j = self._published
        while j < len(order) and pub[order[j]] <= now:
            j += 1
        if j > self._published:
            rows = self.tf[order[self._published : j]]
            np.add.at(self.df, rows.indices, 1.0)
            self._published = j

    def learn_many(self, events: Sequence[Event]) -> None:
        grow = 0.5 ** (-1.0 / self.half_life)
        tf, vocab = self.tf, self.vocab
        for e in events:
            k, _ = self._see(e)
            self.counts = _grow(self.counts, k + 1)
            self.counts[k] += 1.0
            prof = self.profiles.setdefault(e.user_id, {})
            scale = self._scale.get(e.user_id, 1.0) * grow
            if scale > 1e100:  # renormalise (a uniform factor: the cosine does not see it)
                for w in prof:
                    prof[w] /= scale
                scale = 1.0
            self._scale[e.user_id] = scale
            tw = self.type_weights.get(e.type, 1.0) * scale
            if k < tf.shape[0]:
                lo, hi = tf.indptr[k], tf.indptr[k + 1]
                for w, c in zip(tf.indices[lo:hi].tolist(), tf.data[lo:hi].tolist()):
                    prof[w] = prof.get(w, 0.0) + tw * c
            if e.text:
                for word in _WORD.findall(e.text.lower()):
                    w = vocab.setdefault(word, len(vocab))
                    prof[w] = prof.get(w, 0.0) + tw

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        self._publish(now)
        n_items, n_words = self.tf.shape
        idf = np.log((1.0 + self._published) / (1.0 + self.df)) + 1.0
        if self._X is None or self._X[0] != self._published:
            X = self.tf.multiply(idf[None, :]).tocsr()  # [n_items, n_words]
            self._X = (self._published, X, np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel()))
        _, X, norm = self._X
        P = np.zeros((len(users), n_words), np.float64)
        for b, u in enumerate(users):
            for w, v in self.profiles.get(u, {}).items():
                if w < n_words:  # words only comments have: no item matches them
                    P[b, w] = v
        S = np.zeros((len(users), len(self.cat)), np.float64)
        S[:, :n_items] = np.asarray(X @ (P * idf[None, :]).T).T / np.maximum(norm, 1e-12)[None, :]
        pn = np.linalg.norm(P * idf[None, :], axis=1)
        S /= np.maximum(pn, 1e-12)[:, None]
        n = len(self.cat)
        S += 1e-6 * (self.counts[:n] / max(1.0, float(self.counts[:n].max())))[None, :]
        return self._top(S, users, k, now)


BASELINES = {
    "popularity": Popularity,
    "recent_popularity": RecentPopularity,
    "item_knn": ItemKNN,
    "river_mf": RiverMF,
    "newest": Newest,
    "content_tfidf": ContentTfidf,
}
