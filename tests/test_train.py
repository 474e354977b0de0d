"""Training-loop details that the end-to-end runs do not pin down."""

from __future__ import annotations

import pytest
import torch

from harness.engine.train import Diverged, _check_finite


def test_divergence_names_the_first_step_whose_loss_is_not_finite():
    _check_finite(torch.tensor([2.0, 1.5, 1.2]), first_step=50)
    with pytest.raises(Diverged, match="became nan at step 52"):
        _check_finite(torch.tensor([2.0, 1.5, float("nan"), float("inf")]), first_step=50)
