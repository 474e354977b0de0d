"""Causal linear attention with a constant-size state: additive (Katharopoulos et al. 2020) or DeltaNet.

Dimension letters: B batch, H heads, T new positions, N chunks, L chunk length, E head dimension,
D model.

Each head keeps a matrix memory S [E, E] read by its queries (``o_t = S_t^T q_t``):

- ``rule=additive``: keys and queries go through the feature map elu + 1 and are written in
  additively, ``S_t = S_{t-1} + k_t v_t^T``; a normaliser ``z_t = z_{t-1} + k_t`` divides the
  read-out, ``o_t = S_t^T q_t / (z_t^T q_t)``.
- ``rule=delta`` (the default): the published DeltaNet layer (Yang et al. 2024; as
  flash-linear-attention's ``DeltaNet`` with its defaults). The projections of q, k and v go
  through a short causal depthwise convolution of width ``conv_width`` (no bias; its last
  ``conv_width - 1`` inputs are carried in the state) and SiLU; q and k are L2-normalised and q
  scaled by ``E**-0.5``; each write replaces what the key retrieved, at a rate
  ``beta_t = sigmoid(W_beta x_t)`` in (0, 1): ``S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T``;
  the read-out of each head goes through an RMSNorm (weights shared by the heads, not gated)
  before the output projection.
- ``rule=delta_bare``, a departure kept as an option: the bare delta rule of Schlag et al. 2021
  (L2-normalised linear projections, ``beta`` with a bias, no convolution, no q scale, no output
  norm). DeltaNet's authors call the convolution crucial to its performance.

Computation is chunked (chunks of ``chunk`` positions): within a chunk the outputs come from a
masked L x L product, across chunks from the carried S, so the cost is linear in the length. For
the delta rule the chunk's writes solve one unit-lower-triangular system (the "WY" form):
``(I + diag(beta) tril(K K^T, -1)) U = diag(beta) (V - K S_0)``, ``O = Q S_0 + tril(Q K^T) U``,
``S_L = S_0 + K^T U``. The state is S (and z, or the convolution's carried inputs): H x E x E
numbers per layer and sequence, plus H x E for z (additive) or (conv_width - 1) x 3 x H x E for the
convolution (delta), whatever the context length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from harness.layers.causal_conv import CausalConv1d
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.registry import register_mechanism

RULES = ("additive", "delta", "delta_bare")


@dataclass
class LinearAttentionConfig(MechanismConfig):
    name: str = "linear_attention"
    rule: str = "delta"  # additive | delta | delta_bare
    #: width of DeltaNet's short convolution on q, k, v (rule=delta only)
    conv_width: int = 4
    #: positions per chunk of the chunked computation (no effect on the result)
    chunk: int = 64


@register_mechanism("linear_attention")
class LinearAttention(Mechanism):
    Config = LinearAttentionConfig

    def __init__(self, d_model: int, n_heads: int, config: LinearAttentionConfig):
        super().__init__(d_model, n_heads, config)
        if config.rule not in RULES:
            raise ValueError(f"linear_attention: rule={config.rule!r}; choose one of {list(RULES)}")
        if config.chunk < 1:
            raise ValueError(f"linear_attention: chunk must be at least 1, got {config.chunk}")
        if config.conv_width < 1:
            raise ValueError(f"linear_attention: conv_width must be at least 1, got {config.conv_width}")
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        published = config.rule == "delta"
        self.beta = nn.Linear(d_model, n_heads, bias=not published) if config.rule != "additive" else None
        self.conv = CausalConv1d(3 * d_model, config.conv_width, bias=False) if published else None
        self.norm = nn.RMSNorm(self.head_dim, eps=1e-5) if published else None

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        H, E = self.n_heads, self.head_dim
        state = {"S": torch.zeros(batch_size, H, E, E, device=device, dtype=dtype)}
        if self.config.rule == "additive":
            state["z"] = torch.zeros(batch_size, H, E, device=device, dtype=dtype)
        if self.conv is not None:
            state["conv"] = self.conv.init_state(batch_size, device, dtype)
        return state

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        B, T, D = x.shape
        qkv = self.qkv(x)
        carried = {}
        if self.conv is not None:
            qkv, carried["conv"] = self.conv(qkv, state["conv"])
            qkv = F.silu(qkv)
        q, k, v = qkv.view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3, B, H, T, E
        if self.config.rule == "additive":
            y, new_state = additive_chunked(F.elu(q) + 1, F.elu(k) + 1, v, state["S"], state["z"], self.config.chunk)
        else:
            beta = torch.sigmoid(self.beta(x)).transpose(1, 2)  # B, H, T
            # the chunk's triangular solve runs in the state's precision (no bf16 kernel; the
            # writes compound over the whole context), as the LSTM cell does under autocast
            with torch.autocast(x.device.type, enabled=False):
                dtype = state["S"].dtype
                q, k = F.normalize(q.to(dtype), dim=-1), F.normalize(k.to(dtype), dim=-1)
                if self.config.rule == "delta":
                    q = q * self.head_dim**-0.5
                y, new_state = delta_chunked(q, k, v.to(dtype), beta.to(dtype), state["S"], self.config.chunk)
                if self.config.rule == "delta":
                    y = self.norm(y)
            y = y.to(qkv.dtype)
        return self.out(y.transpose(1, 2).reshape(B, T, D)), {**new_state, **carried}


def _chunks(*tensors: torch.Tensor, chunk: int) -> list[tuple[torch.Tensor, ...]]:
    """Split tensors [B, H, T, ...] along T into pieces of at most ``chunk`` positions."""
    return list(zip(*(t.split(chunk, dim=2) for t in tensors)))


def additive_chunked(q, k, v, S, z, chunk):
    """Additive linear attention over q, k, v [B, H, T, E] from memory S [B, H, E, E] and normaliser z [B, H, E]."""
    outputs = []
    for qc, kc, vc in _chunks(q, k, v, chunk=chunk):
        L = qc.shape[2]
        causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        scores = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0)  # B, H, L, L
        numerator = scores @ vc + qc @ S  # B, H, L, E
        denominator = scores.sum(-1) + (qc * z.unsqueeze(2)).sum(-1)  # B, H, L
        outputs.append(numerator / denominator.unsqueeze(-1))
        S = S + kc.transpose(-1, -2) @ vc
        z = z + kc.sum(2)
    return torch.cat(outputs, dim=2), {"S": S, "z": z}


def delta_chunked(q, k, v, beta, S, chunk):
    """Delta-rule linear attention over q, k, v [B, H, T, E] with rates beta [B, H, T] from memory S [B, H, E, E]."""
    outputs = []
    for qc, kc, vc, bc in _chunks(q, k, v, beta, chunk=chunk):
        L = qc.shape[2]
        strictly_lower = torch.ones(L, L, dtype=torch.bool, device=q.device).tril(-1)
        system = torch.eye(L, dtype=q.dtype, device=q.device) + bc.unsqueeze(-1) * (kc @ kc.transpose(-1, -2)).masked_fill(~strictly_lower, 0)
        U = torch.linalg.solve_triangular(system, bc.unsqueeze(-1) * (vc - kc @ S), upper=False, unitriangular=True)
        within = (qc @ kc.transpose(-1, -2)).masked_fill(~torch.ones(L, L, dtype=torch.bool, device=q.device).tril(), 0)
        outputs.append(qc @ S + within @ U)  # B, H, L, E
        S = S + kc.transpose(-1, -2) @ U
    return torch.cat(outputs, dim=2), {"S": S}
