"""model: what the scorer and the learner share.

The item table (:mod:`.table`), the artifact format (:mod:`.artifacts`) and the checks an
untrusted artifact passes before it is loaded (:mod:`.trust`), the user representation,
scores and the one top-k (:mod:`.representation`), co-engagement (:mod:`.cooc`), the
order of re-encoding (:mod:`.reencode`) and the text encoder with its LoRA adapters
(:mod:`.encoder`). The scorer and the learner import this package and never each other.
"""

from __future__ import annotations

from .artifacts import Artifact, load_artifact, new_version, sha256_file, write_artifact
from .cooc import CoEngagement, add_cooc, add_entries, cooc_entries
from .encoder import (
    DEFAULT_MODEL,
    TextEncoder,
    default_model_path,
    make_tiny_model,
    pick_device,
    zero_at_init,
)
from .errors import ArtifactError, ModelError, ModelLoadError
from .reencode import priority_order
from .representation import LN2, Representation, logaddexp, scores, top_k, user_vectors
from .table import ItemTable
from .trust import REJECT_REASONS, VALUE_RANGES, check_version, path_from_uri, resolve_in_store, sign_manifest

__all__ = [
    "Artifact",
    "ArtifactError",
    "CoEngagement",
    "DEFAULT_MODEL",
    "ItemTable",
    "LN2",
    "ModelError",
    "ModelLoadError",
    "REJECT_REASONS",
    "VALUE_RANGES",
    "Representation",
    "TextEncoder",
    "add_cooc",
    "add_entries",
    "check_version",
    "cooc_entries",
    "default_model_path",
    "load_artifact",
    "logaddexp",
    "make_tiny_model",
    "new_version",
    "path_from_uri",
    "pick_device",
    "priority_order",
    "resolve_in_store",
    "scores",
    "sha256_file",
    "sign_manifest",
    "top_k",
    "user_vectors",
    "write_artifact",
    "zero_at_init",
]
