"""Peer GPU kernels behind memarena's recurrences: flash-linear-attention's delta rule, mamba_ssm's SSD.

Dimension letters: B batch, T new positions, H heads, E head dimension, G SSM heads, P SSM head
dimension, N state size.

linear_attention (rule delta or delta_bare) and mamba compute their recurrence in PyTorch (the
``torch`` back-end, on any device). On CUDA, with the optional extra ``memarena[gpu]`` installed,
they can call the kernels their authors' groups publish instead:

- ``fla``: ``fla.ops.delta_rule.chunk_delta_rule`` (fla-core): q, k, v [B, T, H, E] in bf16 or
  fp16 (it refuses fp32, so ``auto`` keeps fp32 runs on torch), beta [B, T, H], state [B, H, E(k), E(v)] kept in fp32,
  ``o_t = S_t^T (scale q_t)``; q and k are passed already at unit length (memarena's definition,
  not the kernel's ``use_qk_l2norm_in_kernel`` with its own epsilon).
- ``mamba_ssm``: ``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined``: x [B, T, G, P],
  dt [B, T, G] (with ``dt_bias`` and ``dt_softplus``), A [G], B and C [B, T, 1, N] (one group), D [G],
  the gate z [B, T, G, P], state [B, G, P, N] in fp32;
  ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = (C_t h_t + D x_t) SiLU(z_t)``.

A mechanism's ``backend`` option picks one: ``auto`` (the peer kernel where it is installed and
the tensors are on CUDA in a dtype it takes, else torch), ``torch``, or the peer kernel by name (an error
where it cannot run).
"""

from __future__ import annotations

import functools
import importlib

import torch
from torch.nn import functional as F

#: the peer back-end of each mechanism that has one
PEERS = {"linear_attention": "fla", "mamba": "mamba_ssm"}
#: the Python module each peer back-end imports, and the distribution that provides it
MODULES = {"fla": ("fla.ops.delta_rule", "fla-core"),
           "mamba_ssm": ("mamba_ssm.ops.triton.ssd_combined", "mamba-ssm")}
#: the input dtypes each peer kernel takes (both keep their states and accumulations in fp32)
KERNEL_DTYPES = {"fla": (torch.bfloat16, torch.float16), "mamba_ssm": (torch.bfloat16, torch.float16, torch.float32)}


@functools.cache
def peer_module(backend: str):
    """The imported module of a peer back-end, or None when it is not installed (or fails to import)."""
    try:
        return importlib.import_module(MODULES[backend][0])
    except ImportError:
        return None


def check_backend(mechanism: str, backend: str) -> None:
    """Raise ValueError for a back-end this mechanism has not, or a peer back-end that is not installed."""
    choices = ("auto", "torch", PEERS[mechanism])
    if backend not in choices:
        raise ValueError(f"{mechanism}: backend={backend!r}; choose one of {list(choices)}")
    if backend in MODULES and peer_module(backend) is None:
        raise ValueError(f"{mechanism}: backend={backend} needs {MODULES[backend][1]} (module {MODULES[backend][0]}), "
                         f"which does not import here; install memarena[gpu] on a CUDA machine, or use backend=auto")


def resolve_backend(mechanism: str, backend: str, tensor: torch.Tensor) -> str:
    """The back-end that runs for these inputs: ``torch`` or the mechanism's peer (see the module docstring)."""
    peer = PEERS[mechanism]
    usable = tensor.is_cuda and tensor.dtype in KERNEL_DTYPES[peer]
    if backend == peer and not usable:
        dtypes = ", ".join(str(dtype).removeprefix("torch.") for dtype in KERNEL_DTYPES[peer])
        raise ValueError(f"{mechanism}: backend={peer} runs on CUDA tensors in {dtypes} (here {tensor.device}, "
                         f"{tensor.dtype}); use a GPU (and precision=bf16), or backend=auto")
    if backend == "auto":
        return peer if usable and peer_module(peer) is not None else "torch"
    return backend


def fla_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, S: torch.Tensor,
                   scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """fla's chunk_delta_rule: q, k (unit length), v [B, T, H, E], beta [B, T, H], state S [B, H, E, E].

    Returns the outputs [B, T, H, E] (in v's dtype) and the last state (in S's dtype, fp32 in training).
    """
    return peer_module("fla").chunk_delta_rule(q, k, v, beta.to(v.dtype), scale=scale, initial_state=S,
                                               output_final_state=True)


def mamba_ssd(xbc: torch.Tensor, dt: torch.Tensor, dt_bias: torch.Tensor, A_log: torch.Tensor, D: torch.Tensor,
              z: torch.Tensor, h: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """mamba_ssm's chunked SSD with the arguments of :func:`harness.layers.ssd.ssd` (and its result).

    xbc [B, T, G P + 2 N] before SiLU, dt [B, T, G] before ``dt_bias`` and softplus (the kernel adds
    and applies both), A = -exp(A_log), D [G], the gate z [B, T, G P], h [B, G, P, N]. dt_bias, A
    and h in the state's dtype (fp32 in training). Returns y [B, T, G P] (in xbc's dtype) and the last state.
    """
    Bsz, T, _ = xbc.shape
    _, G, P, N = h.shape
    x, b, c = F.silu(xbc).split([G * P, N, N], dim=-1)
    y, last = peer_module("mamba_ssm").mamba_chunk_scan_combined(
        x.view(Bsz, T, G, P), dt, -torch.exp(A_log.to(h.dtype)), b.unsqueeze(2), c.unsqueeze(2), chunk, D=D,
        z=z.view(Bsz, T, G, P), dt_bias=dt_bias.to(h.dtype), initial_states=h, dt_softplus=True, return_final_states=True)
    return y.reshape(Bsz, T, G * P), last.to(h.dtype)
