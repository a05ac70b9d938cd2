"""When to train: the triggers a learner checks after every batch of events.

- every ``train_every`` events (``"every_n"``);
- a drop of the live hit rate (``"drift"``, river's ADWIN or Page-Hinkley), at the
  earliest ``drift_cooldown`` events after the last training: a detection within the
  cooldown waits for its end, it is never forgotten;
- engagement moving to items nobody had engaged before (``"novelty"``), which barely moves
  the live hit rate the drift detector watches;
- a wave of new words (``"new_words"``): engagement going to posts whose text carries words
  no adapter round has trained on (:mod:`driftrec.learner.words`), at the earliest
  ``new_word_gap`` events after the last training. Each round it fired that the gate
  dropped doubles the rise it needs, up to ``new_word_backoff`` times, so that a catalog
  whose titles keep bringing words the adapters cannot use does not fire it round after
  dropped round.

Shares are compared with their value at the last training, so a steady feed (a long tail
of fresh posts and rare words all along) never fires.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from .config import LearnerConfig
from .drift import HitRateDrift
from .words import NewWords


class Triggers:
    """The trigger state of one learner: fed every engagement (:meth:`observe`) and the
    live hits (:meth:`observe_hits`); :meth:`due` says why a training should run now.

    Examples
    --------
    >>> t = Triggers(LearnerConfig(train_every=3, min_pairs=1, drift=None))
    >>> for item in ("a", "b", "a"):
    ...     t.observe(item, {})
    >>> t.due(n_pairs=3)
    'every_n'
    >>> t.started()
    >>> t.due(n_pairs=3) is None
    True
    """

    def __init__(self, config: LearnerConfig) -> None:
        self.config = config
        #: events observed since the last training: ``since_train`` counts towards
        #: ``train_every`` and ``new_word_gap`` (a caller may lower it for events trained on
        #: before a restart), ``since_drift`` times the drift cooldown
        self.since_train = 0
        self.since_drift = 0
        #: a drift or novelty trigger fired and waits for the cooldown (and its reason)
        self.drift_pending = False
        self.pending_reason = "drift"
        self.detector = HitRateDrift(config.drift) if config.drift else None
        #: events observed before the first training (None: a training has run, or the
        #: learner restarted: no calibration rounds), and the count at which the next
        #: calibration round is due (``calibrate_every``, then twice that, four times...)
        self.day_one_events: int | None = 0
        self.next_calibration = config.calibrate_every
        # novelty: items engaged so far; whether each of the last novelty_events
        # engagements was its item's first, and how many were; that share when the
        # serving candidate was trained (None: no training yet)
        self._engaged: set[str] = set()
        self._novel: deque[bool] = deque(maxlen=config.novelty_events)
        self._novel_n = 0
        self.novel_at_train: float | None = None
        # new words: the share of engagements whose item carries a word no adapter round
        # has learned, that share at the last training, and whether it rose since
        self.new_words = (
            NewWords(config.novelty_events, config.new_word_min) if config.new_word_jump else None
        )
        self.new_words_at_train: float | None = None
        self.new_words_pending = False
        #: rounds the new-words trigger fired that the gate dropped since the last kept
        #: adapter update (each doubles the jump it needs, up to new_word_backoff times)
        self.new_words_misses = 0
        # an engagement counts for the trigger once it is older than the validation share
        # of the window: then the next round trains on it (a newer one is only validated on)
        self._new_words_delay: deque[str] = deque(maxlen=max(1, int(config.window_events * config.val_share)))

    # ---- observing -----------------------------------------------------------------------
    def observe(self, item_id: str, texts: Mapping[str, str]) -> None:
        """One engagement with ``item_id`` (``texts``: item id -> text, for new words)."""
        self._observe_novelty(item_id)
        self._observe_new_words(item_id, texts)
        self.since_train += 1
        self.since_drift += 1
        if self.day_one_events is not None:
            self.day_one_events += 1

    def observe_hits(self, hits: Sequence[bool]) -> bool:
        """Feed the live hit signal; returns True when drift was detected."""
        if self.detector is None or not hits:
            return False
        fired = any(self.detector.update_many(hits))
        if fired:  # within the cooldown it waits for the cooldown's end: never forgotten
            self.drift_pending = True
            self.pending_reason = "drift"
        return fired

    def novel_share(self) -> float | None:
        """The share of the last ``novelty_events`` engagements that were their item's
        first (None until that many were seen)."""
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
        share, ref = self.novel_share(), self.novel_at_train
        if share is not None and ref is not None and share - ref >= self.config.novelty_jump:
            if not self.drift_pending:
                self.pending_reason = "novelty"
            self.drift_pending = True

    def _observe_new_words(self, item_id: str, texts: Mapping[str, str]) -> None:
        """Feed the new-words trigger (``LearnerConfig.new_word_jump``) one engagement: it
        asks for an adapter round when the share of engagements going to items whose text
        carries a word no adapter round has learned rises ``new_word_jump`` above that share
        at the last training (the feed's long tail keeps a steady share; a wave of new names
        lifts it). The share is over the engagements just older than the window's
        validation share: those a round trains on before its gate (a round that fired on
        the newest ones would only see the new words on validation, and be dropped)."""
        nw = self.new_words
        if nw is None:
            return
        d = self._new_words_delay
        old = d.popleft() if len(d) == d.maxlen else None
        d.append(item_id)
        if old is None:
            return
        nw.observe(old, texts.get(old, ""))
        share, ref = nw.share(), self.new_words_at_train
        if share is not None and ref is not None and share - ref >= self.new_word_jump():
            self.new_words_pending = True

    def new_word_jump(self) -> float:
        """The rise of the new-words share that fires the trigger now: ``new_word_jump``,
        doubled for each round it fired that the gate dropped since the last kept adapter
        update (at most ``new_word_backoff`` times: the count stops there)."""
        return float(self.config.new_word_jump * 2**self.new_words_misses)

    # ---- deciding ------------------------------------------------------------------------
    def due(self, n_pairs: int) -> str | None:
        """Why a training should run now ("drift", "novelty", "new_words", "every_n"), or a
        calibration round ("day_one": before the first training, at ``calibrate_every``
        events observed, twice that, four times...), or None; ``n_pairs``: the pairs in the
        window (none below ``min_pairs``)."""
        cfg = self.config
        if n_pairs < cfg.min_pairs:
            return None
        if self.drift_pending and self.since_drift >= cfg.drift_cooldown:
            return self.pending_reason
        if self.new_words_pending and self.since_train >= cfg.new_word_gap:
            return "new_words"
        if self.since_train >= cfg.train_every:
            if self.drift_pending:
                return self.pending_reason
            return "new_words" if self.new_words_pending else "every_n"
        c = self.day_one_events
        if c is not None and cfg.calibrate_every and c >= self.next_calibration:
            return "day_one"
        return None

    # ---- a training round ----------------------------------------------------------------
    def started(self) -> None:
        """A training starts: the counts and pending triggers reset, and the novelty share
        now is the one later shares are compared with."""
        self.since_train = 0
        self.since_drift = 0
        self.day_one_events = None
        self.drift_pending = False
        self.new_words_pending = False
        self.novel_at_train = self.novel_share()

    def calibrated(self) -> None:
        """A calibration round starts: the next one is due when the events observed reach
        the next of ``calibrate_every`` times 1, 2, 4... (a few rounds while the first
        events come, each on a window twice as large, whatever ``train_every`` is)."""
        c, step = self.day_one_events, self.config.calibrate_every
        if c is not None and step:
            while self.next_calibration <= c:
                self.next_calibration *= 2

    def words_trained(self, adapter_round: bool, target_texts: Iterable[str]) -> float | None:
        """The round's training pairs have these target texts: an adapter round learns
        their words. Returns the new-words share before it (None: the trigger is off); the
        share after is the one later shares are compared with."""
        if self.new_words is None:
            return None
        share = self.new_words.share()
        if adapter_round:
            self.new_words.learned(target_texts)
        self.new_words_at_train = self.new_words.share()
        return share

    def adapter_outcome(self, kept: bool, reason: str) -> None:
        """The gate's verdict on an adapter update: a kept one sets the new-words back-off
        back; a dropped one from a new-words round asks for a bigger wave next time."""
        if kept:
            self.new_words_misses = 0
        elif reason == "new_words":
            self.new_words_misses = min(self.new_words_misses + 1, self.config.new_word_backoff)
