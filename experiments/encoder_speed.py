"""How fast the text encoder encodes item texts on this CPU, and how close its faster ways
stay to float32 (issue 26, item 5): batching by characters or by tokens, float32 or
bfloat16 autocast, and dynamic int8 quantization of the linear layers (measured, not
offered: under cosine 0.99 of float32).

    python experiments/encoder_speed.py [--movielens DIR] [--max-len 32] [--threads 1] [--n 2000]

Texts: the synthetic catalogs (coengagement, emerging), random six-word posts as
``driftrec bench reencode`` makes them, and MovieLens-100K titles where ``--movielens``
names the folder holding u.item (read in place). The encoder carries a random adapter
(as after a swap). Prints, per text set and way, the best of three passes: rows/s (wall),
rows per CPU-second, and the cosine to float32's vectors (min, mean).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from driftrec.model import TextEncoder
from driftrec.stream.synthetic import FILLER, VOCAB, generate

ap = argparse.ArgumentParser()
ap.add_argument("--movielens", default=None, help="folder holding u.item (MovieLens-100K)")
ap.add_argument("--max-len", type=int, default=32)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--n", type=int, default=2000, help="texts per synthetic set")
ap.add_argument("--ways", default="float32/chars,float32/tokens,bfloat16/chars,bfloat16/tokens,int8/tokens")
a = ap.parse_args()
torch.set_num_threads(a.threads)

sets: dict[str, list[str]] = {}
for sc in ("coengagement", "emerging"):
    sets[sc] = [it.text for it in generate(sc, n_events=200, n_items=a.n, seed=0).items]
rng = np.random.default_rng(0)
words = [w for v in VOCAB.values() for w in v] + FILLER
sets["six_words"] = [" ".join(rng.choice(words, 6)) for _ in range(a.n)]
if a.movielens:
    from driftrec.stream.readers import read_movielens

    sets["ml100k"] = [it.text for it in read_movielens(a.movielens).items]

enc = TextEncoder(None, max_len=a.max_len, lora_r=8)
g = torch.Generator().manual_seed(0)
lora = {n: torch.randn(t.shape, generator=g) * 0.02 for n, t in enc.lora_state().items()}
enc.load_lora_state(lora)
ref = {k: enc.encode(v) for k, v in sets.items()}


def int8_encoder() -> TextEncoder:
    """The encoder with its linear layers (not the adapters' factors) quantized to int8."""
    q = TextEncoder(None, max_len=a.max_len, lora_r=8)
    q.load_lora_state(lora)
    names = {n for n, m in q.model.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n}
    spec = {n: torch.ao.quantization.per_channel_dynamic_qconfig for n in names}
    q.model = torch.ao.quantization.quantize_dynamic(q.model, spec, dtype=torch.qint8)
    return q


best: dict[tuple[str, str], list[float]] = {}
q8 = int8_encoder() if any(w.startswith("int8") for w in a.ways.split(",")) else None
for _rep in range(3):
    for k, texts in sets.items():
        for way in a.ways.split(","):
            prec, _, bat = way.partition("/")
            e = q8 if prec == "int8" else enc
            assert e is not None
            kw = {"precision": "float32" if prec == "int8" else prec, "batching": bat or "chars"}
            w0, c0 = time.perf_counter(), time.process_time()
            v = e.encode(texts, **kw)
            w, c = time.perf_counter() - w0, time.process_time() - c0
            cos = (v * ref[k]).sum(1)
            b = best.setdefault((k, way), [0.0, 0.0, float(cos.min()), float(cos.mean())])
            b[0], b[1] = max(b[0], len(texts) / w), max(b[1], len(texts) / c)
for (k, way), (w, c, cmin, cmean) in best.items():
    row = {"texts": k, "way": way, "rows_per_s": round(w, 1), "rows_per_cpu_s": round(c, 1)}
    print(json.dumps({**row, "cos_min": round(cmin, 5), "cos_mean": round(cmean, 5)}))
print(json.dumps({"threads": a.threads, "max_len": a.max_len, "loadavg": os.getloadavg()}))
