"""torch.compile for a model's blocks, with static shapes (``compile=true``).

Each block is compiled on its own (the model's Python loop over segments and layers stays
eager) with static shapes: one graph per distinct combination of segment length, state sizes and
position the block meets (the growing memory of the first segments, a shorter last segment, the
position counter of the mechanisms that cut blocks or rotate at absolute positions). Past
torch's recompile limit (``torch._dynamo.config.recompile_limit``, 8) a block runs eagerly, with
the same outputs. Symbolic sizes fail in Inductor on rmt ("Exponent must be non-negative"), both
with ``dynamic=True`` and once torch's automatic dynamic shapes make the position symbolic, and
``dynamic=True`` did not finish compiling infini_attention in 420 s; static shapes compile all nine.

The blocks of a model share their graphs (their parameters are graph inputs), so a model of
many layers compiles as fast as one of a single layer.
"""

from __future__ import annotations

from torch import nn


def compile_blocks(model: nn.Module, backend: str = "inductor") -> None:
    """Compile every block of ``model`` (a ``StreamingLM``) in place with ``backend``."""
    for block in model.blocks:
        block.compile(backend=backend, dynamic=False)
