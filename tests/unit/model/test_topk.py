"""The block-wise top-k used on large score matrices is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from driftrec.model.representation import TOPK_BLOCK, _blocked_topk, top_k


@pytest.mark.parametrize("n", [16 * TOPK_BLOCK, 10_000, 10_007])
@pytest.mark.parametrize("k", [1, 10, 50])
def test_blocked_topk_equals_a_full_selection(n: int, k: int) -> None:
    rng = np.random.default_rng(n + k)
    s = rng.standard_normal((64, n)).astype(np.float32)
    s[rng.random(s.shape) < 0.05] = -np.inf  # seen items
    s[3, : n - 5] = -np.inf  # a row with fewer finite scores than k
    s[7, n - 3 :] += 10.0  # the best scores in the short last block
    s[9, :] = np.linspace(0, 1, n, dtype=np.float32)  # best scores all in the last blocks
    ref_v, ref_i = torch.topk(torch.from_numpy(s), k, dim=1)
    idx, val = _blocked_topk(torch.from_numpy(s), k, TOPK_BLOCK)
    assert torch.equal(val, ref_v)
    finite = torch.isfinite(ref_v)
    assert torch.equal(idx[finite], ref_i[finite])  # -inf fillers may be any excluded column


def test_top_k_takes_the_blocked_path_on_large_matrices() -> None:
    rng = np.random.default_rng(0)
    s = rng.standard_normal((128, 10_000)).astype(np.float32)
    idx, val = top_k(s, 10, exclude=[[int(np.argmax(row))] for row in s])
    ref = np.sort(s, 1)[:, ::-1][:, 1:11]  # the best of each row excluded
    np.testing.assert_array_equal(val, ref)
    np.testing.assert_array_equal(np.take_along_axis(s, idx, 1), ref)
