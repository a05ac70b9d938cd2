"""A synthetic social-media stream with a known interest shift (drift scenarios).

Users hold mixtures of interests over topics; items carry text drawn from their topic's
vocabulary; users click, like and comment (comments carry topical text). At ``shift_ts``
the scenario moves interests:

- ``abrupt``: a share of users switch to topics they did not follow before.
- ``gradual``: the same users move from the old to the new mixture over a span of time.
- ``coengagement``: after engaging with item *i* of topic A, users of A go on to a fixed
  partner item of topic B, whose text is unlike A's: text similarity alone cannot follow
  this, learning from the stream can.
- ``fresh``: as in a content app where new posts keep arriving. Two thirds of each topic's
  items are fresh: nobody engages with them before the shift. After it, users of topic A
  go on from an item of A to a fresh item of topic B (drawn uniformly, so each is engaged
  only a few times). What follows this is a relation between the two topics' *texts*;
  item-level learning (a residual or co-engagement per item) sees each fresh item too
  rarely to learn it: the scenario that gives adapting the text encoder its best chance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import Event, Item, ItemId, UserId

SCENARIOS = ("abrupt", "gradual", "coengagement", "fresh")

#: One line per scenario, for ``--help`` (argparse text: ``%%`` is a percent sign).
SCENARIO_HELP = ("abrupt: a share of users switch topics at the shift; gradual: they drift over 30%% "
                 "of the stream; coengagement: users go on from an item of topic A to a fixed partner "
                 "item of topic B; fresh: as coengagement, but to any fresh, rarely engaged item of "
                 "topic B (cold items)")

VOCAB: dict[str, list[str]] = {
    "football": "goal striker penalty league keeper derby transfer midfield offside stadium coach fans kickoff trophy".split(),
    "cooking": "recipe garlic oven pasta simmer bake spices dough kitchen chef sauce roast flavour butter".split(),
    "music": "album guitar concert chorus drummer vinyl melody band lyrics tour festival singer remix tempo".split(),
    "technology": "software laptop chip startup cloud python robot gadget processor update code smartphone server api".split(),
    "travel": "beach flight hotel passport island hiking backpack museum journey mountains cruise airport sunset trail".split(),
    "gaming": "console quest multiplayer level boss controller speedrun loot arcade esports pixel dungeon respawn patch".split(),
    "fashion": "runway denim sneakers designer outfit vintage fabric jacket style boutique couture silk collection trend".split(),
    "science": "telescope molecule physics genome experiment galaxy neuron climate fossil quantum laboratory vaccine orbit theory".split(),
}
FILLER = "the a new best my our today this about with amazing honest quick look week".split()
OPINION = "love great awful brilliant meh wow agree disagree perfect boring classic interesting".split()


def vocabulary() -> list[str]:
    """Every word the synthetic scenarios write (a tiny test encoder's vocabulary)."""
    return [w for v in VOCAB.values() for w in v] + FILLER + OPINION


@dataclass(frozen=True)
class SyntheticStream:
    events: list[Event]
    items: list[Item]
    shift_ts: int
    shifted_users: frozenset[str]
    scenario: str


def _text(rng: np.random.Generator, words: list[str], n: int) -> str:
    picks = list(rng.choice(words, size=n, replace=True))
    picks.insert(int(rng.integers(0, n)), str(rng.choice(FILLER)))
    return " ".join(picks)


def generate(scenario: str = "abrupt", n_events: int = 20_000, n_users: int = 400,
             n_items: int = 1_600, seed: int = 0, shift_at: float = 0.5,
             shift_share: float = 0.6, start_ts: int = 1_700_000_000_000,
             gap_ms: int = 500, max_lag_ms: int = 2_000) -> SyntheticStream:
    """Generate a stream of ``n_events`` with an interest shift at ``shift_at`` of the stream.

    Examples
    --------
    >>> s = generate("abrupt", n_events=200, n_users=20, n_items=80, seed=1)
    >>> len(s.events), len(s.items), s.scenario
    (200, 80, 'abrupt')
    >>> {e.type for e in s.events} <= {"click", "like", "comment"}
    True
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    rng = np.random.default_rng(seed)
    topics = list(VOCAB)
    T = len(topics)
    # Items: a topic each, text from the topic's vocabulary, Zipf-like popularity in topic.
    item_topic = np.arange(n_items) % T
    rng.shuffle(item_topic)
    items = [Item(ItemId(f"i{j}"), _text(rng, VOCAB[topics[item_topic[j]]], 6), start_ts)
             for j in range(n_items)]
    by_topic = [np.flatnonzero(item_topic == t) for t in range(T)]
    fresh_by_topic: list[np.ndarray] = [np.zeros(0, np.int64)] * T
    if scenario == "fresh":  # a third of each topic is the back catalog, the rest is fresh
        fresh_by_topic = [ix[len(ix) // 3:] for ix in by_topic]
        by_topic = [ix[: max(1, len(ix) // 3)] for ix in by_topic]
    pop = [1.0 / np.arange(1, len(ix) + 1) ** 0.8 for ix in by_topic]
    pop = [p / p.sum() for p in pop]
    # Partner items for co-engagement: topic t's items map to items of topic (t + T/2) % T.
    partner = np.empty(n_items, dtype=np.int64)
    for t in range(T):
        other = by_topic[(t + T // 2) % T]
        partner[by_topic[t]] = rng.choice(other, size=len(by_topic[t]), replace=True)
    # Users: a Dirichlet mixture over two or three topics; Zipf-like activity.
    mix_old = np.zeros((n_users, T))
    main = rng.integers(0, T, size=n_users)
    for u in range(n_users):
        ts_ = {int(main[u])} | set(rng.choice(T, size=int(rng.integers(1, 3)), replace=False).tolist())
        w = rng.dirichlet(np.ones(len(ts_)) * 2.0)
        for t, x in zip(sorted(ts_), w):
            mix_old[u, t] = x
        mix_old[u, main[u]] += 1.0
        mix_old[u] /= mix_old[u].sum()
    mix_new = mix_old.copy()
    shifted = rng.random(n_users) < shift_share
    for u in np.flatnonzero(shifted):
        unused = [t for t in range(T) if mix_old[u, t] == 0]
        new = rng.choice(unused, size=min(2, len(unused)), replace=False)
        mix_new[u] = 0
        mix_new[u, new] = rng.dirichlet(np.ones(len(new)) * 2.0)
    activity = 1.0 / np.arange(1, n_users + 1) ** 0.5
    activity = rng.permutation(activity / activity.sum())

    shift_idx = int(n_events * shift_at)
    shift_ts = start_ts + shift_idx * gap_ms
    ramp = max(1, int(0.3 * n_events))
    last_item = np.full(n_users, -1)
    events: list[Event] = []
    users = rng.choice(n_users, size=n_events, p=activity)
    for n in range(n_events):
        u = int(users[n])
        after = n >= shift_idx
        mix = mix_old[u]
        if scenario == "abrupt" and after and shifted[u]:
            mix = mix_new[u]
        elif scenario == "gradual" and after and shifted[u]:
            a = min(1.0, (n - shift_idx) / ramp)
            mix = (1 - a) * mix_old[u] + a * mix_new[u]
        hop = (after and shifted[u] and last_item[u] >= 0 and item_topic[last_item[u]] == main[u]
               and scenario in ("coengagement", "fresh") and rng.random() < 0.8)
        if hop and scenario == "coengagement":
            j = int(partner[last_item[u]])
        elif hop:  # fresh: any fresh item of the partner topic
            pool = fresh_by_topic[(int(main[u]) + T // 2) % T]
            j = int(pool[rng.integers(0, len(pool))]) if len(pool) else int(partner[last_item[u]])
        else:
            t = int(rng.choice(T, p=mix))
            j = int(rng.choice(by_topic[t], p=pop[t]))
        last_item[u] = j
        r = rng.random()
        etype = "click" if r < 0.6 else ("like" if r < 0.9 else "comment")
        text = None
        if etype == "comment":
            text = f"{rng.choice(OPINION)} " + _text(rng, VOCAB[topics[item_topic[j]]], 4)
        ts = start_ts + n * gap_ms + int(rng.integers(0, max_lag_ms + 1)) - max_lag_ms // 2
        events.append(Event(f"e{seed}-{n}", etype, UserId(f"u{u}"), items[j].item_id, ts, text))
    events.sort(key=lambda e: e.ts)
    return SyntheticStream(events, items, shift_ts,
                           frozenset(f"u{u}" for u in np.flatnonzero(shifted)), scenario)
