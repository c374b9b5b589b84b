"""Mamba's selective scan (S6): ``mamba_ssm``'s CUDA kernel when it imports, otherwise an exact PyTorch scan.

The recurrence, per channel ``d`` and state ``n`` (``u``, ``delta``: ``(b, d, L)``; ``A``: ``(d, n)``;
``B``, ``C``: ``(b, n, L)``)::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        y_t = C_t . h_t + D * u_t

then ``y *= silu(z)``. The PyTorch scan precomputes the decays and inputs for a chunk of frames, then steps
through it; only the state ``(b, d, n)`` crosses chunk boundaries, so memory is the output plus one chunk:
linear in frames. It does not approximate (no log-space products), hence "exact".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # the fused kernels of the Mamba authors (pip install mamba-ssm causal-conv1d); optional
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan
except Exception:  # noqa: BLE001 - any import failure (no CUDA build, ABI mismatch) means "use PyTorch"
    _cuda_selective_scan = None
try:
    from causal_conv1d import causal_conv1d_fn as _cuda_causal_conv1d
except Exception:  # noqa: BLE001
    _cuda_causal_conv1d = None

DEFAULT_CHUNK = 16  # frames per precomputed chunk: the Python loop costs the same, memory is 16 frames' worth
MAX_CHUNK_ELEMENTS = 2**26  # cap of b*d*chunk*n per chunk (256 MiB in fp32); rows are split to stay under it


def kernels_available() -> bool:
    return _cuda_selective_scan is not None


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto",
                   chunk: int = DEFAULT_CHUNK):
    """``mamba_ssm.selective_scan_fn``'s contract: returns ``(b, d, L)`` in ``u``'s dtype.

    backend: "auto" (the CUDA kernel for CUDA tensors when ``mamba_ssm`` imports), "cuda" or "torch".
    """
    use_cuda = backend == "cuda" or (backend == "auto" and u.is_cuda and _cuda_selective_scan is not None)
    if use_cuda:
        if _cuda_selective_scan is None:
            raise RuntimeError("mamba_ssm's selective scan kernel is not installed (pip install mamba-ssm)")
        return _cuda_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk)


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         chunk: int = DEFAULT_CHUNK, max_chunk_elements: int = MAX_CHUNK_ELEMENTS):
    """The recurrence in fp32, chunked over frames (and over rows when a chunk would be too large)."""
    dtype_in = u.dtype
    u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    b, d, length = u.shape
    n = A.shape[1]
    chunk = max(1, min(chunk, length))
    rows = max(1, min(b, max_chunk_elements // max(1, d * chunk * n)))
    y = torch.cat([_scan_rows(u[r : r + rows], delta[r : r + rows], A, B[r : r + rows], C[r : r + rows], chunk)
                   for r in range(0, b, rows)]) if b else u.new_zeros(u.shape)
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype_in)


def _scan_rows(u, delta, A, B, C, chunk):
    b, d, length = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    outputs = []
    for start in range(0, length, chunk):
        frames = slice(start, start + chunk)
        # decays and inputs of the whole chunk at once, frame-major so each step reads contiguous memory: (t, b, d, n)
        dt = delta[:, :, frames].permute(2, 0, 1)[..., None]
        decay = torch.exp(dt * A)
        drive = dt * u[:, :, frames].permute(2, 0, 1)[..., None] * B[:, :, frames].permute(2, 0, 1)[:, :, None]
        c = C[:, :, frames].permute(2, 0, 1)[..., None]  # (t, b, n, 1)
        for t in range(decay.shape[0]):
            h = decay[t] * h + drive[t]
            outputs.append(torch.bmm(h, c[t])[..., 0])
    return torch.stack(outputs, dim=-1)


def causal_conv1d(x: torch.Tensor, conv) -> torch.Tensor:
    """``silu`` of the depthwise causal ``conv`` (an ``nn.Conv1d`` padded by k-1) over ``(b, d, L)``; the CUDA
    kernel when present and the weights already sit with ``x``, else the layer itself (so hosts may cast it)."""
    weight = conv.weight
    if x.is_cuda and _cuda_causal_conv1d is not None and weight.device == x.device and weight.dtype == x.dtype:
        return _cuda_causal_conv1d(x, weight.squeeze(1), conv.bias, activation="silu")
    return F.silu(conv(x)[..., : x.shape[-1]])
