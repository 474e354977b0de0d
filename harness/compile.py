"""torch.compile for a model's blocks, shapes static until they change (``compile=true``).

Each block is compiled on its own (the model's Python loop over segments and layers stays
eager), with torch's automatic dynamic shapes: the first graph is specialised to the shapes and
integers it met, and a size or integer that later changes (the growing memory of the first
segments, the last segment's shorter length, the position counter) is made symbolic in the one
recompilation that follows. ``dynamic=True`` instead treats every size as symbolic from the
start, which fails in Inductor on rmt ("Exponent must be non-negative") and did not finish
compiling infini_attention in 420 s; static-first compiles all nine mechanisms.

The blocks of a model share their graphs (their parameters are graph inputs), so a model of
many layers compiles as fast as one of a single layer.
"""

from __future__ import annotations

from torch import nn


def compile_blocks(model: nn.Module, backend: str = "inductor") -> None:
    """Compile every block of ``model`` (a ``StreamingLM``) in place with ``backend``."""
    for block in model.blocks:
        block.compile(backend=backend, dynamic=None)
