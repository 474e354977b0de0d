"""harness.layers.delta_rule on inputs laid out by head, [B, H, T, E], as the recurrences in the tests are written."""

from __future__ import annotations

import torch

from harness.layers.delta_rule import delta_rule


def delta_rule_by_heads(q, k, v, beta, S, chunk, q_weight=1.0):
    """Outputs [B, H, T, E] and {"S": the last memory} from q, k, v [B, H, T, E] and beta [B, H, T]."""
    y, S = delta_rule(torch.stack((q, k, v)).permute(1, 3, 0, 2, 4), beta.transpose(1, 2), S, chunk, q_weight)
    return y.transpose(1, 2), {"S": S}
