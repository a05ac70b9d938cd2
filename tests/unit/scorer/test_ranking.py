"""The bfloat16 first pass ranks exactly what the float32 path ranks."""

from __future__ import annotations

import numpy as np
import pytest

from driftrec.model import ItemTable, Representation, add_cooc, cooc_entries, top_k
from driftrec.scorer import Scorer, ScorerConfig, ScorerConfigError, ServingModel
from driftrec.scorer.ranking import Bf16Ranker, RowAdds, resolve_precision
from driftrec.stream import Event


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _model(n: int = 8192, d: int = 64, cooc: bool = True, neg: bool = False) -> ServingModel:
    rng = np.random.default_rng(0)
    t = ItemTable(
        [f"i{j}" for j in range(n)],
        _unit(rng, n, d),
        np.zeros((n, d), np.float32),
        rng.standard_normal(n).astype(np.float32) * 0.3,
    )
    if cooc:
        w = rng.random((n, 20)).astype(np.float32) - (0.5 if neg else 0.0)
        t = t.with_cooc(rng.integers(0, n, (n, 20)).astype(np.int32), w, 2.0)
    return ServingModel("v1", t, Representation())


def _events(n_users: int, n_items: int, per_user: int = 6, seed: int = 1) -> list[Event]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_users * per_user):
        out.append(
            Event(
                f"e{k}",
                "like" if k % 3 else "click",
                f"u{k % n_users}",
                f"i{int(rng.integers(0, n_items))}",
                1_000_000 + k,
            )
        )
    return out


@pytest.mark.parametrize("cooc,neg", [(False, False), (True, False), (True, True)])
def test_bfloat16_pass_gives_the_float32_ranking(cooc: bool, neg: bool) -> None:
    evs = _events(600, 8192)
    got = {}
    for precision in ("float32", "bfloat16"):
        s = Scorer(ScorerConfig(top_k=10, rank_precision=precision), _model(cooc=cooc, neg=neg))
        r = s.learn_many(evs, {})
        got[precision] = {x["user_id"]: x["items"] for x in r.recs}
        if precision == "bfloat16":
            assert s.rank_stats is not None and s.rank_stats.rows == 600  # the bf16 pass ran
    assert got["float32"].keys() == got["bfloat16"].keys()
    for u, want in got["float32"].items():
        have = got["bfloat16"][u]
        assert [x["item_id"] for x in have] == [x["item_id"] for x in want], u
        np.testing.assert_allclose([x["score"] for x in have], [x["score"] for x in want], atol=2e-5)


