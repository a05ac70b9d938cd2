"""One adapter round on a synthetic window (docs/adapters.md): what the adapter adds over the item parts on validation."""

import argparse
import ast
import json
import time
from dataclasses import replace

ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--at", type=int, default=4500)
ap.add_argument("--set", action="append", default=[])
ap.add_argument("--targets", default=None)
ap.add_argument("--lora-r", type=int, default=8)
ap.add_argument("--scenario", default="emerging")
a = ap.parse_args()
from driftrec.app.factory import base_table, load_encoder, make_learner, publication_times
from driftrec.learner import LearnerConfig
from driftrec.model import Representation
from driftrec.stream.synthetic import generate

s = generate(a.scenario, n_events=6000, seed=a.seed)
items = list(s.items)
kw = {k: ast.literal_eval(v) for k, v in (x.split("=", 1) for x in a.set)}
cfg = replace(LearnerConfig(seed=a.seed), lora_every=1, drift=None, **kw)
base = load_encoder(None, lora_r=0)
table = base_table(base, items, None)
import driftrec.model.encoder as E

enc = E.TextEncoder(
    None, lora_r=a.lora_r, **({"lora_targets": tuple(a.targets.split(","))} if a.targets else {})
)
L = make_learner(
    cfg, Representation(), table, {i.item_id: i.text for i in items}, enc, publication_times(items)
)
L.observe_many(list(s.events)[: a.at])
t0 = time.time()
r = L.train("exp")
m = r.metrics
print(
    json.dumps(
        {
            "set": kw,
            "targets": a.targets,
            "r": a.lora_r,
            "seed": a.seed,
            "at": a.at,
            "wall": round(time.time() - t0, 1),
            **{
                k: m.get(k)
                for k in (
                    "val_pairs",
                    "lora_steps",
                    "adapter_update",
                    "val_hr_items_only",
                    "val_hr_lora",
                    "val_mrr_items_only",
                    "val_mrr_lora",
                    "train_s",
                    "encode_s",
                )
            },
        }
    )
)
