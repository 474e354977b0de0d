"""``compile=true``: every mechanism's compiled blocks train as the eager model does.

Two training steps of a tiny model (d_model 16, 1 layer, 2 heads) over inputs of 28 then 21
tokens in segments of 8: memories that grow and then stay full, a shorter last segment, and block
boundaries inside a segment, so that the compiled blocks meet new shapes and positions and
recompile. In float64 with plain SGD, the compiled model's logits and its parameters after each
step equal the eager model's within 1e-9 (Inductor reorders sums, and compiled graphs take torch's
own attention kernels where eager CPU training takes memarena's fused relative attention, so
equality is not bitwise; Adam would turn a rounding difference in a near-zero gradient into a
step of the learning rate).

With the ``aot_eager`` backend (graph capture and AOTAutograd, no code generation) for every
mechanism: about 80 s on a busy 2-core machine. Inductor, the backend ``compile=true`` uses,
takes 30 to 120 s per mechanism there (a fresh compile cache), so the suite runs it on lstm_gated
alone and on all nine with ``MEMARENA_SLOW_TESTS=1``.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch.nn import functional as F

import harness
from harness.engine.compile import compile_blocks

TOLERANCE = 1e-9
ALL_INDUCTOR = bool(os.environ.get("MEMARENA_SLOW_TESTS"))
INDUCTOR_IN_SUITE = ("lstm_gated",)


def train_steps(model: torch.nn.Module, lengths=(28, 21), segment: int = 8) -> list[torch.Tensor]:
    """Logits of each of ``len(lengths)`` SGD steps and the parameters after them."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(1)
    outputs = []
    for length in lengths:
        tokens = torch.randint(0, 32, (2, length), generator=generator)
        logits, _ = model.stream(tokens, model.init_state(2), segment)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        auxiliary = model.auxiliary_loss()
        (loss if auxiliary is None else loss + auxiliary).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        outputs.append(logits.detach())
    return outputs + [p.detach().clone() for p in model.parameters()]


def tiny(mechanism: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return harness.build_model(mechanism, vocab_size=32, d_model=16, n_layers=1, n_heads=2).double()


def inductor_marks(mechanism: str) -> list:
    if mechanism in INDUCTOR_IN_SUITE or ALL_INDUCTOR:
        return []
    return [pytest.mark.skip(reason="Inductor takes up to 90 s per mechanism on a CPU: MEMARENA_SLOW_TESTS=1 runs it")]


CASES = [pytest.param(mechanism, "aot_eager", id=f"{mechanism}-aot_eager") for mechanism in harness.mechanisms()] + [
    pytest.param(mechanism, "inductor", id=f"{mechanism}-inductor", marks=inductor_marks(mechanism))
    for mechanism in harness.mechanisms()]


@pytest.mark.parametrize("mechanism, backend", CASES)
def test_compiled_blocks_train_as_eager(mechanism, backend):
    torch._dynamo.reset()
    eager, compiled = tiny(mechanism), tiny(mechanism)
    compile_blocks(compiled, backend=backend)
    expected, observed = train_steps(eager), train_steps(compiled)
    assert all(block._compiled_call_impl is not None for block in compiled.blocks)
    for want, got in zip(expected, observed):
        torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=TOLERANCE)
