"""Learner errors: one root, a few leaves."""
from __future__ import annotations


class LearnerError(Exception):
    """Root of every learner failure."""


class ModelLoadError(LearnerError):
    """The encoder or an adapter cannot be loaded (path, format, shape)."""


class ArtifactError(LearnerError):
    """An artifact is invalid: checksum mismatch, missing file, wrong shape, incompatible."""
