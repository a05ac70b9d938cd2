"""``driftrec eval`` runs driftrec on the candidate path or with float16 item rows, alone
(``--candidates``, ``--item-storage``) or beside driftrec (``driftrec_index``, ``driftrec_f16``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from driftrec.cli.entry import main
from driftrec.evaluation import harness
from driftrec.evaluation import prequential as pq
from driftrec.learner import LearnerConfig
from driftrec.scorer import ScorerConfig
from driftrec.stream import generate


@pytest.fixture(scope="module")
def stream():
    return generate("fresh", n_events=300, n_users=20, n_items=60, seed=1)


def test_the_variants_are_driftrec_with_one_serving_setting_changed(tiny_model: str, stream) -> None:
    names = ["driftrec", "driftrec_index", "driftrec_f16"]
    systems = harness.build_systems(
        names,
        list(stream.items),
        model=tiny_model,
        learner_config=LearnerConfig(train_every=100, seed=2),
        device="cpu",
        lora_r=2,
    )
    by = {s.name: s for s in systems}
    assert [s.name for s in systems] == names
    assert by["driftrec"].serving() == {"path": "exact", "item_storage": "float32"}
    assert by["driftrec_index"].serving() == {"path": "index", "item_storage": "float32"}
    assert by["driftrec_f16"].serving() == {"path": "exact", "item_storage": "float16"}
    # each its own learner and encoder, from the same seed: everything else equal
    assert len({id(s.learner) for s in systems}) == 3
    assert len({id(s.scorer.model.encoder) for s in systems}) == 3
    assert by["driftrec_index"].scorer.config == ScorerConfig(seen_limit=1_000_000, candidates="index")
    res = pq.run(list(stream.events), systems, k=10)
    summary = harness.summarise(res, systems, 50, None, None)
    for n in names:
        d = summary["systems"][n]
        assert d["trainings"] >= 1 and "cold_hr_at_10" in d
    assert summary["systems"]["driftrec_index"]["path"] == "index"
    assert summary["systems"]["driftrec_f16"]["item_storage"] == "float16"
    # float16 rows round less than the scores of 60 items differ here
    assert np.array_equal(res.systems["driftrec_f16"].positions, res.systems["driftrec"].positions)


def test_unknown_systems_are_refused() -> None:
    with pytest.raises(ValueError, match="driftrec_index"):
        harness.build_systems(["driftrec_fast"], [])


def test_the_flags_reach_the_scorer_systems(tiny_model: str, tmp_path: Path, capsys) -> None:
    argv = ["eval", "--scenario", "fresh", "--events", "200", "--model", tiny_model, "--device", "cpu"]
    argv += ["--train-every", "100", "--json", "--no-progress", "--report", str(tmp_path)]
    rc = main([*argv, "--systems", "driftrec,frozen", "--candidates", "index", "--item-storage", "float16"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["systems"]
    for n in ("driftrec", "frozen"):
        assert (out[n]["path"], out[n]["item_storage"]) == ("index", "float16")
    assert main([*argv, "--systems", "driftrec,driftrec_index"]) == 0
    text = capsys.readouterr().out
    out = json.loads(text.strip().splitlines()[-1])["systems"]
    assert (out["driftrec"]["path"], out["driftrec_index"]["path"]) == ("exact", "index")
    assert "driftrec_index" in text and "driftrec    index" in text  # its column per window
    assert main([*argv, "--systems", "driftrec,driftrec_fast"]) == 2
    assert "unknown systems ['driftrec_fast']" in capsys.readouterr().err
