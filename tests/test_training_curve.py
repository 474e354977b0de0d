"""The training curve in the record: each window's mean task loss and its last learning rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness
import harness.layers.model
import harness.engine.train
from harness.config import TrainConfig
from harness.engine.train import learning_rate, train


def test_curve_equals_the_losses_recomputed_step_by_step(monkeypatch):
    monkeypatch.setattr(harness.engine.train, "CHECK_EVERY", 3)
    task_losses, auxiliary_losses = [], []
    cross_entropy, auxiliary_loss = torch.nn.functional.cross_entropy, harness.layers.model.StreamingLM.auxiliary_loss

    def recorded_cross_entropy(*args, **kwargs):
        loss = cross_entropy(*args, **kwargs)
        task_losses.append(loss.item())
        return loss

    def recorded_auxiliary_loss(self):
        loss = auxiliary_loss(self)
        auxiliary_losses.append(loss.item())
        return loss

    monkeypatch.setattr(harness.engine.train.F, "cross_entropy", recorded_cross_entropy)
    monkeypatch.setattr(harness.layers.model.StreamingLM, "auxiliary_loss", recorded_auxiliary_loss)
    task = harness.build_task("passkey")
    # compressive memory adds an auxiliary (reconstruction) loss, which the curve leaves out
    model = harness.build_model("compressive", vocab_size=task.vocab_size, d_model=16, n_layers=1, n_heads=2,
                                mem_len=8, cmem_len=4)
    config = TrainConfig(steps=7, batch_size=2, context_len=48, min_context_len=32, warmup_steps=2)
    summary = train(model, task, config, segment_len=16, seed=0, device=torch.device("cpu"), progress=False,
                    data_workers=0)
    assert len(task_losses) == 7 and min(auxiliary_losses) > 0
    windows = [(0, 3), (3, 6), (6, 7)]
    assert [entry["step"] for entry in summary.curve] == [3, 6, 7]
    for (first, last), entry in zip(windows, summary.curve):
        assert entry["loss"] == pytest.approx(np.mean(task_losses[first:last]), rel=1e-12)
        assert entry["lr"] == learning_rate(last - 1, config, config.steps)
    assert summary.curve[0]["lr"] != summary.curve[-1]["lr"]
    assert (summary.context_len, summary.min_context_len) == (48, 32)
