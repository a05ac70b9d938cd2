"""The adapters' initial weights come from the encoder's own seed: the same settings train the
same adapters in every process (before, peft drew them from torch's global generator, and two
runs of the same `driftrec eval` command kept different adapters)."""

from __future__ import annotations

import torch

from driftrec.model import TextEncoder


def test_the_same_seed_gives_the_same_initial_adapters_whatever_ran_before(tiny_model) -> None:
    a = TextEncoder(tiny_model, lora_r=2, seed=3).lora_state()
    torch.rand(1000)  # another process would have drawn other numbers before this one
    b = TextEncoder(tiny_model, lora_r=2, seed=3).lora_state()
    c = TextEncoder(tiny_model, lora_r=2, seed=4).lora_state()
    assert a.keys() == b.keys() == c.keys() and a
    random_init = [n for n in a if a[n].abs().sum() > 0]  # lora_B starts at zero
    assert random_init
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in random_init)


def test_building_an_encoder_leaves_the_global_generator_alone(tiny_model) -> None:
    torch.manual_seed(11)
    expected = torch.rand(5)
    torch.manual_seed(11)
    TextEncoder(tiny_model, lora_r=2, seed=0)
    assert torch.equal(torch.rand(5), expected)
