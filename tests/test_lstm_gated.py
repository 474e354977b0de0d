"""lstm_gated: one step against hand-computed values, and the fused path against the loop."""

from __future__ import annotations

import math

import pytest
import torch

import harness
from baselines.lstm_gated import LSTMGated, LSTMGatedConfig, parameter_matched_width


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def one_unit_cell(implementation: str) -> LSTMGated:
    """D = N = 1 with hand-chosen weights: input weights (i, f, g, o) = (0.5, -1, 2, 1),
    recurrent weights all 0.25, biases b_ih = (0, 1, 0, 0) and b_hh = (0.1, 0, -0.2, 0.3)."""
    cell = LSTMGated(1, 1, LSTMGatedConfig(hidden_size=1, implementation=implementation)).double()
    with torch.no_grad():
        cell.cell.weight_ih_l0.copy_(torch.tensor([[0.5], [-1.0], [2.0], [1.0]]))
        cell.cell.weight_hh_l0.fill_(0.25)
        cell.cell.bias_ih_l0.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0]))
        cell.cell.bias_hh_l0.copy_(torch.tensor([0.1, 0.0, -0.2, 0.3]))
        cell.out.weight.fill_(1.0)
    return cell


@pytest.mark.parametrize("implementation", ["fused", "loop"])
def test_two_steps_match_hand_computation(implementation):
    cell = one_unit_cell(implementation)
    state = {"h": torch.tensor([[0.2]], dtype=torch.float64), "c": torch.tensor([[-0.4]], dtype=torch.float64), "pos": 0}
    y, new_state = cell(torch.tensor([[[1.0], [-0.5]]], dtype=torch.float64), state)

    h, c, outputs = 0.2, -0.4, []
    for x in (1.0, -0.5):  # written out from the equations in the module docstring
        i = sigmoid(0.5 * x + 0.25 * h + 0.0 + 0.1)
        f = sigmoid(-1.0 * x + 0.25 * h + 1.0 + 0.0)
        g = math.tanh(2.0 * x + 0.25 * h + 0.0 - 0.2)
        o = sigmoid(1.0 * x + 0.25 * h + 0.0 + 0.3)
        c = f * c + i * g
        h = o * math.tanh(c)
        outputs.append(h)
    # first step by hand: i = sigmoid(0.65), f = sigmoid(0.05), g = tanh(1.85), o = sigmoid(1.35)
    assert outputs[0] == pytest.approx(sigmoid(1.35) * math.tanh(sigmoid(0.05) * -0.4 + sigmoid(0.65) * math.tanh(1.85)))
    torch.testing.assert_close(y.flatten(), torch.tensor(outputs, dtype=torch.float64))
    assert new_state["h"].item() == pytest.approx(h) and new_state["c"].item() == pytest.approx(c)
    assert new_state["pos"] == 2


def test_fused_and_loop_paths_agree_in_values_and_gradients():
    fused = harness.build_model("lstm_gated", vocab_size=13, d_model=16, n_layers=2, n_heads=2).double()
    loop = harness.build_model("lstm_gated", vocab_size=13, d_model=16, n_layers=2, n_heads=2, implementation="loop").double()
    loop.load_state_dict(fused.state_dict())
    tokens = torch.randint(0, 13, (3, 21))
    outputs = []
    for model in (fused, loop):
        logits, state = model.stream(tokens, model.init_state(3), 8)
        logits.square().mean().backward()
        outputs.append((logits, state, {k: p.grad.clone() for k, p in model.named_parameters()}))
    torch.testing.assert_close(outputs[0][0], outputs[1][0])
    for a, b in zip(outputs[0][1], outputs[1][1]):
        torch.testing.assert_close(a["h"], b["h"])
        torch.testing.assert_close(a["c"], b["c"])
    for key, grad in outputs[0][2].items():
        torch.testing.assert_close(grad, outputs[1][2][key], msg=key)


def test_truncated_backpropagation_cuts_gradients_at_the_boundary():
    model = harness.build_model("lstm_gated", vocab_size=13, d_model=8, n_layers=1, n_heads=1, bptt_len=4).double()
    embedded = model.embed(torch.randint(0, 13, (1, 10))).detach().requires_grad_(True)
    mixer = model.blocks[0].mixer
    y, _ = mixer(embedded, mixer.init_state(1, torch.device("cpu"), torch.float64))
    y[0, 9].sum().backward()  # position 9 lies in the chunk 8..11: no gradient before position 8
    gradient = embedded.grad[0].abs().sum(-1)
    assert (gradient[:8] == 0).all() and (gradient[8:10] > 0).all()

    untruncated = harness.build_model("lstm_gated", vocab_size=13, d_model=8, n_layers=1, n_heads=1).double()
    mixer = untruncated.blocks[0].mixer
    embedded.grad = None
    y, _ = mixer(embedded, mixer.init_state(1, torch.device("cpu"), torch.float64))
    y[0, 9].sum().backward()
    assert (embedded.grad[0].abs().sum(-1) > 0).all()


def test_default_width_is_parameter_matched_to_attention():
    assert parameter_matched_width(64) == 35
    d = 64
    n = parameter_matched_width(d)
    assert abs(4 * n * (d + n) + 8 * n + n * d - 4 * d * d) / (4 * d * d) < 0.05


@pytest.mark.parametrize("options, message", [
    ({"implementation": "cuda"}, "implementation"), ({"bptt_len": -1}, "bptt_len"), ({"hidden_size": -3}, "hidden_size"),
])
def test_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        harness.build_model("lstm_gated", vocab_size=8, d_model=8, n_layers=1, n_heads=1, **options)
