"""Mamba: a selective state-space layer, in the Mamba-2 form (Dao & Gu 2024), pure PyTorch.

Dimension letters: B batch, T new positions, L chunk length, G SSM heads, P head dimension,
N state size, C convolution channels, K convolution width, I inner width (G x P), D model.

The input is projected to a gate z, the SSM input x, its input and output maps B_t and C_t
(shared by the heads) and a step size dt per head. x, B and C go through a causal depthwise
convolution of width K and SiLU. Each head then runs the selective recurrence

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T        (h: P x N per head, A < 0 a learned scalar)
    y_t = h_t C_t + D x_t

and the output is y gated by SiLU(z) and normalised, ``RMSNorm(y * SiLU(z))`` over the inner
width (Mamba2Simple's gated RMSNorm: one group, the gate applied before the norm, learned
weights), projected back to D. ``rmsnorm=false`` is a departure kept as an option: the gated y
goes to the output projection unnormalised, as in Mamba-1. The recurrence is computed in chunks
of ``chunk`` positions with the state-space-dual form (harness/layers/ssd.py: one autograd function
with a hand-written backward, which takes in the steps around the scan as mamba_ssm's
``mamba_chunk_scan_combined`` does: the SiLU of x, B, C, dt's bias and softplus, A = -exp(A_log),
D and the gate): within a chunk an L x L matrix of decays exp(sum of dt A between s and t) times
(C_t . B_s), across chunks the carried h. The state is h
and the last K - 1 convolution inputs: G x P x N + (K - 1) x C numbers per layer and sequence,
whatever the context length. ``expand`` = 1 keeps the default parameter-matched to attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from harness.layers.causal_conv import CausalConv1d
from harness.layers.mechanism import Mechanism, MechanismConfig, State
from harness.layers.peer_kernels import check_backend, mamba_ssd, resolve_backend
from harness.layers.rms_norm import RMSNorm
from harness.layers.ssd import ssd
from harness.registry import register_mechanism


@dataclass
class MambaConfig(MechanismConfig):
    name: str = "mamba"
    #: N, the state size of each head
    d_state: int = 16
    #: inner width = expand x d_model
    expand: int = 1
    #: P, the width of an SSM head (inner width / P heads; independent of the model's n_heads)
    ssm_head_dim: int = 16
    conv_width: int = 4
    #: the gated RMSNorm before the output projection (false: the gated output unnormalised)
    rmsnorm: bool = True
    #: positions per chunk of the chunked scan (no effect on the result)
    chunk: int = 64
    #: auto | torch | mamba_ssm: who computes the scan (harness/layers/peer_kernels.py; auto: mamba_ssm's
    #: SSD kernel where installed and the inputs are on CUDA, else PyTorch)
    backend: str = "auto"


@register_mechanism("mamba")
class Mamba(Mechanism):
    Config = MambaConfig

    def __init__(self, d_model: int, n_heads: int, config: MambaConfig):
        super().__init__(d_model, n_heads, config)
        for key in ("d_state", "expand", "ssm_head_dim", "conv_width", "chunk"):
            if getattr(config, key) < 1:
                raise ValueError(f"mamba: {key} must be at least 1, got {getattr(config, key)}")
        check_backend("mamba", config.backend)
        self.inner = config.expand * d_model
        if self.inner % config.ssm_head_dim:
            raise ValueError(f"mamba: inner width {self.inner} is not divisible by ssm_head_dim={config.ssm_head_dim}")
        self.ssm_heads = self.inner // config.ssm_head_dim
        self.channels = self.inner + 2 * config.d_state  # x, B, C go through the convolution
        self.in_proj = nn.Linear(d_model, self.inner + self.channels + self.ssm_heads, bias=False)
        self.conv = CausalConv1d(self.channels, config.conv_width, bias=True)
        # step sizes start log-uniform in [1e-3, 1e-1], decay rates A in [1, 16] (as in Mamba)
        dt = torch.exp(torch.rand(self.ssm_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus inverse
        self.A_log = nn.Parameter(torch.log(torch.empty(self.ssm_heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.ssm_heads))
        self.norm = RMSNorm(self.inner, eps=1e-5) if config.rmsnorm else None
        self.out_proj = nn.Linear(self.inner, d_model, bias=False)
        #: the back-end that computed the last forward (see numerics())
        self.backend_ran = "torch"

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        config = self.config
        return {"h": torch.zeros(batch_size, self.ssm_heads, config.ssm_head_dim, config.d_state, device=device, dtype=dtype),
                "conv": self.conv.init_state(batch_size, device, dtype)}

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        config = self.config
        z, xbc, dt = self.in_proj(x).split([self.inner, self.channels, self.ssm_heads], dim=-1)
        xbc, conv = self.conv(xbc, state["conv"])  # SiLU follows, inside the scan
        self.backend_ran = resolve_backend("mamba", config.backend, xbc) if config.backend != "torch" else "torch"
        if self.backend_ran == "mamba_ssm":
            y, h = mamba_ssd(xbc, dt, self.dt_bias, self.A_log, self.D, z, state["h"], config.chunk)
        else:
            # decays, state and scan in the state's precision under autocast, as mamba_ssm's kernels keep them
            with torch.autocast(x.device.type, enabled=False):
                y, h = ssd(xbc, dt, self.dt_bias, self.A_log, self.D, z, state["h"], config.chunk)
        if self.norm is not None:
            y = self.norm(y)
        return self.out_proj(y), {"h": h, "conv": conv}

    def numerics(self) -> dict[str, str]:
        """Who computed the scan in the last forward, and in which precision (for a run's provenance)."""
        if self.backend_ran == "mamba_ssm":
            return {"backend": "mamba_ssm mamba_chunk_scan_combined",
                    "recurrence": "inputs in the autocast dtype, fp32 decays, state and accumulation"}
        precision = "fp32, TF32 matmuls on CUDA" if torch.backends.cuda.matmul.allow_tf32 else "fp32"
        return {"backend": "torch", "recurrence": f"{precision} (autocast off): decays, state and scan"}
