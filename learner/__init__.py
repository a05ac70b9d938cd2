"""learner: rolling windows, LoRA micro-fine-tuning (peft), the gate, drift signals.

The learner never touches the scorer: it writes an artifact (:mod:`driftrec.model`) and
announces it.
"""

from __future__ import annotations

from .config import LearnerConfig, LearnerConfigError
from .core import Learner, Pair, TrainResult
from .drift import HitRateDrift
from .errors import LearnerError
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
