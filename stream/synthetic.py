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
- ``emerging``: as on a social feed where trends bring new names. Users keep their topics;
  after the shift, new posts keep arriving (each published at its item ``ts``), whose text
  is one new invented name (a few per topic, one after another) plus generic words, no
  topic word. A share ``new_share`` of engagement goes to the newest posts of the user's
  topics (each post engaged about once or twice), the rest to the back catalog as before;
  comments on new posts use the post's name (a share ``comment_names`` of them) beside
  topical words. Nothing but engagement says which topic a name belongs to.
- ``popular``: as in a small shop whose catalog is known by product codes and variant
  strings ("B07K3QZ9XL Size: 7.0 oz"): the text says little about what users engage.
  Engagement is heavy-tailed (Zipf over the items); a share ``POPULAR_SHARE`` of each
  user's engagements follows that global popularity, the rest goes to the user's own few
  preferred products (any of their variants). At the shift new products launch (a few of
  them become hits). See :func:`popular`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .events import Event, Item, ItemId, UserId

SCENARIOS = ("abrupt", "gradual", "coengagement", "fresh", "emerging", "popular")

#: One line per scenario, for ``--help`` (argparse text: ``%%`` is a percent sign).
SCENARIO_HELP = (
    "abrupt: a share of users switch topics at the shift; gradual: they drift over 30%% "
    "of the stream; coengagement: users go on from an item of topic A to a fixed partner "
    "item of topic B; fresh: as coengagement, but to any fresh, rarely engaged item of "
    "topic B (cold items); emerging: after the shift new posts keep arriving, each one new "
    "invented name plus generic words, and users engage their topics' newest posts; "
    "popular: a shop catalog known by product codes and variant strings (weak text), "
    "heavy-tailed engagement that mostly follows popularity, some personal taste, new "
    "products launched at the shift"
)

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
#: Words of the ``emerging`` scenario's new posts beside the name: no topic word.
GENERIC = FILLER + "video photo clip thread story post live first watch check".split()

#: The ``emerging`` scenario's knobs and their defaults (``driftrec generate/demo/eval`` flags).
EMERGING_DEFAULTS: dict[str, Any] = {
    "new_share": 0.7,
    "names_per_topic": 4,
    "posts_per_name": 0,
    "comment_names": 0.7,
}


def emerging_kwargs(opts: Any) -> dict[str, Any]:
    """:func:`generate`'s ``emerging`` knobs from an object that carries them as attributes
    (the parsed flags of ``driftrec demo``, ``generate`` and ``eval``)."""
    if opts.names_per_topic < 1:
        raise ValueError("--names-per-topic must be >= 1")
    return {k: getattr(opts, k) for k in EMERGING_DEFAULTS}


def vocabulary() -> list[str]:
    """Every word the synthetic scenarios write (a tiny test encoder's vocabulary)."""
    return [w for v in VOCAB.values() for w in v] + FILLER + OPINION


