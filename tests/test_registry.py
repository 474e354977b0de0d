"""Registries and the public build API."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import harness
from harness.layers.mechanism import Mechanism, MechanismConfig
from harness.registry import MECHANISMS, UnknownNameError


def test_names_are_sorted_and_include_the_slice():
    assert harness.mechanisms() == sorted(harness.mechanisms())
    assert {"full_attention", "sliding_window"} <= set(harness.mechanisms())
    assert "passkey" in harness.tasks()


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown mechanism 'nope'; known mechanisms: .*full_attention"):
        harness.build_model("nope", vocab_size=8, d_model=8, n_layers=1, n_heads=1)
    with pytest.raises(UnknownNameError, match="known tasks: .*passkey"):
        harness.build_task("nope")


def test_unknown_and_mistyped_options_name_the_key():
    with pytest.raises(TypeError, match="windw"):
        harness.build_model("sliding_window", vocab_size=8, d_model=8, n_layers=1, n_heads=1, windw=3)
    with pytest.raises(Exception, match="window"):
        harness.build_model("sliding_window", vocab_size=8, d_model=8, n_layers=1, n_heads=1, window="wide")


@pytest.mark.parametrize("sizes, message", [
    (dict(d_model=10, n_heads=3), "divisible"),
    (dict(d_model=0, n_heads=1), "d_model"),
    (dict(d_model=8, n_heads=1, n_layers=0), "n_layers"),
])
def test_impossible_sizes_are_rejected(sizes, message):
    with pytest.raises(ValueError, match=message):
        harness.build_model("full_attention", vocab_size=8, **{"n_layers": 1, **sizes})


def test_a_component_needs_a_config_named_after_it():
    @dataclass
    class WrongName(MechanismConfig):
        name: str = "something_else"

    class Bad(Mechanism):
        Config = WrongName

    with pytest.raises(TypeError, match="must default to 'bad_mechanism'"):
        MECHANISMS.register("bad_mechanism")(Bad)
    assert "bad_mechanism" not in harness.mechanisms()


def test_model_api_shapes():
    model = harness.build_model("full_attention", vocab_size=12, d_model=16, n_layers=2, n_heads=4)
    state = model.init_state(batch_size=3)
    logits, state = model(torch.randint(0, 12, (3, 5)), state)
    assert logits.shape == (3, 5, 12)
    assert model.state_bytes(state) == 2 * 2 * 3 * 16 * 5 * 4  # k, v x layers x batch x width x tokens x fp32
