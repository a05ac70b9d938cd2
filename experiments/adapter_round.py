"""One adapter round on a synthetic window (docs/adapters.md): what the adapter adds over the
item parts on the learner's own validation pairs, split by kind of target, and how the
candidate does on the events that follow.

    python experiments/adapter_round.py --seed 0 [--at 4500] [--set lora_epochs=2 --set lr_lora=0.001]
        [--targets query,value] [--lora-r 8] [--lora-alpha 2R] [--scenario emerging]

Prints one JSON line:

- ``items`` / ``lora``: validation HR@10 of the item parts alone and with the adapter, each
  with its best freshness weight (what the gate compares): ``[all, new-post targets,
  back-catalog targets, targets never engaged in the training part]``;
- ``newest_val``: ranking by publication time alone on the same validation pairs;
- ``text_only_fresh``: the new-post targets ranked among the posts published in the 15
  minutes before, by the user vector against the text vector alone (no residual, bias or
  prior): how well the text, base or adapted, says whose a fresh post is;
- ``next``: the shipped candidate and ``newest`` on the ``--next`` events after ``--at``
  (popularity frozen at the training).
"""

import argparse
import ast
import json
import time
from dataclasses import replace

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--at", type=int, default=4500, help="the learner has seen this many events")
ap.add_argument("--next", type=int, default=1000, help="events after --at to score the candidate on")
ap.add_argument("--events", type=int, default=6000)
ap.add_argument("--set", action="append", default=[], help="LearnerConfig field=value")
ap.add_argument("--targets", default=None, help="LoRA target modules, comma-separated")
ap.add_argument("--lora-r", type=int, default=8)
ap.add_argument("--lora-alpha", type=int, default=None, help="default: 2 x --lora-r, as the encoder")
ap.add_argument("--scenario", default="emerging")
a = ap.parse_args()

import driftrec.learner.core as core  # noqa: E402
from driftrec.app.system import base_table, load_encoder, publication_times  # noqa: E402
from driftrec.app.system import build_learner as make_learner  # noqa: E402
from driftrec.learner import LearnerConfig  # noqa: E402
from driftrec.model import Representation, TextEncoder, user_vectors  # noqa: E402
from driftrec.stream.synthetic import generate  # noqa: E402

seen: dict = {}
_gain, _encode = core._paired_gain, core.Learner._encode_candidate


def paired_gain(x, y, z):  # the gate's two per-pair figures
    seen["lora"], seen["items"] = x, y
    return _gain(x, y, z)


def encode_candidate(self, cur, items_only, texts, *shift):  # the two tables the gate compares
    t = _encode(self, cur, items_only, texts, *shift)
    seen["t_lora"], seen["t_items"] = t, items_only
    return t


core._paired_gain, core.Learner._encode_candidate = paired_gain, encode_candidate

s = generate(a.scenario, n_events=a.events, seed=a.seed)
items = list(s.items)
kw = {k: ast.literal_eval(v) for k, v in (x.split("=", 1) for x in a.set)}
cfg = replace(LearnerConfig(seed=a.seed), lora_every=1, drift=None, **kw)
table = base_table(load_encoder(None, lora_r=0), items, None)
enc = TextEncoder(
    None,
    lora_r=a.lora_r,
    lora_alpha=a.lora_alpha,
    seed=a.seed,
    **({"lora_targets": tuple(a.targets.split(","))} if a.targets else {}),
)
L = make_learner(
    cfg, Representation(), table, {i.item_id: i.text for i in items}, enc, publication_times(items)
)
L.observe_many(list(s.events)[: a.at])
t0 = time.time()
r = L.train("exp")
wall = time.time() - t0
m = r.metrics

pairs = [p.value for p in L.window if not p.value.repeat and L.table.index(p.value.target) >= 0]
n_val = max(1, int(len(pairs) * cfg.val_share))
train_p, val = pairs[:-n_val], pairs[-n_val:]
n_train = {}
for p in train_p:
    n_train[p.target] = n_train.get(p.target, 0) + 1
new = np.array([p.target.startswith("p") for p in val])
cold = np.array([n_train.get(p.target, 0) == 0 for p in val])
pub = L._pub_vector(L.table)


def newest_hr(ps):
    """HR@10 of ranking by publication time alone (the user's seen items excluded)."""
    out = []
    for p in ps:
        t = L.table.index(p.target)
        ex = {L.table.index(x) for x in p.ctx_items}
        better = int(((pub > pub[t]) & (pub <= p.ts)).sum()) - sum(
            1 for j in ex if j >= 0 and pub[t] < pub[j] <= p.ts
        )
        out.append(float(better < 10))
    return np.array(out)