def _near_ties(n: int = 2048, d: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Items whose scores differ by far less than bfloat16 can tell apart (1e-4 steps
    around 4), so that the approximate order of the best ones is noise."""
    rng = np.random.default_rng(3)
    X = np.zeros((n, d + 1), np.float32)
    X[:, :d] = _unit(rng, n, d) * 0.01
    X[:, 0] = 1.0 + 1e-4 * rng.permutation(n)  # the ranking is this column
    Ua = np.zeros((256, d + 1), np.float32)
    Ua[:, 0] = 4.0 + rng.random(256).astype(np.float32)
    Ua[:, 1:d] = rng.standard_normal((256, d - 1)).astype(np.float32) * 0.01
    Ua[:, d] = 1.0
    return Ua, X


def test_rows_the_bound_cannot_certify_are_ranked_again_in_float32() -> None:
    Ua, X = _near_ties()
    want_i, want_v = top_k(Ua @ X.T, 10)
    r = Bf16Ranker()
    r.margin = 0  # candidates = k: almost no row can be certified
    idx, val = r.topk(Ua, X, X[:, :-1], 10, RowAdds.build(len(Ua)))
    assert r.stats.fallback_rows > 0
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_allclose(val, want_v, rtol=1e-6)
    # the case discriminates: bfloat16 scores alone get these rows wrong
    import torch

    approx = (torch.from_numpy(Ua).bfloat16() @ torch.from_numpy(X).bfloat16().T).float().numpy()
    assert (top_k(approx, 10)[0] != want_i).any(axis=1).mean() > 0.5
    assert r.margin > 0  # too many rows redone: more candidates next time


def test_certified_rows_skip_the_float32_pass() -> None:
    rng = np.random.default_rng(5)
    X = np.concatenate([_unit(rng, 4096, 64), np.zeros((4096, 1), np.float32)], 1)
    Ua = np.concatenate([10 * _unit(rng, 512, 64), np.ones((512, 1), np.float32)], 1)
    r = Bf16Ranker()
    idx, _ = r.topk(Ua, X, X[:, :-1], 10, RowAdds.build(len(Ua)))
    np.testing.assert_array_equal(idx, top_k(Ua @ X.T, 10)[0])
    assert r.stats.fallback_rows < 0.05 * 512


def test_additions_reach_the_rows_ranked_again() -> None:
    """co-engagement and seen items reach the redone rows as they reached the first pass"""
    Ua, X = _near_ties()
    rng = np.random.default_rng(9)
    hist_idx = rng.integers(0, len(X), (len(Ua), 5))
    hist_w = rng.random((len(Ua), 5)).astype(np.float32)
    nbr_idx = rng.integers(0, len(X), (len(X), 8))
    nbr_w = rng.random((len(X), 8)).astype(np.float32)
    seen = rng.integers(0, len(X), (len(Ua), 30))
    seen_rc = (np.repeat(np.arange(len(Ua)), seen.shape[1]), seen.ravel())
    adds = RowAdds.build(len(Ua), cooc_entries(hist_idx, hist_w, nbr_idx, nbr_w, 0.01), seen_rc)

    S0 = Ua @ X.T
    add_cooc(S0, hist_idx, hist_w, nbr_idx, nbr_w, 0.01)
    S0[seen_rc] = -np.inf
    want_i, _ = top_k(S0, 10)
    r = Bf16Ranker()
    r.margin = 0
    idx, _ = r.topk(Ua, X, X[:, :-1], 10, adds, (0.0, 0.01))
    assert r.stats.fallback_rows > 0
    np.testing.assert_array_equal(idx, want_i)


def test_row_additions_apply_to_the_rows_given() -> None:
    rng = np.random.default_rng(4)
    B, N = 7, 50
    cr = np.sort(rng.integers(0, B, 40))
    cooc = (cr, rng.integers(0, N, 40), rng.random(40).astype(np.float32))
    sr = np.sort(rng.integers(0, B, 12))
    seen = (sr, rng.integers(0, N, 12))
    adds = RowAdds.build(B, cooc, seen)
    want = np.zeros((B, N), np.float32)
    np.add.at(want, (cooc[0], cooc[1]), cooc[2])
    want[seen] = -np.inf
    full = np.zeros((B, N), np.float32)
    adds.apply(full)
    np.testing.assert_allclose(full, want, rtol=1e-6)
    rows = np.array([5, 1, 3])
    part = np.zeros((3, N), np.float32)
    adds.apply(part, rows)
    np.testing.assert_allclose(part, want[rows], rtol=1e-6)


def test_rank_precision_setting() -> None:
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto") in ("float32", "bfloat16")
    assert Scorer(ScorerConfig(rank_precision="float32"), _model()).rank_precision == "float32"
    with pytest.raises(ScorerConfigError, match="SCORER_RANK_PRECISION"):
        ScorerConfig(rank_precision="fp8")


def test_small_batches_and_negative_type_weights_stay_in_float32() -> None:
    s = Scorer(ScorerConfig(rank_precision="bfloat16"), _model())
    s.learn_many(_events(20, 8192), {})  # 20 x 8192 cells: not worth a bfloat16 pass
    assert s._ranker is not None and s._ranker.stats.rows == 0
    m = _model()
    neg = ServingModel("v2", m.table, Representation(type_weights={"click": 1.0, "like": -1.0}))
    s = Scorer(ScorerConfig(rank_precision="bfloat16"), neg)
    s.learn_many(_events(600, 8192), {})
    assert s._ranker is not None and s._ranker.stats.rows == 0


def test_a_swapped_in_version_finds_its_item_side_prepared(tmp_path) -> None:
    """SwapManager builds the next version's operands off the serving thread"""
    from driftrec.model import write_artifact
    from driftrec.scorer import SwapManager

    m = _model(cooc=False)
    s = Scorer(ScorerConfig(rank_precision="bfloat16"), m)
    s.learn_many(_events(600, 8192), {})
    rng = np.random.default_rng(7)
    t = m.table
    new = ItemTable(list(t.item_ids), t.text, 0.1 * _unit(rng, len(t.item_ids), t.dim), t.bias, t.context)
    rec = write_artifact(
        str(tmp_path), "v2", {}, None, new, "test", {"from_ts": 0, "to_ts": 0, "n_events": 0}, {}
    )
    mgr = SwapManager(s, background=True)
    mgr.submit(rec)
    mgr.wait()
    assert not mgr.rejected
    ready = s._ranker._next
    assert ready is not None and s._next_aug is not None
    assert mgr.maybe_swap() is not None
    assert ready.vectors is s.model.table.vectors
    s.learn_many(_events(600, 8192, seed=2), {})
    assert s._ranker._side is ready and s._aug is not None and s._aug[0] is s.model.table.vectors


def test_co_engagement_range_follows_the_weight_with_the_same_neighbours() -> None:
    m = _model(neg=True)
    s = Scorer(ScorerConfig(rank_precision="bfloat16"), m)
    lo, hi = s._crange(m.table, m.rep)
    assert lo > 0 and hi > 0
    t2 = m.table.with_cooc(m.table.nbr_idx, m.table.nbr_w, 8.0)  # the same arrays, weight 4x
    lo2, hi2 = s._crange(t2, m.rep)
    assert lo2 == pytest.approx(4 * lo) and hi2 == pytest.approx(4 * hi)


def test_fewer_blocks_than_candidates_a_tail_and_rows_almost_all_seen() -> None:
    """the compiled pass on a catalog of fewer than C blocks of 64 (every column is a
    candidate), columns past the last whole block, and a row with 3 unseen items"""
    rng = np.random.default_rng(11)
    N, d = 500, 16
    X = np.concatenate([_unit(rng, N, d), 0.1 * rng.standard_normal((N, 1)).astype(np.float32)], 1)
    Ua = np.concatenate([3 * _unit(rng, 128, d), np.ones((128, 1), np.float32)], 1)
    rows = [np.zeros(N - 3, np.int64), np.repeat(np.arange(1, 128), 20)]
    cols = [rng.permutation(N)[: N - 3], rng.integers(0, N, 127 * 20)]
    seen = (np.concatenate(rows), np.concatenate(cols))
    S0 = Ua @ X.T
    S0[seen] = -np.inf
    want_i, want_v = top_k(S0, 10)
    r = Bf16Ranker()
    idx, val = r.topk(Ua, X, X[:, :-1], 10, RowAdds.build(len(Ua), seen=seen))
    assert np.isneginf(val[0, 3:]).all() and set(idx[0, :3]) == set(want_i[0, :3])
    np.testing.assert_array_equal(idx[1:], want_i[1:])
    np.testing.assert_allclose(val[1:], want_v[1:], rtol=1e-5)


def test_the_compiled_pass_is_loaded_up_front_when_the_configured_batches_take_it() -> None:
    import driftrec.scorer._select as sel

    m = _model()  # 8,192 items: batches of 512 or more take the bfloat16 pass
    assert not Scorer(ScorerConfig(rank_precision="bfloat16", batch_size=256), m)._compiled_pass()
    assert not Scorer(ScorerConfig(rank_precision="float32", batch_size=4096), m)._compiled_pass()
    s = Scorer(ScorerConfig(rank_precision="bfloat16", batch_size=1024), m)
    assert s._compiled_pass()
    s.wait_ready()
    assert sel._compiled is not None and s.ranking_ready()


def test_a_column_outside_the_catalog_is_refused_before_the_compiled_pass() -> None:
    rng = np.random.default_rng(12)
    X = np.concatenate([_unit(rng, 2048, 16), np.zeros((2048, 1), np.float32)], 1)
    Ua = np.concatenate([_unit(rng, 64, 16), np.ones((64, 1), np.float32)], 1)
    bad = RowAdds.build(64, (np.array([3]), np.array([2048]), np.array([1.0], np.float32)))
    with pytest.raises(ValueError, match="outside the 2,048-item catalog"):
        Bf16Ranker().topk(Ua, X, X[:, :-1], 10, bad)
