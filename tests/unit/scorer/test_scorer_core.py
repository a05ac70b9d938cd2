from __future__ import annotations

import numpy as np
import pytest

from driftrec.model import ItemTable, Representation
from driftrec.scorer import Scorer, ScorerConfig, ScorerConfigError, ServingModel
from driftrec.state import UserState
from driftrec.stream import Event

DAY = 24 * 3600 * 1000


def table(n: int = 6, d: int = 6) -> ItemTable:
    return ItemTable.from_text([f"i{j}" for j in range(n)], np.eye(n, d, dtype=np.float32))


def scorer(k: int = 3, **rep: float) -> Scorer:
    r = Representation(pop_weight=0.0, **rep)  # type: ignore[arg-type]
    return Scorer(ScorerConfig(top_k=k), ServingModel("v0", table(), r))


def ev(n: int, item: str, ts: int, etype: str = "like", user: str = "u1") -> Event:
    return Event(f"e{n}", etype, user, item, ts)


def test_user_vector_is_weighted_mean_of_history() -> None:
    s = scorer(position_decay=1.0)
    r = s.learn_many([ev(1, "i0", 0, "click"), ev(2, "i1", 0, "like")], {})
    v = r.users["u1"].vector
    # click weight 1, like weight 2, no decay at the same time
    assert v[0] == pytest.approx(1 / 3) and v[1] == pytest.approx(2 / 3)
    assert r.users["u1"].version == "v0"


def test_time_decay_halves_weight_per_half_life() -> None:
    s = scorer(position_decay=1.0, half_life_ms=DAY)
    r = s.learn_many([ev(1, "i0", 0, "like"), ev(2, "i1", DAY, "like")], {})
    v = r.users["u1"].vector
    assert v[0] / v[1] == pytest.approx(0.5, rel=1e-4)


def test_comment_weighs_more_than_click() -> None:
    s = scorer(position_decay=1.0)
    r = s.learn_many([ev(1, "i0", 0, "click"), ev(2, "i1", 0, "comment")], {})
    v = r.users["u1"].vector
    assert v[1] == pytest.approx(3 * v[0])


def test_top_k_excludes_seen_items() -> None:
    s = scorer(k=10)
    r = s.learn_many([ev(1, "i0", 0), ev(2, "i3", 1)], {})
    ids = [x["item_id"] for x in r.recs[0]["items"]]
    assert "i0" not in ids and "i3" not in ids and len(ids) == 4


def test_updates_only_when_top_k_changes() -> None:
    s = scorer(k=2)
    r1 = s.learn_many([ev(1, "i0", 0)], {})
    assert len(r1.recs) == 1
    u = r1.users
    # an event on an item that is in the scores' tail leaves the top-2 as it was?
    r2 = s.learn_many([ev(2, "i0", 10)], u)  # same item again: history changes, top-k does not
    assert r2.recs == [] and r2.applied == 1
    r3 = s.learn_many([ev(3, "i1", 20)], r2.users)  # i1 was in the top-k: now seen, so it changes
    assert len(r3.recs) == 1 and "i1" not in [x["item_id"] for x in r3.recs[0]["items"]]
    rec = r3.recs[0]
    assert rec["user_id"] == "u1" and rec["model_version"] == "v0" and rec["event_id"] == "e3"
    assert rec["event_ts"] == 20


def test_replayed_event_is_not_applied_twice() -> None:
    s = scorer()
    r1 = s.learn_many([ev(1, "i0", 0)], {})
    r2 = s.learn_many([ev(1, "i0", 0)], r1.users)
    assert r2.duplicates == 1 and r2.applied == 0
    assert r2.users["u1"].n_events == 1


def test_hits_are_judged_against_published_top_k() -> None:
    s = scorer(k=2)
    r1 = s.learn_many([ev(1, "i0", 0)], {})
    top = r1.users["u1"].topk
    other = next(i for i in ["i1", "i2", "i3", "i4", "i5"] if i not in top)
    r2 = s.learn_many([ev(2, top[0], 5, "like"), ev(3, other, 6, "like"), ev(4, "i5", 7, "click")], r1.users)
    assert [h for _, h in r2.hits] == [True, False]  # clicks are not targets by default


def test_popularity_prior_ranks_cold_users() -> None:
    r = Representation(pop_weight=1.0)
    s = Scorer(ScorerConfig(top_k=1), ServingModel("v0", table(), r))
    s.learn_many([ev(n, "i4", n, user=f"x{n}") for n in range(5)], {})
    top = s.rank_many([UserState("newbie")], now=10)
    assert top[0][0][0] == "i4"


def test_unknown_items_are_kept_in_history() -> None:
    s = scorer()
    r = s.learn_many([ev(1, "not-in-catalog", 0)], {})
    assert r.users["u1"].history[0].item_id == "not-in-catalog"


def test_config_validation_names_the_setting() -> None:
    with pytest.raises(ScorerConfigError, match="SCORER_TOP_K"):
        ScorerConfig(top_k=0)


def test_scores_in_one_product_agree_with_learner_scores_across_swaps() -> None:
    from driftrec.model import scores

    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(300)]

    def version(seed: int) -> ServingModel:
        r = np.random.default_rng(seed)
        t = ItemTable(
            ids,
            r.standard_normal((300, 16)).astype(np.float32),
            np.zeros((300, 16), np.float32),
            r.standard_normal(300).astype(np.float32),
        )
        return ServingModel(f"v{seed}", t, Representation(temperature=0.2))

    s = Scorer(ScorerConfig(), version(1))
    U = rng.standard_normal((7, 16)).astype(np.float32)
    prior = rng.standard_normal(300).astype(np.float32)
    for seed in (1, 2, 1):  # a new version's vectors replace the cached item side
        if s.version != f"v{seed}":
            s.swap(version(seed))
        m = s.model
        Ua, X = s._operands(U, m, prior)
        got = Ua @ X.T
        want = scores(U, m.table.vectors, m.table.bias, prior, m.rep.temperature)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_fewer_rankable_items_than_k_gives_a_shorter_list() -> None:
    s = scorer(k=3)  # 6 items
    evs = [ev(n, f"i{n}", n * 1000) for n in range(5)]  # five of them seen
    r = s.learn_many(evs, {})
    assert [x["item_id"] for x in r.recs[0]["items"]] == ["i5"]
    assert r.users["u1"].topk == ["i5"]
    assert s.rank_many([r.users["u1"]], 10_000) == [[("i5", r.recs[0]["items"][0]["score"])]]


def test_user_vectors_own_their_memory() -> None:
    # A row view would keep the batch's whole [B, d] matrix alive for as long as any of
    # its users keeps it: the embedded store holds these states for the life of the process.
    s = scorer()
    r = s.learn_many([ev(n, f"i{n % 6}", n, user=f"u{n}") for n in range(5)], {})
    assert len(r.users) == 5
    assert all(st.vector.base is None and st.vector.flags.owndata for st in r.users.values())


def test_update_names_the_users_newest_applied_event() -> None:
    s = scorer()
    first = s.learn_many([ev(1, "i0", 10)], {})
    # e1 again (skipped as already applied), at the same time as the newest applied one
    r = s.learn_many([ev(2, "i1", 20), ev(3, "i2", 25), Event("e1", "like", "u1", "i0", 25)], first.users)
    assert r.duplicates == 1 and r.applied == 2
    assert [(x["event_id"], x["event_ts"]) for x in r.recs] == [("e3", 25)]
