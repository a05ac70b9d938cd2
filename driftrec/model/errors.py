"""Model errors: one root, two leaves."""

from __future__ import annotations


class ModelError(Exception):
    """Root of every failure of the shared model (encoder, artifacts)."""


class ModelLoadError(ModelError):
    """The encoder or an adapter cannot be loaded (path, format, shape)."""


class ArtifactError(ModelError):
    """An artifact is invalid: checksum mismatch, missing file, wrong shape, incompatible.

    ``reason``: a stable snake_case code (``driftrec.model.REJECT_REASONS``) that
    metrics count (``driftrec_artifacts_rejected_total{reason}``)."""

    def __init__(self, message: str, reason: str = "load_error") -> None:
        super().__init__(message)
        self.reason = reason
