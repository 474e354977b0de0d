"""Compressive Transformer memory (Rae et al. 2019), built on Transformer-XL's attention.

Dimension letters: B batch, H heads, T segment positions, M memory, C compressed memory,
N evicted positions, E head dimension, D model width, c compression rate.

Per layer: a memory of the last ``mem_len`` inputs and a compressed memory of ``cmem_len``
slots. A segment attends over [compressed; memory; segment] with Transformer-XL's relative (or
rotary) positions, the compressed slots counted as one position each. After the segment, the
oldest inputs beyond ``mem_len`` are evicted in whole groups of c (the memory briefly holds up to
c - 1 extra inputs), compressed c to 1 by the compression function, and appended to the
compressed memory, which keeps its newest ``cmem_len`` slots. With ``cmem_len=0`` nothing is
compressed and the layer is exactly Transformer-XL.

Compression functions: ``conv`` (a 1-D convolution of kernel and stride c; ``conv_groups``
null makes it depthwise, which keeps the parameter count matched to the other mechanisms, and 1
gives the paper's full D x D convolution), ``mean`` and ``max`` pooling.

Training: memories carry no gradient into the language-model loss. The compression function is
trained only by the attention-reconstruction loss, ||attn(h, old) - attn(h, compress(old))||^2,
content-based attention of the segment h over the evicted inputs, with the layer's own query,
key and value weights detached so that this loss moves the compression function alone.

State: the memories, (mem_len + c - 1 + cmem_len) x D x bytes per element per layer and sequence
at most, plus (segment - 1) x D for the segment's buffer when ``segment`` is set (as
Transformer-XL's), at any context length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from baselines.transformer_xl import TransformerXL, TransformerXLConfig
from harness.layers.mechanism import State
from harness.registry import register_mechanism

COMPRESSIONS = ("conv", "mean", "max")


@dataclass
class CompressiveConfig(TransformerXLConfig):
    name: str = "compressive"
    mem_len: int = 32
    cmem_len: int = 16
    rate: int = 2
    compression: str = "conv"
    conv_groups: Optional[int] = None


@register_mechanism("compressive")
class Compressive(TransformerXL):
    Config = CompressiveConfig

    def __init__(self, d_model: int, n_heads: int, config: CompressiveConfig):
        super().__init__(d_model, n_heads, config)
        if config.compression not in COMPRESSIONS:
            raise ValueError(f"compressive: compression must be one of {COMPRESSIONS}, got {config.compression!r}")
        if config.rate < 1 or config.cmem_len < 0:
            raise ValueError(f"compressive: need rate >= 1 and cmem_len >= 0, got {config.rate} and {config.cmem_len}")
        if config.compression == "conv":
            groups = config.conv_groups or d_model
            if d_model % groups:
                raise ValueError(f"compressive: conv_groups={groups} does not divide d_model={d_model}")
            self.conv = nn.Conv1d(d_model, d_model, kernel_size=config.rate, stride=config.rate, groups=groups)
        self._reconstruction_losses: list[torch.Tensor] = []

    @classmethod
    def options_for_state_budget(cls, budget_bytes, d_model, n_layers, element_bytes):
        """A third of the slots for the segment's buffer (see transformer_xl), of the rest two
        thirds uncompressed and one third compressed (the default's 32:16), rate 2."""
        rate = CompressiveConfig.rate
        slots = budget_bytes // (n_layers * d_model * element_bytes) - (rate - 1)
        if slots < 3:
            raise ValueError(f"compressive: {budget_bytes} bytes hold fewer than 3 memory slots")
        segment = (slots + 2) // 3
        memory = slots - (segment - 1)
        return {"mem_len": memory - memory // 3, "cmem_len": memory // 3, "rate": rate, "segment": segment}

    def init_state(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"cmem": torch.zeros(batch_size, 0, self.d_model, device=device, dtype=dtype),
                **super().init_state(batch_size, device, dtype)}

    def reach(self) -> int | None:
        config = self.config
        if config.segment is None:
            return None
        return config.segment - 1 + config.mem_len + config.rate - 1 + config.rate * config.cmem_len

    def context(self, state: State) -> torch.Tensor:
        return torch.cat((state["cmem"], state["mem"]), dim=1)

    def write(self, state: State, x: torch.Tensor) -> State:
        config = self.config
        if config.cmem_len == 0:
            return {"cmem": state["cmem"], "mem": self.update_memory(state["mem"], x)}
        combined = torch.cat((state["mem"], x.detach()), dim=1)  # B, M+T, D
        evicted = max(0, combined.shape[1] - config.mem_len) // config.rate * config.rate
        old, memory = combined[:, :evicted], combined[:, evicted:]
        compressed_memory = state["cmem"]
        if evicted:
            compressed = self.compress(old)  # B, N/c, D
            if self.training:
                self._reconstruction_losses.append(self.reconstruction_loss(x.detach(), old, compressed))
            compressed_memory = torch.cat((compressed_memory, compressed.detach()), dim=1)
            compressed_memory = compressed_memory[:, max(0, compressed_memory.shape[1] - config.cmem_len) :]
        return {"cmem": compressed_memory, "mem": memory}

    def compress(self, old: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, N / c, D]."""
        channels = old.transpose(1, 2)  # B, D, N
        if self.config.compression == "conv":
            squeezed = self.conv(channels)
        elif self.config.compression == "mean":
            squeezed = F.avg_pool1d(channels, self.config.rate)
        else:
            squeezed = F.max_pool1d(channels, self.config.rate)
        return squeezed.transpose(1, 2)

    def reconstruction_loss(self, h: torch.Tensor, old: torch.Tensor, compressed: torch.Tensor) -> torch.Tensor:
        """Mean squared difference of content attention over the old and the compressed memories."""
        weight = self.qkv.weight.detach()
        B, D = h.shape[0], self.d_model

        def heads(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return F.linear(t, w).view(B, t.shape[1], self.n_heads, self.head_dim).transpose(1, 2)  # B, H, *, E

        q = heads(h, weight[:D])
        original = F.scaled_dot_product_attention(q, heads(old, weight[D : 2 * D]), heads(old, weight[2 * D :]))
        rebuilt = F.scaled_dot_product_attention(q, heads(compressed, weight[D : 2 * D]), heads(compressed, weight[2 * D :]))
        return F.mse_loss(rebuilt, original)

    def pop_auxiliary_loss(self) -> torch.Tensor | None:
        if not self._reconstruction_losses:
            return None
        loss = torch.stack(self._reconstruction_losses).sum()
        self._reconstruction_losses = []
        return loss
