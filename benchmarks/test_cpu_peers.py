"""CPU training-step throughput of transformer_xl and compressive against their peer implementations.

Peers (the ``peers`` extra: ``pip install memarena[peers]``; each benchmark skips without its peer):

- transformer_xl against x-transformers' Transformer-XL setting (its README's recurrence example):
  ``TransformerWrapper(max_seq_len=256, max_mem_len=256, attn_layers=Decoder(rel_pos_bias=True))``
  with ``attn_dim_head=32`` (heads of d_model / heads, as memarena's; its default 64 would double
  the attention weights), memories of the last 256 hidden states per layer, detached; memarena
  ``mem_len=256``.
- compressive against lucidrains' compressive-transformer-pytorch with plain residuals
  (``gru_gated_residual=False``, as memarena's blocks), ``mem_len=256, cmem_len=64, cmem_ratio=4``
  (the peer's defaults for 256-token segments) and its reconstruction loss; memarena
  ``mem_len=256, cmem_len=64, rate=4, conv_groups=1`` (the paper's full D x D convolution, as the peer's).
  The peer detaches its key-value weight in place during its first training forward
  (``self.to_kv.weight.detach_()``), so from then on it computes no gradient for that weight: a
  step slightly cheaper than the model it describes.

The position schemes differ as the implementations do: x-transformers' setting uses T5's bucketed
bias (a lookup per head), memarena's transformer_xl the paper's sinusoidal distances with a
learned projection and u, v biases (one more score-sized matrix product per attention call).

Shape: vocabulary 256, d_model 128, 2 layers, 4 heads, MLP ratio 4, batch 8, 1024 tokens read in
4 segments of 256; one training step = forward over the segments with the carried memory, cross
entropy (+ the reconstruction loss for compressive), backward, fused AdamW step. The two models
run in the same process, their steps interleaved (peer, memarena, peer, ...) after one warm-up
step each; the ratio is the median over rounds of the peer's step time over memarena's in the
same round, so that a noisy neighbour on a shared machine slows both sides of a round alike.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch.nn import functional as F

import harness
from conftest import record

VOCAB, D_MODEL, LAYERS, HEADS = 256, 128, 2, 4
BATCH, SEGMENT, LENGTH = 8, 256, 1024
MEM_LEN, CMEM_LEN, RATE = 256, 64, 4
ROUNDS = 5
SECTION = "CPU against peers"
INTRODUCTION = (f"Training step (forward over {LENGTH // SEGMENT} segments of {SEGMENT} with the carried memory, backward, "
                f"fused AdamW) at d_model {D_MODEL}, {LAYERS} layers, {HEADS} heads, batch {BATCH}; memarena and its "
                f"peer interleaved in one process, {ROUNDS} rounds after a warm-up; ratio = median over rounds of the "
                "peer's step time over memarena's. Settings in benchmarks/test_cpu_peers.py.")


def memarena_step(model, tokens):
    logits, _ = model.stream(tokens, model.init_state(len(tokens)), SEGMENT)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    auxiliary = model.auxiliary_loss()
    return loss if auxiliary is None else loss + auxiliary


def x_transformers_step(model, tokens):
    logits, mems = [], None
    for start in range(0, tokens.shape[1], SEGMENT):
        segment_logits, mems = model(tokens[:, start : start + SEGMENT], mems=mems, return_mems=True)
        logits.append(segment_logits)
    logits = torch.cat(logits, dim=1)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())


def compressive_peer_step(model, tokens):
    logits, memories, auxiliary = [], None, 0.0
    for start in range(0, tokens.shape[1], SEGMENT):
        segment_logits, memories, segment_auxiliary = model(tokens[:, start : start + SEGMENT], memories=memories)
        logits.append(segment_logits)
        auxiliary = auxiliary + segment_auxiliary
    logits = torch.cat(logits, dim=1)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()) + auxiliary.sum()


def timed_step(model, optimizer, step, tokens) -> float:
    start = time.perf_counter()
    step(model, tokens).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def interleaved_ratios(contenders, tokens, rounds=ROUNDS) -> list[list[float]]:
    """Step seconds per contender and round: contenders [(model, step)], run in turn each round."""
    optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True) for model, _ in contenders]
    for (model, step), optimizer in zip(contenders, optimizers):
        model.train()
        timed_step(model, optimizer, step, tokens)  # warm-up
    return [[timed_step(model, optimizer, step, tokens) for (model, step), optimizer in zip(contenders, optimizers)]
            for _ in range(rounds)]


def peer_model(mechanism):
    if mechanism == "transformer_xl":
        x_transformers = pytest.importorskip("x_transformers")
        return x_transformers.TransformerWrapper(
            num_tokens=VOCAB, max_seq_len=SEGMENT, max_mem_len=MEM_LEN,
            attn_layers=x_transformers.Decoder(dim=D_MODEL, depth=LAYERS, heads=HEADS,
                                               attn_dim_head=D_MODEL // HEADS, rel_pos_bias=True)), x_transformers_step
    peer = pytest.importorskip("compressive_transformer_pytorch")
    return peer.CompressiveTransformer(num_tokens=VOCAB, dim=D_MODEL, seq_len=SEGMENT, depth=LAYERS, heads=HEADS,
                                       mem_len=MEM_LEN, cmem_len=CMEM_LEN, cmem_ratio=RATE,
                                       gru_gated_residual=False), compressive_peer_step


MEMARENA_OPTIONS = {"transformer_xl": {"mem_len": MEM_LEN},
                    "compressive": {"mem_len": MEM_LEN, "cmem_len": CMEM_LEN, "rate": RATE, "conv_groups": 1}}
PEER_NAMES = {"transformer_xl": "x-transformers (Transformer-XL setting)",
              "compressive": "compressive-transformer-pytorch"}


@pytest.mark.parametrize("mechanism", list(MEMARENA_OPTIONS))
def test_against_peer(mechanism):
    peer, peer_step = peer_model(mechanism)
    torch.manual_seed(0)
    model = harness.build_model(mechanism, vocab_size=VOCAB, d_model=D_MODEL, n_layers=LAYERS, n_heads=HEADS,
                                **MEMARENA_OPTIONS[mechanism])
    sizes = [sum(p.numel() for p in m.parameters()) for m in (model, peer)]
    assert abs(sizes[0] - sizes[1]) <= 0.1 * sizes[1], f"parameters differ by more than 10%: {sizes}"
    tokens = torch.randint(0, VOCAB, (BATCH, LENGTH))
    seconds = interleaved_ratios([(peer, peer_step), (model, memarena_step)], tokens)
    ratios = sorted(peer_s / own_s for peer_s, own_s in seconds)
    peer_s, own_s = (statistics.median(column) for column in zip(*seconds))
    record(SECTION, INTRODUCTION, {
        "mechanism": mechanism, "peer": PEER_NAMES[mechanism], "tokens/s": round(BATCH * LENGTH / own_s),
        "peer tokens/s": round(BATCH * LENGTH / peer_s), "speed-up over peer (median)": round(statistics.median(ratios), 2),
        "range over rounds": f"{ratios[0]:.2f}-{ratios[-1]:.2f}", "parameters": sizes[0], "peer parameters": sizes[1]})
    assert statistics.median(ratios) >= 2.0, f"{mechanism} is {statistics.median(ratios):.2f}x its peer, target 2x"
