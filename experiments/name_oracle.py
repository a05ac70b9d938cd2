"""How much could knowing the new names ever be worth? A reference run on ``emerging``.

The ``emerging`` scenario's new posts are one invented name plus generic words; only
engagement says which topic a name belongs to, and that is what the adapters have to
learn. This script runs the prequential loop (the loop of ``driftrec eval``) with the
systems of ``--systems`` beside ``name_oracle``: driftrec_no_lora with a text encoder that
*already knows* every name's topic, as a perfectly trained adapter would. A post's text
vector is moved toward its topic's centroid (the mean base-encoder vector of the back
catalog items of the topic), ``v + alpha * c``, normalised:

- ``--side target``: only the posts' target-side text vectors (what an adapter changes
  in driftrec: the context side and comments stay on the base encoder);
- ``--side all``: also the context side and every comment that carries a name;
- ``--lag N``: the oracle knows a name only for posts published at least N events (of
  the stream's pace) after the name's first post, as an adapter trained N events into a
  name's life would.

    python experiments/name_oracle.py --seed 0 [--events 20000] [--side target|all] [--alpha 1]
        [--lag 0] [--systems driftrec_no_lora,newest] [--report DIR] [--json]

Prints the harness's table (HR@10, cold HR@10, post-shift HR@10, per window) and, with
``--json``, the summary. The oracle's HR@10 over driftrec_no_lora's in the same run is
the most any adapter could add to the item parts in this scorer (docs/adapters.md,
"Measured effect"): it knows every name from its first post, without a training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--events", type=int, default=20_000)
ap.add_argument("--side", choices=("target", "all"), default="target")
ap.add_argument("--alpha", type=float, default=1.0, help="how far toward the topic centroid (> 0)")
ap.add_argument(
    "--lag",
    type=int,
    default=0,
    help="events after a name's first post before its posts know it (posts only)",
)
ap.add_argument("--systems", default="driftrec_no_lora,newest", help="run beside name_oracle")
ap.add_argument("--lora-every", type=int, default=2, help="as driftrec eval's flag (driftrec only)")
ap.add_argument("--report", default=None, help="folder for table.txt and summary.json")
ap.add_argument("--json", action="store_true")
a = ap.parse_args()
if a.alpha <= 0:
    ap.error("--alpha must be > 0")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import driftrec.app.system as factory  # noqa: E402
from driftrec.evaluation import harness  # noqa: E402
from driftrec.evaluation import prequential as pq  # noqa: E402
from driftrec.learner import LearnerConfig  # noqa: E402
from driftrec.model import ItemTable  # noqa: E402
from driftrec.stream.synthetic import VOCAB, generate  # noqa: E402

s = generate("emerging", n_events=a.events, seed=a.seed)
items = list(s.items)
gap = (s.events[-1].ts - s.events[0].ts) / max(1, len(s.events) - 1)  # ms per event
first: dict[str, int] = {}
name_of: dict[str, str] = {}  # post text -> its name
pub_of: dict[str, int] = {}  # post text -> its (first) publication time
for it in items:
    for w in it.text.split():
        if w in s.name_topics:
            name_of[it.text] = w
            pub_of[it.text] = min(pub_of.get(it.text, it.ts), it.ts)
            first[w] = min(first.get(w, it.ts), it.ts)
known = {t for t, w in name_of.items() if pub_of[t] >= first[w] + a.lag * gap}


def centroids(vec: np.ndarray) -> dict[str, np.ndarray]:
    """Each topic's mean base vector over the back catalog items that carry its words."""
    out = {}
    for topic, words in VOCAB.items():
        ws = set(words)
        rows = [j for j, it in enumerate(items) if it.text not in name_of and ws & set(it.text.split())]
        c = vec[rows].mean(0)
        out[topic] = c / np.linalg.norm(c)
    return out


def moved(texts: list[str], vec: np.ndarray, cent: dict[str, np.ndarray], posts_only: bool) -> np.ndarray:
    """``vec`` with every text that carries a known name moved toward the name's topic."""
    out = vec.copy()
    for j, t in enumerate(texts):
        w = name_of.get(t) if posts_only else next((x for x in t.split() if x in s.name_topics), None)
        if w is None or (posts_only and t not in known):
            continue
        x = out[j] + a.alpha * cent[s.name_topics[w]]
        out[j] = x / np.linalg.norm(x)
    return out


@contextlib.contextmanager
def oracle_encoder() -> Iterator[None]:
    """While building the oracle system: its base table (and, ``--side all``, its
    encoder's every encode) know the names."""
    load, table = factory.load_encoder, factory.base_table
    cent: dict[str, np.ndarray] = {}

    def base_table(encoder: Any, its: Any, cache_dir: Any = None, progress: Any = None) -> ItemTable:
        t = table(encoder, its, None, progress)
        cent.update(centroids(t.text))
        text = moved([it.text for it in its], t.text, cent, True)
        ctx = text.copy() if a.side == "all" else t.text.copy()
        return ItemTable(list(t.item_ids), text, t.residual, t.bias, ctx)

    def load_encoder(*args: Any, **kw: Any) -> Any:
        enc = load(*args, **kw)
        if a.side == "all":  # comments (encoded by the scorer) carry the name's topic too
            base = enc.encode

            def encode(texts: Any, *x: Any, **y: Any) -> np.ndarray:
                v = base(texts, *x, **y)
                return moved(list(texts), v, cent, False) if cent else v

            enc.encode = encode
        return enc

    factory.load_encoder, factory.base_table = load_encoder, base_table
    try:
        yield
    finally:
        factory.load_encoder, factory.base_table = load, table


cfg = LearnerConfig(seed=a.seed, lora_every=a.lora_every)
art = tempfile.mkdtemp(prefix="driftrec-oracle-")
names = [n.strip() for n in a.systems.split(",") if n.strip()]
systems = harness.build_systems(names, items, learner_config=cfg, seed=a.seed, artifact_dir=art)
with oracle_encoder():
    (oracle,) = harness.build_systems(
        ["driftrec_no_lora"], items, learner_config=cfg, seed=a.seed, artifact_dir=art + "/o"
    )
oracle.name = "name_oracle"
systems.append(oracle)
pub = factory.publication_times(items)
with harness._one_blas_thread():
    res = pq.run(list(s.events), systems, publications=None if pub is None else list(pub.values()))
window = pq.auto_window(len(res.target_index))
summary = harness.summarise(res, systems, window, s.shift_ts, pq.shift_index_of(list(s.events), s.shift_ts))
summary["oracle"] = {"side": a.side, "alpha": a.alpha, "lag_events": a.lag, "seed": a.seed}
table = harness.format_tables(res, summary, window)
print(harness.format_tables(res, summary, window, max_windows=24))
if a.report:
    os.makedirs(a.report, exist_ok=True)
    with open(os.path.join(a.report, "table.txt"), "w") as fh:
        fh.write(table + "\n")
    with open(os.path.join(a.report, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
if a.json:
    print(json.dumps(summary, separators=(",", ":")))
sys.exit(0)
