"""Building blocks shared by the model families: parameters with logical axes, dense layers,
embedding tables, normalisation and dropout.

Every parameter names its logical axes (docs/CONTRACTS.md, DESIGN "Sharding"); the rules table in
scaling_rec.parallel maps them to mesh axes. No model file names a mesh axis.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_rec import hardware

Initializer = Callable[..., jax.Array]
_XAVIER_UNIFORM = nnx.initializers.xavier_uniform()


def param(rngs: nnx.Rngs, init: Initializer, shape: Sequence[int], axes: tuple[str | None, ...]) -> nnx.Param:
    """A float32 parameter of `shape` whose dimensions carry the logical names `axes`."""
    if len(axes) != len(shape):
        raise ValueError(f"parameter of shape {tuple(shape)} needs {len(shape)} axis names, got {axes}")
    return nnx.Param(init(rngs.params(), tuple(shape), jnp.float32), sharding_names=axes, eager_sharding=False)


MATMUL_DTYPES = ("float32", "bfloat16")  # as scaling_rec.models.ctr.MATMUL_DTYPES, model.matmul_dtype's choices


def check_matmul_dtype(dtype: str) -> None:
    """ValueError unless `dtype` is one of MATMUL_DTYPES (model.matmul_dtype's choices); a SlowPathWarning,
    once per process, for bfloat16 on a CPU without native bfloat16 products (hardware.slow_bf16_warning)."""
    if dtype not in MATMUL_DTYPES:
        raise ValueError(f"matmul_dtype {dtype!r} not in {MATMUL_DTYPES}")
    _warn_slow_dtype(dtype)


@functools.cache
def _warn_slow_dtype(dtype: str) -> None:
    message = hardware.slow_bf16_warning(dtype)
    if message:
        warnings.warn(message, hardware.SlowPathWarning, stacklevel=hardware.caller_stacklevel())


def dot_f32(a: jax.Array, b: jax.Array, contract: tuple[tuple[int], tuple[int]]) -> jax.Array:
    """a and b contracted over `contract` (no batch axes), accumulated and returned in float32."""
    return jax.lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=jnp.float32)


def transpose_copy(a_NxI: jax.Array) -> jax.Array:
    """a^T [I, N] written out in memory, where XLA would otherwise fold a 2-D transpose into the consumer.

    XLA folds transpose(a) feeding a dot into the dot's contracting dimensions, and XLA:CPU has a
    bfloat16 (AMX) matmul only for the plain [M, K] x [K, N] form: x^T g contracting over the batch runs at
    the float32 rate (~220 GFLOP/s on the 2-core CPU, against ~1,000 for the plain form). Splitting N into
    [N / k, k] makes the same permutation a 3-D transpose, which XLA does not fold: it writes a^T (fused with
    any convert before it) and the dot gets its plain form. Falls back to the plain transpose when neither
    dimension has a small factor.
    """
    n, i = a_NxI.shape
    for k in (8, 4, 2, 3, 5, 7):
        if n % k == 0:
            return jnp.transpose(a_NxI.reshape(n // k, k, i), (2, 0, 1)).reshape(i, n)
        if i % k == 0:
            return jnp.transpose(a_NxI.reshape(n, i // k, k), (1, 2, 0)).reshape(i, n)
    return a_NxI.T


@jax.custom_vjp
def bf16_matmul(x_NxI: jax.Array, w_IxO: jax.Array) -> jax.Array:
    """x @ w [N, O] float32 from bfloat16 operands, accumulated in float32 (mixed precision).

    The backward forms dx = g w^T and dw = x^T g from bfloat16 x, g and w, also accumulated in float32: all
    three products are rounded as on an accelerator's bfloat16 path. On XLA:CPU each maps to the bfloat16
    (AMX) matmul: dx as a plain dot_general (an explicit transpose of w would make XLA fall back to float32)
    and dw through transpose_copy of x, saved transposed by the forward (issue 17).
    """
    return dot_f32(x_NxI.astype(jnp.bfloat16), w_IxO.astype(jnp.bfloat16), ((1,), (0,)))


def _bf16_matmul_fwd(x_NxI, w_IxO):
    return bf16_matmul(x_NxI, w_IxO), (transpose_copy(x_NxI.astype(jnp.bfloat16)), w_IxO, jnp.zeros((0,), x_NxI.dtype))


def _bf16_matmul_bwd(res, g_NxO):
    xt_IxN, w_IxO, dtype_0 = res  # dtype_0: an empty array of x's dtype
    g_bf_NxO = g_NxO.astype(jnp.bfloat16)
    dx_NxI = dot_f32(g_bf_NxO, w_IxO.astype(jnp.bfloat16), ((1,), (1,)))
    # The barrier keeps XLA from folding a consumer's transpose of dw (a caller passing w = W.T) into this
    # dot: XLA:CPU then emits a bfloat16 dot its fallback thunk cannot run (UNIMPLEMENTED at run time).
    return dx_NxI.astype(dtype_0.dtype), jax.lax.optimization_barrier(dot_f32(xt_IxN, g_bf_NxO, ((1,), (0,))))


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def matmul(x: jax.Array, w_IxO: jax.Array, dtype: str = "float32") -> jax.Array:
    """x [..., I] @ w [I, O] -> [..., O] float32, the product in `dtype` (MATMUL_DTYPES; see bf16_matmul)."""
    if dtype == "float32":
        return x @ w_IxO
    check_matmul_dtype(dtype)
    y_NxO = bf16_matmul(x.reshape(-1, x.shape[-1]), w_IxO)
    return y_NxO.reshape(*x.shape[:-1], w_IxO.shape[1])


class Dense(nnx.Module):
    """y = x @ W (+ b); W [d_in, d_out] with logical axes `axes`, b [d_out]; the product in `matmul_dtype`
    (float32, or bfloat16 operands with float32 accumulation: `matmul`). Parameters stay float32."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        axes: tuple[str | None, str | None],
        rngs: nnx.Rngs,
        *,
        use_bias: bool = True,
        init: Initializer = _XAVIER_UNIFORM,
        matmul_dtype: str = "float32",
    ) -> None:
        check_matmul_dtype(matmul_dtype)
        self.kernel = param(rngs, init, (d_in, d_out), axes)
        self.bias = param(rngs, nnx.initializers.zeros, (d_out,), (axes[1],)) if use_bias else None
        self.matmul_dtype = matmul_dtype

    def __call__(self, x: jax.Array, *, in_grid: tuple[int, int] | None = None,
                 out_grid: tuple[int, int] | None = None,
                 in_affine: tuple[jax.Array, jax.Array | None] | None = None) -> jax.Array:
        """in_grid = (a, b): x's d_in features are the (a, b) grid of the kernel's rows stored transposed,
        as (b, a) (see transpose_grid); out_grid likewise puts the outputs in (b, a) order. in_affine =
        (scale_I, shift_I or None), in the kernel's row order: the layer computes (x * scale + shift) @ W + b
        as x @ (diag(scale) W) + (shift @ W + b), so a normalisation's affine map costs a weight-sized
        product instead of passes over x and its gradient. The parameters keep their layout; only the
        product's view of them changes."""
        kernel, bias = self.kernel[...], (self.bias[...] if self.bias is not None else None)
        if in_affine is not None:
            scale_I, shift_I = in_affine
            if shift_I is not None:
                shift_O = shift_I @ kernel
                bias = shift_O if bias is None else bias + shift_O
            kernel = scale_I[:, None] * kernel
        kernel = transpose_grid(kernel, 0, in_grid) if in_grid else kernel
        kernel = transpose_grid(kernel, 1, out_grid) if out_grid else kernel
        y = matmul(x, kernel, self.matmul_dtype)
        if bias is None:
            return y
        bias = transpose_grid(bias, 0, out_grid) if out_grid else bias
        return y + _lead(bias, y.ndim)


