"""learner: rolling windows, LoRA micro-fine-tuning (peft), the gate, artifacts, drift.

The learner never touches the scorer: it writes an artifact and announces it.
"""
from __future__ import annotations

from .artifacts import Artifact, ItemTable, load_artifact, new_version, sha256_file, write_artifact
from .config import LearnerConfig, LearnerConfigError
from .cooc import CoEngagement, add_cooc, add_entries, cooc_entries
from .core import Learner, Pair, TrainResult
from .drift import HitRateDrift
from .encoder import DEFAULT_MODEL, TextEncoder, default_model_path, make_tiny_model, pick_device
from .errors import ArtifactError, LearnerError, ModelLoadError
from .model import Representation, scores, top_k, user_vectors
from .windows import RollingWindow

__all__ = [
    "Artifact", "ArtifactError", "CoEngagement", "DEFAULT_MODEL", "HitRateDrift", "ItemTable", "Learner",
    "LearnerConfig", "LearnerConfigError", "LearnerError", "ModelLoadError", "Pair",
    "Representation", "RollingWindow", "TextEncoder", "TrainResult", "default_model_path",
    "load_artifact", "make_tiny_model", "new_version", "pick_device", "scores", "sha256_file",
    "add_cooc", "add_entries", "cooc_entries", "top_k", "user_vectors", "write_artifact",
]
