"""LSTM-style gated memory: a recurrent cell per block, its state carried across segments.

Dimension letters: B batch, T positions, D model width, N cell width (``hidden_size``).

The founding document's equations take the forget and output gates from the memory alone and
its worked example miscomputes sigmoid(0); this file implements the standard LSTM instead
(Hochreiter & Schmidhuber 1997, with a forget gate, Gers et al. 2000), every gate reading the
input and the previous output h_{t-1}:

    i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)        input gate
    f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)        forget gate
    g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)           candidate memory
    o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)        output gate
    c_t = f_t * c_{t-1} + i_t * g_t                   memory update
    h_t = o_t * tanh(c_t)                             output, projected back to D

The weights are those of ``torch.nn.LSTM`` (gate order i, f, g, o; two bias vectors). The fused
path calls ``torch.nn.LSTM``; the ``loop`` path spells the equations out step by step and exists
to check the fused one. State: (h, c), 2 x N x bytes per element per layer and sequence, at any
context length. ``bptt_len`` > 0 stops gradients through the state every ``bptt_len`` tokens of
absolute position (truncated backpropagation through time); 0 keeps the whole graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism


@dataclass
class LSTMGatedConfig(MechanismConfig):
    name: str = "lstm_gated"
    #: cell width N; None picks the width whose parameters match an attention layer's 4 D^2
    hidden_size: Optional[int] = None
    #: "fused" (torch.nn.LSTM) or "loop" (the equations step by step; a reference)
    implementation: str = "fused"
    bptt_len: int = 0


def parameter_matched_width(d_model: int) -> int:
    """N with 4N(D + N) + 8N + ND closest to the 4D^2 of an attention layer's projections."""
    return min(range(1, 2 * d_model), key=lambda n: abs(4 * n * (d_model + n) + 8 * n + n * d_model - 4 * d_model**2))


@register_mechanism("lstm_gated")
class LSTMGated(Mechanism):
    Config = LSTMGatedConfig

    def __init__(self, d_model: int, n_heads: int, config: LSTMGatedConfig):
        super().__init__(d_model, n_heads, config)
        if config.implementation not in ("fused", "loop"):
            raise ValueError(f"lstm_gated: implementation must be 'fused' or 'loop', got {config.implementation!r}")
        if config.bptt_len < 0:
            raise ValueError(f"lstm_gated: bptt_len must be >= 0, got {config.bptt_len}")
        self.hidden_size = config.hidden_size or parameter_matched_width(d_model)
        if self.hidden_size < 1:
            raise ValueError(f"lstm_gated: hidden_size must be positive, got {config.hidden_size}")
        self.cell = nn.LSTM(d_model, self.hidden_size, batch_first=True)
        self.out = nn.Linear(self.hidden_size, d_model, bias=False)
        with torch.no_grad():  # start by remembering: forget-gate bias 1 (Jozefowicz et al. 2015)
            self.cell.bias_ih_l0[self.hidden_size : 2 * self.hidden_size].fill_(1.0)

    @classmethod
    def options_for_state_budget(cls, budget_bytes, d_model, n_layers, element_bytes):
        """The cell width is the memory; wider than 4 x d_model the cell has over 20 times an
        attention layer's parameters, and a comparison at that budget would be about parameters."""
        width = budget_bytes // (2 * n_layers * element_bytes)
        if not 1 <= width <= 4 * d_model:
            raise ValueError(f"lstm_gated: {budget_bytes} bytes need hidden_size={width}, "
                             f"outside 1..{4 * d_model} (4 x d_model)")
        return {"hidden_size": width}

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return {"h": zeros, "c": zeros, "pos": 0}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c, pos = state["h"], state["c"], state["pos"]
        outputs, start = [], 0
        bptt = self.config.bptt_len
        while start < x.shape[1]:
            stop = x.shape[1] if not bptt else min(x.shape[1], start + bptt - (pos + start) % bptt)
            if bptt and (pos + start) % bptt == 0:
                h, c = h.detach(), c.detach()
            chunk, (h, c) = self._run(x[:, start:stop], h, c)
            outputs.append(chunk)
            start = stop
        return self.out(torch.cat(outputs, dim=1)), {"h": h, "c": c, "pos": pos + x.shape[1]}

    def _run(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        if self.config.implementation == "fused":
            # The cell runs in the state's precision even under autocast: the recurrence
            # accumulates over the whole context (and oneDNN has no bf16 LSTM on some CPUs).
            with torch.autocast(x.device.type, enabled=False):
                y, (h, c) = self.cell(x.to(h.dtype), (h.unsqueeze(0), c.unsqueeze(0)))  # state: 1, B, N
            return y, (h.squeeze(0), c.squeeze(0))
        cell = self.cell
        inputs = x @ cell.weight_ih_l0.T + cell.bias_ih_l0 + cell.bias_hh_l0  # B, T, 4N
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (inputs[:, t] + h @ cell.weight_hh_l0.T).chunk(4, dim=-1)  # B, N each
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h, c)
