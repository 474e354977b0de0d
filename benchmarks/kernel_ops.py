"""Counting the kernels of a training step on any machine, with a TorchDispatchMode.

A small model on a GPU spends its step launching kernels, one per aten operation that reaches
the device (forward and backward: the autograd engine carries the mode into the backward pass),
so the count predicts GPU step time and can be taken on a CPU, the same on every machine. Views
and other metadata operations launch nothing and are not counted; allocations without a fill
(``empty``) neither.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: operations that launch no kernel though their schema does not say so: a view declared as a new
#: tensor, allocations without a fill, metadata queries, and in-place changes of shape or strides
NO_KERNEL = {"_unsafe_view", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "is_same_size", "set_",
             "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "squeeze_", "unsqueeze_", "t_", "transpose_",
             "as_strided_"}


def launches_kernel(operation: torch._ops.OpOverload) -> bool:
    """False for views (an output that aliases an input without writing it) and ``NO_KERNEL``."""
    schema = operation._schema
    if schema.name.split("::")[-1] in NO_KERNEL:
        return False
    return not any(result.alias_info is not None and not result.alias_info.is_write for result in schema.returns)


class KernelCounter(TorchDispatchMode):
    """Counts, by name, the aten operations run under it that launch a kernel (``kernels``) and
    those that do not (``views``)."""

    def __init__(self):
        super().__init__()
        self.kernels: Counter[str] = Counter()
        self.views: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        (self.kernels if launches_kernel(func) else self.views)[func._schema.name.split("::")[-1]] += 1
        return func(*args, **(kwargs or {}))
