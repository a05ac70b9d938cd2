"""Model errors: one root, two leaves."""
from __future__ import annotations


class ModelError(Exception):
    """Root of every failure of the shared model (encoder, artifacts)."""


class ModelLoadError(ModelError):
    """The encoder or an adapter cannot be loaded (path, format, shape)."""


class ArtifactError(ModelError):
    """An artifact is invalid: checksum mismatch, missing file, wrong shape, incompatible."""
