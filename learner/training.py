"""The optimisation of a training round: the item stage, the adapter stage and the
adapter catch-up, over the training pairs of the window.

1. **Item parts**: each item's target residual, bias and context vector, with the text
   vectors fixed (:meth:`Round.item_stage`). Cheap: every round.
2. **Adapters**: the encoder's LoRA weights on top of the item parts (held fixed), on a
   few of each batch's targets at a time, whose text vectors are re-encoded with
   gradients (:meth:`Round.adapter_stage`); the rest of the catalog keeps the serving
   adapter's vectors. Besides the softmax over the catalog, the same targets are ranked
   among themselves (negatives that are all fresh vectors) and by their text vector alone
   (:func:`~driftrec.learner.losses.text_loss`).
3. **Catch-up**: a kept update trains some more passes over the validation pairs
   (:meth:`Round.catch_up`).

The stages share one generator of random draws (the batches' order, the targets given
fresh vectors) and one step count, in that order: a round is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftrec.model import ItemTable, TextEncoder

from .config import LearnerConfig
from .losses import softmax_loss, table_loss, text_loss


class Round:
    """One round's trainable state over the current table ``cur``: its residuals ``R``,
    biases and context vectors ``C`` (``cur``'s contexts less ``unshift``: a round learns
    from contexts without the context shift), the training pairs as tensors, the popularity
    prior, and with publication times ``pub`` the pairs' times (an item is no negative of
    a pair before its publication). ``progress(steps)`` is called after every step.
    ``trained``: the rows whose parts are trained (None: all); the others are negatives
    only (a round on a sample of the catalog, :mod:`.sample`).
    """

    def __init__(
        self,
        config: LearnerConfig,
        temperature: float,
        cur: ItemTable,
        pairs: tuple[Any, Any, Any, Any],
        prior: Any,
        pub: Any,
        unshift: np.ndarray,
        rng: np.random.Generator,
        progress: Callable[[int], object] | None = None,
        trained: np.ndarray | None = None,
    ) -> None:
        import torch

        assert cur.context is not None
        self.config, self.temperature, self.cur = config, temperature, cur
        self.ctx_idx, self.ctx_w, self.tgt, self.ts = pairs
        self.prior, self.pub, self.unshift, self.rng = prior, pub, unshift, rng
        self.progress = progress
        self.T0 = torch.from_numpy(cur.text.copy())
        R = torch.from_numpy(cur.residual.copy())
        bias = torch.from_numpy(cur.bias.copy())
        C = torch.from_numpy(cur.context - unshift if unshift.size else cur.context.copy())
        #: the rows whose parts are trained (None: all): the rows a sampled round does not
        #: train are negatives only (:mod:`.sample`), and neither they nor their optimiser
        #: state are parameters
        self._rows = None
        if trained is not None and not trained.all():
            self._rows = torch.from_numpy(np.flatnonzero(trained))
            self._fixed = (R, bias, C)
            R, bias, C = R[self._rows], bias[self._rows], C[self._rows]
        #: parameters while the item stage trains them, fixed tensors after it
        self.R: Any = torch.nn.Parameter(R)
        self.bias: Any = torch.nn.Parameter(bias)
        self.C: Any = torch.nn.Parameter(C)
        n = len(self.tgt)
        self.B = min(config.batch_size, n)
        self.steps = 0
        self.losses: list[float] = []
        self._n = n
        #: set by the adapter stage: the encoder, the text of each row of ``cur``, the
        #: weight of each row as a target (rarely engaged rows weigh more), the optimiser
        self._encoder: TextEncoder | None = None
        self.texts: list[str] = []
        self._fresh_w = np.ones(0)
        self._opt: Any = None

    # ---- the pieces every stage uses ---------------------------------------------------
    def late(self, bi: Any) -> Any:
        """The ``late`` argument of the losses for the batch ``bi`` of the training pairs."""
        return None if self.pub is None else (self.pub, self.ts[bi])

    def batches(self, cap: int, epochs: int | None = None) -> Iterator[Any]:
        """Batches of training pair rows, in a fresh random order each epoch (``epochs``,
        default ``LearnerConfig.epochs``), ``cap`` of them at most."""
        import torch

        epochs = self.config.epochs if epochs is None else epochs
        n = 0
        for _epoch in range(epochs):
            order = self.rng.permutation(self._n)
            for s in range(0, len(order) - 1, self.B):
                if n >= cap:
                    return
                n += 1
                yield torch.from_numpy(order[s : s + self.B])

    def parts(self) -> tuple[Any, Any, Any]:
        """Every row's residual, bias and context vector (the trained rows' from the
        parameters): what the losses take."""
        if self._rows is None:
            return self.R, self.bias, self.C
        rows = (self._rows,)
        R, bias, C = self._fixed
        return R.index_put(rows, self.R), bias.index_put(rows, self.bias), C.index_put(rows, self.C)

    def loss(self, table: ItemTable) -> float:
        """``table``'s loss on (the first 1,024 of) the training pairs, without gradients."""
        return table_loss(table, self.ctx_idx, self.ctx_w, self.tgt, self.prior, self.temperature)

    def step(self, opt: Any, loss: Any) -> None:
        """One optimiser step on ``loss``."""
        opt.zero_grad()
        loss.backward()
        opt.step()
        self.losses.append(loss.item())
        self.steps += 1
        if self.progress is not None:
            self.progress(self.steps)

    # ---- 1. the item parts -----------------------------------------------------------------
    def item_stage(self) -> int:
        """Train the item parts (unless ``train_items`` is off), then freeze them; returns
        the steps taken."""
        import torch

        cfg, item_steps = self.config, 0
        if cfg.train_items:
            opt = torch.optim.Adam([self.R, self.bias, self.C], lr=cfg.lr_items)
            for bi in self.batches(cfg.item_max_steps):
                R, bias, C = self.parts()
                loss = softmax_loss(
                    C,
                    self.T0 + R,
                    bias,
                    self.prior,
                    self.ctx_idx[bi],
                    self.ctx_w[bi],
                    self.tgt[bi],
                    self.temperature,
                    late=self.late(bi),
                )
                self.step(opt, loss)
                item_steps += 1
        for p in (self.R, self.bias, self.C):
            p.requires_grad_(False)
        if self._rows is not None:  # every row's parts, fixed from here on
            self._fixed = self.parts()
            self._rows = None
            self.R, self.bias, self.C = self._fixed
        return item_steps

    def items_table(self) -> ItemTable:
        """``cur`` with the trained item parts (its text vectors and blend; the context
        shift put back on the contexts)."""
        cur, unshift = self.cur, self.unshift
        return ItemTable(
            list(cur.item_ids),
            cur.text,
            self.R.numpy().copy(),
            self.bias.numpy().copy(),
            self.C.numpy() + unshift if unshift.size else self.C.numpy().copy(),
            stale=cur.stale,
            context_shift=cur.context_shift,
            text_weight=cur.text_weight,
            pop_recent_share=cur.pop_recent_share,
        )

    # ---- 2. the adapters ---------------------------------------------------------------------
    def adapter_stage(self, encoder: TextEncoder, texts: list[str]) -> int:
        """Train ``encoder``'s adapters on the training pairs (``texts``: the text of each
        row of ``cur``); returns the steps taken. The encoder is left in eval mode."""
        import torch

        cfg = self.config
        self._encoder, self.texts = encoder, texts
        # how rarely each target is engaged in the window: the text-only term and the
        # draw of the targets that get fresh vectors lean towards rarely engaged items
        n_tgt = np.bincount(self.tgt.numpy(), minlength=len(self.cur.item_ids)).astype(np.float64)
        self._fresh_w = np.maximum(n_tgt, 1.0) ** -cfg.text_fresh
        encoder.model.train()
        self._opt = torch.optim.Adam(encoder.lora_parameters(), lr=cfg.lr_lora)
        lora_steps = 0
        for bi in self.batches(cfg.max_steps, cfg.lora_epochs or cfg.epochs):
            self.adapter_step(self.ctx_idx[bi], self.ctx_w[bi], self.tgt[bi], self.late(bi))
            lora_steps += 1
        encoder.model.eval()
        return lora_steps

    def adapter_step(self, ci: Any, cw: Any, tt: Any, lt: Any) -> None:
        """One adapter step on a batch (history rows, weights, targets, ``late``)."""
        import torch

        cfg, enc, rng, fresh_w = self.config, self._encoder, self.rng, self._fresh_w
        assert enc is not None
        # Fresh (trainable) target-side text vectors for the batch's targets; the
        # rest of the catalog uses the cached vectors of the serving adapter.
        g = np.unique(tt.numpy())
        if len(g) > cfg.grad_items:
            pg = fresh_w[g] / fresh_w[g].sum()
            g = np.sort(rng.choice(g, cfg.grad_items, replace=False, p=pg))
        g_t = torch.from_numpy(g.astype(np.int64))
        tg = enc.forward([self.texts[j] for j in g]).float().cpu()
        V = self.T0.index_put((g_t,), tg) + self.R
        args = (self.C, V, self.bias, self.prior, ci, cw, tt, self.temperature)
        loss = softmax_loss(*args, late=lt)
        # In-batch negatives over fresh vectors only, so that the adapters are
        # not trained against stale vectors (targets outside g are skipped).
        if bool(torch.isin(tt, g_t).all()):
            loss = loss + softmax_loss(*args, columns=g_t, late=lt)
        if cfg.text_loss > 0:
            # targets scored by their text vector under the adapter alone, as an
            # item nobody has engaged yet is: only the encoder can learn this
            loss = loss + cfg.text_loss * text_loss(
                self.C, tg, g_t, ci, cw, tt, self.temperature, fresh_w, lt
            )
        self.step(self._opt, loss)

    # ---- 3. the catch-up ---------------------------------------------------------------------
    def catch_up(self, val: tuple[Any, Any, Any, Any]) -> int:
        """``catchup`` more passes of the adapter stage over the validation pairs ``val``
        (history rows, weights, targets, times as tensors), in batches of the training
        stage's size; returns the steps taken."""
        import torch

        enc = self._encoder
        assert enc is not None
        v_idx, v_w, v_tgt, v_ts = val
        n, steps, B = len(v_tgt), 0, self.B
        enc.model.train()
        for _pass in range(self.config.lora_catchup):
            order = torch.from_numpy(self.rng.permutation(n))
            for s in range(0, n - 1, B):
                bi = order[s : s + B]
                self.adapter_step(
                    v_idx[bi], v_w[bi], v_tgt[bi], None if self.pub is None else (self.pub, v_ts[bi])
                )
                steps += 1
        enc.model.eval()
        return steps


