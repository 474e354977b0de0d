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
``S_L = S_0 + K^T U``; harness/layers/delta_rule.py computes it as one autograd function with
a hand-written backward (a few dozen kernels per layer and segment). The state is S (and z, or the convolution's carried inputs): H x E x E
numbers per layer and sequence, plus H x E for z (additive) or (conv_width - 1) x 3 x H x E for the
convolution (delta), whatever the context length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from harness.layers.causal_conv import CausalConv1d
from harness.layers.delta_rule import delta_rule, unit_length_scale
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.layers.peer_kernels import check_backend, fla_delta_rule, resolve_backend
from harness.layers.rms_norm import RMSNorm
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
    #: auto | torch | fla: who computes the delta rule (harness/layers/peer_kernels.py; auto: fla's
    #: chunk_delta_rule where installed and the inputs are CUDA bf16/fp16, else PyTorch)
    backend: str = "auto"


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
        check_backend("linear_attention", config.backend)
        if config.rule == "additive" and config.backend == "fla":
            raise ValueError("linear_attention: backend=fla computes the delta rule; rule=additive runs on backend=torch")
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        published = config.rule == "delta"
        self.beta = nn.Linear(d_model, n_heads, bias=not published) if config.rule != "additive" else None
        self.conv = CausalConv1d(3 * d_model, config.conv_width, bias=False) if published else None
        self.norm = RMSNorm(self.head_dim, eps=1e-5) if published else None
        #: the weight of |q|^2 in q's scaling: E under rule=delta (the unit q times E**-0.5), else 1
        self.q_weight = float(self.head_dim if published else 1)
        #: the back-end that computed the last forward (see numerics())
        self.backend_ran = "torch"

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
        if self.beta is not None and self.config.backend != "torch":
            self.backend_ran = resolve_backend("linear_attention", self.config.backend, qkv)
            if self.backend_ran == "fla":
                return self._fla_forward(x, qkv, state, carried)
        qkv = qkv.view(B, T, 3, self.n_heads, self.head_dim)
        if self.config.rule == "additive":
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # B, H, T, E each
            y, new_state = additive_chunked(F.elu(q) + 1, F.elu(k) + 1, v, state["S"], state["z"], self.config.chunk)
            y = y.transpose(1, 2)
        else:
            beta = torch.sigmoid(self.beta(x))  # B, T, H
            # the chunk's triangular solve runs in the state's precision (no bf16 kernel; the
            # writes compound over the whole context), as the LSTM cell does under autocast
            with torch.autocast(x.device.type, enabled=False):
                y, S = delta_rule(qkv, beta, state["S"], self.config.chunk, self.q_weight)
                if self.config.rule == "delta":
                    y = self.norm(y)
            y, new_state = y.to(qkv.dtype), {"S": S}
        return self.out(y.reshape(B, T, D)), {**new_state, **carried}

    def _fla_forward(self, x: torch.Tensor, qkv: torch.Tensor, state: State, carried: State) -> tuple[torch.Tensor, State]:
        """The delta rule by fla's chunk_delta_rule: q, k, v [B, T, H, E] in qkv's dtype (bf16/fp16), state in fp32."""
        B, T, D = x.shape
        qkv = qkv.view(B, T, 3, self.n_heads, self.head_dim)
        beta = torch.sigmoid(self.beta(x))  # B, T, H
        with torch.autocast(x.device.type, enabled=False):
            dtype = state["S"].dtype  # q and k normalised, and the read-out normed, in the state's precision
            q, k, v = (qkv.to(dtype) * unit_length_scale(qkv, self.q_weight)).to(qkv.dtype).unbind(2)
            y, S = fla_delta_rule(q, k, v, beta, state["S"], scale=1.0)  # y: B, T, H, E
            if self.config.rule == "delta":
                y = self.norm(y.to(dtype))
        return self.out(y.to(qkv.dtype).reshape(B, T, D)), {"S": S, **carried}

    def numerics(self) -> dict[str, str]:
        """Who computed the recurrence in the last forward, and in which precision (for a run's provenance)."""
        if self.backend_ran == "fla":
            return {"backend": "fla chunk_delta_rule", "recurrence": "bf16/fp16 inputs, fp32 state and accumulation"}
        if self.config.rule == "additive":
            return {"backend": "torch", "recurrence": "the autocast dtype (bf16 matmuls under precision=bf16)"}
        return {"backend": "torch", "recurrence": f"{_recurrence_precision()} (autocast off), state in its own dtype"}


def _recurrence_precision() -> str:
    """fp32, with TF32 matrix products where CUDA's setting allows them."""
    return "fp32, TF32 matmuls on CUDA" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def _in_chunks(chunk: int, *tensors: torch.Tensor) -> tuple[int, list[torch.Tensor]]:
    """Tensors [B, H, T, ...] zero-padded along T to whole chunks and viewed as [B, H, N, L, ...].

    The chunk length L is ``chunk`` or T if shorter. Padded positions carry zeros (no write: k = 0
    and beta = 0); their outputs are dropped by the caller. Returns L and the viewed tensors.
    """
    T = tensors[0].shape[2]
    L = min(chunk, T)
    pad = -T % L
    shaped = []
    for t in tensors:
        if pad:
            t = F.pad(t, (0, 0) * (t.dim() - 3) + (0, pad))
        shaped.append(t.unflatten(2, (-1, L)))
    return L, shaped


def additive_chunked(q, k, v, S, z, chunk):
    """Additive linear attention over q, k, v [B, H, T, E] from memory S [B, H, E, E] and normaliser z [B, H, E]."""
    B, H, T, E = q.shape
    _, (qc, kc, vc) = _in_chunks(chunk, q, k, v)  # B, H, N, L, E
    writes = torch.cat((kc.transpose(-1, -2) @ vc, kc.sum(3).unsqueeze(-1)), dim=-1)  # B, H, N, E, E+1: [K^T V | K^T 1]
    totals = torch.cat((S, z.unsqueeze(-1)), dim=-1).unsqueeze(2) + writes.cumsum(2)  # state after each chunk
    starts = torch.cat((torch.cat((S, z.unsqueeze(-1)), dim=-1).unsqueeze(2), totals[:, :, :-1]), dim=2)
    scores = torch.tril(qc @ kc.transpose(-1, -2))  # B, H, N, L, L
    read = qc @ starts + scores @ torch.cat((vc, torch.ones_like(vc[..., :1])), dim=-1)  # B, H, N, L, E+1
    read = read.flatten(2, 3)[:, :, :T]  # B, H, T, E+1 (padded positions dropped before they divide 0 by 0)
    y = read[..., :E] / read[..., E:]
    return y, {"S": totals[:, :, -1, :, :E], "z": totals[:, :, -1, :, E]}