def text_only_fresh(tab):
    ctx_idx, ctx_w, tgt = L._arrays(val, tab)
    S = user_vectors(ctx_idx, ctx_w, tab.context) @ tab.text.T
    out = []
    for b, p in enumerate(val):
        if not new[b]:
            continue
        cand = (pub <= p.ts) & (pub > p.ts - 15 * 60 * 1000)
        cand[ctx_idx[b][ctx_idx[b] >= 0]] = False
        if cand[tgt[b]]:
            out.append(float((S[b][cand] > S[b, tgt[b]]).sum() < 10))
    return round(float(np.mean(out)), 4) if out else None


def split(hr):
    return [round(float(x.mean()), 4) if x.size else None for x in (hr, hr[new], hr[~new], hr[new & cold])]


out = {
    "set": kw,
    "targets": a.targets,
    "r": a.lora_r,
    "alpha": a.lora_alpha,
    "seed": a.seed,
    "at": a.at,
    "wall_s": round(wall, 1),
    "adapter_update": m["adapter_update"],
    "lora_steps": m["lora_steps"],
    "age_weight": m["age_weight"],
    "cooc_weight": m["cooc_weight"],
    "val_pairs": [len(val), int(new.sum()), int((new & cold).sum())],
    "items": split(seen["items"][0]) if "items" in seen else None,
    "lora": split(seen["lora"][0]) if "lora" in seen else None,
    "newest_val": split(newest_hr(val)),
    "text_only_fresh": (
        {"base": text_only_fresh(seen["t_items"]), "adapter": text_only_fresh(seen["t_lora"])}
        if "t_lora" in seen
        else None
    ),
}
if a.scenario == "emerging":  # does the text say which topic a post's name belongs to?
    from driftrec.stream.synthetic import VOCAB

    topics = list(VOCAB)
    word_topic = {w: t for t, name in enumerate(topics) for w in VOCAB[name]}
    name_of = {}  # post id -> its name
    cat_topic = np.full(len(items), -1)
    for j, it in enumerate(items):
        ws = it.text.split()
        name = next((w for w in ws if w in s.name_topics), None)
        if name is not None:
            name_of[it.item_id] = name
            cat_topic[j] = topics.index(s.name_topics[name])
        else:
            wt = [word_topic[w] for w in ws if w in word_topic]
            cat_topic[j] = max(set(wt), key=wt.count) if wt else -1
    base_t = seen.get("t_items", r.table)
    back = np.flatnonzero([i.item_id not in name_of for i in items])
    cent = np.stack([base_t.context[back[cat_topic[back] == t]].mean(0) for t in range(len(topics))])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    engaged_names = {name_of[p.target] for p in train_p if p.target in name_of}
    # posts published up to an hour after the training: the names not yet engaged include
    # those still to come
    live = [j for j, it in enumerate(items) if it.item_id in name_of and pub[j] <= L.last_ts + 3_600_000]

    def name_acc(tab):
        res = {}
        for grp, want in (("trained", True), ("unseen", False)):
            rows = [j for j in live if (name_of[items[j].item_id] in engaged_names) == want]
            if rows:
                pred = (tab.text[rows] @ cent.T).argmax(1)
                res[grp] = [len(rows), round(float((pred == cat_topic[rows]).mean()), 3)]
        return res

    out["name_topic_acc"] = {"base": name_acc(base_t)}
    if "t_lora" in seen:
        out["name_topic_acc"]["adapter"] = name_acc(seen["t_lora"])
if a.next:
    pop0, last0 = L._pop_vector(r.table).copy(), L.last_ts
    L.observe_many(list(s.events)[a.at : a.at + a.next])
    fut = [
        p.value
        for p in list(L.window)[-a.next :]
        if not p.value.repeat and r.table.index(p.value.target) >= 0
    ]
    L.last_ts = last0
    hr, _ = L.evaluate_each(fut, r.table, pop0)
    out["next"] = {
        "pairs": len(fut),
        "candidate": round(float(hr.mean()), 4),
        "new_posts": round(float(hr[[p.target.startswith("p") for p in fut]].mean()), 4) if fut else None,
        "newest": round(float(newest_hr(fut).mean()), 4),
    }
print(json.dumps(out))
