"""The learner core: rolling window -> pairs -> LoRA + item micro-fine-tune -> gate.

Pure over batches: it observes events already applied by the scorer, trains when a
trigger fires and returns a :class:`TrainResult`; writing and announcing the artifact is
the caller's job (see :mod:`driftrec.model.artifacts`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from driftrec.model import (
    CoEngagement,
    ItemTable,
    Representation,
    TextEncoder,
    add_cooc,
    logaddexp,
    scores,
    user_vectors,
)
from driftrec.stream import Event, Item

from .config import LearnerConfig
from .drift import HitRateDrift
from .windows import RollingWindow
from .words import NewWords


@dataclass(frozen=True)
class Pair:
    """User context (history before the event) -> the engaged item."""

    ctx_items: tuple[str, ...]
    ctx_w: np.ndarray
    target: str
    ts: int
    repeat: bool = False  # the user had engaged with the target before (never recommendable)


@dataclass
class TrainResult:
    accepted: bool
    table: ItemTable
    lora: dict[str, Any]
    metrics: dict[str, Any]
    window: dict[str, int]
    reason: str = ""


@dataclass
class _Hist:
    items: deque[tuple[str, str, int]] = field(default_factory=deque)


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
        self.item_ts: dict[str, int] = dict(item_ts or {})
        self.encoder = encoder if config.use_lora else None
        self._lora = encoder.lora_state() if (encoder is not None and config.use_lora) else {}
        self.window: RollingWindow[Pair] = RollingWindow(config.window_events, config.window_ms)
        self._hist: dict[str, deque[tuple[str, str, int]]] = {}
        self._seen: dict[str, set[str]] = {}
        self._pop: dict[str, float] = {}
        self._since_train = 0
        self._since_drift = 0
        self._drift_pending = False
        self._pending_reason = "drift"
        # novelty: items engaged so far; whether each of the last novelty_events
        # engagements was its item's first, and how many were; that share when the
        # serving candidate was trained (None: no training yet)
        self._engaged: set[str] = set()
        self._novel: deque[bool] = deque(maxlen=config.novelty_events)
        self._novel_n = 0
        self._novel_at_train: float | None = None
        # new words: the share of engagements whose item carries a word no adapter round
        # has learned, that share at the last training, and whether it rose since
        self._new_words = (
            NewWords(config.novelty_events, config.new_word_min) if config.new_word_jump else None
        )
        self._new_words_at_train: float | None = None
        self._new_words_pending = False
        # rounds it fired that the gate dropped since the last kept adapter update (each
        # doubles the jump it needs, up to new_word_backoff times)
        self._new_words_misses = 0
        # an engagement counts for the trigger once it is older than the validation share
        # of the window: then the next round trains on it (a newer one is only validated on)
        self._new_words_delay: deque[str] = deque(maxlen=max(1, int(config.window_events * config.val_share)))
        self.detector = HitRateDrift(config.drift) if config.drift else None
        self.cooc = CoEngagement(config.cooc_history) if config.cooc_neighbours else None
        # (ts, item, items it was paired with) of recent engagements: validation builds its
        # neighbours without the events it scores
        self._cooc_log: deque[tuple[int, str, tuple[str, ...]]] = deque(maxlen=config.window_events)
        self.trainings = 0
        self.last_ts = 0
        self.n_events = 0
        #: the newest event time the serving version was built from (None: the base
        #: version, or unknown after a restart): a candidate is compared with it only on
        #: validation pairs newer than that, since its co-engagement neighbours and its
        #: freshness curve have seen the older ones
        self.served_to_ts: int | None = None
        #: item id -> its text vector under the base encoder, kept while ``context_shift``
        #: is on: training takes the shift back out of the context vectors (see train)
        self._base_text: dict[str, np.ndarray] = {}

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
            if self.cooc is not None:
                paired = self.cooc.observe(e.user_id, e.item_id)
                if paired is not None:
                    self._cooc_log.append((e.ts, e.item_id, paired))
            seen.add(e.item_id)
            self._observe_novelty(e.item_id)
            self._observe_new_words(e.item_id)
            self._pop[e.item_id] = logaddexp(
                self._pop.get(e.item_id, -math.inf), rep.pop_increment(e.type, e.ts)
            )
            self.last_ts = max(self.last_ts, e.ts)
            self._since_train += 1
            self._since_drift += 1
            self.n_events += 1

    def _novel_share(self) -> float | None:
        q = self._novel
        return self._novel_n / len(q) if len(q) == q.maxlen else None

    def _observe_novelty(self, item_id: str) -> None:
        """Feed the novelty trigger (``LearnerConfig.novelty_jump``) one engagement: it
        fires when the share of the last ``novelty_events`` engagements that were their
        item's first is ``novelty_jump`` above that share at the last training (a catalog
        being discovered has a falling share; a feed with fresh posts all along, a steady
        one)."""
        novel = item_id not in self._engaged
        self._engaged.add(item_id)
        if self.config.novelty_jump <= 0:
            return
        q = self._novel
        if len(q) == q.maxlen:
            self._novel_n -= q[0]
        q.append(novel)
        self._novel_n += novel
        share, ref = self._novel_share(), self._novel_at_train
        if share is not None and ref is not None and share - ref >= self.config.novelty_jump:
            if not self._drift_pending:
                self._pending_reason = "novelty"
            self._drift_pending = True

    def _observe_new_words(self, item_id: str) -> None:
        """Feed the new-words trigger (``LearnerConfig.new_word_jump``) one engagement: it
        asks for an adapter round when the share of engagements going to items whose text
        carries a word no adapter round has learned rises ``new_word_jump`` above that share
        at the last training (the feed's long tail keeps a steady share; a wave of new names
        lifts it). The share is over the engagements just older than the window's
        validation share: those a round trains on before its gate (a round that fired on
        the newest ones would only see the new words on validation, and be dropped)."""
        nw = self._new_words
        if nw is None:
            return
        d = self._new_words_delay
        old = d.popleft() if len(d) == d.maxlen else None
        d.append(item_id)
        if old is None:
            return
        nw.observe(old, self.texts.get(old, ""))
        share, ref = nw.share(), self._new_words_at_train
        if share is not None and ref is not None and share - ref >= self.new_word_jump():
            self._new_words_pending = True

    def new_word_jump(self) -> float:
        """The rise of the new-words share that fires the trigger now: ``new_word_jump``,
        doubled for each round it fired that the gate dropped since the last kept adapter
        update (at most ``new_word_backoff`` times: the count stops there)."""
        return float(self.config.new_word_jump * 2**self._new_words_misses)

    def forget_users(self, user_ids: Sequence[str]) -> None:
        """Drop what the learner holds per user (recent history, seen items, co-engagement
        history). Their pairs in the window go through ``window.retain`` by the caller,
        which knows whose each pair is (the learner worker)."""
        for u in user_ids:
            self._hist.pop(u, None)
            self._seen.pop(u, None)
            if self.cooc is not None:
                self.cooc._recent.pop(u, None)

    def observe_hits(self, hits: Sequence[bool]) -> bool:
        """Feed the live hit signal; returns True when drift was detected."""
        if self.detector is None or not hits:
            return False
        fired = any(self.detector.update_many(hits))
        if fired:  # within the cooldown it waits for the cooldown's end: never forgotten
            self._drift_pending = True
            self._pending_reason = "drift"
        return fired

    def due(self) -> str | None:
        """Why a training should run now ("drift", "novelty", "new_words", "every_n") or None."""
        cfg = self.config
        if len(self.window) < cfg.min_pairs:
            return None
        if self._drift_pending and self._since_drift >= cfg.drift_cooldown:
            return self._pending_reason
        if self._new_words_pending and self._since_train >= cfg.new_word_gap:
            return "new_words"
        if self._since_train >= cfg.train_every:
            if self._drift_pending:
                return self._pending_reason
            return "new_words" if self._new_words_pending else "every_n"
        return None

    def add_items(self, items: Sequence[Item]) -> None:
        """New or changed catalog items, encoded under the current adapter."""
        if not items:
            return
        enc = self.encoder
        # an edited item's context swaps its old text's shift for the new one's
        # (ItemTable.with_items): the old text's base vector, taken before the text changes
        edited = [it.item_id for it in items if self.table.index(it.item_id) >= 0]
        prev = (
            dict(zip(edited, self._base_rows(edited)))
            if enc is not None and edited and self.table.context_shift
            else None
        )
        for it in items:
            self.texts[it.item_id] = it.text
            if self.item_ts or it.ts:
                self.item_ts[it.item_id] = it.ts
        if enc is not None:
            texts = [it.text for it in items]
            base = enc.encode(texts, base=True)
            if self.config.context_shift > 0 or self.table.context_shift:
                self._base_text.update((it.item_id, v) for it, v in zip(items, base))
            else:
                for it in items:
                    self._base_text.pop(it.item_id, None)
            self.table = self.table.with_items([it.item_id for it in items], enc.encode(texts), base, prev)
        else:
            known = [it for it in items if self.table.index(it.item_id) < 0]
            if known:
                raise ValueError("adding items without an encoder: give the learner the encoder")

    # ---- training --------------------------------------------------------------------
    def train(self, reason: str = "manual", progress: Any = None) -> TrainResult:
        """Fine-tune on the window in two stages; gate the candidate against the current version.

        1. The item parts (target residuals and biases, context vectors) on the window: cheap,
           every training.
        2. The LoRA adapters on top of those item parts (held fixed), every ``lora_every``-th
           training and on every drift trigger. The adapter update must beat stage 1 alone
           on the same validation pairs by ``lora_gate_z`` standard errors, else it is
           dropped and the serving adapter stays: what the adapters add is measured against
           the same item parts, not assumed.

        The better candidate must then beat the current version (``min_gain``). A candidate
        that passes both checks with a kept adapter update then trains the adapters
        ``lora_catchup`` more passes over the validation pairs before it is shipped (the
        newest pairs, where a name engaged since the last round mostly is).
        """
        import torch

        cfg, rep = self.config, self.rep
        t0 = time.perf_counter()
        self._since_train = 0
        self._since_drift = 0
        self._drift_pending = False
        self._new_words_pending = False
        self._novel_at_train = self._novel_share()
        self.trainings += 1
        torch.manual_seed(cfg.seed + self.trainings)
        rng = np.random.default_rng(cfg.seed + self.trainings)
        # Re-engagements cannot be recommended (seen items are excluded): not trained on.
        pairs = [p.value for p in self.window if not p.value.repeat and self.table.index(p.value.target) >= 0]
        lo, hi = self.window.span()
        window = {"from_ts": lo, "to_ts": hi, "n_events": len(self.window)}
        n_val = max(1, int(len(pairs) * cfg.val_share))
        train_p, val_p = pairs[:-n_val], pairs[-n_val:]
        k = cfg.val_spread
        if k > 1 and n_val * k < len(pairs):  # every k-th of the newest n_val * k validates
            newest = pairs[-n_val * k :]
            val_p = newest[k - 1 :: k]
            train_p = pairs[: -n_val * k] + [p for j, p in enumerate(newest) if j % k != k - 1]
        cur = self.table
        if len(train_p) < 2:
            return TrainResult(
                False, cur, self._lora, {"pairs": len(pairs), "why": "too few pairs"}, window, reason
            )
        prior = torch.from_numpy(rep.pop_prior(self._pop_vector(cur), self.last_ts))
        ctx_idx, ctx_w, tgt = self._tensors(train_p, cur)
        # an item is no negative of a pair before its publication: else every post
        # published after the training pairs (the ones the next events go to) is pushed
        # away from every user by each step, and it is served with that
        pub_t = torch.from_numpy(self._pub_vector(cur)) if self.item_ts else None
        ts_t = torch.tensor([p.ts for p in train_p], dtype=torch.float64)

        def late(bi: Any) -> Any:
            return None if pub_t is None else (pub_t, ts_t[bi])

        T0 = torch.from_numpy(cur.text.copy())
        R = torch.nn.Parameter(torch.from_numpy(cur.residual.copy()))
        bias = torch.nn.Parameter(torch.from_numpy(cur.bias.copy()))
        assert cur.context is not None
        enc = self.encoder
        # The context shift is how a version is served, not something the learner trains
        # from: the item parts and the adapters learn from contexts without it, and it is
        # put back on the candidate. Trained from shifted contexts, a name an adapter got
        # wrong pulled its users toward the wrong topic in every later round
        # (docs/adapters.md, ninth and tenth rounds).
        unshift = np.zeros((0,), np.float32)
        if cur.context_shift and enc is not None:
            unshift = np.float32(cur.context_shift) * (cur.text - self._base_rows(cur.item_ids))
        C = torch.nn.Parameter(
            torch.from_numpy(cur.context - unshift if unshift.size else cur.context.copy())
        )
        dev = enc.device if enc is not None else "cpu"
        B = min(cfg.batch_size, len(train_p))
        steps, losses = 0, []
        loss_before = self._loss(cur, ctx_idx, ctx_w, tgt, prior)

        def batches(cap: int, epochs: int = cfg.epochs) -> Any:
            n = 0
            for _epoch in range(epochs):
                order = rng.permutation(len(train_p))
                for s in range(0, len(order) - 1, B):
                    if n >= cap:
                        return
                    n += 1
                    yield torch.from_numpy(order[s : s + B])

        def step(opt: Any, loss: Any) -> None:
            nonlocal steps
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            steps += 1
            if progress is not None:
                progress(steps)

        # ---- stage 1: item parts -----------------------------------------------------------
        item_steps = 0
        if cfg.train_items:
            opt = torch.optim.Adam([R, bias, C], lr=cfg.lr_items)
            for bi in batches(cfg.item_max_steps):
                step(
                    opt,
                    _softmax_loss(
                        C,
                        T0 + R,
                        bias,
                        prior,
                        ctx_idx[bi],
                        ctx_w[bi],
                        tgt[bi],
                        rep.temperature,
                        late=late(bi),
                    ),
                )
                item_steps += 1
        for p in (R, bias, C):
            p.requires_grad_(False)
        items_only = ItemTable(
            list(cur.item_ids),
            cur.text,
            R.numpy().copy(),
            bias.numpy().copy(),
            C.numpy() + unshift if unshift.size else C.numpy().copy(),
            stale=cur.stale,
            context_shift=cur.context_shift,
        )
        items_s = time.perf_counter() - t0
        pop = self._pop_vector(cur)
        # The freshness curve is fitted once (its weight judged cross-fitted on validation,
        # see _age_fit): the adapters are judged with it, because an item nobody has engaged yet reaches a list only through its
        # age prior and its text vector together (without the prior, fresh posts never rank
        # and what the adapter does for them cannot show on validation).
        age_fit = self._age_fit(items_only, train_p, val_p)
        _, e_items = self._best_age_each(val_p, items_only, pop, age_fit)
        m_items = _means(e_items)
        cand, m_new, lora = items_only, _means(self.evaluate_each(val_p, items_only, pop)), dict(self._lora)

        # ---- stage 2: adapters on top of the new item parts ------------------------------------
        adapter_update, lora_steps, encode_s, m_lora = "none", 0, 0.0, None
        # an adapter round (the same schedule with or without an encoder, so that the
        # no-LoRA ablation trains when driftrec does)
        adapter_round = (
            reason in ("drift", "novelty", "new_words")
            or not cfg.train_items
            or self.trainings % cfg.lora_every == 0
        )
        new_word_share = None
        if self._new_words is not None:
            new_word_share = self._new_words.share()
            if adapter_round:
                self._new_words.learned(self.texts.get(p.target, "") for p in train_p)
            self._new_words_at_train = self._new_words.share()
        run_lora = enc is not None and adapter_round
        if enc is not None and not run_lora:
            adapter_update = "skipped"
        if run_lora:
            assert enc is not None
            texts = [self.texts.get(i, "") for i in cur.item_ids]
            # how rarely each target is engaged in the window: the text-only term and the
            # draw of the targets that get fresh vectors lean towards rarely engaged items
            n_tgt = np.bincount(tgt.numpy(), minlength=len(cur.item_ids)).astype(np.float64)
            fresh_w = np.maximum(n_tgt, 1.0) ** -cfg.text_fresh
            enc.model.train()
            opt = torch.optim.Adam(enc.lora_parameters(), lr=cfg.lr_lora)

            def adapter_step(ci: Any, cw: Any, tt: Any, lt: Any) -> None:
                # Fresh (trainable) target-side text vectors for the batch's targets; the
                # rest of the catalog uses the cached vectors of the serving adapter.
                g = np.unique(tt.numpy())
                if len(g) > cfg.grad_items:
                    pg = fresh_w[g] / fresh_w[g].sum()
                    g = np.sort(rng.choice(g, cfg.grad_items, replace=False, p=pg))
                g_t = torch.from_numpy(g.astype(np.int64))
                tg = enc.forward([texts[j] for j in g]).float().cpu()
                V = T0.index_put((g_t,), tg) + R
                args = (C, V, bias, prior, ci, cw, tt, rep.temperature)
                loss = _softmax_loss(*args, late=lt)
                # In-batch negatives over fresh vectors only, so that the adapters are
                # not trained against stale vectors (targets outside g are skipped).
                if bool(torch.isin(tt, g_t).all()):
                    loss = loss + _softmax_loss(*args, columns=g_t, late=lt)
                if cfg.text_loss > 0:
                    # targets scored by their text vector under the adapter alone, as an
                    # item nobody has engaged yet is: only the encoder can learn this
                    loss = loss + cfg.text_loss * _text_loss(
                        C, tg, g_t, ci, cw, tt, rep.temperature, fresh_w, lt
                    )
                step(opt, loss)

            for bi in batches(cfg.max_steps, cfg.lora_epochs or cfg.epochs):
                adapter_step(ctx_idx[bi], ctx_w[bi], tgt[bi], late(bi))
                lora_steps += 1
            enc.model.eval()
            t1 = time.perf_counter()
            with_lora = self._encode_candidate(cur, items_only, texts)
            encode_s = time.perf_counter() - t1
            _, e_lora = self._best_age_each(val_p, with_lora, pop, age_fit)
            keep = _paired_gain(e_lora, e_items, cfg.lora_gate_z)
            if not keep and with_lora.context_shift > 0:
                # The shift assumes a history points where its posts' text does (a user of
                # a topic engages its new names); where engagement crosses topics it can
                # sink an update that is worth serving with the context side unmoved. That
                # one is judged by the same gate.
                flat = self._shifted(cur, items_only, with_lora.text, 0.0, with_lora.stale)
                _, e_flat = self._best_age_each(val_p, flat, pop, age_fit)
                if _paired_gain(e_flat, e_items, cfg.lora_gate_z):
                    keep, with_lora, e_lora = True, flat, e_flat
            m_lora = _means(e_lora)
            if keep:
                cand, lora, adapter_update = with_lora, enc.lora_state(), "kept"
                m_new = _means(self.evaluate_each(val_p, with_lora, pop))
            else:
                adapter_update = "dropped"
                enc.load_lora_state(self._lora)  # back to the serving adapter
            if adapter_update == "kept":
                self._new_words_misses = 0
            elif reason == "new_words":  # a wave the adapters could not use: ask for a bigger one
                self._new_words_misses = min(self._new_words_misses + 1, cfg.new_word_backoff)
        cooc_w, val_table = 0.0, cand
        if self.cooc is not None:
            cand, m_new, cooc_w, val_table = self._with_cooc(cand, m_new, val_p, pop)
        age_w = 0.0
        if self.item_ts and cfg.age_weights:
            cand, m_new, age_w = self._with_age(cand, val_table, m_new, val_p, pop, age_fit)
        train_s = time.perf_counter() - t0 - encode_s
        loss_after = self._loss(cand, ctx_idx, ctx_w, tgt, prior)
        # The candidate against the serving version, on the validation pairs the serving
        # version has not seen, each knowing the same past: the serving version's
        # co-engagement neighbours and freshness curve were built from every event up to
        # its training, and a training 500 events after the last one has ~300 of its ~800
        # validation pairs among those: judged on them, fresh candidates were turned down
        # (test_the_serving_version_is_judged_on_validation_pairs_it_has_not_seen). The
        # candidate's neighbours for this comparison have every event before those pairs,
        # as the serving version's have.
        unseen = np.ones(len(val_p), bool)
        if self.served_to_ts is not None:
            unseen = np.array([p.ts > self.served_to_ts for p in val_p], bool)
            if not unseen.any():  # nothing newer: the only evidence there is
                unseen[:] = True
        judged = [p for p, u in zip(val_p, unseen) if u]
        m_cur = self.evaluate(judged, cur, pop)
        if not unseen.all():  # else m_new: the candidate as judged above, on every pair
            jt = cand.with_age(None, None, 0.0)
            if self.cooc is not None and cooc_w:
                jt = jt.with_cooc(*self._neighbours_before(jt.item_ids, judged[0].ts), cooc_w)
            extra = None
            if age_w and age_fit is not None:
                extra = np.float32(age_w) * age_fit[1][unseen]
            m_new = _means(self.evaluate_each(judged, jt, pop, extra=extra))
        accepted = _better(m_new, m_cur, cfg.min_gain)
        metrics = {
            "reason": reason,
            "new_word_share": None if new_word_share is None else round(new_word_share, 3),
            "new_word_jump": round(self.new_word_jump(), 3),
            "pairs": len(pairs),
            "train_pairs": len(train_p),
            "val_pairs": len(val_p),
            "val_pairs_unseen": int(unseen.sum()),
            "steps": steps,
            "item_steps": item_steps,
            "lora_steps": lora_steps,
            "device": dev,
            "loss_before": round(loss_before, 5),
            "loss_after": round(loss_after, 5),
            "val_hr_current": round(m_cur["hr"], 5),
            "val_hr_candidate": round(m_new["hr"], 5),
            "val_mrr_current": round(m_cur["mrr"], 5),
            "val_mrr_candidate": round(m_new["mrr"], 5),
            "val_hr_items_only": round(m_items["hr"], 5),
            "val_mrr_items_only": round(m_items["mrr"], 5),
            "val_hr_lora": None if m_lora is None else round(m_lora["hr"], 5),
            "val_mrr_lora": None if m_lora is None else round(m_lora["mrr"], 5),
            "cooc_weight": cooc_w,
            "age_weight": age_w,
            "train_s": round(train_s, 3),
            "items_s": round(items_s, 3),
            "encode_s": round(encode_s, 3),
            "use_lora": enc is not None,
            "adapter_update": adapter_update,
            "context_shift": cand.context_shift,
            "accepted": accepted,
        }
        if not accepted and enc is not None and adapter_update == "kept":
            enc.load_lora_state(self._lora)  # back to the serving adapter
        if accepted and adapter_update == "kept" and cfg.lora_catchup > 0:
            # The adapter update won on validation and the candidate beat the serving
            # version: the same training goes on over the validation pairs before it is
            # shipped (as the freshness curve is refitted on the whole window). They are
            # the newest ~20 % of the window, where a name that appeared since the last
            # round has most of its engagement: without this, an adapter learns a name
            # about one validation share later than it could.
            assert enc is not None
            t2 = time.perf_counter()
            v_idx, v_w, v_tgt = self._tensors(val_p, cur)
            v_ts = torch.tensor([p.ts for p in val_p], dtype=torch.float64)
            enc.model.train()
            n0 = lora_steps
            for _pass in range(cfg.lora_catchup):
                order = torch.from_numpy(rng.permutation(len(val_p)))
                for s in range(0, len(val_p) - 1, B):
                    bi = order[s : s + B]
                    adapter_step(v_idx[bi], v_w[bi], v_tgt[bi], None if pub_t is None else (pub_t, v_ts[bi]))
                    lora_steps += 1
            enc.model.eval()
            caught = self._encode_candidate(cur, items_only, texts, cand.context_shift)
            cand = replace(cand, text=caught.text, context=caught.context, stale=caught.stale)
            lora = enc.lora_state()
            metrics["lora_catchup_steps"] = lora_steps - n0
            metrics["lora_steps"] = lora_steps
            metrics["steps"] = steps
            metrics["catchup_s"] = round(time.perf_counter() - t2, 3)
        return TrainResult(accepted, cand, lora, metrics, window, reason)

    def _encode_candidate(
        self, cur: ItemTable, items_only: ItemTable, texts: Sequence[str], shift: float | None = None
    ) -> ItemTable:
        """The candidate table under the trained adapter: the whole catalog when it fits
        ``encode_budget``, else its first ``encode_budget`` items by
        :func:`~driftrec.model.reencode.priority_order` (newest and most engaged), the
        others keeping the serving version's text vectors, marked stale (the scorer
        re-encodes them after the swap). The gate sees what is served right after it.

        Its context vectors carry ``shift`` (default ``context_shift``) times (text - base
        text): see :meth:`_shifted`."""
        from driftrec.model.reencode import priority_order

        enc = self.encoder
        assert enc is not None
        n, budget = len(cur.item_ids), self.config.encode_budget
        if budget == 0 or n <= budget:
            rows = np.arange(n)
        else:
            pub = self._pub_vector(cur) if self.item_ts else None
            rows = np.sort(priority_order(pub, self._pop_vector(cur), n)[:budget])
        text = cur.text.copy()
        text[rows] = enc.encode([texts[int(j)] for j in rows])
        stale = None
        if len(rows) < n:
            stale = np.ones(n, bool)
            stale[rows] = False
        beta = self.config.context_shift if shift is None else shift
        return self._shifted(cur, items_only, text, beta, stale)

    def _shifted(
        self, cur: ItemTable, items_only: ItemTable, text: np.ndarray, beta: float, stale: np.ndarray | None
    ) -> ItemTable:
        """``items_only`` with the text vectors ``text`` and every context vector holding
        ``beta * (its text - its base text)`` on top of what was trained
        (:class:`ItemTable`): ``items_only``'s contexts hold ``cur.context_shift`` times
        ``cur``'s texts' shift, taken out here, so no shift is counted twice. Rows whose
        text did not change (stale) move too when ``beta`` differs from the serving one."""
        context = items_only.context
        if context is not None and (beta > 0 or cur.context_shift > 0):
            base = self._base_rows(cur.item_ids)
            context = (
                context + np.float32(beta) * (text - base) - np.float32(cur.context_shift) * (cur.text - base)
            ).astype(np.float32, copy=False)
        return ItemTable(
            list(cur.item_ids),
            text,
            items_only.residual,
            items_only.bias,
            context,
            stale=stale,
            context_shift=float(beta),
        )

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

    def _with_cooc(
        self, cand: ItemTable, m_cand: dict[str, float], val_p: Sequence[Pair], pop: np.ndarray
    ) -> tuple[ItemTable, dict[str, float], float, ItemTable]:
        """Pick the co-engagement weight on validation (neighbours built without the
        validation events, so none is scored with its own pair), ship fresh neighbours.
        Returns (the table to ship, its validation metrics, the weight, the table with the
        validation neighbours: what later choices are judged on)."""
        cfg, co = self.config, self.cooc
        assert co is not None
        ids = cand.item_ids
        v_idx, v_w = self._neighbours_before(ids, val_p[0].ts if val_p else None)
        best_w, best_m = 0.0, m_cand
        for wgt in cfg.cooc_weights:
            m = self.evaluate(val_p, cand.with_cooc(v_idx, v_w, wgt), pop)
            if _better(m, best_m, 0.0):
                best_w, best_m = float(wgt), m
        n_idx, n_w = co.neighbours(ids, cfg.cooc_neighbours)
        return cand.with_cooc(n_idx, n_w, best_w), best_m, best_w, cand.with_cooc(v_idx, v_w, best_w)

    def _neighbours_before(self, ids: Sequence[str], cut_ts: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Co-engagement neighbours of ``ids`` built without the engagements from ``cut_ts``
        on (None: with all of them)."""
        co = self.cooc
        assert co is not None
        undo = [x for x in self._cooc_log if x[0] >= cut_ts] if cut_ts is not None else []
        for _, item, paired in undo:
            co.forget(item, paired)
        out = co.neighbours(ids, self.config.cooc_neighbours)
        for _, item, paired in undo:
            co.forget(item, paired, sign=1.0)
        return out

    def _age_fit(
        self, table: ItemTable, train_p: Sequence[Pair], val_p: Sequence[Pair]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """How engagement varies with an item's age (:func:`fit_age_curve`): the log-rate
        curve to ship, fitted on every pair of the window, and, for judging its weight, its
        value (weight 1) for every validation pair and item, ``[val, items]``, cross-fitted:
        each validation pair is scored with a curve fitted on the training pairs and the
        *other* half of the validation pairs (every second one), never on itself. After a
        shift towards fresh posts only the newest pairs (the validation share) show it; a
        curve fitted on the training pairs alone lagged the shift by the whole validation
        share (~800 events at the default window). None without publication times, weights
        to try, validation pairs or a curve."""
        if not (self.item_ts and self.config.age_weights and val_p and train_p):
            return None
        pub = self._pub_vector(table)

        def fit(ps: Sequence[Pair]) -> np.ndarray:
            tgt = np.array([table.index(p.target) for p in ps], np.int64)
            ts = np.array([p.ts for p in ps], np.float64)
            ok = tgt >= 0
            return fit_age_curve(ts[ok] - pub[tgt[ok]], pub, float(ts.min()), float(ts.max()), AGE_EDGES_MS)

        lograte = fit([*train_p, *val_p])
        if not np.any(lograte):
            return None
        vts = np.array([p.ts for p in val_p], np.float64)
        curve = np.zeros((len(val_p), len(table.item_ids)), np.float32)
        for half in (0, 1):
            idx = np.arange(half, len(val_p), 2)
            if not idx.size:
                continue
            lr = fit([*train_p, *val_p[1 - half :: 2]])
            prior = table.with_age(AGE_EDGES_MS, lr, 1.0).age_prior((vts[idx, None] - pub[None, :]).ravel())
            curve[idx] = prior.reshape(len(idx), -1)
        return lograte, curve

    def _best_age_each(
        self,
        val_p: Sequence[Pair],
        table: ItemTable,
        pop: np.ndarray,
        fit: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
        """The freshness weight (0 or one of ``age_weights``) that serves ``table`` best on
        validation, and the per-pair metrics with it."""
        base = table.with_age(None, None, 0.0) if table.has_age_prior else table
        best_w, best = 0.0, self.evaluate_each(val_p, base, pop)
        if fit is None:
            return best_w, best
        for wgt in self.config.age_weights:
            e = self.evaluate_each(val_p, base, pop, extra=np.float32(wgt) * fit[1])
            if _better(_means(e), _means(best), 0.0):
                best_w, best = float(wgt), e
        return best_w, best

    def _with_age(
        self,
        cand: ItemTable,
        val_table: ItemTable,
        m_cand: dict[str, float],
        val_p: Sequence[Pair],
        pop: np.ndarray,
        fit: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[ItemTable, dict[str, float], float]:
        """Pick the freshness prior's weight on validation (0 unless one wins), ship it with
        ``cand``. Judged on ``val_table`` (``cand``'s parts with co-engagement neighbours
        built without the validation events: the shipped ones have seen them)."""
        base = cand.with_age(None, None, 0.0)
        if fit is None:
            return base, m_cand, 0.0
        w, e = self._best_age_each(val_p, val_table.with_age(None, None, 0.0), pop, fit)
        if w == 0.0:
            return base, _means(e), 0.0
        return base.with_age(AGE_EDGES_MS, fit[0], w), _means(e), w

    # ---- evaluation --------------------------------------------------------------------
    def evaluate(
        self, pairs: Sequence[Pair], table: ItemTable, pop: np.ndarray, k: int = 10
    ) -> dict[str, float]:
        """HR@k and MRR of next-item prediction for ``pairs`` under ``table``."""
        if not pairs:
            return {"hr": 0.0, "mrr": 0.0}
        return _means(self.evaluate_each(pairs, table, pop, k))

    def evaluate_each(
        self,
        pairs: Sequence[Pair],
        table: ItemTable,
        pop: np.ndarray,
        k: int = 10,
        extra: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: HR@k (expected over ties) and reciprocal rank. With publication times,
        each pair ranks the items published by its time, with ``table``'s freshness prior of
        their age then; ``extra``: a ``[pairs, items]`` addition to the scores."""
        if not pairs:
            return np.zeros(0), np.zeros(0)
        ctx_idx, ctx_w, tgt = self._arrays(pairs, table)
        assert table.context is not None
        U = user_vectors(ctx_idx, ctx_w, table.context)
        S = scores(U, table.vectors, table.bias, self.rep.pop_prior(pop, self.last_ts), self.rep.temperature)
        if extra is not None:
            S += extra
        if self.item_ts:
            pub = self._pub_vector(table)
            age = np.array([p.ts for p in pairs], np.float64)[:, None] - pub[None, :]
            if table.has_age_prior:
                S += table.age_prior(age.ravel()).reshape(S.shape)
            S[age < 0] = -np.inf  # not yet published
        if table.cooc_weight and table.nbr_idx is not None and table.nbr_w is not None:
            add_cooc(S, ctx_idx, ctx_w, table.nbr_idx, table.nbr_w, table.cooc_weight)
        rows = np.arange(len(pairs))
        for b in range(len(pairs)):  # seen items cannot be recommended
            ex = ctx_idx[b][ctx_idx[b] >= 0]
            S[b, ex] = -np.inf
        ts = S[rows, tgt][:, None]
        greater = (S > ts).sum(1)
        equal = np.maximum((S == ts).sum(1), 1)  # ties are broken at random: expected values
        hr = np.clip((k - greater) / equal, 0.0, 1.0)
        mrr = 1.0 / (greater + (equal + 1) / 2.0)
        return hr, mrr

    # ---- helpers -----------------------------------------------------------------------
    def _pop_vector(self, table: ItemTable) -> np.ndarray:
        return np.array([self._pop.get(i, -np.inf) for i in table.item_ids], np.float64)

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

    def _arrays(self, pairs: Sequence[Pair], table: ItemTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        H = max(1, max(len(p.ctx_items) for p in pairs))
        idx = np.full((len(pairs), H), -1, np.int64)
        w = np.zeros((len(pairs), H), np.float32)
        for b, p in enumerate(pairs):
            n = len(p.ctx_items)
            if n:
                idx[b, :n] = [table.index(i) for i in p.ctx_items]
                w[b, :n] = p.ctx_w
        tgt = np.array([table.index(p.target) for p in pairs], np.int64)
        return idx, w, tgt

    def _tensors(self, pairs: Sequence[Pair], table: ItemTable) -> tuple[Any, Any, Any]:
        import torch

        idx, w, tgt = self._arrays(pairs, table)
        return torch.from_numpy(idx), torch.from_numpy(w), torch.from_numpy(tgt)

    def _loss(
        self, table: ItemTable, ctx_idx: Any, ctx_w: Any, tgt: Any, prior: Any, limit: int = 1024
    ) -> float:
        import torch

        with torch.no_grad():
            n = min(limit, len(tgt))
            return float(
                _softmax_loss(
                    torch.from_numpy(table.context),
                    torch.from_numpy(table.vectors),
                    torch.from_numpy(table.bias),
                    prior,
                    ctx_idx[:n],
                    ctx_w[:n],
                    tgt[:n],
                    self.rep.temperature,
                )
            )


#: Left edges (ms) of the age bins of the freshness prior: 0, then 1 s to a year, about x2 apart.
AGE_EDGES_MS = np.concatenate([[0.0], np.geomspace(1_000.0, 365 * 24 * 3600 * 1000.0, 25)])


def fit_age_curve(
    ages: np.ndarray, pub: np.ndarray, lo: float, hi: float, edges: np.ndarray, pseudo: float = 1.0
) -> np.ndarray:
    """Log engagement rate by item age, relative to the average, over the span ``[lo, hi]``.

    ``ages``: the age (ms) of the engaged item at each engagement; ``pub``: publication
    times of the catalog (-inf: unknown, left out). The rate of bin ``b`` is its
    engagements over its exposure (item-milliseconds spent at an age in the bin during the
    span), shrunk towards the average rate by ``pseudo`` engagements; the result is
    ``log(rate_b / average)``, 0 for bins without exposure.

    Examples
    --------
    >>> edges = np.array([0.0, 10.0])  # two bins: younger and older than 10 ms
    >>> pub = np.array([0.0, 0.0, 50.0, 90.0])  # items published over the span 0..100
    >>> r = fit_age_curve(np.array([1.0, 2.0, 3.0, 5.0, 4.0, 60.0]), pub, 0.0, 100.0, edges)
    >>> bool(r[0] > 0 > r[1])  # young items are engaged at a higher rate
    True
    """
    ages = np.asarray(ages, np.float64)
    known = np.isfinite(ages)
    ages = ages[known]
    p = pub[np.isfinite(pub)]
    nb = len(edges)
    if hi <= lo or not p.size or not ages.size:
        return np.zeros(nb, np.float32)
    right = np.append(edges[1:], np.inf)
    start = np.maximum(lo, p[:, None] + edges[None, :])
    end = np.minimum(hi, p[:, None] + right[None, :])
    exposure = np.maximum(0.0, end - start).sum(0)
    b = np.maximum(np.searchsorted(edges, ages, side="right") - 1, 0)
    n = np.bincount(b, minlength=nb).astype(np.float64)
    r0 = n.sum() / max(exposure.sum(), 1e-12)
    out = np.zeros(nb, np.float64)
    has = exposure > 0
    out[has] = np.log((n[has] + pseudo) / (exposure[has] + pseudo / r0) / r0)
    return out.astype(np.float32)


def _better(a: Mapping[str, float], b: Mapping[str, float], gain: float) -> bool:
    """``a`` beats ``b`` on validation: higher HR@10, or equal HR@10 and higher MRR."""
    return a["hr"] > b["hr"] + gain or (a["hr"] >= b["hr"] and a["mrr"] > b["mrr"] + gain)


def _means(each: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    hr, mrr = each
    return {"hr": float(hr.mean()) if hr.size else 0.0, "mrr": float(mrr.mean()) if mrr.size else 0.0}


def _paired_gain(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], z: float) -> bool:
    """``a`` beats ``b`` on the same validation pairs by more than ``z`` standard errors of
    the per-pair difference: HR@10, or reciprocal rank where no pair's HR@10 differs. A
    win of a few pairs out of hundreds is noise; taking it costs on the events that follow.
    ``z = 0``: any win."""
    for x, y in zip(a, b):
        d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
        if d.size == 0 or not d.any():
            continue
        se = float(d.std(ddof=1)) / np.sqrt(d.size) if d.size > 1 else 0.0
        return float(d.mean()) > z * se and float(d.mean()) > 0
    return False


def _text_loss(
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
    >>> good = _text_loss(C, tg, torch.tensor([0, 1]), ctx_idx, ctx_w, torch.tensor([0, 1]), 0.1, np.ones(3))
    >>> bad = _text_loss(C, tg.flip(0), torch.tensor([0, 1]), ctx_idx, ctx_w, torch.tensor([0, 1]), 0.1, np.ones(3))
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


def _unpublished(late: Any, tgt: Any, N: int) -> Any:
    """``[B, N]``: items published after each pair's time (never the pair's own target)."""
    import torch

    pub, ts = late
    out = pub.unsqueeze(0) > ts.unsqueeze(1)
    out[torch.arange(len(tgt)), tgt] = False
    return out


def _softmax_loss(
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
    pair's time are no negatives of it (as nobody could have been shown them)."""
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
