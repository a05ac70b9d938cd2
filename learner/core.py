"""The learner core: rolling window -> pairs -> LoRA + item micro-fine-tune -> gate.

Pure over batches: it observes events already applied by the scorer, trains when a
trigger fires (:mod:`.triggers`) and returns a :class:`TrainResult`; writing and
announcing the artifact is the caller's job (see :mod:`driftrec.model.artifacts`). A
training round (:meth:`Learner.train`) runs the stages of :mod:`.training` and decides
with the rules of :mod:`.gate`; the freshness prior it may ship is :mod:`.age`'s.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.stream import Event, Item

from .age import AgeFit, best_age_weight, cross_fit, with_age
from .blend import Validation, calibrate, fit_blend
from .candidate import encode_rows, shifted
from .catalog import LearnerExpiry, add_items, remove_items
from .config import LearnerConfig
from .gate import better, means, paired_gain, popular_instead, rank_each, unseen
from .neighbours import Neighbours
from .pairs import Pair, pair_arrays, pair_tensors, split
from .popularity import LivePopularity, PopAt
from .sample import RoundSample, expanded, on_sample
from .training import Round, RoundLog
from .triggers import Triggers
from .windows import RollingWindow


@dataclass
class TrainResult:
    """A training round's outcome: whether the candidate ``table`` (with the adapter
    weights ``lora``) beat the serving version, what the round measured, the window it
    trained on (``from_ts``, ``to_ts``, ``n_events``) and why it ran."""

    accepted: bool
    table: ItemTable
    lora: dict[str, Any]
    metrics: dict[str, Any]
    window: dict[str, int]
    reason: str = ""


class Learner:
    """Adapts the model to the recent stream.

    Parameters
    ----------
    config : window, triggers, optimiser and gate settings
    rep : the user representation shared with the scorer
    table : the current version's item table (text vectors under the current adapter)
    texts : item id -> text, the catalog the encoder reads
    encoder : the trainable encoder (None = train item residuals and biases only)
    item_ts : item id -> publication time (ms): validation ranks an item only from its
        time on, and the freshness prior is learned from items' ages (None: no times)
    """

    def __init__(
        self,
        config: LearnerConfig,
        rep: Representation,
        table: ItemTable,
        texts: Mapping[str, str],
        encoder: TextEncoder | None = None,
        item_ts: Mapping[str, int] | None = None,
    ) -> None:
        self.config = config
        self.rep = rep
        self.table = table
        self.texts = dict(texts)
        #: items deleted from the catalog (remove_items): no training target, no popularity
        self.removed: set[str] = set()
        self.item_ts: dict[str, int] = dict(item_ts or {})
        #: item expiry (``config.item_max_age_ms``; None: off), :mod:`.catalog`
        self.expiry = LearnerExpiry(config.item_max_age_ms, self.item_ts) if config.item_max_age_ms else None
        self.encoder = encoder if config.use_lora else None
        self._lora = encoder.lora_state() if (encoder is not None and config.use_lora) else {}
        self.window: RollingWindow[Pair] = RollingWindow(config.window_events, config.window_ms)
        self._hist: dict[str, deque[tuple[str, str, int]]] = {}
        self._seen: dict[str, set[str]] = {}
        #: both popularity terms; validation sees them as each pair did
        self.popularity = LivePopularity(rep, config.window_events, config.pop_recent_evidence)
        self.triggers = Triggers(config)
        #: co-engagement mined from the stream, shipped as neighbours (None: off)
        self.neighbours = (
            Neighbours(config.cooc_history, config.cooc_neighbours, config.window_events)
            if config.cooc_neighbours
            else None
        )
        self.trainings = 0
        self.last_ts = 0
        self.n_events = 0
        #: the newest event time the serving version was built from (None: base, or unknown):
        #: a candidate is compared with it only on validation pairs newer than that
        self.served_to_ts: int | None = None
        #: item id -> base-encoder text vector, while ``context_shift`` is on (see train)
        self._base_text: dict[str, np.ndarray] = {}
        #: the sample of the catalog the round in progress works on (None: all of it)
        self._sample: RoundSample | None = None

    # ---- observing -------------------------------------------------------------------
    def observe_many(self, events: Sequence[Event]) -> None:
        """Record events (already applied by the scorer) into the window as pairs."""
        rep = self.rep
        for e in sorted(events, key=lambda x: x.ts):
            h = self._hist.setdefault(e.user_id, deque(maxlen=rep.history))
            seen = self._seen.setdefault(e.user_id, set())
            repeat = e.item_id in seen
            if h:
                w = rep.weights([x[1] for x in h], [x[2] for x in h], e.ts)
                pair = Pair(tuple(x[0] for x in h), w, e.item_id, e.ts, repeat)
            else:
                pair = Pair((), np.zeros(0, np.float32), e.item_id, e.ts, repeat)
            self.window.add(e.ts, pair)
            h.append((e.item_id, e.type, e.ts))
            if self.neighbours is not None:
                self.neighbours.observe(e.user_id, e.item_id, e.ts)
            seen.add(e.item_id)
            self.triggers.observe(e.item_id, self.texts)
            self.popularity.add(e)
            self.last_ts = max(self.last_ts, e.ts)
            self.n_events += 1
        if self.expiry is not None:
            self.expiry.advance(self)

    def forget_users(self, user_ids: Sequence[str]) -> None:
        """Drop what the learner holds per user (history, seen items, co-engagement); their
        window pairs go through ``window.retain`` by the caller, who knows whose each is."""
        for u in user_ids:
            self._hist.pop(u, None)
            self._seen.pop(u, None)
            if self.neighbours is not None:
                self.neighbours.forget_user(u)

    def observe_hits(self, hits: Sequence[bool]) -> bool:
        """Feed the live hit signal; returns True when drift was detected."""
        return self.triggers.observe_hits(hits)

    def due(self) -> str | None:
        """Why a training should run now ("drift", "novelty", "new_words", "every_n") or None."""
        return self.triggers.due(len(self.window))

    def new_word_jump(self) -> float:
        """The rise of the new-words share that fires that trigger now
        (:meth:`Triggers.new_word_jump`)."""
        return self.triggers.new_word_jump()

    @property
    def since_train(self) -> int:
        """Events observed since the last training (towards ``train_every``); a caller that
        replays events already trained on before a restart may lower it."""
        return self.triggers.since_train

    @since_train.setter
    def since_train(self, n: int) -> None:
        self.triggers.since_train = n

    def remove_items(self, item_ids: Sequence[str]) -> None:
        """Items deleted from the catalog (an items-topic tombstone): no longer a training
        target nor counted as popular. Their rows stay in the table (every scorer masks a
        deleted id, in every version); publishing an item again brings it back."""
        remove_items(self, item_ids)

    def skip_day_one(self) -> None:
        """No calibration rounds (:mod:`.blend`): a version trained on this stream may be
        serving (a restarted learner), and a calibrated base version must not replace it."""
        self.triggers.day_one_events = None

    def add_items(self, items: Sequence[Item]) -> None:
        """New or changed catalog items, encoded under the current adapter."""
        add_items(self, items)

    # ---- training --------------------------------------------------------------------
    def train(self, reason: str = "manual", progress: Any = None) -> TrainResult:
        """Fine-tune on the window in two stages; gate the candidate against the current version.

        1. The item parts (target residuals and biases, context vectors) on the window: cheap,
           every training.
        2. The LoRA adapters on top of those item parts (held fixed), every ``lora_every``-th
           training and on every drift, novelty or new-words trigger. The adapter update
           must beat stage 1 alone on the same validation pairs by ``lora_gate_z`` standard
           errors, else it is dropped and the serving adapter stays: what the adapters add
           is measured against the same item parts, not assumed.
        3. The weights of co-engagement and of the freshness prior, picked on validation.

        The candidate must then beat the current version (``min_gain``). A candidate that
        passes both checks with a kept adapter update then trains the adapters
        ``lora_catchup`` more passes over the validation pairs before it is shipped (the
        newest pairs, where a name engaged since the last round mostly is).
        """
        if reason == "day_one":
            return self._calibrate()
        t0 = time.perf_counter()
        rng = self._start_round()
        pairs, window = self._window_pairs()
        if len(pairs) - max(1, int(len(pairs) * self.config.val_share)) < 2:
            why = {"pairs": len(pairs), "why": "too few pairs"}
            return TrainResult(False, self.table, self._lora, why, window, reason)
        with on_sample(self, pairs, rng) as smp:
            res = self._train(reason, pairs, window, rng, progress, t0)
        if smp is not None:
            res.table = expanded(self, smp, res.table)
            res.metrics["round_items"] = len(smp.rows)
        return res

    def _train(
        self, reason: str, pairs: list[Pair], window: dict[str, int], rng: Any, progress: Any, t0: float
    ) -> TrainResult:
        """:meth:`train` over the round's table: the catalog, or the sample of it the round
        works on (:mod:`.sample`)."""
        cfg, enc = self.config, self.encoder
        train_p, val_p = split(pairs, cfg.val_share)
        cur = self.table if self._sample is None else self._sample.table
        device = enc.device if enc is not None else "cpu"
        log = RoundLog(reason, len(pairs), len(train_p), len(val_p), device, use_lora=enc is not None)
        val = self._validation(val_p, cur)
        run = self._round(cur, train_p, rng, progress)
        log.loss_before = run.loss(cur)

        items_only, age_fit, e_items = self._item_stage(run, train_p, val, log, t0)
        cand, lora = items_only, dict(self._lora)
        if self._adapter_round(reason, train_p, log):
            assert enc is not None
            kept = self._adapter_stage(run, enc, items_only, e_items, val, age_fit, log)
            if kept is not None:
                cand, lora = kept, enc.lora_state()
        cand = self._weights_stage(cand, val, age_fit, log)
        log.train_s = time.perf_counter() - t0 - log.encode_s
        log.loss_after = run.loss(cand)

        log.accepted, cand = self._against_serving(cur, cand, val, age_fit, log)
        log.new_word_jump, log.context_shift = self.new_word_jump(), cand.context_shift
        log.text_weight, log.pop_recent_share = cand.text_weight, cand.pop_recent_share
        metrics = log.metrics(run.steps)
        if log.adapter_update == "kept":
            assert enc is not None
            if not log.accepted:
                enc.load_lora_state(self._lora)  # back to the serving adapter
            elif cfg.lora_catchup > 0:
                cand, lora = self._catch_up(run, enc, items_only, cand, val_p, log, metrics)
        return TrainResult(log.accepted, cand, lora, metrics, window, reason)

    def _calibrate(self) -> TrainResult:
        """A calibration round (before the first training, :mod:`.blend`): the serving
        table's text weight picked on every pair of the window (nothing is trained: all of
        them validate), served where it beats the serving one beyond noise. Its cost is
        the metrics' ``train_s``."""
        t0 = time.perf_counter()
        self.triggers.calibrated()
        pairs, window = self._window_pairs()
        cur, enc = self.table, self.encoder
        device = enc.device if enc is not None else "cpu"
        log = RoundLog("day_one", len(pairs), 0, len(pairs), device, use_lora=enc is not None)
        if not pairs or not (self.config.text_weights or self.config.pop_recent_shares):
            why = {"pairs": len(pairs), "why": "nothing to calibrate"}
            return TrainResult(False, cur, self._lora, why, window, "day_one")
        with on_sample(self, pairs, np.random.default_rng(self.config.seed + self.n_events)) as smp:
            sub = cur if smp is None else smp.table
            cand = calibrate(sub, self._validation(pairs, sub), self.config, log)
        if smp is not None:
            cand = cur if cand is sub else expanded(self, smp, cand)
        log.train_s = time.perf_counter() - t0
        return TrainResult(log.accepted, cand, self._lora, log.metrics(0), window, "day_one")

    def _start_round(self) -> np.random.Generator:
        """Count the round, reset the triggers and seed the round's random draws."""
        import torch

        self.triggers.started()
        self.trainings += 1
        torch.manual_seed(self.config.seed + self.trainings)
        return np.random.default_rng(self.config.seed + self.trainings)

    def _window_pairs(self) -> tuple[list[Pair], dict[str, int]]:
        """The window's pairs a round learns from, and the window's span."""
        # Re-engagements cannot be recommended (seen items are excluded): not trained on.
        removed = self.removed
        pairs = [
            p.value
            for p in self.window
            if not p.value.repeat and self.table.index(p.value.target) >= 0 and p.value.target not in removed
        ]
        lo, hi = self.window.span()
        return pairs, {"from_ts": lo, "to_ts": hi, "n_events": len(self.window)}

    def _round(
        self, cur: ItemTable, train_p: Sequence[Pair], rng: np.random.Generator, progress: Any
    ) -> Round:
        """The round's trainable state over ``cur`` and the training pairs."""
        import torch

        prior_np = self.popularity.prior(cur, self._pop_vector(cur), self.last_ts)
        smp = self._sample
        if smp is not None:  # a sampled row stands for ``weight`` rows of the catalog
            prior_np = prior_np + smp.log_weight
        prior = torch.from_numpy(prior_np)
        ctx_idx, ctx_w, tgt = pair_tensors(train_p, cur)
        # an item is no negative of a pair before its publication: else every post
        # published after the training pairs (the ones the next events go to) is pushed
        # away from every user by each step, and it is served with that
        pub_t = torch.from_numpy(self._pub_vector(cur)) if self.item_ts else None
        ts_t = torch.tensor([p.ts for p in train_p], dtype=torch.float64)
        # The context shift is how a version is served, not something the learner trains
        # from: the item parts and the adapters learn from contexts without it, and it is
        # put back on the candidate. Trained from shifted contexts, a name an adapter got
        # wrong would pull its users toward the wrong topic in every later round.
        unshift = np.zeros((0,), np.float32)
        if cur.context_shift and self.encoder is not None:
            unshift = np.float32(cur.context_shift) * (cur.text - self._base_rows(cur.item_ids))
        return Round(
            self.config,
            self.rep.temperature,
            cur,
            (ctx_idx, ctx_w, tgt, ts_t),
            prior,
            pub_t,
            unshift,
            rng,
            progress,
            None if smp is None else smp.trained,
        )

    def _item_stage(
        self, run: Round, train_p: Sequence[Pair], val: Validation, log: RoundLog, t0: float
    ) -> tuple[ItemTable, AgeFit | None, tuple[np.ndarray, np.ndarray]]:
        """Stage 1: train the item parts; returns their table, the freshness curve and the
        item parts' per-pair validation metrics (with their best freshness weight)."""
        log.item_steps = run.item_stage()
        items_only = run.items_table()
        log.items_s = time.perf_counter() - t0
        # The freshness curve is fitted once (its weight judged cross-fitted on validation,
        # see age.cross_fit): the adapters are judged with it, because an item nobody has
        # engaged yet reaches a list only through its age prior and its text vector together
        # (without the prior, fresh posts never rank and what the adapter does for them
        # cannot show on validation).
        age_fit = self._age_fit(items_only, train_p, val.pairs)
        e_items = best_age_weight(val.each, items_only, age_fit, self.config.age_weights)[1]
        log.m_items = means(e_items)
        log.m_new = means(val.each(items_only))
        return items_only, age_fit, e_items

    def _adapter_round(self, reason: str, train_p: Sequence[Pair], log: RoundLog) -> bool:
        """Whether this round trains the adapters: every ``lora_every``-th round and on every
        drift, novelty or new-words trigger (the same schedule with or without an encoder,
        so that the no-LoRA ablation trains when driftrec does: the new-words trigger
        learns the words of an adapter round's training pairs either way)."""
        cfg = self.config
        adapter_round = (
            reason in ("drift", "novelty", "new_words")
            or not cfg.train_items
            or self.trainings % cfg.lora_every == 0
        )
        log.new_word_share = self.triggers.words_trained(
            adapter_round, (self.texts.get(p.target, "") for p in train_p)
        )
        if self.encoder is not None and not adapter_round:
            log.adapter_update = "skipped"
        return self.encoder is not None and adapter_round

    def _adapter_stage(
        self,
        run: Round,
        enc: TextEncoder,
        items_only: ItemTable,
        e_items: tuple[np.ndarray, np.ndarray],
        val: Validation,
        age_fit: AgeFit | None,
        log: RoundLog,
    ) -> ItemTable | None:
        """Stage 2: train the adapters on top of the item parts and gate the update against
        the item parts alone (``e_items``): the candidate table if it is kept, else None
        (and the serving adapter is back)."""
        cfg, cur = self.config, run.cur
        texts = [self.texts.get(i, "") for i in cur.item_ids]
        log.lora_steps = run.adapter_stage(enc, texts)
        t1 = time.perf_counter()
        with_lora = self._encode_candidate(cur, items_only, texts)
        log.encode_s = time.perf_counter() - t1
        _, e_lora = best_age_weight(val.each, with_lora, age_fit, cfg.age_weights)
        keep = paired_gain(e_lora, e_items, cfg.lora_gate_z)
        if not keep and with_lora.context_shift > 0:
            # The shift assumes a history points where its posts' text does (a user of
            # a topic engages its new names); where engagement crosses topics it can
            # sink an update that is worth serving with the context side unmoved. That
            # one is judged by the same gate.
            flat = shifted(cur, items_only, with_lora.text, 0.0, with_lora.stale, self._base_rows)
            _, e_flat = best_age_weight(val.each, flat, age_fit, cfg.age_weights)
            if paired_gain(e_flat, e_items, cfg.lora_gate_z):
                keep, with_lora, e_lora = True, flat, e_flat
        log.m_lora = means(e_lora)
        self.triggers.adapter_outcome(keep, log.reason)
        if keep:
            log.adapter_update = "kept"
            log.m_new = means(val.each(with_lora))
            return with_lora
        log.adapter_update = "dropped"
        enc.load_lora_state(self._lora)  # back to the serving adapter
        return None

    def _weights_stage(
        self, cand: ItemTable, val: Validation, age_fit: AgeFit | None, log: RoundLog
    ) -> ItemTable:
        """Stage 3: the co-engagement neighbours and the freshness prior, each with the
        weight that wins on validation (0 where it does not help)."""
        cfg, val_table = self.config, cand
        if self.neighbours is not None:
            assert log.m_new is not None
            cand, log.m_new, log.cooc_weight, val_table = self.neighbours.with_weight(
                cand, log.m_new, val.pairs[0].ts if val.pairs else None, cfg.cooc_weights, val.evaluate
            )
        if self.item_ts and cfg.age_weights:
            assert log.m_new is not None
            cand, log.m_new, log.age_weight = with_age(
                cand, val_table, log.m_new, age_fit, val.each, cfg.age_weights
            )
        if cfg.text_weights or cfg.pop_recent_shares:  # the blend, judged as the weights above were
            extra = None
            if log.age_weight and age_fit is not None:
                extra = np.float32(log.age_weight) * age_fit[1]
            each = partial(val.each, extra=extra)
            fit, e = fit_blend(each, val_table.with_age(None, None, 0.0), cfg, val.pooled())
            blend = {"text_weight": fit.text_weight, "pop_recent_share": fit.pop_recent_share}
            if e is not None and blend != {k: getattr(cand, k) for k in blend}:
                cand = replace(cand, text_weight=fit.text_weight, pop_recent_share=fit.pop_recent_share)
                log.m_new = means(e)
        return cand

    def _against_serving(
        self, cur: ItemTable, cand: ItemTable, val: Validation, age_fit: AgeFit | None, log: RoundLog
    ) -> tuple[bool, ItemTable]:
        """Whether the candidate beats the serving version ``cur`` by ``min_gain``, on the
        validation pairs the serving version has not seen (:func:`.gate.unseen`), each
        knowing the same past: the candidate's co-engagement neighbours for this
        comparison have every event before those pairs, as the serving version's have.
        Live popularity alone is a candidate too (:func:`.gate.popular_instead`): unless
        the candidate beats it on those pairs beyond noise, it is what is compared with
        ``cur`` (and served). Returns the verdict and the table it is about."""
        mask = unseen(val.pairs, self.served_to_ts)
        log.val_pairs_unseen = int(mask.sum())
        judged = [p for p, u in zip(val.pairs, mask) if u]
        lp = None if val.lp is None else val.lp[mask]
        log.m_cur = means(self.evaluate_each(judged, cur, val.pop, pop_at=lp))
        jt = cand.with_age(None, None, 0.0)  # on every pair: the candidate as judged before
        if self.neighbours is not None and log.cooc_weight:
            jt = jt.with_cooc(*self.neighbours.before(jt.item_ids, judged[0].ts), log.cooc_weight)
        extra = None
        if log.age_weight and age_fit is not None:
            extra = np.float32(log.age_weight) * age_fit[1][mask]
        e_new = self.evaluate_each(judged, jt, val.pop, extra=extra, pop_at=lp)
        log.m_new = means(e_new)
        if self.rep.pop_weight > 0:  # live popularity alone: a candidate too
            each = partial(self.evaluate_each, judged, pop=val.pop, pop_at=lp)
            cand = popular_instead(cand, e_new, each, self.config.blend_gate_z, log)
        return better(log.m_new, log.m_cur, self.config.min_gain), cand

    def _catch_up(
        self,
        run: Round,
        enc: TextEncoder,
        items_only: ItemTable,
        cand: ItemTable,
        val_p: Sequence[Pair],
        log: RoundLog,
        metrics: dict[str, Any],
    ) -> tuple[ItemTable, dict[str, Any]]:
        """The adapter update won on validation and the candidate beat the serving version:
        the same training goes on over the validation pairs before it is shipped (as the
        freshness curve is fitted on the whole window). They are the newest share of the
        window, where a name that appeared since the last round has most of its
        engagement: without this, an adapter learns a name about one validation share
        later than it could. Returns the candidate re-encoded and the adapter weights."""
        import torch

        t2 = time.perf_counter()
        cur = run.cur
        v_idx, v_w, v_tgt = pair_tensors(val_p, cur)
        v_ts = torch.tensor([p.ts for p in val_p], dtype=torch.float64)
        n = run.catch_up((v_idx, v_w, v_tgt, v_ts))
        caught = self._encode_candidate(cur, items_only, run.texts, cand.context_shift)
        cand = replace(cand, text=caught.text, context=caught.context, stale=caught.stale)
        metrics["lora_catchup_steps"] = n
        metrics["lora_steps"] = log.lora_steps + n
        metrics["steps"] = run.steps
        metrics["catchup_s"] = round(time.perf_counter() - t2, 3)
        return cand, enc.lora_state()

    # ---- the candidate's tables ------------------------------------------------------
    def _encode_candidate(
        self, cur: ItemTable, items_only: ItemTable, texts: Sequence[str], shift: float | None = None
    ) -> ItemTable:
        """The candidate table under the trained adapter (:mod:`.candidate`): its rows
        within ``encode_budget`` re-encoded, its context vectors carrying ``shift``
        (default ``context_shift``) times (text - base text)."""
        enc = self.encoder
        assert enc is not None

        def pub_pop() -> tuple[np.ndarray | None, np.ndarray]:
            return self._pub_vector(cur) if self.item_ts else None, self._pop_vector(cur)

        text, stale = encode_rows(enc, cur, texts, self.config.encode_budget, pub_pop)
        beta = self.config.context_shift if shift is None else shift
        return shifted(cur, items_only, text, beta, stale, self._base_rows)

    def _base_rows(self, ids: Sequence[str]) -> np.ndarray:
        """The base encoder's text vectors of ``ids`` (cached; encodes the missing ones)."""
        enc = self.encoder
        assert enc is not None
        missing = [i for i in dict.fromkeys(ids) if i not in self._base_text]
        if missing:
            vecs = enc.encode([self.texts.get(i, "") for i in missing], base=True)
            self._base_text.update(zip(missing, vecs))
        return np.stack([self._base_text[i] for i in ids]).astype(np.float32, copy=False)

    def accept(self, result: TrainResult) -> None:
        """Make an accepted result the learner's current version."""
        self.table = result.table
        self.served_to_ts = result.window.get("to_ts")
        if result.lora:
            self._lora = result.lora

    def _age_fit(self, table: ItemTable, train_p: Sequence[Pair], val_p: Sequence[Pair]) -> AgeFit | None:
        """The window's freshness curve, cross-fitted on validation (:func:`.age.cross_fit`)."""
        if not (self.item_ts and self.config.age_weights and val_p and train_p):
            return None
        smp = self._sample  # the exposure by age is the whole catalog's
        catalog = None if smp is None else smp.full_pub
        return cross_fit(table, self._pub_vector(table), train_p, val_p, catalog)

    def evaluate(
        self, pairs: Sequence[Pair], table: ItemTable, pop: np.ndarray, k: int = 10
    ) -> dict[str, float]:
        """HR@k and MRR of next-item prediction for ``pairs`` under ``table``."""
        if not pairs:
            return {"hr": 0.0, "mrr": 0.0}
        return means(self.evaluate_each(pairs, table, pop, k))

    def evaluate_each(
        self,
        pairs: Sequence[Pair],
        table: ItemTable,
        pop: np.ndarray,
        k: int = 10,
        extra: np.ndarray | None = None,
        pop_at: PopAt | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: HR@k (expected over ties) and reciprocal rank (:func:`.gate.rank_each`),
        among the items published by the pair's time; ``extra``: ``[pairs, items]`` added to
        the scores; popularity ``pop`` now, or ``pop_at`` as each pair saw it."""
        if not pairs:
            return np.zeros(0), np.zeros(0)
        ctx_idx, ctx_w, tgt = pair_arrays(pairs, table)
        if pop_at is None:
            prior = self.popularity.prior(table, pop, self.last_ts)
        else:
            prior = np.zeros(len(table.item_ids), np.float32)
            p = pop_at.term(self.rep.pop_weight, table.pop_recent_share)
            extra = p if extra is None else extra + p
        pub = ts = None
        if self.item_ts:
            pub = self._pub_vector(table)
            ts = np.array([p.ts for p in pairs], np.float64)
        smp = self._sample  # a sampled row that outranks the target counts its weight
        sampled = smp.sampled if smp is not None and len(smp.rows) == len(table.item_ids) else None
        return rank_each(table, ctx_idx, ctx_w, tgt, prior, self.rep.temperature, pub, ts, k, extra, sampled)

    def _validation(self, val_p: Sequence[Pair], table: ItemTable) -> Validation:
        """A round's validation pairs, with popularity as each of them saw it."""
        pop = self._pop_vector(table)
        lp = None
        if val_p:
            lp = self.popularity.at([p.ts for p in val_p], table, pop)
        return Validation(self, list(val_p), pop, lp)

    def _pop_vector(self, table: ItemTable) -> np.ndarray:
        return self.popularity.vector(table)

    def _pub_vector(self, table: ItemTable) -> np.ndarray:
        """Publication times of ``table``'s items (-inf: unknown), cached per catalog."""
        c = getattr(self, "_pub_cache", None)
        if c is None or c[0] is not table.item_ids or c[1] != len(self.item_ts):
            get = self.item_ts.get
            c = self._pub_cache = (
                table.item_ids,
                len(self.item_ts),
                np.array([get(i, -np.inf) for i in table.item_ids], np.float64),
            )
        return c[2]
