"""scorer: real-time user representations, catalog ranking, recommendation updates and
model-version swaps."""

from __future__ import annotations

from .config import ScorerConfig
from .core import BatchResult, Scorer, ServingModel
from .errors import ScorerConfigError, ScorerError, SwapRejected
from .swap import BASE_RECORD, SwapEvent, SwapManager

__all__ = [
    "BASE_RECORD",
    "BatchResult",
    "Scorer",
    "ScorerConfig",
    "ScorerConfigError",
    "ScorerError",
    "ServingModel",
    "SwapEvent",
    "SwapManager",
    "SwapRejected",
]
