"""The item table holds nothing twice (issue 26, item 4): no residual array where nothing
was learned, the context and the vectors *are* the text where they equal it; every number
is what it was when each was a copy, and artifacts are written and read as before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from driftrec.model import ArtifactError, ItemTable, load_artifact, write_artifact
from driftrec.model.trust import read_tensors

WINDOW = {"from_ts": 0, "to_ts": 1, "n_events": 2}


def unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def old_with_items(t: ItemTable, ids, text, base_text=None, prev_base=None):  # type: ignore[no-untyped-def]
    """ItemTable.with_items as it was, every array a copy: the reference for the numbers."""
    base_text = text if base_text is None else base_text
    prev = dict(prev_base) if prev_base is not None and t.context_shift else {}
    out_ids = list(t.item_ids)
    tt, r, b, c = t.text.copy(), np.array(t.residual), t.bias.copy(), t.context.copy()
    st = None if t.stale is None else t.stale.copy()
    new_t, new_c = [], []
    for iid, vec, cvec in zip(ids, text, base_text):
        k = t.index(iid)
        if k >= 0:
            if iid in prev:
                c[k] += np.float32(t.context_shift) * ((vec - cvec) - (tt[k] - prev[iid]))
                prev[iid] = np.asarray(cvec, np.float32)
            tt[k] = vec
            if st is not None:
                st[k] = False
        else:
            out_ids.append(iid)
            new_t.append(vec)
            new_c.append(cvec + np.float32(t.context_shift) * (np.asarray(vec) - cvec))
    if new_t:
        nv = np.asarray(new_t, np.float32)
        tt = np.vstack([tt, nv])
        r = np.vstack([r, np.zeros_like(nv)])
        b = np.concatenate([b, np.zeros(len(nv), np.float32)])
        c = np.vstack([c, np.asarray(new_c, np.float32)])
    if st is not None and len(out_ids) > len(st):
        st = np.concatenate([st, np.zeros(len(out_ids) - len(st), bool)])
    return out_ids, tt, r, b, c, st


def same_numbers(new: ItemTable, ref) -> None:  # type: ignore[no-untyped-def]
    ids, tt, r, b, c, st = ref
    assert new.item_ids == ids
    for got, want in ((new.text, tt), (new.residual, r), (new.bias, b), (new.context, c)):
        assert got.shape == want.shape and np.array_equal(got, want)
    assert np.array_equal(new.vectors, (tt + r).astype(np.float32))
    assert (new.stale is None and (st is None or not st.any())) or np.array_equal(new.stale, st)


def test_the_base_version_holds_its_text_once() -> None:
    text = unit(np.random.default_rng(0), 5)
    t = ItemTable.from_text(list("abcde"), text)
    assert t.vectors is t.text and t.context is t.text and not t.has_residual
    assert t.residual.shape == text.shape and not t.residual.any() and t.residual.strides == (0, 0)
    # derived tables keep it so; a learned residual makes vectors of their own
    assert t.with_cooc(None, None, 0.0).vectors is t.text
    r = ItemTable(t.item_ids, t.text, np.full_like(text, 0.5), t.bias, None)
    assert r.has_residual and np.array_equal(r.vectors, text + 0.5) and r.context is r.text
    # a float64 text is held as given, its float32 rows once for both sides
    d = ItemTable.from_text(list("abcde"), text.astype(np.float64))
    assert d.vectors is d.context and d.vectors.dtype == np.float32


@pytest.mark.parametrize("shift", [0.0, 0.5])
@pytest.mark.parametrize("residual", [False, True])
def test_with_items_gives_the_numbers_it_gave(shift: float, residual: bool) -> None:
    rng = np.random.default_rng(1)
    ids = [f"i{j}" for j in range(6)]
    text = unit(rng, 6)
    t = ItemTable(
        ids,
        text,
        rng.normal(size=text.shape).astype(np.float32) * 0.1 if residual else None,
        rng.normal(size=6).astype(np.float32),
        None if not shift else unit(rng, 6),
        stale=np.array([True, False, True, False, False, False]),
        context_shift=shift,
    )
    new, base = unit(rng, 3), unit(rng, 3)
    prev = {"i0": unit(rng, 1)[0], "i2": unit(rng, 1)[0]}
    cases = [
        (["n1", "n2", "n3"], new, None, None),  # appended, context = text
        (["n1", "n2", "n3"], new, new.copy(), None),  # a base text equal to the text
        (["n1", "n2", "n3"], new, base, None),  # a base text of their own
        (["i0", "n1", "i2"], new, base, prev),  # edits and an append
        (["i0", "i0", "i2"], new, base, prev),  # an id twice
        (["i3"], new[:1], None, None),  # an edit alone
    ]
    for c_ids, c_text, c_base, c_prev in cases:
        got = t.with_items(c_ids, c_text, c_base, c_prev)
        same_numbers(got, old_with_items(t, c_ids, c_text, c_base, c_prev))
        assert got.has_residual == residual
    got = t.with_items(["n1"], new[:1])
    assert (got.context is got.text) == (not shift)  # appended rows equal to the text: still shared


def test_an_edit_keeps_the_context_apart_from_the_text() -> None:
    t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
    u = t.with_items(["a"], np.array([[0.0, 1.0]], np.float32))
    assert u.text[0].tolist() == [0.0, 1.0] and u.context[0].tolist() == [1.0, 0.0]
    assert u.vectors is u.text and t.text[0].tolist() == [1.0, 0.0]  # the old table unchanged
    w = t.with_text(np.array([1]), np.array([[3.0, 3.0]], np.float32))
    assert w.text[1].tolist() == [3.0, 3.0] and w.context[1].tolist() == [0.0, 1.0]
    assert w.vectors is w.text and t.vectors[1].tolist() == [0.0, 1.0]


def dense_file(t: ItemTable, path: Path) -> bytes:
    """items.safetensors as write_artifact wrote it when every array was a copy."""
    arrays = {
        "text": t.text.astype(np.float32),
        "residual": np.array(t.residual, np.float32),
        "bias": t.bias.astype(np.float32),
        "context": t.context.astype(np.float32),
        "cooc_weight": np.array([t.cooc_weight], np.float32),
    }
    safetensors.numpy.save_file(arrays, str(path))
    return path.read_bytes()


def test_artifacts_are_written_as_before_and_load_shared(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = ItemTable.from_text([f"i{j}" for j in range(7)], unit(rng, 7))
    learned = ItemTable(
        base.item_ids, base.text, unit(rng, 7) * 0.1, rng.normal(size=7).astype(np.float32), unit(rng, 7)
    )
    back = {}
    for v, t in (("v1", base), ("v2", learned)):
        rec = write_artifact(tmp_path, v, {}, None, t, "none", WINDOW, {})
        assert (tmp_path / v / "items.safetensors").read_bytes() == dense_file(t, tmp_path / f"{v}.st")
        back[v] = load_artifact(rec).items
        for k in ("text", "residual", "bias", "context", "vectors"):
            assert np.array_equal(getattr(back[v], k), getattr(t, k)), k
    b = back["v1"]
    assert b.context is b.text and b.vectors is b.text and not b.has_residual and b.text.flags.writeable
    assert back["v2"].has_residual and back["v2"].context is not back["v2"].text


def _sha(art: Path) -> str:
    return hashlib.sha256((art / "manifest.json").read_bytes()).hexdigest()


def _replace_items(art: Path, data: bytes) -> dict:
    """Put ``data`` as the artifact's items file, with the manifest's checksum to match."""
    (art / "items.safetensors").write_bytes(data)
    m = json.loads((art / "manifest.json").read_text())
    m["files"]["items.safetensors"] = hashlib.sha256(data).hexdigest()
    (art / "manifest.json").write_text(json.dumps(m))
    return {"version": art.name, "uri": art.as_uri(), "sha256": _sha(art)}


@pytest.mark.parametrize(
    "cut",
    [
        lambda b: b[:5],  # shorter than the header size
        lambda b: b[:-3],  # ends inside a tensor
        lambda b: (10**9).to_bytes(8, "little") + b[8:],  # header past the end
        lambda b: b[:8] + b"[" + b[9:],  # the header is not JSON
        lambda b: b[:8] + b[8:].replace(b'"F32"', b'"Q32"', 1),  # a dtype not read here
        lambda b: b[:8] + b[8:].replace(b"data_offsets", b"data_offsetz", 1),  # no offsets
    ],
)
def test_a_malformed_items_file_with_its_checksum_cannot_load(tmp_path: Path, cut) -> None:  # type: ignore[no-untyped-def]
    t = ItemTable.from_text(["a", "b"], np.eye(2, dtype=np.float32))
    write_artifact(tmp_path, "v1", {}, None, t, "none", WINDOW, {})
    art = tmp_path / "v1"
    rec = _replace_items(art, cut((art / "items.safetensors").read_bytes()))
    with pytest.raises(ArtifactError) as err:
        load_artifact(rec)
    assert err.value.reason in ("load_error", "bad_tensor")


def test_read_tensors_hashes_every_byte_once(tmp_path: Path) -> None:
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(0, np.uint8), "c": np.ones(3)}
    p = tmp_path / "x.safetensors"
    safetensors.numpy.save_file(arrays, str(p))
    h = hashlib.sha256()
    got = read_tensors(str(p), h).arrays()
    assert h.hexdigest() == hashlib.sha256(p.read_bytes()).hexdigest()
    assert got.keys() == arrays.keys() and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    bad = tmp_path / "bad"
    bad.write_bytes(p.read_bytes()[:-1])
    h = hashlib.sha256()
    tf = read_tensors(str(bad), h)
    assert h.hexdigest() == hashlib.sha256(bad.read_bytes()).hexdigest()  # hashed to the end
    with pytest.raises(ValueError):
        tf.arrays()


def test_float16_storage_is_the_float32_table_of_its_rounded_rows() -> None:
    from driftrec.model import user_vectors

    rng = np.random.default_rng(3)
    ids = [f"i{j}" for j in range(50)]
    base = ItemTable.from_text(ids, unit(rng, 50))
    half = base.stored("float16")
    assert half.text.dtype == np.float16 and half.vectors is half.text and half.context is half.text
    assert half.stored("float16") is half and base.stored("float32") is base
    same = ItemTable.from_text(ids, half.text.astype(np.float32))  # what half holds, in float32
    idx, w = rng.integers(-1, 50, (7, 9)), rng.random((7, 9)).astype(np.float32)
    assert np.array_equal(user_vectors(idx, w, half.context), user_vectors(idx, w, same.context))
    # a learned residual: held in float16 too, and the vectors the float16 sum; derived
    # tables stay float16
    learned = ItemTable(ids, base.text, unit(rng, 50) * 0.1, base.bias, unit(rng, 50)).stored("float16")
    assert learned.vectors.dtype == learned.residual.dtype == learned.context.dtype == np.float16
    assert np.array_equal(learned.vectors, learned.text + learned.residual)
    more = learned.with_items(["i0", "new"], unit(rng, 2)).with_text(np.array([3]), unit(rng, 1))
    assert more.text.dtype == more.context.dtype == np.float16 and len(more.item_ids) == 51
    with pytest.raises(ValueError):
        base.stored("bfloat16")


def test_a_float16_scorer_ranks_as_float32_over_the_rounded_rows() -> None:
    from driftrec.model import Representation
    from driftrec.scorer import Scorer, ScorerConfig, ServingModel
    from driftrec.stream import Event

    rng = np.random.default_rng(4)
    ids = [f"i{j}" for j in range(300)]
    half = ItemTable.from_text(ids, unit(rng, 300, 16)).stored("float16")
    same = ItemTable.from_text(ids, half.text.astype(np.float32))
    events = [
        Event(f"e{k}", "like", f"u{k % 9}", ids[int(rng.integers(0, 300))], 1000 + k) for k in range(60)
    ]
    out = []
    for t in (half, same):
        sc = Scorer(ScorerConfig(rank_precision="float32"), ServingModel("v", t, Representation()))
        out.append(sc.learn_many(events, {}).recs)
    assert out[0] == out[1] and out[0]


def test_a_learned_version_stored_in_float16_holds_its_residual_and_vectors_so() -> None:
    rng = np.random.default_rng(0)
    text = rng.standard_normal((50, 8)).astype(np.float32)
    res = np.zeros_like(text)
    res[:5] = 0.01 * rng.standard_normal((5, 8))  # learned rows, the rest zero
    t = ItemTable([f"i{j}" for j in range(50)], text, res, np.zeros(50, np.float32), text)
    h = t.stored("float16")
    assert h.text.dtype == h.residual.dtype == h.vectors.dtype == np.float16
    assert h.vectors.nbytes == t.vectors.nbytes // 2  # no float32 copy kept
    np.testing.assert_allclose(h.vectors, t.vectors, atol=2e-3)
    grown = h.with_items(["new"], np.ones((1, 8), np.float32))
    assert grown.vectors.dtype == np.float16 and grown.residual[-1].tolist() == [0.0] * 8
    assert h.stored("float16") is h and h.stored("float32").vectors.dtype == np.float32


def test_an_artifact_read_for_float16_storage_is_narrowed_as_read_and_still_checked(tmp_path) -> None:
    from driftrec.model import ArtifactError, load_artifact, write_artifact

    rng = np.random.default_rng(5)
    n = 200
    ids = [f"i{j}" for j in range(n)]
    res = np.zeros((n, 16), np.float32)
    res[:7] = 0.02 * rng.standard_normal((7, 16))
    t = ItemTable(ids, unit(rng, n, 16), res, np.zeros(n, np.float32), unit(rng, n, 16))
    meta = {"from_ts": 0, "to_ts": 1, "n_events": 1}
    rec = write_artifact(tmp_path, "v1", {}, None, t, "none", meta, {})
    half = load_artifact(rec, store=tmp_path, storage=lambda n_items: "float16").items
    whole = load_artifact(rec, store=tmp_path).items.stored("float16")
    for name in ("text", "residual", "context", "vectors"):
        got, want = getattr(half, name), getattr(whole, name)
        assert got.dtype == np.float16 and np.array_equal(got, want), name
    assert (
        load_artifact(rec, store=tmp_path, storage=lambda n_items: "float32").items.text.dtype == np.float32
    )
    bad = t.text.copy()
    bad[3, 0] = np.nan
    rec2 = write_artifact(
        tmp_path, "v2", {}, None, ItemTable(ids, bad, res, t.bias, t.context), "none", meta, {}
    )
    with pytest.raises(ArtifactError) as e:
        load_artifact(rec2, store=tmp_path, storage=lambda n_items: "float16")
    assert e.value.reason == "bad_tensor"