def transpose_grid(v: jax.Array, axis: int, grid: tuple[int, int]) -> jax.Array:
    """Reorders axis `axis` of v (size a * b, read as an (a, b) grid, b fastest) to (b, a) order: the
    index i * b + j moves to j * a + i. Layers whose activations are stored with the grid transposed
    use it to view parameters laid out for the (a, b) order."""
    a, b = grid
    if v.shape[axis] != a * b:
        raise ValueError(f"axis {axis} of shape {v.shape} is not an {a} x {b} grid")
    shape = v.shape[:axis] + (a, b) + v.shape[axis + 1:]
    return jnp.swapaxes(v.reshape(shape), axis, axis + 1).reshape(v.shape)


class LayerNorm(nnx.Module):
    """Layer normalisation over the last axis with a learned scale and bias (axis name `axis`)."""

    def __init__(self, dim: int, rngs: nnx.Rngs, *, axis: str = "embed", eps: float = 1e-6) -> None:
        self.scale = param(rngs, nnx.initializers.ones, (dim,), (axis,))
        self.bias = param(rngs, nnx.initializers.zeros, (dim,), (axis,))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        return affine_layer_norm(x, self.scale[...], self.bias[...], self.eps)


def _lead(v_D: jax.Array, ndim: int) -> jax.Array:
    """Reshapes a [D] vector to broadcast against an array of rank `ndim` (explicit rank promotion)."""
    return v_D.reshape((1,) * (ndim - 1) + v_D.shape)


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Layer normalisation over the last axis without learned parameters, with a hand-written backward
    (as affine_layer_norm's; the same numbers as autodiff of the plain formula up to rounding)."""
    return _plain_ln(x, eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _plain_ln(x: jax.Array, eps: float) -> jax.Array:
    return _plain_ln_fwd(x, eps)[0]


def _plain_ln_fwd(x, eps):
    mean, inv = _row_moments(x, eps)
    return (x - mean) * inv, (x, mean, inv)


def _plain_ln_bwd(eps, res, dy):
    x, mean, inv = res
    return (_ln_input_grad((x - mean) * inv, dy, inv),)


_plain_ln.defvjp(_plain_ln_fwd, _plain_ln_bwd)


def _row_moments(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """Mean and 1 / sqrt(variance + eps) over the last axis, kept as [..., 1]."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    return mean, jax.lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True) + eps)


def _ln_input_grad(xhat: jax.Array, dxhat: jax.Array, inv: jax.Array) -> jax.Array:
    """d loss / d x of xhat = (x - mean) * inv from d loss / d xhat: one pass after two row reductions."""
    mean_dxhat = jnp.mean(dxhat, axis=-1, keepdims=True)
    mean_dxhat_xhat = jnp.mean(dxhat * xhat, axis=-1, keepdims=True)
    return inv * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


def affine_layer_norm(x: jax.Array, scale_D: jax.Array, bias_D: jax.Array | None, eps: float = 1e-6) -> jax.Array:
    """layer_norm(x) * scale + bias over the last axis of x [..., D] (no bias when bias_D is None), with a
    hand-written backward (_affine_ln_bwd); the same numbers as autodiff of the plain formula up to rounding."""
    return _affine_ln(x, scale_D, jnp.zeros_like(scale_D) if bias_D is None else bias_D, eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _affine_ln(x: jax.Array, scale_D: jax.Array, bias_D: jax.Array, eps: float) -> jax.Array:
    """Autodiff of layer_norm and the affine map writes and rereads several [..., D] intermediates and, on
    XLA:CPU, materialises the broadcast scale; this backward recomputes the normalised rows from x and the
    two per-row statistics and forms dx in one elementwise pass after four reductions (issue 17)."""
    return _affine_ln_fwd(x, scale_D, bias_D, eps)[0]


def _affine_ln_fwd(x, scale_D, bias_D, eps):
    mean, inv = _row_moments(x, eps)
    y = (x - mean) * inv * _lead(scale_D, x.ndim) + _lead(bias_D, x.ndim)
    return y, (x, scale_D, mean, inv)


def _affine_ln_bwd(eps, res, dy):
    x, scale_D, mean, inv = res
    xhat = (x - mean) * inv
    lead_axes = tuple(range(x.ndim - 1))
    dx = _ln_input_grad(xhat, dy * _lead(scale_D, x.ndim), inv)
    return dx, jnp.sum(dy * xhat, axis=lead_axes), jnp.sum(dy, axis=lead_axes)


_affine_ln.defvjp(_affine_ln_fwd, _affine_ln_bwd)


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """x / max(||x||_2, eps) over the last axis."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def _mix32(h: jax.Array) -> jax.Array:
    """A bijective avalanche mix of uint32 words (xor-shift-multiply, the 'lowbias32' constants of
    C. Wellons' integer hash search): every input bit flips each output bit with probability ~1/2."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x7FEB352D)
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


def hashed_uniform_bits(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """uint32 words of `shape`, word i = mix(mix(i * golden + s0) ^ s1) with (s0, s1) drawn from `key`.

    A counter-based stream: two threefry words per call, then ~10 integer operations per element, about
    40x cheaper on a CPU than jax.random.bits over the whole shape (4096 x 1,200 dropout masks: ~1 ms
    against ~45 ms), and built from per-axis iotas so that a sharded shape is generated shard by shard.
    The flat index wraps past 2^32 elements (the stream repeats there).
    """
    s = jax.random.bits(key, (2,), jnp.uint32)
    index = jnp.zeros(tuple(shape), jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, tuple(shape), axis) * jnp.uint32(stride % 2**32)
        stride *= int(shape[axis])
    return _mix32(_mix32(index * jnp.uint32(0x9E3779B9) + s[0]) ^ s[1])


def hashed_uniform_ints(key: jax.Array, shape: Sequence[int], low: int, high: int) -> jax.Array:
    """int32 of `shape` uniform on [low, high): low + hashed_uniform_bits % (high - low).

    The modulo favours the first 2^32 mod (high - low) values by at most (high - low) / 2^32 relative
    (2.3e-4 for a million values); ~30x cheaper on a CPU than jax.random.randint's threefry (16k x 128
    sampled negatives: ~1 ms against ~30 ms).
    """
    span = int(high) - int(low)
    if not 0 < span < 2**31:
        raise ValueError(f"[{low}, {high}) must hold between 1 and 2^31 - 1 values")
    return (hashed_uniform_bits(key, shape) % jnp.uint32(span)).astype(jnp.int32) + jnp.int32(low)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; identity when `key` is None (evaluation) or rate == 0.

    An element is dropped when its hashed_uniform_bits word is below round(rate * 2^32), so the drop
    probability is `rate` to within 2^-32; the masks of two keys are independent.
    """
    if key is None or rate == 0.0:
        return x
    if not 0.0 < rate < 1.0:
        raise ValueError(f"dropout rate {rate} outside [0, 1)")
    keep = hashed_uniform_bits(key, x.shape) >= jnp.uint32(round(rate * 2**32))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class KeyChain:
    """Hands out distinct dropout keys from one key; yields None forever when the key is None."""

    def __init__(self, key: jax.Array | None) -> None:
        self._key = key
        self._count = 0

    def next(self) -> jax.Array | None:
        if self._key is None:
            return None
        self._count += 1
        return jax.random.fold_in(self._key, self._count)


# Embedding tables get a multiple of this many rows: jax shards an axis only evenly, and the 'vocab' rows
# then split over any mesh of up to 64 ways. The padding rows are never looked up, regularised or counted.
TABLE_ROW_MULTIPLE = 64


def padded_rows(num_rows: int) -> int:
    """`num_rows` rounded up to a multiple of TABLE_ROW_MULTIPLE (the rows of a shardable embedding table)."""
    return -(-num_rows // TABLE_ROW_MULTIPLE) * TABLE_ROW_MULTIPLE


class Embedding(nnx.Module):
    """An embedding table of `num_rows` rows that ids can reach, stored as [padded_rows(num_rows), dim]; rows
    carry the logical axis 'vocab' (row-sharded). scaling_rec.flops.param_counts counts the `num_rows`."""

    def __init__(self, num_rows: int, dim: int, rngs: nnx.Rngs, *, stddev: float = 0.02) -> None:
        self.num_rows = num_rows
        self.table = param(rngs, nnx.initializers.truncated_normal(stddev), (padded_rows(num_rows), dim),
                           ("vocab", "embed"))

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.table[...], ids, axis=0)
