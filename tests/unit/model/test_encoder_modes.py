"""How the encoder batches and computes (issue 26, item 5): by token count, each batch
padded to its longest, a text gets its vector to the last bits; bfloat16 autocast within
cosine 0.99; the default way is the one it always was."""

from __future__ import annotations

import numpy as np
import pytest

from driftrec.model import ModelLoadError, TextEncoder
from driftrec.stream.synthetic import vocabulary


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = np.random.default_rng(0)
    words = vocabulary()
    return [" ".join(rng.choice(words, int(rng.integers(1, 12)))) for _ in range(300)] + [""]


def test_token_batches_give_each_text_its_vector(tiny_model: str, texts: list[str]) -> None:
    enc = TextEncoder(tiny_model, lora_r=2)
    chars = enc.encode(texts, batch_size=32)
    tokens = enc.encode(texts, batch_size=32, batching="tokens")
    assert tokens.shape == chars.shape and np.allclose(tokens, chars, atol=1e-5)
    one = np.stack([enc.encode([t])[0] for t in texts[:20]])  # a batch of one: no padding
    assert np.allclose(tokens[:20], one, atol=1e-5)
    assert np.array_equal(enc.encode(texts, batch_size=32, base=True), chars)  # no adapter trained
    by_default = TextEncoder(tiny_model, lora_r=2, batching="tokens")
    assert np.array_equal(by_default.encode(texts, batch_size=32), tokens)


def test_bfloat16_stays_within_cosine_099(tiny_model: str, texts: list[str]) -> None:
    enc = TextEncoder(tiny_model, lora_r=2)
    ref = enc.encode(texts)
    bf = enc.encode(texts, precision="bfloat16")
    assert bf.dtype == np.float32 and np.allclose(np.linalg.norm(bf, axis=1), 1.0, atol=1e-5)
    assert float((ref * bf).sum(1).min()) > 0.99
    assert np.array_equal(enc.encode(texts), ref)  # the encoder's own way is untouched


def test_unknown_modes_are_refused(tiny_model: str) -> None:
    with pytest.raises(ModelLoadError):
        TextEncoder(tiny_model, lora_r=2, precision="int8")
    enc = TextEncoder(tiny_model, lora_r=2)
    with pytest.raises(ModelLoadError):
        enc.encode(["a"], batching="words")
