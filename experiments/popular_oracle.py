"""How far above popularity can any ranker go on the ``popular`` scenario? Reference runs.

The ``popular`` scenario (a shop known by product codes and variant strings) draws three
quarters of each user's engagements by global popularity and the rest by popularity within
one of the user's departments. This script runs the prequential loop of ``driftrec eval``
with rankers that know what only engagement reveals, beside the counting baselines:

- ``bayes``: the generator's own probabilities (the true popularity weights, before and
  after the shift, and each user's departments): the best any ranker could do in
  expectation;
- ``pop_knn_G``: recent popularity (``log1p`` of counts decayed with a half-life of 5,000
  events) plus ``G`` times item-kNN's score (what co-engagement learned from the stream
  can add to counting), for each ``G`` of ``--gammas``, fixed over the run: the best fixed
  blend in hindsight is the best of them;
- ``taste_B``: recent popularity plus ``log1p(B * lift)`` of each item's department for
  the user, where the item departments are the generator's but each user's departments
  are inferred from the user's history (the share of the history in a department beyond
  what global draws put there, over that department's share of popularity): what
  engagement could add if the items' departments were known;
- ``factors``: recent popularity plus a factor model learned from the stream, with
  popularity as its offset (the user vector the mean of the history's context vectors,
  as driftrec's; ``--dim`` dimensions, trained from scratch every ``--retrain`` events on
  every event so far, ``--epochs`` passes): what a model that must learn the departments from
  engagement adds.

    python experiments/popular_oracle.py --seed 0 [--events 20000] [--gammas 0.5,1,2,4]
        [--tastes 0.5,1] [--dim 32 --epochs 3 --retrain 1000] [--json]

Prints HR@10 of every ranker (and with ``--json`` a JSON line of them).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence

import numpy as np

from driftrec.app.system import publication_times
from driftrec.evaluation import baselines as B
from driftrec.evaluation import prequential as pq
from driftrec.stream import Event
from driftrec.stream.synthetic import generate


class Bayes(B._Base):
    """Ranks by the generator's probability of each item for the user."""

    name = "bayes"

    def __init__(self, ids: list[str], truth: dict, shift_ts: int, item_ts: dict[str, int] | None) -> None:
        super().__init__(ids, item_ts=item_ts)
        self.share, self.shift_ts = truth["share"], shift_ts
        self.w = [np.array([truth[k][i] for i in ids]) for k in ("weight", "weight_after")]
        self.dept = np.array([truth["department"][i] for i in ids])
        self.user_depts = truth["departments"]

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self._see(e)

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        w = self.w[int(now >= self.shift_ts)]
        S = np.empty((len(users), len(w)))
        for b, u in enumerate(users):
            ds = self.user_depts[u]
            p = self.share * w / w.sum()
            for d in ds:
                m = self.dept == d
                p = p + (1 - self.share) / len(ds) * np.where(m, w, 0.0) / max(w[m].sum(), 1e-12)
            S[b] = p
        return self._top(S, users, k, now)


class PopKNN(B.ItemKNN):
    """Recent popularity plus ``gamma`` times item-kNN's score."""

    def __init__(
        self, ids: list[str], gamma: float, item_ts: dict[str, int] | None, half_life: float = 5000.0
    ):
        super().__init__(ids, item_ts=item_ts)
        self.name, self.gamma, self.c = f"pop_knn_{gamma:g}", gamma, math.log(2.0) / half_life
        self.acc = np.full(max(16, len(self.cat)), -np.inf)
        self.n = 0

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            super().learn_many([e])
            k = self.cat.index[e.item_id]
            self.acc = B._grow(self.acc, k + 1, -np.inf)
            self.acc[k] = np.logaddexp(self.acc[k], self.c * self.n)
            self.n += 1

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        n = len(self.cat)
        inv = 1.0 / np.sqrt(np.maximum(self.n_i[:n], 1.0))
        S = np.zeros((len(users), n))
        for b, u in enumerate(users):
            h = self.seen.get(u)
            if h:
                r = h[-self.recent :]
                S[b] = inv[r] @ self.C[r, :n]
        S *= inv[None, :]
        lp = np.logaddexp(0.0, self.acc[:n] - self.c * self.n)
        return self._top(lp[None, :] + self.gamma * S, users, k, now)


class _Recent(B.RecentPopularity):
    """``B.RecentPopularity`` counting one event at a time (``count``), with the ``log1p``
    of its counts now (``lp``) for the rankers below to add to."""

    def __init__(self, ids: list[str], item_ts: dict[str, int] | None) -> None:
        super().__init__(ids, item_ts=item_ts)

    def count(self, e: Event) -> int:
        super().learn_many([e])
        return self.cat.index[e.item_id]

    def lp(self) -> np.ndarray:
        n = len(self.cat)
        return np.asarray(np.logaddexp(0.0, self.counts[:n] - math.log(2.0) / self.half_life * self.n))