@dataclass
class RoundLog:
    """What a round measured, in the order of :attr:`TrainResult.metrics`."""

    reason: str
    pairs: int
    train_pairs: int
    val_pairs: int
    device: str
    use_lora: bool
    new_word_share: float | None = None
    new_word_jump: float = 0.0
    val_pairs_unseen: int = 0
    item_steps: int = 0
    lora_steps: int = 0
    loss_before: float = 0.0
    loss_after: float = 0.0
    m_cur: dict[str, float] | None = None
    m_new: dict[str, float] | None = None
    m_items: dict[str, float] | None = None
    m_lora: dict[str, float] | None = None
    cooc_weight: float = 0.0
    age_weight: float = 0.0
    train_s: float = 0.0
    items_s: float = 0.0
    encode_s: float = 0.0
    adapter_update: str = "none"
    context_shift: float = 0.0
    text_weight: float = 1.0
    pop_recent_share: float = 0.0
    #: live popularity alone on the pairs the candidate is judged on, and whether it was
    #: served instead of the candidate (which it beat)
    m_pop: dict[str, float] | None = None
    popularity: bool = False
    accepted: bool = False

    def metrics(self, steps: int) -> dict[str, Any]:
        """The round's metrics (``steps``: every optimiser step it took)."""
        m_cur, m_new, m_items, m_lora = self.m_cur, self.m_new, self.m_items, self.m_lora
        assert m_cur is not None and m_new is not None and m_items is not None
        return {
            "reason": self.reason,
            "new_word_share": None if self.new_word_share is None else round(self.new_word_share, 3),
            "new_word_jump": round(self.new_word_jump, 3),
            "pairs": self.pairs,
            "train_pairs": self.train_pairs,
            "val_pairs": self.val_pairs,
            "val_pairs_unseen": self.val_pairs_unseen,
            "steps": steps,
            "item_steps": self.item_steps,
            "lora_steps": self.lora_steps,
            "device": self.device,
            "loss_before": round(self.loss_before, 5),
            "loss_after": round(self.loss_after, 5),
            "val_hr_current": round(m_cur["hr"], 5),
            "val_hr_candidate": round(m_new["hr"], 5),
            "val_mrr_current": round(m_cur["mrr"], 5),
            "val_mrr_candidate": round(m_new["mrr"], 5),
            "val_hr_items_only": round(m_items["hr"], 5),
            "val_mrr_items_only": round(m_items["mrr"], 5),
            "val_hr_lora": None if m_lora is None else round(m_lora["hr"], 5),
            "val_mrr_lora": None if m_lora is None else round(m_lora["mrr"], 5),
            "cooc_weight": self.cooc_weight,
            "age_weight": self.age_weight,
            "train_s": round(self.train_s, 3),
            "items_s": round(self.items_s, 3),
            "encode_s": round(self.encode_s, 3),
            "use_lora": self.use_lora,
            "adapter_update": self.adapter_update,
            "context_shift": self.context_shift,
            "text_weight": self.text_weight,
            "pop_recent_share": self.pop_recent_share,
            "val_hr_popularity": None if self.m_pop is None else round(self.m_pop["hr"], 5),
            "popularity": self.popularity,
            "accepted": self.accepted,
        }
