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
  blend in hindsight is the best of them.

    python experiments/popular_oracle.py --seed 0 [--events 20000] [--gammas 0.5,1,2,4] [--json]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--gammas", default="0.5,1,2,4")
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
    ] + [PopKNN(ids, float(g), pub) for g in a.gammas.split(",")]
    res = pq.run(s.events, systems, publications=None if pub is None else list(pub.values()))
    out = {n: round(pq.metrics(r.positions, 10)["hr"], 4) for n, r in res.systems.items()}
    for n, hr in out.items():
        print(f"{n:<20} HR@10 {hr:.4f}")
    if a.json:
        print(json.dumps({"seed": a.seed, "events": a.events, "hr_at_10": out}))


if __name__ == "__main__":
    main()
