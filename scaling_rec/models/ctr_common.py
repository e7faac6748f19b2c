"""Pieces shared by the CTR families (Wukong, DLRM, DCNv2, RankMixer): field embeddings in one row-sharded
table, batch normalisation and the MLP block.

Every CTR model maps `cat_BxF` int32 field ids (0 = OOV in each field) and optional `num_BxM`
float32 dense features to `logits_B` float32; its FLOPs are scaling_rec.flops.ctr_forward_flops and its
parameter counts scaling_rec.flops.param_counts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling_rec.models.layers import (
    Dense,
    Embedding,
    KeyChain,
    LayerNorm,
    _lead,
    dropout,
    hashed_uniform_bits,
    param,
)

EMBED_INIT_STD = 0.01


class FieldEmbedding(nnx.Module):
    """All fields' tables stacked in one [R, D] table ('vocab', 'embed'), row-sharded.

    Field f's id i is row offsets[f] + i; returns emb_BxFxD. The num_rows = sum_f V_f used rows are
    padded to R, a multiple of layers.TABLE_ROW_MULTIPLE (64), so that the rows split evenly over any mesh up
    to 64 ways (jax shards only evenly); the padding rows are never looked up, regularised or counted.
    """

    def __init__(self, vocab_sizes: Sequence[int], dim: int, rngs: nnx.Rngs) -> None:
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]]))
        self.num_rows, self.dim = int(sum(vocab_sizes)), dim
        self.table = Embedding(self.num_rows, dim, rngs, stddev=EMBED_INIT_STD)

    def used_rows(self) -> jax.Array:
        """The [num_rows, D] rows that ids can reach (what the embedding regulariser sees)."""
        return self.table.table[...][: self.num_rows]

    def __call__(self, cat_BxF: jax.Array) -> jax.Array:
        rows = cat_BxF + jnp.asarray(self.offsets, jnp.int32)[None, :]
        return self.table(rows)


class BatchNorm(nnx.Module):
    """Batch normalisation (Ioffe & Szegedy 2015) over axis 0 of x_BxH, running statistics for eval.

    Running mean/var use momentum 0.9 (PyTorch's 0.1 convention), stored as nnx.BatchStat.
    """

    def __init__(self, dim: int, rngs: nnx.Rngs, *, eps: float = 1e-5, momentum: float = 0.9) -> None:
        self.scale = param(rngs, nnx.initializers.ones, (dim,), ("mlp",))
        self.bias = param(rngs, nnx.initializers.zeros, (dim,), ("mlp",))
        self.mean = nnx.BatchStat(jnp.zeros((dim,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((dim,), jnp.float32))
        self.eps, self.momentum = eps, momentum

    def _track(self, mean_H: jax.Array, var_H: jax.Array) -> None:
        m = self.momentum
        self.mean[...] = m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean_H)
        self.var[...] = m * self.var[...] + (1 - m) * jax.lax.stop_gradient(var_H)

    def __call__(self, x_BxH: jax.Array, train: bool) -> jax.Array:
        if train:
            mean, var = batch_moments(x_BxH)
            self._track(mean, var)
        else:
            mean, var = self.mean[...], self.var[...]
        y = (x_BxH - mean[None, :]) * jax.lax.rsqrt(var + self.eps)[None, :]
        return y * _lead(self.scale[...], 2) + _lead(self.bias[...], 2)

    def relu_dropout(self, x_BxH: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
        """dropout(relu(self(x, train=True)), rate, key) in fewer passes over x (bn_relu_dropout)."""
        y_BxH, mean, var = bn_relu_dropout(x_BxH, self.scale[...], self.bias[...], key, rate, self.eps)
        self._track(mean, var)
        return y_BxH


def batch_moments(x_BxH: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance over the batch (two passes: the variance of the centred values)."""
    mean_H = jnp.mean(x_BxH, axis=0)
    return mean_H, jnp.mean(jnp.square(x_BxH - mean_H[None, :]), axis=0)


def _keep_mask(key: jax.Array | None, rate: float, shape: tuple[int, ...]) -> jax.Array | None:
    """layers.dropout's keep mask (None without dropout)."""
    if key is None or rate == 0.0:
        return None
    return hashed_uniform_bits(key, shape) >= jnp.uint32(round(rate * 2**32))


def _bn_relu_dropout_fwd(x_BxH, scale_H, bias_H, key, rate, eps):
    mean_H, var_H = batch_moments(x_BxH)
    a_H = scale_H * jax.lax.rsqrt(var_H + eps)
    z_BxH = x_BxH * a_H[None, :] + (bias_H - mean_H * a_H)[None, :]
    keep = _keep_mask(key, rate, x_BxH.shape)
    y_BxH = jax.nn.relu(z_BxH) if keep is None else jnp.where(keep & (z_BxH > 0), z_BxH / (1.0 - rate), 0.0)
    return (y_BxH, mean_H, var_H), (x_BxH, scale_H, bias_H, key, mean_H, var_H)


def _bn_relu_dropout_bwd(rate, eps, res, cts):
    x_BxH, scale_H, bias_H, key, mean_H, var_H = res
    dy_BxH = cts[0]  # the moments feed only the stop-gradient running statistics
    inv_H = jax.lax.rsqrt(var_H + eps)
    xhat_BxH = (x_BxH - mean_H[None, :]) * inv_H[None, :]
    keep = _keep_mask(key, rate, x_BxH.shape)
    live = xhat_BxH * scale_H[None, :] + bias_H[None, :] > 0
    dz_BxH = jnp.where(live if keep is None else live & keep, dy_BxH * (1.0 / (1.0 - rate)), 0.0)
    dbias_H = jnp.sum(dz_BxH, axis=0)
    dscale_H = jnp.sum(dz_BxH * xhat_BxH, axis=0)
    n = x_BxH.shape[0]
    dx_BxH = (scale_H * inv_H)[None, :] * (dz_BxH - (dbias_H / n)[None, :] - xhat_BxH * (dscale_H / n)[None, :])
    return dx_BxH, dscale_H, dbias_H, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def bn_relu_dropout(x_BxH: jax.Array, scale_H: jax.Array, bias_H: jax.Array, key: jax.Array | None, rate: float,
                    eps: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode batch norm, ReLU and inverted dropout in one op: (y_BxH, mean_H, var_H).

    y = dropout(relu((x - mean) / sqrt(var + eps) * scale + bias)), the batch moments as BatchNorm's and
    the mask as layers.dropout's (the same numbers up to rounding). Autodiff of the three ops writes and
    rereads several [B, H] intermediates (the normalised values, the ReLU output, the masked gradient,
    ...); here the forward writes only y after the two moment reductions, and the backward recomputes the
    normalised values and the dropout mask (a counter hash) from x instead of storing them, then forms dx
    from the two sums in one elementwise pass. On the 2-core CPU the elementwise work of the three 4096 x 400
    batch norms was ~40% of BARS' DLRM step; this op cut the step by ~14% (issue 17).
    """
    return _bn_relu_dropout_fwd(x_BxH, scale_H, bias_H, key, rate, eps)[0]


bn_relu_dropout.defvjp(_bn_relu_dropout_fwd, _bn_relu_dropout_bwd)


class MLP(nnx.Module):
    """`depth` hidden layers of `width` (Dense -> norm -> ReLU -> dropout), then Dense -> d_out; `width` may
    also be a sequence of `depth` widths, one per hidden layer (FuxiCTR's hidden_units, e.g. [512, 256]).
    The products run in `matmul_dtype` (layers.matmul).

    d_out = 0 drops the output layer (the block ends with the last hidden layer). With batch norm the
    hidden layers have no bias: the normalisation removes it, so its gradient is zero up to rounding,
    which Adam would turn into +-lr steps that shift the running mean and make evaluation depend on
    the reduction order (the device count).
    """

    def __init__(self, d_in: int, width: int | Sequence[int], depth: int, d_out: int, rngs: nnx.Rngs, *,
                 norm: str = "none", dropout_rate: float = 0.0, matmul_dtype: str = "float32") -> None:
        widths = [int(w) for w in width] if isinstance(width, Sequence) else [width] * depth
        if len(widths) != depth:
            raise ValueError(f"{len(widths)} hidden widths {widths} for depth {depth}")
        self.dims = [d_in] + widths + ([d_out] if d_out else [])
        self.layers = nnx.List([
            Dense(a, b, ("embed", "mlp") if i < depth else ("mlp", None), rngs,
                  use_bias=not (i < depth and norm == "batch"), matmul_dtype=matmul_dtype)
            for i, (a, b) in enumerate(zip(self.dims[:-1], self.dims[1:], strict=True))
        ])
        self.norms = nnx.List([_make_norm(norm, w, rngs) for w in widths])
        self.depth, self.norm, self.dropout_rate = depth, norm, dropout_rate

    def __call__(self, x_BxI: jax.Array, *, train: bool = False, keys: KeyChain | None = None,
                 in_grid: tuple[int, int] | None = None, out_grid: tuple[int, int] | None = None,
                 in_affine: tuple[jax.Array, jax.Array | None] | None = None) -> jax.Array:
        """in_grid / out_grid: the input / output features in transposed grid order; in_affine: an affine map
        of the input folded into the first layer's weights (Dense.__call__)."""
        keys = keys or KeyChain(None)
        last = len(self.layers) - 1
        if out_grid is not None and last < self.depth:
            raise ValueError("out_grid needs an output layer (d_out > 0): a hidden layer's norm would see "
                             "its features reordered")
        for i, layer in enumerate(self.layers):
            x_BxI = layer(x_BxI, in_grid=in_grid if i == 0 else None, out_grid=out_grid if i == last else None,
                          in_affine=in_affine if i == 0 else None)
            if i < self.depth:
                if self.norm == "batch" and train:
                    x_BxI = self.norms[i].relu_dropout(x_BxI, self.dropout_rate, keys.next())
                    continue
                if self.norm == "batch":  # evaluation: the running statistics
                    x_BxI = self.norms[i](x_BxI, False)
                elif self.norm == "layer":
                    x_BxI = self.norms[i](x_BxI)
                x_BxI = dropout(jax.nn.relu(x_BxI), self.dropout_rate, keys.next() if train else None)
        return x_BxI


def _make_norm(norm: str, width: int, rngs: nnx.Rngs) -> nnx.Module | None:
    if norm == "batch":
        return BatchNorm(width, rngs)
    if norm == "layer":
        return LayerNorm(width, rngs, axis="mlp")
    return None


def mlp_flops(d_in: int, width: int | Sequence[int], depth: int, d_out: int) -> float:
    """Forward FLOPs per example of MLP(d_in, width, depth, d_out): 2 · a · b per layer of a inputs and b
    outputs (`width`: one width for the `depth` hidden layers, or one per layer; d_out = 0: no output layer)."""
    widths = list(width) if isinstance(width, Sequence) else [width] * depth
    dims = [d_in, *widths, *([d_out] if d_out else [])]
    return float(sum(2 * a * b for a, b in zip(dims[:-1], dims[1:], strict=False)))


def bottom_mlp_flops(model_cfg, num_dense: int) -> float:
    """Forward FLOPs per example of the bottom MLP that embeds `num_dense` dense features as one more field
    (Wukong, DLRM: bottom_width x bottom_depth -> embed_dim); 0 without dense features."""
    if not num_dense:
        return 0.0
    return mlp_flops(num_dense, model_cfg.bottom_width, model_cfg.bottom_depth, model_cfg.embed_dim)
