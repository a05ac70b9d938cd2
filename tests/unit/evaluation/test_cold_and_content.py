"""Cold-target metrics, publication times in the loop, and the newest / content_tfidf baselines."""

from __future__ import annotations

from driftrec.evaluation import baselines as B
from driftrec.evaluation import prequential as pq
from driftrec.evaluation.harness import format_tables, summarise
from driftrec.stream import Event


class Always:
    """Recommends item "x" (and asks nothing else)."""

    name = "always"

    def rank_many(self, users, now, k):  # type: ignore[no-untyped-def]
        return [["x"] for _ in users]

    def learn_many(self, events):  # type: ignore[no-untyped-def]
        pass


def test_cold_hr_counts_only_targets_whose_item_had_fewer_than_5_earlier_events() -> None:
    # item x gets 7 likes from 7 users, item y one: targets 0-4 of x are cold (0..4 earlier
    # events), 5-6 are warm; y's target is cold. Always-x hits all 7 x targets.
    ev = [Event(f"e{n}", "like", f"u{n}", "x", n) for n in range(7)]
    ev.append(Event("e7", "like", "u7", "y", 7))
    ev.insert(3, Event("c", "click", "u9", "y", 3))  # a click counts as an earlier event, not a target
    res = pq.run(ev, [Always()], k=10)
    assert res.target_item_events.tolist() == [0, 1, 2, 3, 4, 5, 6, 1]
    assert res.cold().tolist() == [True] * 5 + [False, False, True]
    summ = summarise(res, [Always()], window=4, shift_ts=None, shift_index=None)
    d = summ["systems"]["always"]
    assert d["hr_at_10"] == 0.875 and d["cold_hr_at_10"] == round(5 / 6, 4)
    assert d["post_shift_hr_at_10"] is None and summ["cold_targets"] == 6
    # a known shift at the 6th event: targets after it are x, x, y
    shifted = summarise(res, [Always()], window=4, shift_ts=5, shift_index=6)
    assert shifted["systems"]["always"]["post_shift_hr_at_10"] == round(2 / 3, 4)
    table = format_tables(res, shifted, 4)
    assert "cold HR" in table and "post HR" in table and "cold HR@10 per window" in table


def test_targets_see_items_published_before_them_within_a_batch() -> None:
    class Pub:
        name = "pub"
        asked: list[int] = []

        def rank_many(self, users, now, k):  # type: ignore[no-untyped-def]
            self.asked.append(now)
            return [["a"] if now >= 50 else [] for _ in users]

        def learn_many(self, events):  # type: ignore[no-untyped-def]
            pass

    ev = [Event("1", "like", "u1", "a", 40), Event("2", "like", "u2", "a", 60)]  # one batch
    p = Pub()
    res = pq.run(ev, [p], k=10, publications=[0, 50])
    assert p.asked == [40, 50] and res.systems["pub"].positions.tolist() == [-1, 0]
    p.asked.clear()
    pq.run(ev, [p], k=10)  # without publication times: once, at the batch's first event time
    assert p.asked == [40]


def test_newest_ranks_by_publication_time_and_masks_the_future() -> None:
    n = B.Newest(["a", "b", "c", "d"], item_ts={"a": 10, "b": 40, "c": 30, "d": 99})
    n.learn_many([Event("1", "click", "u", "b", 50)])
    assert n.rank_many(["u", "v"], 50, 3) == [["c", "a"], ["b", "c", "a"]]
    assert n.rank_many(["v"], 100, 1) == [["d"]]


def test_content_tfidf_follows_engaged_words_and_learns_a_new_word_at_once() -> None:
    texts = {
        "g1": "guitar chorus",
        "g2": "guitar melody",
        "c1": "oven pasta",
        "z1": "zorvik new",
        "z2": "zorvik clip",
        "n1": "new clip",
    }
    c = B.ContentTfidf(
        list(texts), texts=texts, item_ts={"g1": 0, "g2": 0, "c1": 0, "z1": 0, "z2": 0, "n1": 0}
    )
    c.learn_many([Event("1", "like", "u", "g1", 1)])
    assert c.rank_many(["u"], 2, 1) == [["g2"]]
    # u engages an item with the new word: z2 (same word) comes first at once
    c.learn_many([Event("2", "like", "u", "z1", 3)])
    assert c.rank_many(["u"], 4, 2)[0][0] == "z2"
    # a comment's words count too
    c.learn_many([Event("3", "comment", "w", "c1", 5, "love zorvik")])
    assert c.rank_many(["w"], 6, 1) == [["z1"]]  # z1 and z2 tie on the word; z1 is more engaged


def test_content_tfidf_decays_old_interests() -> None:
    texts = {"g1": "guitar", "g2": "guitar chorus", "c1": "oven", "c2": "oven pasta"}
    c = B.ContentTfidf(list(texts), texts=texts, half_life=1.0)
    c.learn_many([Event("1", "like", "u", "g1", 1)])
    c.learn_many([Event("2", "like", "u", "c1", 2)])
    assert c.rank_many(["u"], 3, 1) == [["c2"]]