def invented_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable words that are in no scenario vocabulary.

    Examples
    --------
    >>> names = invented_names(np.random.default_rng(0), 5)
    >>> len(set(names)), any(w in vocabulary() for w in names)
    (5, False)
    """
    cons, vow, ends = "bdfgklmnprstvz", "aeiou", "nrskx"
    known = set(vocabulary()) | set(GENERIC)
    out: list[str] = []
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(str(rng.choice(list(cons))) + str(rng.choice(list(vow))) for _ in range(k))
        if rng.random() < 0.5:
            w += str(rng.choice(list(ends)))
        if w not in known and w not in out:
            out.append(w)
    return out


@dataclass(frozen=True)
class SyntheticStream:
    events: list[Event]
    items: list[Item]
    shift_ts: int
    shifted_users: frozenset[str]
    scenario: str
    #: the scenario's knobs as used (``emerging``: with ``posts_per_name`` resolved)
    params: dict[str, Any] = field(default_factory=dict)
    #: ``emerging``: each invented name's topic (what only engagement reveals to a system;
    #: for reference experiments such as ``experiments/name_oracle.py``)
    name_topics: dict[str, str] = field(default_factory=dict)
    #: ``popular``: what only engagement reveals (for reference experiments such as
    #: ``experiments/popular_oracle.py``): ``department`` (item id -> its department),
    #: ``weight`` and ``weight_after`` (item id -> its popularity weight before and after
    #: the shift), ``departments`` (user id -> the departments they shop in), ``share``
    truth: dict[str, Any] = field(default_factory=dict)


def _text(rng: np.random.Generator, words: list[str], n: int) -> str:
    picks = list(rng.choice(words, size=n, replace=True))
    picks.insert(int(rng.integers(0, n)), str(rng.choice(FILLER)))
    return " ".join(picks)


def generate(
    scenario: str = "abrupt",
    n_events: int = 20_000,
    n_users: int = 400,
    n_items: int = 1_600,
    seed: int = 0,
    shift_at: float = 0.5,
    shift_share: float = 0.6,
    start_ts: int = 1_700_000_000_000,
    gap_ms: int = 500,
    max_lag_ms: int = 2_000,
    new_share: float = EMERGING_DEFAULTS["new_share"],
    names_per_topic: int = EMERGING_DEFAULTS["names_per_topic"],
    posts_per_name: int = EMERGING_DEFAULTS["posts_per_name"],
    comment_names: float = EMERGING_DEFAULTS["comment_names"],
) -> SyntheticStream:
    """Generate a stream of ``n_events`` with an interest shift at ``shift_at`` of the stream.

    The ``emerging`` scenario's knobs: ``new_share`` of the engagement after the shift goes
    to new posts; ``names_per_topic`` invented names per topic, ``posts_per_name`` posts
    each (0: as many as make each post engaged about 1.5 times); ``comment_names``: the
    share of comments on new posts that use the post's name. Other scenarios ignore them.

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
    for name, v in (("new_share", new_share), ("comment_names", comment_names)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}={v} must be in [0, 1]")
    if names_per_topic < 1 or posts_per_name < 0:
        raise ValueError("names_per_topic must be >= 1 and posts_per_name >= 0 (0 = auto)")
    if scenario == "popular":
        return popular(n_events, n_users, n_items, seed, shift_at, start_ts, gap_ms, max_lag_ms)
    rng = np.random.default_rng(seed)
    topics = list(VOCAB)
    T = len(topics)
    # Items: a topic each, text from the topic's vocabulary, Zipf-like popularity in topic.
    item_topic = np.arange(n_items) % T
    rng.shuffle(item_topic)
    # the back catalog is published before the first event (whose time may be jittered early)
    items = [
        Item(ItemId(f"i{j}"), _text(rng, VOCAB[topics[item_topic[j]]], 6), start_ts - max_lag_ms)
        for j in range(n_items)
    ]
    by_topic = [np.flatnonzero(item_topic == t) for t in range(T)]
    fresh_by_topic: list[np.ndarray] = [np.zeros(0, np.int64)] * T
    if scenario == "fresh":  # a third of each topic is the back catalog, the rest is fresh
        fresh_by_topic = [ix[len(ix) // 3 :] for ix in by_topic]
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
    params: dict[str, Any] = {}
    emerging = scenario == "emerging"
    if emerging:  # new posts, their own random stream (the other scenarios stay as they were)
        posts = _emerging_posts(
            np.random.default_rng([seed, 1]),
            T,
            n_items,
            n_events - shift_idx,
            shift_ts,
            start_ts + n_events * gap_ms,
            new_share,
            names_per_topic,
            posts_per_name,
        )
        items.extend(posts.items)
        params = {
            "new_share": new_share,
            "names_per_topic": names_per_topic,
            "posts_per_name": posts.per_name,
            "comment_names": comment_names,
            "new_posts": len(posts.items),
        }
        erng = np.random.default_rng([seed, 2])
        engaged = np.zeros(len(items), np.int64)
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
        hop = (
            scenario in ("coengagement", "fresh")
            and after
            and shifted[u]
            and last_item[u] >= 0
            and item_topic[last_item[u]] == main[u]
            and rng.random() < 0.8
        )
        new_post = -1
        if emerging and after and erng.random() < new_share:
            t = int(erng.choice(T, p=mix_old[u]))  # users keep their topics
            new_post = posts.pick(erng, t, start_ts + n * gap_ms - max_lag_ms // 2 - 1, engaged)
        if new_post >= 0:
            j = new_post
            engaged[j] += 1
        elif hop and scenario == "coengagement":
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
        if etype == "comment" and new_post >= 0:  # the name (mostly) and the fan's topic words
            name = posts.name_of[j - n_items]
            words = _text(erng, VOCAB[topics[posts.topic_of[j - n_items]]], 3)
            text = (
                f"{erng.choice(OPINION)} {name} {words}"
                if erng.random() < comment_names
                else f"{erng.choice(OPINION)} {words}"
            )
        elif etype == "comment":
            text = f"{rng.choice(OPINION)} " + _text(rng, VOCAB[topics[item_topic[j]]], 4)
        ts = start_ts + n * gap_ms + int(rng.integers(0, max_lag_ms + 1)) - max_lag_ms // 2
        events.append(Event(f"e{seed}-{n}", etype, UserId(f"u{u}"), items[j].item_id, ts, text))
    events.sort(key=lambda e: e.ts)
    if emerging:  # every user's feed changes at the shift, not their interests
        shifted = np.ones(n_users, bool)
    name_topics = (
        {posts.name_of[p]: topics[int(posts.topic_of[p])] for p in range(len(posts.name_of))}
        if emerging
        else {}
    )
    return SyntheticStream(
        events,
        items,
        shift_ts,
        frozenset(f"u{u}" for u in np.flatnonzero(shifted)),
        scenario,
        params,
        name_topics,
    )


@dataclass
class _Posts:
    """The ``emerging`` scenario's new posts: catalog rows ``n_items + p`` for post ``p``."""

    items: list[Item]
    topic_of: np.ndarray  # post -> topic
    name_of: list[str]  # post -> its name
    by_topic: list[np.ndarray]  # topic -> catalog rows of its posts, by publication time
    ts_by_topic: list[np.ndarray]  # their publication times
    per_name: int
    #: candidates when a user goes for new posts: the newest this many published ones of the
    #: topic, the newer the likelier (``recency ** rank``)
    newest: int = 30
    recency: float = 0.93

    def pick(self, rng: np.random.Generator, t: int, now: int, engaged: np.ndarray) -> int:
        """A post of topic ``t`` published by ``now``: the newer the likelier, and one
        engaged twice already rarely (each post is engaged about once or twice). -1: none yet."""
        hi = int(np.searchsorted(self.ts_by_topic[t], now, side="right"))
        if hi == 0:
            return -1
        rows = self.by_topic[t][max(0, hi - self.newest) : hi][::-1]  # newest first
        w = self.recency ** np.arange(len(rows)) * np.where(engaged[rows] < 2, 1.0, 0.05)
        return int(rows[rng.choice(len(rows), p=w / w.sum())])


def _emerging_posts(
    rng: np.random.Generator,
    T: int,
    n_items: int,
    n_after: int,
    shift_ts: int,
    end_ts: int,
    new_share: float,
    names_per_topic: int,
    posts_per_name: int,
) -> _Posts:
    """New posts of every topic, published from ``shift_ts`` to ``end_ts``: the topic's
    names one after another (each for 1.5 / names_per_topic of that span, so consecutive
    names overlap), a post's text its name and generic words."""
    if posts_per_name == 0:  # about 1.5 engagements per post
        posts_per_name = max(1, math.ceil(n_after * new_share / 1.5 / (T * names_per_topic)))
    names = invented_names(rng, T * names_per_topic)
    span = max(1, end_ts - shift_ts)
    recs: list[tuple[int, int, str]] = []  # (ts, topic, name)
    for t in range(T):
        for k in range(names_per_topic):
            lo = shift_ts + span * k / names_per_topic
            hi = min(end_ts, lo + span * 1.5 / names_per_topic)
            for ts in rng.uniform(lo, hi, size=posts_per_name):
                recs.append((int(ts), t, names[t * names_per_topic + k]))
    recs.sort(key=lambda r: r[0])
    items, topic_of, name_of = [], np.zeros(len(recs), np.int64), []
    for p, (ts, t, name) in enumerate(recs):
        words = [str(w) for w in rng.choice(GENERIC, size=4, replace=True)]
        words.insert(int(rng.integers(0, 5)), name)
        items.append(Item(ItemId(f"p{p}"), " ".join(words), ts))
        topic_of[p] = t
        name_of.append(name)
    by_topic = [n_items + np.flatnonzero(topic_of == t) for t in range(T)]
    ts_all = np.array([r[0] for r in recs], np.int64)
    return _Posts(items, topic_of, name_of, by_topic, [ts_all[b - n_items] for b in by_topic], posts_per_name)


#: The ``popular`` scenario: the share of engagements that follow global popularity (the
#: rest follow each user's own departments), the Zipf exponent of item popularity, and the
#: shop's departments.
POPULAR_SHARE = 0.75
POPULAR_ZIPF = 1.0
POPULAR_DEPARTMENTS = 20
#: The variant strings of the ``popular`` scenario's products: each product varies along
#: one of these attributes; its items are its variants.
VARIANTS: dict[str, list[str]] = {
    "Size": "3.4 oz|5.0 oz|7.0 oz|12 oz|16 oz|32 oz|Small|Medium|Large|XL".split("|"),
    "Color": "Black|White|Blue|Red|Green|Navy|Grey|Pink|Beige|Brown".split("|"),
    "Pack": "Pack of 1|Pack of 2|Pack of 3|Pack of 6|Pack of 12".split("|"),
    "Scent": "Lavender|Unscented|Citrus|Vanilla|Eucalyptus|Rose|Sandalwood".split("|"),
    "Flavor": "Original|Mint|Vanilla|Chocolate|Strawberry|Berry|Lemon".split("|"),
    "Style": "Classic|Modern|Travel|Deluxe|Refill|Starter Kit".split("|"),
}
_CODE = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def _products(
    rng: np.random.Generator, n_items: int, first: int, ts: int, dept_attr: Sequence[str]
) -> tuple[list[Item], np.ndarray]:
    """``n_items`` shop items ``i{first}``... published at ``ts``: products of 1 to 4
    variants, each of a department (whose products vary mostly along the attribute
    ``dept_attr[d]``), each item's text its product's code and its variant ("B07K3QZ9XL
    Size: 7.0 oz"); returns the items and each item's department."""
    items: list[Item] = []
    dept: list[int] = []
    attrs = list(VARIANTS)
    while len(items) < n_items:
        code = "B0" + "".join(rng.choice(list(_CODE), size=8))
        d = int(rng.integers(len(dept_attr)))
        attr = dept_attr[d] if rng.random() < 0.7 else attrs[int(rng.integers(len(attrs)))]
        k = min(int(rng.integers(1, 5)), n_items - len(items), len(VARIANTS[attr]))
        for v in rng.choice(VARIANTS[attr], size=k, replace=False):
            text = f"{code} {attr}: {v}" if attr != "Pack" else f"{code} {v}"
            items.append(Item(ItemId(f"i{first + len(items)}"), text, ts))
            dept.append(d)
    return items, np.asarray(dept, np.int64)


def popular(
    n_events: int = 20_000,
    n_users: int = 400,
    n_items: int = 1_600,
    seed: int = 0,
    shift_at: float = 0.5,
    start_ts: int = 1_700_000_000_000,
    gap_ms: int = 500,
    max_lag_ms: int = 2_000,
    share: float = POPULAR_SHARE,
    zipf: float = POPULAR_ZIPF,
    departments: int = POPULAR_DEPARTMENTS,
) -> SyntheticStream:
    """The ``popular`` scenario: a shop whose item texts say little about what users engage.

    ``n_items`` items (variants of products, see :func:`_products`) in ``departments``
    departments, with Zipf(``zipf``) popularity in a random order (text and popularity are
    unrelated; a department's products vary mostly along one attribute, the little the
    text says about taste). Each user shops in one or two departments. Of a user's
    engagements, a share ``share`` is drawn by global popularity, the rest by popularity
    within one of the user's departments; an item the user already engaged is drawn again
    (a shop rarely sees one product reviewed twice by a user). At ``shift_at`` of the
    stream ``n_items // 100`` new items (new products) launch, each taking a place in the
    popularity order at a log-uniform rank from the 10th on: a few become hits, most join
    the tail.

    Examples
    --------
    >>> s = popular(n_events=2000, n_users=40, n_items=200, seed=1)
    >>> len(s.events), len(s.items), s.items[0].text.split()[0][:2]
    (2000, 202, 'B0')
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share={share} must be in [0, 1]")
    rng = np.random.default_rng([seed, 3])
    shift_idx = int(n_events * shift_at)
    shift_ts = start_ts + shift_idx * gap_ms
    dept_attr = [str(a) for a in rng.choice(list(VARIANTS), size=departments)]
    items, dept = _products(rng, n_items, 0, start_ts - max_lag_ms, dept_attr)
    n_new = max(1, n_items // 100)
    new, new_dept = _products(rng, n_new, n_items, shift_ts, dept_attr)
    items += new
    dept = np.concatenate([dept, new_dept])
    # popularity: a random order of the catalog; the launches are put in at log-uniform
    # ranks (an eighth of them in the top 20 of a catalog of 1,600)
    order = list(rng.permutation(n_items))
    for j in range(n_items, n_items + n_new):
        order.insert(int(np.exp(rng.uniform(np.log(10), np.log(n_items)))) - 1, j)
    w_after = np.zeros(len(items))
    w_after[np.asarray(order)] = 1.0 / np.arange(1, len(order) + 1) ** zipf
    w_before = w_after.copy()
    w_before[n_items:] = 0.0
    cdf = [_cdf(w) for w in (w_before, w_after)]
    rows = [np.flatnonzero(dept == d) for d in range(departments)]
    dept_cdf = [[_cdf(w[r]) for r in rows] for w in (w_before, w_after)]
    taste = [rng.choice(departments, size=int(rng.integers(1, 3)), replace=False) for _ in range(n_users)]
    activity = 1.0 / np.arange(1, n_users + 1) ** 0.5
    activity = rng.permutation(activity / activity.sum())
    users = rng.choice(n_users, size=n_events, p=activity)
    seen: list[set[int]] = [set() for _ in range(n_users)]
    events: list[Event] = []
    for n in range(n_events):
        u = int(users[n])
        after = int(n >= shift_idx)
        d = int(taste[u][int(rng.integers(len(taste[u])))])
        own = rng.random() >= share and len(rows[d]) > 0
        for _ in range(20):
            if own:
                j = int(rows[d][_draw(dept_cdf[after][d], rng.random())])
            else:
                j = _draw(cdf[after], rng.random())
            if j not in seen[u]:
                break
        seen[u].add(j)
        r = rng.random()
        etype = "click" if r < 0.6 else ("like" if r < 0.9 else "comment")
        text = None
        if etype == "comment":
            text = f"{rng.choice(OPINION)} " + " ".join(rng.choice(FILLER, size=3))
        ts = start_ts + n * gap_ms + int(rng.integers(0, max_lag_ms + 1)) - max_lag_ms // 2
        events.append(Event(f"e{seed}-{n}", etype, UserId(f"u{u}"), items[j].item_id, ts, text))
    events.sort(key=lambda e: e.ts)
    return SyntheticStream(
        events,
        items,
        shift_ts,
        frozenset(f"u{u}" for u in range(n_users)),
        "popular",
        {"share": share, "zipf": zipf, "departments": departments, "launched": n_new},
        truth={
            "department": {it.item_id: int(d) for it, d in zip(items, dept)},
            "weight": {it.item_id: float(w) for it, w in zip(items, w_before)},
            "weight_after": {it.item_id: float(w) for it, w in zip(items, w_after)},
            "departments": {f"u{u}": [int(d) for d in t] for u, t in enumerate(taste)},
            "share": share,
        },
    )


def _cdf(w: np.ndarray) -> np.ndarray:
    c = np.cumsum(w)
    return c / c[-1] if len(c) and c[-1] > 0 else np.linspace(1.0 / max(1, len(c)), 1.0, len(c))


def _draw(cdf: np.ndarray, x: float) -> int:
    """The index ``cdf`` (a cumulative distribution) gives the uniform draw ``x``."""
    return min(int(np.searchsorted(cdf, x, side="right")), len(cdf) - 1)
