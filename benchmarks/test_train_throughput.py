"""Training-step throughput and model FLOP utilisation of every mechanism at one stated shape.

Shape (issue #8's default): d_model 256, 4 layers, 4 heads, batch 16, sequences of two segments of
512 tokens (so that the memory of the segment mechanisms is read and written), vocabulary 256.
Utilisation = the FLOPs counted in one step by torch's FlopCounterMode (forward and backward:
matrix multiplies and attention, the full Q K^T and P V products as torch counts them; see
``harness.engine.measure.flop_counter``) per second of step time, over the fp32 matmul peak measured in the same
session. Where a CUDA device is present the same steps also run there in bf16 autocast, against the
GPU's bf16 matmul peak. ``plain transformer`` is torch.nn.TransformerEncoderLayer (pre-LN, causal) at the same
shape, reading each segment alone: the reference for what the memory machinery costs.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import harness
from conftest import record
from harness.engine.measure import flop_counter, synchronize

SHAPE = {"vocab_size": 256, "d_model": 256, "n_layers": 4, "n_heads": 4}
BATCH, SEGMENT, LENGTH = 16, 512, 1024
SHAPE_TEXT = (f"d_model {SHAPE['d_model']}, {SHAPE['n_layers']} layers, {SHAPE['n_heads']} heads, batch {BATCH}, "
              f"{LENGTH} tokens read in segments of {SEGMENT}; forward, backward and fused AdamW step; mean of 3 steps "
              "after 1 warm-up.")
SECTION = "Training step"
INTRODUCTION = f"{SHAPE_TEXT} fp32. Utilisation: counted FLOPs per second over the measured fp32 matmul peak."
GPU_SECTION = "Training step on GPU"
GPU_INTRODUCTION = (f"{SHAPE_TEXT} bf16 autocast. Utilisation: counted FLOPs per second over the measured bf16 matmul "
                    "peak (a shape this small leaves a large GPU mostly idle: compare tokens/s between mechanisms).")


class PlainTransformer(nn.Module):
    """Embedding, pre-LN torch.nn.TransformerEncoderLayer blocks with a causal mask, head."""

    def __init__(self, vocab_size, d_model, n_layers, n_heads):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout=0.0,
                                                               batch_first=True, norm_first=True, bias=False)
                                    for _ in range(n_layers))
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def stream(self, tokens, segment):
        outputs = []
        for start in range(0, tokens.shape[1], segment):
            x = self.embed(tokens[:, start : start + segment])
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            for block in self.blocks:
                x = block(x, src_mask=mask, is_causal=True)
            outputs.append(self.head(x))
        return torch.cat(outputs, dim=1)


def training_step(model, optimizer, tokens, precision):
    with precision:
        if isinstance(model, PlainTransformer):
            logits, auxiliary = model.stream(tokens, SEGMENT), None
        else:
            logits, _ = model.stream(tokens, model.init_state(BATCH), SEGMENT)
            auxiliary = model.auxiliary_loss()
    loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), tokens[:, 1:].flatten())
    (loss if auxiliary is None else loss + auxiliary).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(tokens.device)


DEVICES = [pytest.param("cpu"),
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mechanism", [*harness.mechanisms(), "plain transformer"])
def test_training_step(benchmark, request, mechanism, device):
    """fp32 on CPU against the fp32 matmul peak; bf16 autocast on a GPU against its bf16 peak."""
    device = torch.device(device)
    peak = request.getfixturevalue("matmul_peak" if device.type == "cpu" else "gpu_matmul_peak")
    precision = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    torch.manual_seed(0)
    if mechanism == "plain transformer":
        model = PlainTransformer(**SHAPE)
    else:
        model = harness.build_model(mechanism, **SHAPE)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as memarena trains
    tokens = torch.randint(0, SHAPE["vocab_size"], (BATCH, LENGTH), device=device)
    with flop_counter() as counter:
        training_step(model, optimizer, tokens, precision)
    benchmark.pedantic(training_step, args=(model, optimizer, tokens, precision), rounds=3, warmup_rounds=1)
    seconds = benchmark.stats.stats.mean
    utilisation = counter.get_total_flops() / seconds / peak
    benchmark.extra_info.update(tokens_per_s=BATCH * LENGTH / seconds, utilisation=utilisation)
    section, introduction = (SECTION, INTRODUCTION) if device.type == "cpu" else (GPU_SECTION, GPU_INTRODUCTION)
    record(section, introduction, {
        "mechanism": mechanism, "tokens/s": round(BATCH * LENGTH / seconds), "step s": round(seconds, 3),
        "GFLOP per step": round(counter.get_total_flops() / 1e9, 1), "utilisation": f"{utilisation:.0%}",
        "parameters": sum(p.numel() for p in model.parameters())})
