"""model: what the scorer and the learner share.

The item table and the artifact format (:mod:`.artifacts`), the user representation,
scores and the one top-k (:mod:`.representation`), co-engagement (:mod:`.cooc`) and the
text encoder with its LoRA adapters (:mod:`.encoder`). The scorer and the learner import
this package and never each other.
"""

from __future__ import annotations

from .artifacts import (
    Artifact,
    ItemTable,
    load_artifact,
    new_version,
    path_from_uri,
    sha256_file,
    write_artifact,
)
from .cooc import CoEngagement, add_cooc, add_entries, cooc_entries
from .encoder import DEFAULT_MODEL, TextEncoder, default_model_path, make_tiny_model, pick_device
from .errors import ArtifactError, ModelError, ModelLoadError
from .representation import LN2, Representation, logaddexp, scores, top_k, user_vectors

__all__ = [
    "Artifact",
    "ArtifactError",
    "CoEngagement",
    "DEFAULT_MODEL",
    "ItemTable",
    "LN2",
    "ModelError",
    "ModelLoadError",
    "Representation",
    "TextEncoder",
    "add_cooc",
    "add_entries",
    "cooc_entries",
    "default_model_path",
    "load_artifact",
    "logaddexp",
    "make_tiny_model",
    "new_version",
    "path_from_uri",
    "pick_device",
    "scores",
    "sha256_file",
    "top_k",
    "user_vectors",
    "write_artifact",
]
