"""`hstu_attention`: the one entry point; validates arguments and picks an implementation.

impl='xla' -> blocked-window XLA path (`hstu_xla`), impl='pallas' -> fused Pallas kernels
(`hstu_pallas`, forward and backward), impl='auto' -> Pallas on GPU, XLA elsewhere (CPU, TPU).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from scaling_rec.errors import KernelArgumentError
from scaling_rec.kernels.hstu_reference import DEFAULT_TIME_BUCKET_DIVISOR
from scaling_rec.kernels.hstu_xla import hstu_attention_xla

Impl = Literal["xla", "pallas", "auto"]


def resolve_impl(impl: str) -> str:
    """'auto' -> 'pallas' when the default backend is a GPU, else 'xla'; others pass through."""
    if impl not in ("xla", "pallas", "auto"):
        raise KernelArgumentError(
            f"hstu_attention: impl={impl!r} is not one of 'xla', 'pallas', 'auto'; "
            "pass impl='auto' to choose by backend"
        )
    if impl == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "xla"
    return impl


def _check_args(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    offsets: jax.Array,
    max_len: int,
    positions: jax.Array | None,
    pos_bias: jax.Array | None,
    timestamps: jax.Array | None,
    query_timestamps: jax.Array | None,
    time_bias: jax.Array | None,
) -> None:
    """Raise ValueError naming the argument whose shape or dtype breaks the contract."""
    where = "scaling_rec.kernels.hstu_attention"
    if q.ndim != 3 or k.shape != q.shape or v.shape != q.shape:
        raise KernelArgumentError(
            f"{where}: q, k, v must all be [T, H, D]; got {q.shape}, {k.shape}, {v.shape}"
        )
    if not jnp.issubdtype(q.dtype, jnp.floating):
        raise KernelArgumentError(f"{where}: q must be floating point, got {q.dtype}")
    if offsets.ndim != 1 or offsets.shape[0] < 2 or not jnp.issubdtype(offsets.dtype, jnp.integer):
        raise KernelArgumentError(f"{where}: offsets must be int [B+1] with B >= 1, got {offsets.shape}")
    if int(max_len) < 1:
        raise KernelArgumentError(f"{where}: max_len must be >= 1, got {max_len}")
    num_tokens = q.shape[0]
    for name, arr in (("positions", positions), ("timestamps", timestamps),
                      ("query_timestamps", query_timestamps)):
        if arr is not None and arr.shape != (num_tokens,):
            raise KernelArgumentError(f"{where}: {name} must be [T]=({num_tokens},), got {arr.shape}")
    if pos_bias is not None and pos_bias.shape != (2 * max_len - 1,):
        raise KernelArgumentError(
            f"{where}: pos_bias must be [2*max_len-1]=({2 * max_len - 1},), got {pos_bias.shape}"
        )
    if time_bias is not None:
        if time_bias.ndim != 1 or time_bias.shape[0] < 1:
            raise KernelArgumentError(f"{where}: time_bias must be [num_buckets+1], got {time_bias.shape}")
        if timestamps is None:
            raise KernelArgumentError(f"{where}: time_bias needs timestamps (and optionally query_timestamps)")


def hstu_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    offsets: jax.Array,
    *,
    max_len: int,
    impl: Impl = "auto",
    interpret: bool = False,
    positions: jax.Array | None = None,
    pos_bias: jax.Array | None = None,
    timestamps: jax.Array | None = None,
    query_timestamps: jax.Array | None = None,
    time_bias: jax.Array | None = None,
    time_bucket_divisor: float = DEFAULT_TIME_BUCKET_DIVISOR,
) -> jax.Array:
    """Jagged causal HSTU attention (docs/CONTRACTS.md, "Attention kernel").

    out_i = sum_{j <= i, same sequence} SiLU(q_i . k_j + rab(i, j)) / max_len * v_j

    Args:
      q, k, v: [T, H, D] float32 or bfloat16 (packed tokens of up to B sequences).
      offsets: int32 [B+1] cumulative starts; tokens after offsets[-1] are padding -> zeros.
      max_len: static int, the longest sequence (and the SiLU normaliser). A longer sequence is
        a caller error; every impl then attends to the last max_len keys only.
      impl: 'xla' | 'pallas' | 'auto' (Pallas on GPU, XLA on CPU).
      interpret: run the Pallas kernels in interpret mode (CPU testing).
      positions: int [T] within-sequence positions (default: from offsets).
      pos_bias: [2*max_len - 1] relative-position table (index max_len - 1 + pos_j - pos_i).
      timestamps / query_timestamps: int [T] seconds (query_timestamps defaults to timestamps).
      time_bias: [num_buckets + 1] table indexed by
        clip(floor(ln(max(|qts_i - ts_j|, 1)) / time_bucket_divisor), 0, num_buckets).
    Returns:
      [T, H, D] in q's dtype. Differentiable in q, k, v, pos_bias and time_bias.
    """
    max_len = int(max_len)
    _check_args(q, k, v, offsets, max_len, positions, pos_bias, timestamps, query_timestamps,
                time_bias)
    kwargs = dict(
        max_len=max_len,
        positions=positions,
        pos_bias=pos_bias,
        timestamps=timestamps,
        query_timestamps=query_timestamps,
        time_bias=time_bias,
        time_bucket_divisor=time_bucket_divisor,
    )
    if resolve_impl(impl) == "xla":
        return hstu_attention_xla(q, k, v, offsets, **kwargs)
    if not interpret and jax.default_backend() != "gpu":
        raise KernelArgumentError(
            f"hstu_attention: impl='pallas' compiles Triton kernels for a GPU but the backend is "
            f"{jax.default_backend()!r}; pass interpret=True (slow, for tests) or impl='xla'"
        )
    from scaling_rec.kernels.hstu_pallas import hstu_attention_pallas

    return hstu_attention_pallas(q, k, v, offsets, interpret=interpret, **kwargs)
