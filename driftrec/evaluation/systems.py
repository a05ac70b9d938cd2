"""The systems ``driftrec eval`` runs side by side (:mod:`driftrec.evaluation.harness`).

:data:`ALL_SYSTEMS` run by default; each of :data:`VARIANTS` is ``driftrec`` with one
serving setting changed (its own encoder and learner, from the same seed: everything else
equal), run when named, so that a setting is compared in one pass over the same events:
``driftrec_index`` ranks from the candidate index (``ScorerConfig.candidates="index"``)
on any catalog size, ``driftrec_f16`` serves float16 item rows
(``ScorerConfig.item_storage="float16"``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from driftrec.stream import Event, Item

ALL_SYSTEMS = (
    "driftrec",
    "driftrec_no_lora",
    "frozen",
    "popularity",
    "recent_popularity",
    "newest",
    "content_tfidf",
    "item_knn",
    "river_mf",
)
#: ``driftrec`` with these :class:`~driftrec.scorer.ScorerConfig` fields changed (run when named).
VARIANTS: dict[str, dict[str, str]] = {
    "driftrec_index": {"candidates": "index"},
    "driftrec_f16": {"item_storage": "float16"},
}
#: Every name ``--systems`` accepts.
KNOWN_SYSTEMS = ALL_SYSTEMS + tuple(VARIANTS)


class ScorerSystem:
    """The scorer (and optionally a learner) behind the loop's small interface.

    Training is synchronous and deterministic: it runs when the learner's trigger fires, on
    events the scorer has already applied. An accepted version goes the way it goes in the
    services (:mod:`driftrec.app.adaptation`): written to the artifact store, announced,
    verified and prepared by the scorer's swap manager, and swapped in before the next batch.
    """

    def __init__(
        self, name: str, scorer: Any, learner: Any = None, swaps: Any = None, artifact_dir: str | None = None
    ) -> None:
        self.name = name
        self.scorer = scorer
        self.learner = learner
        self.users: dict[str, Any] = {}
        self.swaps: list[int] = []
        self.trainings: list[dict[str, Any]] = []
        self.train_s = 0.0
        self.adaptation: Any = None
        if learner is not None:
            from driftrec.app.adaptation import LocalAdaptation

            if swaps is None or artifact_dir is None:
                raise ValueError(
                    f"{name}: a system with a learner needs its swap manager and an artifact store"
                )
            self.adaptation = LocalAdaptation(
                learner, swaps, artifact_dir, scorer.model.manifest.get("base_model", "none")
            )

    def serving(self) -> dict[str, str]:
        """How the scorer serves now: ``path`` (``exact`` or ``index``) and the dtype of
        its item rows (``item_storage``)."""
        t = self.scorer.model.table
        index = self.scorer.candidates.active(len(t.item_ids))
        return {"path": "index" if index else "exact", "item_storage": t.text.dtype.name}

    def rank_many(self, users: Sequence[str], now: int, k: int) -> list[list[str]]:
        from driftrec.state import UserState

        states = [self.users.get(u) or UserState(u) for u in users]
        return [[i for i, _ in items] for items in self.scorer.rank_many(states, now, k)]

    def learn_many(self, events: Sequence[Event]) -> None:
        r = self.scorer.learn_many(events, self.users)
        self.users.update(r.users)
        L = self.learner
        if L is None:
            return
        L.observe_many(events)
        L.observe_hits([h for _, h in r.hits])
        t0 = time.perf_counter()
        res, swap = self.adaptation.maybe_train()
        if res is None:
            return
        self.train_s += time.perf_counter() - t0
        self.trainings.append(res.metrics)
        if swap is not None:
            self.swaps.append(max(e.ts for e in events))


# ---- building the systems -----------------------------------------------------------------
def build_systems(
    names: Sequence[str],
    items: Sequence[Item],
    *,
    model: str | None = None,
    cache_dir: str | None = None,
    learner_config: Any = None,
    rep: Any = None,
    scorer_config: Any = None,
    device: str = "auto",
    lora_r: int = 8,
    max_len: int = 32,
    seed: int = 0,
    artifact_dir: str | None = None,
    progress: Any = None,
) -> list[Any]:
    """The systems named in ``names``, ready for :func:`driftrec.evaluation.prequential.run`."""
    from driftrec.app.system import SystemSpec, build_system, publication_times
    from driftrec.learner import LearnerConfig
    from driftrec.model import Representation
    from driftrec.scorer import ScorerConfig

    from . import baselines

    unknown = [n for n in names if n not in KNOWN_SYSTEMS]
    if unknown:
        raise ValueError(f"unknown systems {unknown}; choose from {', '.join(KNOWN_SYSTEMS)}")
    ids = [it.item_id for it in items]
    texts = {it.item_id: it.text for it in items}
    pub = publication_times(items)  # an item is a candidate from its ts on, in every system
    lcfg = learner_config or LearnerConfig(seed=seed)
    # Seen items are excluded without a cap in the eval (every system alike).
    spec = SystemSpec(
        model=model,
        lora_r=lora_r,
        max_len=max_len,
        device=device,
        cache_dir=cache_dir,
        rep=rep or Representation(),
        scorer=scorer_config or ScorerConfig(seen_limit=1_000_000),
        learner=lcfg,
    )
    frozen = replace(spec, lora_r=0)  # the base encoder, no adapters
    out: list[Any] = []
    learning = ("driftrec", "driftrec_no_lora", *VARIANTS)
    need_enc = [n for n in names if n in ("frozen", *learning)]
    if artifact_dir is None and any(n in learning for n in names):
        artifact_dir = tempfile.mkdtemp(prefix="driftrec-eval-artifacts-")
    # one base table (and base encoder) shared by the three systems
    base = build_system(frozen, items, serve=False, learn=False, progress=progress) if need_enc else None
    shared: dict[str, Any] = {"encoder": base.encoder, "table": base.table} if base else {}
    for n in names:
        if n == "frozen":
            s = build_system(frozen, items, learn=False, standby=False, **shared)
            out.append(ScorerSystem(n, s.scorer))
        elif n == "driftrec_no_lora":
            cfg = replace(lcfg, use_lora=False, train_items=True)
            s = build_system(
                replace(frozen, learner=cfg), items, standby=False, trainer=None, background=False, **shared
            )
            out.append(ScorerSystem(n, s.scorer, s.learner, s.swaps, os.path.join(artifact_dir, n)))
        elif n == "driftrec" or n in VARIANTS:
            # its own encoder with adapters (seeded by the learner's seed) serves and trains
            cfg = replace(lcfg, use_lora=lora_r > 0)
            sp = replace(spec, learner=cfg)
            if n in VARIANTS:
                sp = replace(sp, scorer=replace(spec.scorer, **VARIANTS[n]))
            s = build_system(
                sp,
                items,
                standby=False,
                trainer="serving",
                background=False,
                table=shared["table"],
            )
            out.append(ScorerSystem(n, s.scorer, s.learner, s.swaps, os.path.join(artifact_dir, n)))
        elif n == "river_mf":
            out.append(baselines.RiverMF(ids, seed=seed, item_ts=pub))
        elif n == "content_tfidf":
            out.append(baselines.ContentTfidf(ids, texts=texts, item_ts=pub))
        else:
            out.append(baselines.BASELINES[n](ids, item_ts=pub))
    return out
