from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random-initialised BERT with the synthetic vocabulary (no hub, no download)."""
    from driftrec.model import make_tiny_model
    from driftrec.stream.synthetic import vocabulary

    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"), vocabulary())
