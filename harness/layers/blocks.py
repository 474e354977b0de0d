"""Fixed blocks of absolute positions, for mechanisms that update a memory once per block.

Infini-attention and the recurrent memory transformer write their memory every ``block``
tokens. Cutting at absolute block boundaries (rather than wherever the harness happens to split
its input into segments) makes such a mechanism a function of the token sequence alone, so that
streaming in any segments equals one pass. The tokens of an unfinished block wait in a buffer of
``block - 1`` slots, carried in the state at a fixed size.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def block_spans(pos: int, length: int, block: int) -> list[tuple[int, int, int]]:
    """Cut the new positions [0, length) (absolute pos .. pos + length - 1) at block boundaries.

    Returns (start, end, earlier) per piece: ``earlier`` positions of the same block were read
    before ``start`` (in earlier calls); the piece completes its block when earlier + end - start
    equals ``block``.
    """
    spans, start, earlier = [], 0, pos % block
    while start < length:
        end = min(length, start + block - earlier)
        spans.append((start, end, earlier))
        start, earlier = end, 0
    return spans


def block_so_far(pending: torch.Tensor, new: torch.Tensor, earlier: int) -> torch.Tensor:
    """The ``earlier`` entries of the current block waiting at the end of ``pending``, then ``new``
    (along dim -2: positions, as in [B, H, T, E])."""
    return torch.cat((pending[..., pending.shape[-2] - earlier :, :], new), dim=-2)


def keep_last(buffer: torch.Tensor, new: torch.Tensor, slots: int) -> torch.Tensor:
    """The last ``slots`` entries along dim 2 of [buffer; new] (a buffer of fixed size)."""
    joined = torch.cat((buffer, new), dim=2)
    return joined[:, :, joined.shape[2] - slots :]


def whole_blocks(new: torch.Tensor, pending: torch.Tensor | None, earlier: int, block: int) -> torch.Tensor:
    """[the ``earlier`` entries waiting at the end of ``pending`` (zeros when None); ``new``; zeros up
    to a whole number of blocks] along dim -2: the new positions in whole blocks from the start of
    the current one, so that every block can be processed at once (``new`` itself when it already is)."""
    pad = -(earlier + new.shape[-2]) % block
    if pending is not None and earlier:
        new, earlier = block_so_far(pending, new, earlier), 0
    return F.pad(new, (0, 0, earlier, pad)) if earlier or pad else new