class Taste(_Recent):
    """Recent popularity plus ``log1p(beta * lift)`` of the item's department for the user:
    the true item departments, each user's departments inferred from the history."""

    def __init__(self, ids: list[str], truth: dict, beta: float, item_ts: dict[str, int] | None) -> None:
        super().__init__(ids, item_ts)
        self.name, self.beta, self.global_share = f"taste_{beta:g}", beta, truth["share"]
        self.dept = np.array([truth["department"][i] for i in ids])
        w = np.array([truth["weight"][i] for i in ids])
        self.dept_share = np.bincount(self.dept, weights=w) / w.sum()

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            self.count(e)

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        lp, D = self.lp(), len(self.dept_share)
        S = np.repeat(lp[None, :], len(users), axis=0)
        for b, u in enumerate(users):
            h = self.seen.get(u)
            if h:
                c = np.bincount(self.dept[h[-50:]], minlength=D) / len(h[-50:])
                lift = np.maximum(c - self.global_share * self.dept_share, 0.0) / self.dept_share
                S[b] += np.log1p(self.beta * lift[self.dept])
        return self._top(S, users, k, now)


class Factors(_Recent):
    """Recent popularity plus a factor model learned from the stream with popularity as its
    offset: ``u . v_i`` with ``u`` the mean of the history's (last 50) context vectors,
    trained by softmax over the catalog (seen items masked, the pair's popularity added to
    the logits) on every event so far, every ``retrain`` events."""

    name = "factors"

    def __init__(self, ids: list[str], item_ts: dict[str, int] | None, dim: int, epochs: int, retrain: int):

        super().__init__(ids, item_ts)
        self.dim, self.epochs, self.retrain = dim, epochs, retrain
        self.C, self.V = self._init(0)
        self.pairs: list[tuple[list[int], int, np.ndarray]] = []

    def _init(self, seed: int):  # type: ignore[no-untyped-def]
        import torch

        g = torch.Generator().manual_seed(seed)
        N = len(self.cat.ids)
        C = (torch.randn(N + 1, self.dim, generator=g) * 0.1).requires_grad_()
        return C, (torch.randn(N, self.dim, generator=g) * 0.1).requires_grad_()

    def learn_many(self, events: Sequence[Event]) -> None:
        for e in events:
            h = list(self.seen.get(e.user_id, []))[-50:]
            if h:
                self.pairs.append((h, self.cat.index[e.item_id], self.lp().astype(np.float32)))
            self.count(e)
            if self.n % self.retrain == 0:
                self._train()

    def _batch(self, rows: list[tuple[list[int], int, np.ndarray]]):  # type: ignore[no-untyped-def]
        import torch

        N, H = len(self.cat.ids), 50
        idx = np.full((len(rows), H), N)
        for b, (h, _, _) in enumerate(rows):
            idx[b, : len(h)] = h
        ix = torch.from_numpy(idx)
        u = self.C[ix].sum(1) / (ix < N).sum(1, keepdim=True).clamp(min=1)
        mask = torch.zeros(len(rows), N + 1, dtype=torch.bool).scatter_(1, ix, True)[:, :N]
        return u, mask

    def _train(self) -> None:
        import torch

        self.C, self.V = self._init(self.n)  # from scratch: passes over old events do not pile up
        opt = torch.optim.Adam([self.C, self.V], lr=0.01)
        rng = np.random.default_rng(self.n)
        for _ in range(self.epochs):
            order = rng.permutation(len(self.pairs))
            for s in range(0, len(order), 512):
                rows = [self.pairs[j] for j in order[s : s + 512]]
                u, mask = self._batch(rows)
                tgt = torch.tensor([r[1] for r in rows])
                mask[torch.arange(len(rows)), tgt] = False
                prior = torch.from_numpy(np.stack([r[2] for r in rows]))
                logits = (prior + u @ self.V.T).masked_fill(mask, -1e9)
                loss = torch.nn.functional.cross_entropy(logits, tgt)
                opt.zero_grad()
                loss.backward()
                opt.step()

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        import torch

        lp = self.lp()
        S = np.repeat(lp[None, :], len(users), axis=0)
        rows = [(list(self.seen.get(u, []))[-50:], 0, lp) for u in users]
        with torch.no_grad():
            u, _ = self._batch(rows)
            S += (u @ self.V.T).numpy()
        return self._top(S, users, k, now)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--gammas", default="0.5,1,2,4")
    ap.add_argument("--tastes", default="0.5,1", help="the B of each taste_B ranker ('' = none)")
    ap.add_argument("--dim", type=int, default=32, help="the factor model's dimensions (0 = no factor model)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--retrain", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    s = generate("popular", n_events=a.events, seed=a.seed)
    ids = [it.item_id for it in s.items]
    pub = publication_times(s.items)
    systems = [
        Bayes(ids, s.truth, s.shift_ts, pub),
        B.Popularity(ids, item_ts=pub),
        B.RecentPopularity(ids, item_ts=pub),
        B.ItemKNN(ids, item_ts=pub),
    ] + [PopKNN(ids, float(g), pub) for g in a.gammas.split(",") if g]
    systems += [Taste(ids, s.truth, float(b), pub) for b in a.tastes.split(",") if b]
    if a.dim:
        systems.append(Factors(ids, pub, a.dim, a.epochs, a.retrain))
    res = pq.run(s.events, systems, publications=None if pub is None else list(pub.values()))
    out = {n: round(pq.metrics(r.positions, 10)["hr"], 4) for n, r in res.systems.items()}
    for n, hr in out.items():
        print(f"{n:<20} HR@10 {hr:.4f}")
    if a.json:
        print(json.dumps({"seed": a.seed, "events": a.events, "hr_at_10": out}))


if __name__ == "__main__":
    main()
