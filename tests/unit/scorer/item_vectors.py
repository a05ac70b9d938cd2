"""Item vectors for the scorer's tests: random unit rows, and an encoder whose vectors
depend on the text alone (the same in every process)."""

from __future__ import annotations

import hashlib

import numpy as np

D = 16


def unit_rows(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class HashEncoder:
    """Deterministic vectors from the text (``nan`` in the text: a malformed vector)."""

    def encode(self, texts: list[str], base: bool = False) -> np.ndarray:
        out = np.empty((len(texts), D), np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            out[i] = unit_rows(np.random.default_rng(seed), 1)[0]
            if "nan" in t:
                out[i, 0] = np.nan
        return out
