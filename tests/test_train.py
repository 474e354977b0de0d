"""Training-loop details that the end-to-end runs do not pin down."""

from __future__ import annotations

import pytest
import torch

import harness
import harness.engine.train
from harness.config import TrainConfig
from harness.engine.train import Diverged, _check_finite
from harness.taskkit.task import IGNORE


def test_divergence_names_the_first_step_whose_loss_is_not_finite():
    _check_finite(torch.tensor([2.0, 1.5, 1.2]), first_step=50)
    with pytest.raises(Diverged, match="became nan at step 52"):
        _check_finite(torch.tensor([2.0, 1.5, float("nan"), float("inf")]), first_step=50)


def test_the_loss_is_the_cross_entropy_of_every_labelled_position_as_with_full_logits(monkeypatch):
    """Training applies the head at the labelled positions only; the loss is the one of the full logits."""
    batches, losses = [], []
    training_batches, cross_entropy = harness.engine.train.training_batches, torch.nn.functional.cross_entropy

    def recorded_batches(*args, **kwargs):
        for inputs, labels in training_batches(*args, **kwargs):
            batches.append((inputs.clone(), labels.clone()))
            yield inputs, labels

    def recorded_cross_entropy(*args, **kwargs):
        loss = cross_entropy(*args, **kwargs)
        losses.append(loss.item())
        return loss

    monkeypatch.setattr(harness.engine.train, "training_batches", recorded_batches)
    monkeypatch.setattr(harness.engine.train.F, "cross_entropy", recorded_cross_entropy)
    task = harness.build_task("mqar")
    model = harness.build_model("full_attention", vocab_size=task.vocab_size, d_model=16, n_layers=1, n_heads=2)
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    harness.engine.train.train(model, task, TrainConfig(steps=1, batch_size=3, context_len=40, min_context_len=24),
                               segment_len=16, seed=0, device=torch.device("cpu"), progress=False, data_workers=0)
    model.load_state_dict(initial)
    (inputs, labels), = batches
    assert 0 < (labels != IGNORE).sum() < labels.numel() / 4  # a task with few answers: most logits are skipped
    logits, _ = model.stream(inputs, model.init_state(len(inputs)), 16)
    expected = cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    assert losses == [pytest.approx(expected.item(), rel=1e-5)]


def test_mlp_ratio_0_leaves_the_mixers_alone():
    model = harness.build_model("full_attention", vocab_size=16, d_model=8, n_layers=2, n_heads=2, mlp_ratio=0)
    with_mlp = harness.build_model("full_attention", vocab_size=16, d_model=8, n_layers=2, n_heads=2, mlp_ratio=1)
    assert not [name for name, _ in model.named_parameters() if "mlp" in name]
    assert sum(p.numel() for p in with_mlp.parameters()) - sum(p.numel() for p in model.parameters()) == 2 * (2 * 8 * 8 + 8 + 8 + 2 * 8)
    block, x = model.blocks[0], torch.randn(2, 5, 8)
    expected = x + block.mixer(block.norm_mix(x), block.mixer.init_state(2, x.device, x.dtype))[0]
    assert torch.equal(block(x, block.mixer.init_state(2, x.device, x.dtype))[0], expected)
    with pytest.raises(ValueError, match="mlp_ratio must be a non-negative integer"):
        harness.build_model("full_attention", vocab_size=16, d_model=8, n_layers=2, n_heads=2, mlp_ratio=-1)
