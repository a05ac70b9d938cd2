"""learner: rolling windows, LoRA micro-fine-tuning (peft), the gate, drift signals.

The learner never touches the scorer: it writes an artifact (:mod:`driftrec.model`) and
announces it. :class:`Learner` (:mod:`.core`) observes events into a window of
:class:`Pair` (:mod:`.pairs`), asks its triggers when to train (:mod:`.triggers`), trains
a round in stages (:mod:`.training`, with the losses of :mod:`.losses`), gates the
candidate (:mod:`.gate`) and may ship a freshness prior (:mod:`.age`).
"""

from __future__ import annotations

from .config import LearnerConfig, LearnerConfigError
from .core import Learner, TrainResult
from .drift import HitRateDrift
from .errors import LearnerError
from .pairs import Pair
from .windows import RollingWindow

__all__ = [
    "HitRateDrift",
    "Learner",
    "LearnerConfig",
    "LearnerConfigError",
    "LearnerError",
    "Pair",
    "RollingWindow",
    "TrainResult",
]
