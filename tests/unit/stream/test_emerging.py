"""The ``emerging`` scenario: new posts named by invented words, and what its knobs change."""

from __future__ import annotations

import pytest

from driftrec.stream import generate
from driftrec.stream.synthetic import GENERIC, VOCAB

TOPIC_WORDS = {w for v in VOCAB.values() for w in v}


def _stream(**kw: object):  # type: ignore[no-untyped-def]
    return generate("emerging", n_events=4000, n_users=60, n_items=240, seed=5, **kw)


def _new_share(s) -> float:  # type: ignore[no-untyped-def]
    after = [e for e in s.events if e.ts >= s.shift_ts + 2_000]
    return sum(e.item_id.startswith("p") for e in after) / len(after)


def test_new_posts_are_a_name_plus_generic_words_published_after_the_shift() -> None:
    s = _stream(names_per_topic=3, posts_per_name=10)
    posts = [it for it in s.items if it.item_id.startswith("p")]
    assert len(posts) == 8 * 3 * 10 == s.params["new_posts"]
    names = set()
    for it in posts:
        words = it.text.split()
        assert not set(words) & TOPIC_WORDS
        odd = [w for w in words if w not in GENERIC]
        assert len(odd) == 1  # exactly one invented name
        names.add(odd[0])
        assert it.ts >= s.shift_ts
    assert len(names) == 8 * 3
    assert set(s.name_topics) == names  # each name's topic, for reference runs
    assert sorted(list(s.name_topics.values()).count(t) for t in VOCAB) == [3] * 8
    assert all(it.ts < s.shift_ts for it in s.items if not it.item_id.startswith("p"))
    pub = {it.item_id: it.ts for it in s.items}
    assert all(e.ts >= pub[e.item_id] for e in s.events)  # never engaged before publication
    assert all(not e.item_id.startswith("p") for e in s.events if e.ts < s.shift_ts)


def test_a_names_topic_is_the_topic_its_fans_write_about() -> None:
    s = _stream()
    text = {it.item_id: it.text for it in s.items}
    checked = 0
    for e in s.events:
        if e.type != "comment" or not e.item_id.startswith("p") or e.text is None:
            continue
        (name,) = [w for w in text[e.item_id].split() if w in s.name_topics]
        topic_words = {w for w in e.text.split() if w in TOPIC_WORDS}
        assert topic_words and topic_words <= set(VOCAB[s.name_topics[name]])
        checked += 1
    assert checked > 50
    assert generate("fresh", n_events=200, n_users=20, n_items=80).name_topics == {}


def test_new_share_moves_engagement_to_new_posts() -> None:
    lo, hi = _new_share(_stream(new_share=0.2)), _new_share(_stream(new_share=0.8))
    assert lo == pytest.approx(0.2, abs=0.06) and hi == pytest.approx(0.8, abs=0.06)
    assert _new_share(_stream(new_share=0.0)) == 0.0


def test_posts_are_engaged_about_once_or_twice() -> None:
    s = _stream()
    counts: dict[str, int] = {}
    for e in s.events:
        if e.item_id.startswith("p"):
            counts[e.item_id] = counts.get(e.item_id, 0) + 1
    engaged = list(counts.values())
    assert sum(c <= 2 for c in engaged) / len(engaged) > 0.7
    assert 1.0 <= sum(engaged) / s.params["new_posts"] <= 2.0  # posts_per_name=0: ~1.5 each


def test_comment_names_is_the_share_of_comments_naming_the_post() -> None:
    def share(k: float) -> float:
        s = _stream(comment_names=k)
        text = {it.item_id: it.text for it in s.items}
        cs = [e for e in s.events if e.type == "comment" and e.item_id.startswith("p")]
        named = [e for e in cs if set(e.text.split()) & (set(text[e.item_id].split()) - set(GENERIC))]
        return len(named) / len(cs)

    assert share(0.0) == 0.0 and share(1.0) == 1.0
    assert share(0.5) == pytest.approx(0.5, abs=0.15)


def test_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="new_share"):
        _stream(new_share=1.5)
    with pytest.raises(ValueError, match="names_per_topic"):
        _stream(names_per_topic=0)
