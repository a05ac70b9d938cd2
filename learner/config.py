"""Learner settings (frozen, validated)."""

from __future__ import annotations

from dataclasses import dataclass

from driftrec.model import VALUE_RANGES

from .errors import LearnerError


class LearnerConfigError(LearnerError, ValueError):
    """A learner setting is wrong; the message names it."""


@dataclass(frozen=True)
class LearnerConfig:
    """Window, triggers, fine-tune and gate settings.

    ``use_lora=False`` trains every learned part but the adapters (the ``no_lora``
    ablation); ``train_items=False`` trains the adapters only. Each training fits the
    item parts first (at most ``item_max_steps`` steps), then the adapters on top (at most
    ``max_steps``) on every ``lora_every``-th training, on every drift or novelty trigger,
    and when a wave of new words asks for one (``new_word_jump``; :mod:`learner.words`).
    ``age_weights``: the weights of the freshness prior (a log engagement rate by item age,
    learned from the window where items have publication times) tried on validation.
    ``cooc_neighbours`` > 0 ships each item's top co-engaged neighbours with every version,
    weighted by the best of ``cooc_weights`` (or 0) on validation (see :mod:`driftrec.model.cooc`).
    ``lora_gate_z``: an adapter update is kept only if it beats the item parts alone on
    the validation pairs by this many standard errors of the per-pair difference (1.64: a
    one-sided 95 % test; 0: any win).
    """

    window_events: int = 4096
    window_ms: int | None = None
    train_every: int = 1000
    min_pairs: int = 128
    drift: str | None = "adwin"
    drift_cooldown: int = 500
    #: novelty trigger: train (adapters included, after ``drift_cooldown``) when the share
    #: of the last ``novelty_events`` engagements that go to items nobody had engaged
    #: before rises this much above that share at the last training (0: off). Engagement moving to new
    #: content (fresh posts, new names) barely moves the live hit rate the drift detector
    #: watches, and waiting for ``train_every`` leaves the first posts unranked.
    novelty_jump: float = 0.15
    novelty_events: int = 200
    #: new-words trigger: run an adapter round (a training, ``new_word_gap`` events after
    #: the last one at the earliest) when, of the ``novelty_events`` engagements just older
    #: than the validation share (those a round trains on), the share that go to items whose
    #: text carries a word no adapter round has trained on ``new_word_min`` times rises this
    #: much above that share at the last training (0: off). New names arrive in waves; a fixed
    #: ``lora_every`` learns them late or trains adapters when nothing new is there.
    new_word_jump: float = 0.1
    new_word_min: int = 3
    new_word_gap: int = 250
    #: after a round the trigger fired is dropped by the gate, the jump it needs doubles, up
    #: to this many times (0: never); a kept adapter update sets it back. On a catalog whose
    #: titles keep bringing words the adapters cannot use (MovieLens) the trigger otherwise
    #: fires round after dropped round.
    new_word_backoff: int = 3
    batch_size: int = 256
    epochs: int = 2
    max_steps: int = 64
    #: passes over the window of the adapter stage (0: ``epochs``, as the item stage)
    lora_epochs: int = 4
    item_max_steps: int = 512
    #: passes over the validation pairs that a kept adapter update trains on once its
    #: candidate has won both checks, before it is shipped (0: off): the newest pairs are
    #: where a name that appeared since the last round is engaged, and without them an
    #: adapter would learn it one validation share late
    lora_catchup: int = 2
    lora_every: int = 5
    cooc_neighbours: int = 50
    cooc_history: int = 50
    cooc_weights: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    #: weights of the learned freshness prior tried on validation (besides 0); () = off
    age_weights: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    grad_items: int = 32
    lr_lora: float = 5e-3
    #: weight of the text-only term of the adapter stage: each target scored by its text
    #: vector under the adapter alone (no residual, no bias) against the batch's other
    #: targets, as an item nobody engaged yet is (0: off). Only this term trains what the
    #: adapter does for such an item; with it on, the gate kept adapter updates it dropped
    #: without it on the co-engagement scenario
    text_loss: float = 1.0
    #: pairs of the text-only term weighted by (engagements of the target in the window)
    #: ** -text_fresh, and the adapter stage's targets drawn with the same weights: rarely
    #: engaged (fresh) items are where only the text can help (0: uniform)
    text_fresh: float = 1.0
    #: the learner encodes at most this many items under a candidate adapter (newest and
    #: most engaged first) before gating and publishing it; the other rows keep the
    #: serving version's text vectors, marked stale, and the scorer re-encodes them in the
    #: background after the swap (0: the whole catalog, every time)
    encode_budget: int = 20_000
    lr_items: float = 0.003
    use_lora: bool = True
    train_items: bool = True
    #: the newest ``val_share`` of the window's pairs validate, never trained on before the
    #: gate: a round is judged on the engagements the version will serve next
    val_share: float = 0.2
    #: a version with a kept adapter update moves each item's context vector (the history
    #: side of the user vector) with its text vector: by this much of (text under the
    #: adapter - text under the base encoder). 0: the context side stays in the base
    #: encoder's space. A user whose recent history is posts named by a new word then
    #: carries that word's topic once the adapter has learned it. The shift is served,
    #: not trained from: training takes it back out, so that a name an adapter got wrong
    #: does not pull its users toward the wrong topic in every later round. 1: larger
    #: shifts (1.5, 2) do no better on the emerging-names scenario over five seeds.
    context_shift: float = 1.0
    min_gain: float = 0.0
    lora_gate_z: float = 1.64
    #: the text weights tried on validation (``ItemTable.text_weight``: the user-item term
    #: against bias, live popularity, freshness and co-engagement; :mod:`learner.blend`); a
    #: round serves one other than the serving version's only when it wins by
    #: ``blend_gate_z`` standard errors of the per-pair difference. () = off. Where the
    #: text says little about what users engage, its term is noise beside popularity
    text_weights: tuple[float, ...] = (0.0, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0)
    blend_gate_z: float = 1.64
    #: the popularity mixes tried on validation after the text weight, as it is
    #: (``ItemTable.pop_recent_share``: how much of the popularity term is recent
    #: popularity, decayed by events, against the long term, decayed by the clock): 0 =
    #: the long term alone, 1 = the recent one alone. () = off
    pop_recent_shares: tuple[float, ...] = (0.0, 0.5, 1.0)
    #: the mix is chosen on the validation pairs of the rounds so far, each pair once, the
    #: newest this many (:class:`~driftrec.learner.popularity.PooledEvidence`): one round's
    #: pairs rarely tell the two terms apart beyond noise
    pop_recent_evidence: int = 4096
    #: before the first training, a calibration round at this many events observed, then at
    #: twice, four times as many..., picks the serving table's text weight and popularity
    #: mix on the events so far (nothing trained: every pair of the window validates; 0:
    #: off). Until the first
    #: training the base version is served, and counting engagements already says more
    #: than text similarity on a catalog whose text is weak
    calibrate_every: int = 100
    #: items published more than this before the newest event are no training target, no
    #: popularity, and their rows leave the table once they are a quarter of it
    #: (:mod:`learner.catalog`); 0: never (``ITEM_MAX_AGE_DAYS``)
    item_max_age_ms: int = 0
    #: above this many items a round trains and validates on a sample of the catalog of
    #: about this many rows (:mod:`~driftrec.learner.sample`: the rows the window touches,
    #: the newest, the most popular and a uniform draw of the rest, each counted for the
    #: rows it stands for); its memory and time stop growing with the catalog. 0: never
    round_items: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> None:
            raise LearnerConfigError(f"LearnerConfig.{field} {why}")

        if self.item_max_age_ms < 0:
            bad("item_max_age_ms", "must be >= 0")
        if self.window_events < 8:
            bad("window_events", "must be >= 8")
        if self.train_every < 1:
            bad("train_every", "must be >= 1")
        if not 0 < self.val_share < 1:
            bad("val_share", "must be in (0, 1)")
        if self.batch_size < 2:
            bad("batch_size", "must be >= 2 (in-batch negatives)")
        if self.lora_catchup < 0:
            bad("lora_catchup", "must be >= 0 (0 = off)")
        if self.epochs < 1 or self.max_steps < 1 or self.item_max_steps < 1:
            bad("epochs", ", max_steps and item_max_steps must be >= 1")
        if self.cooc_neighbours < 0 or self.cooc_history < 1:
            bad("cooc_neighbours", "must be >= 0 (0 = off) and cooc_history >= 1")
        if self.lora_gate_z < 0 or self.blend_gate_z < 0:
            bad("lora_gate_z", "and blend_gate_z must be >= 0")
        if any(not 0.0 <= w <= 16.0 for w in self.text_weights):
            bad("text_weights", "must be between 0 and 16")
        if any(not 0.0 <= s <= 1.0 for s in self.pop_recent_shares):
            bad("pop_recent_shares", "must be between 0 and 1")
        if self.pop_recent_evidence < 1:
            bad("pop_recent_evidence", "must be >= 1")
        if self.calibrate_every < 0:
            bad("calibrate_every", "must be >= 0 (0 = off)")
        if not 0.0 <= self.context_shift <= 4.0:
            bad("context_shift", "must be between 0 (off) and 4")
        if self.text_loss < 0 or self.text_fresh < 0 or self.encode_budget < 0:
            bad("text_loss", ", text_fresh and encode_budget must be >= 0")
        if self.lora_every < 1:
            bad("lora_every", "must be >= 1")
        if self.round_items < 0:
            bad("round_items", "must be >= 0 (0 = never sample)")
        if not (self.use_lora or self.train_items):
            bad("use_lora", "and train_items cannot both be off: nothing would be learned")
        if not 0.0 <= self.novelty_jump <= 1.0:
            bad("novelty_jump", "must be between 0 (off) and 1")
        if not 0.0 <= self.new_word_jump <= 1.0:
            bad("new_word_jump", "must be between 0 (off) and 1")
        if self.new_word_backoff < 0:
            bad("new_word_backoff", "must be >= 0 (0: never back off)")
        if self.new_word_min < 1 or self.new_word_gap < 1:
            bad("new_word_min", "and new_word_gap must be >= 1")
        if self.novelty_events < 10:
            bad("novelty_events", "must be at least 10")
        for name in ("cooc_weights", "age_weights"):  # a scorer refuses a version beyond them
            hi = VALUE_RANGES["cooc_weight" if name == "cooc_weights" else "age_weight"][1]
            if not all(0 < w <= hi for w in getattr(self, name)):
                bad(name, f"must each be > 0 and <= {hi:g} (driftrec.model.VALUE_RANGES)")
        if self.drift not in (None, "adwin", "page_hinkley"):
            bad("drift", "must be adwin, page_hinkley or None")
