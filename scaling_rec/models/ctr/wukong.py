"""Wukong (Zhang et al. 2024, "Wukong: Towards a Scaling Law for Large-Scale Recommendation").

Embedding layer -> X_0 [n, d] (one embedding per categorical field, plus one for the dense features
through a bottom MLP when there are any; §3.2) -> l Wukong layers -> final MLP -> logit (§3.1).

Wukong layer (§3.3-3.5), X_i [n_i, d] -> X_{i+1} [n_F + n_L, d]:
  FMB(X)  = reshape(MLP(LN(flatten(X (X^T Y)))), [n_F, d])   optimized FM with a learned Y [n_i, k] (§3.6)
  LCB(X)  = W_L X                                            W_L [n_L, n_i]
  X_{i+1} = LN(concat(FMB(X), LCB(X)) + R X)                 R = I when n_i = n_F + n_L, else learned [n_F+n_L, n_i]
The layer norm is over the flattened [(n_F + n_L) d] output, as in FuxiCTR's WuKong. The last layer's
norm has no bias when the top MLP starts with batch norm, which removes any constant shift of its
input (that bias's gradient would be zero up to rounding; Adam would turn the rounding into +-lr steps).

Layout (issue 17): the layers keep the embeddings field-last, X^T [B, d, n], so that every product with a
[n, .] weight (X^T Y, LCB, the residual projection) is one [B d, n] matmul with no transposes, and the FM's
sum over the width d (d <= UNROLL_MAX) is one fused elementwise loop whose fastest axis is n. The
parameters keep the paper's (field, width) order; the layers view them through layers.transpose_grid, so
the model computes the same function of the same parameters as the [B, n, d] formulas above. The FMB
norm and the last layer's norm feed only a dense layer, which takes their affine maps into its weights
(layers.Dense in_affine), so their backward needs no pass over the activations for the scale.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_rec.models.ctr import CtrFamily, Rung
from scaling_rec.models.ctr_common import MLP, FieldEmbedding, bottom_mlp_flops, mlp_flops
from scaling_rec.models.layers import KeyChain, LayerNorm, affine_layer_norm, layer_norm, param, transpose_grid

_XAVIER = nnx.initializers.xavier_uniform()
UNROLL_MAX = 32  # contractions over at most this many terms run as one fused loop (sum_over_axis1)


def sum_over_axis1(u_BxCxP: jax.Array, v_BxCxQ: jax.Array) -> jax.Array:
    """sum_c u[b, c, p] v[b, c, q] -> [B, P, Q]. For C <= UNROLL_MAX the C terms are added one by one, which
    XLA:CPU fuses into one loop over the output vectorised along Q; on [4096, 10, 8] x [4096, 10, 80] that
    is ~4x faster than the batched dot of the einsum, which XLA:CPU runs as 4096 tiny matrix products."""
    if u_BxCxP.shape[1] > UNROLL_MAX:
        return jnp.einsum("bcp,bcq->bpq", u_BxCxP, v_BxCxQ)
    out = u_BxCxP[:, 0, :, None] * v_BxCxQ[:, 0, None, :]
    for c in range(1, u_BxCxP.shape[1]):
        out = out + u_BxCxP[:, c, :, None] * v_BxCxQ[:, c, None, :]
    return out


@jax.custom_vjp
def _fm_contraction(xty_BxDxK: jax.Array, x_BxDxN: jax.Array) -> jax.Array:
    """fm[b, k, n] = sum_d (X^T Y)[b, d, k] X^T[b, d, n]; the backward's two contractions are written out
    (autodiff of the unrolled sum would transpose it term by term)."""
    return sum_over_axis1(xty_BxDxK, x_BxDxN)


def _fm_contraction_fwd(xty_BxDxK, x_BxDxN):
    # The barriers write the operands out once: fused into the unrolled loop, their producers (the previous
    # layer's norm, the projection's slice) would be recomputed for every term (k or d times over).
    xty_BxDxK, x_BxDxN = jax.lax.optimization_barrier((xty_BxDxK, x_BxDxN))
    return sum_over_axis1(xty_BxDxK, x_BxDxN), (xty_BxDxK, x_BxDxN)


def _fm_contraction_bwd(res, g_BxKxN):
    xty_BxDxK, x_BxDxN = res
    g_BxKxN = jax.lax.optimization_barrier(g_BxKxN)
    dxty_BxDxK = jnp.einsum("bdn,bkn->bdk", x_BxDxN, g_BxKxN)
    dx_BxDxN = sum_over_axis1(jnp.swapaxes(xty_BxDxK, 1, 2), g_BxKxN)
    return dxty_BxDxK, dx_BxDxN


_fm_contraction.defvjp(_fm_contraction_fwd, _fm_contraction_bwd)


def field_matmul(x_BxDxN: jax.Array, w_NxM: jax.Array) -> jax.Array:
    """X^T W per example: [B, d, n] x [n, m] -> [B, d, m], one [B d, n] x [n, m] matmul."""
    b, d, n = x_BxDxN.shape
    return (x_BxDxN.reshape(b * d, n) @ w_NxM).reshape(b, d, w_NxM.shape[1])


def optimized_fm(x_BxDxN: jax.Array, y_NxK: jax.Array) -> jax.Array:
    """X (X^T Y) per example from the field-last X^T [B, d, n], returned transposed: [B, k, n]. It equals
    ((X X^T) Y)^T, the FM pairwise dot products projected to k columns, in O(n d k) instead of O(n^2 d)
    (§3.6)."""
    return _fm_contraction(field_matmul(x_BxDxN, y_NxK), x_BxDxN)


def linear_compress(x_BxDxN: jax.Array, w_LxN: jax.Array) -> jax.Array:
    """(W_L X)^T per example from the field-last X^T [B, d, n]: [B, d, n_L] (§3.5), a linear recombination
    of the embeddings as one [B d, n] x [n, n_L] matmul."""
    return field_matmul(x_BxDxN, w_LxN.T)


class WukongLayer(nnx.Module):
    """One Wukong layer: n_in embeddings of width d -> n_F + n_L embeddings, field-last (module docstring)."""

    def __init__(self, n_in: int, d: int, *, num_fmb: int, num_lcb: int, rank: int, fmb_width: int,
                 fmb_depth: int, dropout_rate: float, rngs: nnx.Rngs, out_bias: bool = True,
                 matmul_dtype: str = "float32") -> None:
        self.n_in, self.d, self.num_fmb, self.num_lcb, self.rank = n_in, d, num_fmb, num_lcb, rank
        self.n_out = num_fmb + num_lcb
        self.fm_proj = param(rngs, _XAVIER, (n_in, rank), ("fields", None))
        self.fmb_norm = LayerNorm(n_in * rank, rngs, axis="mlp")
        self.fmb_mlp = MLP(n_in * rank, fmb_width, fmb_depth, num_fmb * d, rngs, dropout_rate=dropout_rate,
                           matmul_dtype=matmul_dtype)
        self.lcb = param(rngs, _XAVIER, (num_lcb, n_in), ("fields", "fields"))
        self.residual = param(rngs, _XAVIER, (self.n_out, n_in), ("fields", "fields")) if self.n_out != n_in else None
        self.out_norm_eps = 1e-6  # one eps for both forms of the output norm (its module's and out_scale's)
        self.out_norm = LayerNorm(self.n_out * d, rngs, axis="embed", eps=self.out_norm_eps) if out_bias else None
        self.out_scale = None if out_bias else param(rngs, nnx.initializers.ones, (self.n_out * d,), ("embed",))

    def __call__(self, x_BxDxN: jax.Array, *, train: bool = False, keys: KeyChain | None = None) -> jax.Array:
        """X^T [B, d, n_in] -> X_{i+1}^T [B, d, n_F + n_L]."""
        scale, shift = self.out_affine()
        out_grid = (self.n_out, self.d)
        normed_BxDO = affine_layer_norm(self.before_norm(x_BxDxN, train=train, keys=keys),
                                        transpose_grid(scale, 0, out_grid),
                                        None if shift is None else transpose_grid(shift, 0, out_grid),
                                        self.out_norm_eps)
        return normed_BxDO.reshape(x_BxDxN.shape[0], self.d, self.n_out)

    def out_affine(self) -> tuple[jax.Array, jax.Array | None]:
        """The output norm's scale and shift (None without bias), [n_out d] in the paper's (field, width)
        order."""
        if self.out_norm is not None:
            return self.out_norm.scale[...], self.out_norm.bias[...]
        return self.out_scale[...], None

    def before_norm(self, x_BxDxN: jax.Array, *, train: bool = False, keys: KeyChain | None = None) -> jax.Array:
        """concat(FMB(X), LCB(X)) + R X, flattened field-last: [B, d n_out], the output norm's input."""
        b = x_BxDxN.shape[0]
        fm_grid = (self.n_in, self.rank)
        # X^T Y, (W_L X)^T and (R X)^T from one pass over X^T: one [B d, n] x [n, k + n_L (+ n_out)] matmul.
        weights_NxM = [self.fm_proj[...], self.lcb[...].T] + ([] if self.residual is None else [self.residual[...].T])
        proj_BxDxM = field_matmul(x_BxDxN, jnp.concatenate(weights_NxM, axis=1))
        k, split = self.rank, self.rank + self.num_lcb
        fm_BxKN = _fm_contraction(proj_BxDxM[:, :, :k], x_BxDxN).reshape(b, -1)
        # The FMB norm's affine map is folded into the MLP's first weights (Dense in_affine): its gradient
        # then needs no pass over the [B, n k] activations.
        fmb_BxDF = self.fmb_mlp(layer_norm(fm_BxKN, self.fmb_norm.eps), train=train, keys=keys, in_grid=fm_grid,
                                out_grid=(self.num_fmb, self.d),
                                in_affine=(self.fmb_norm.scale[...], self.fmb_norm.bias[...]))
        lcb_BxDxL = proj_BxDxM[:, :, k:split]
        res_BxDxO = x_BxDxN if self.residual is None else proj_BxDxM[:, :, split:]
        out_BxDxO = jnp.concatenate([fmb_BxDF.reshape(b, self.d, self.num_fmb), lcb_BxDxL], axis=2) + res_BxDxO
        return out_BxDxO.reshape(b, -1)


class Wukong(nnx.Module):
    """Wukong CTR model: cat_BxF (+ num_BxM) -> logits_B."""

    def __init__(self, vocab_sizes: tuple[int, ...], num_dense: int, *, embed_dim: int, num_layers: int,
                 num_fmb: int, num_lcb: int, fm_rank: int, fmb_width: int, fmb_depth: int, mlp_width: int,
                 mlp_depth: int, bottom_width: int, bottom_depth: int, norm: str, dropout_rate: float,
                 rngs: nnx.Rngs, matmul_dtype: str = "float32") -> None:
        self.embedding = FieldEmbedding(vocab_sizes, embed_dim, rngs)
        self.bottom = (MLP(num_dense, bottom_width, bottom_depth, embed_dim, rngs, norm=norm, matmul_dtype=matmul_dtype)
                       if num_dense else None)
        n = len(vocab_sizes) + (1 if num_dense else 0)
        layers = []
        for i in range(num_layers):
            last_feeds_bn = i == num_layers - 1 and norm == "batch" and mlp_depth > 0
            layers.append(WukongLayer(n, embed_dim, num_fmb=num_fmb, num_lcb=num_lcb, rank=fm_rank,
                                      fmb_width=fmb_width, fmb_depth=fmb_depth, dropout_rate=dropout_rate,
                                      rngs=rngs, out_bias=not last_feeds_bn, matmul_dtype=matmul_dtype))
            n = num_fmb + num_lcb
        self.layers = nnx.List(layers)
        self.top = MLP(n * embed_dim, mlp_width, mlp_depth, 1, rngs, norm=norm, dropout_rate=dropout_rate,
                       matmul_dtype=matmul_dtype)

    def __call__(self, cat_BxF: jax.Array, num_BxM: jax.Array | None = None, *, train: bool = False,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        keys = KeyChain(dropout_key)
        x_BxNxD = self.embedding(cat_BxF)
        if self.bottom is not None:
            dense_BxD = jax.nn.relu(self.bottom(num_BxM, train=train, keys=keys))
            x_BxNxD = jnp.concatenate([x_BxNxD, dense_BxD[:, None, :]], axis=1)
        x_BxDxN = jnp.swapaxes(x_BxNxD, 1, 2)
        for layer in self.layers[:-1]:
            x_BxDxN = layer(x_BxDxN, train=train, keys=keys)
        # The last layer's norm feeds only the top MLP, which takes its affine map into its first weights.
        last = self.layers[-1]
        xhat_BxDO = layer_norm(last.before_norm(x_BxDxN, train=train, keys=keys), last.out_norm_eps)
        return self.top(xhat_BxDO, train=train, keys=keys, in_grid=(last.n_out, last.d),
                        in_affine=last.out_affine())[:, 0]


def naive_fm(x_BxDxN: jax.Array) -> jax.Array:
    """X X^T per example [B, n, n] from the field-last X^T [B, d, n]: the plain FM interaction matrix
    (reference for tests, §3.4)."""
    return jnp.einsum("bdn,bdm->bnm", x_BxDxN, x_BxDxN)


__all__ = ["UNROLL_MAX", "Wukong", "WukongLayer", "linear_compress", "naive_fm", "optimized_fm", "sum_over_axis1"]


def forward_flops(m, num_fields: int, num_dense: int) -> float:
    """Per layer on n embeddings of width d: FM via the rank-k projection 4 n d k, the FMB MLP, LCB 2 n_L n d,
    and the residual projection 2 n_out n d when n_out != n; then the top MLP (and the bottom MLP of the dense
    features, one more embedding)."""
    n, d = num_fields + (1 if num_dense else 0), m.embed_dim
    f = bottom_mlp_flops(m, num_dense)
    for _ in range(m.num_layers):
        n_out = m.num_fmb + m.num_lcb
        f += 4.0 * n * d * m.fm_rank + mlp_flops(n * m.fm_rank, m.fmb_width, m.fmb_depth, m.num_fmb * d)
        f += 2.0 * m.num_lcb * n * d + (2.0 * n_out * n * d if n_out != n else 0.0)
        n = n_out
    return f + mlp_flops(n * d, m.mlp_width, m.mlp_depth, 1)


FAMILY = CtrFamily(
    name="wukong",
    keys={"num_layers": 2, "num_fmb": 10, "num_lcb": 10, "fm_rank": 8, "fmb_width": 200, "fmb_depth": 1,
          "bottom_width": 64, "bottom_depth": 2},
    build=lambda m, vocab_sizes, num_dense, common: Wukong(
        vocab_sizes, num_dense, num_layers=m.num_layers, num_fmb=m.num_fmb, num_lcb=m.num_lcb, fm_rank=m.fm_rank,
        fmb_width=m.fmb_width, fmb_depth=m.fmb_depth, bottom_width=m.bottom_width, bottom_depth=m.bottom_depth,
        **common),
    forward_flops=forward_flops,
    ladder={"r0": Rung({"num_layers": 1, "num_fmb": 4, "num_lcb": 4, "fm_rank": 4, "fmb_width": 64, "fmb_depth": 1,
                 "mlp_width": 64, "mlp_depth": 1}, 10_857),
            "r1": Rung({"num_layers": 2, "num_fmb": 8, "num_lcb": 8, "fm_rank": 8, "fmb_width": 128, "fmb_depth": 1,
                 "mlp_width": 128, "mlp_depth": 2}, 86_497),
            "r2": Rung({"num_layers": 2, "num_fmb": 16, "num_lcb": 16, "fm_rank": 16, "fmb_width": 256, "fmb_depth": 1,
                 "mlp_width": 256, "mlp_depth": 2}, 407_489),
            "r3": Rung({"num_layers": 4, "num_fmb": 16, "num_lcb": 16, "fm_rank": 16, "fmb_width": 256, "fmb_depth": 2,
                 "mlp_width": 256, "mlp_depth": 3}, 1_086_977),
            "r4": Rung({"num_layers": 4, "num_fmb": 32, "num_lcb": 32, "fm_rank": 24, "fmb_width": 512, "fmb_depth": 2,
                 "mlp_width": 512, "mlp_depth": 3}, 5_073_169),
            "r5": Rung({"num_layers": 8, "num_fmb": 32, "num_lcb": 32, "fm_rank": 32, "fmb_width": 1024, "fmb_depth": 2,
                 "mlp_width": 1024, "mlp_depth": 3}, 28_865_281)},
    ladder_doc="Zhang et al. 2024 (§5-6) scale Wukong by more and wider layers (l, n_F = n_L, rank k, the FMB "
               "MLP) and a wider top MLP; the rungs are ours, about 4-6x N_dense apart.",
    positive=("num_layers", "num_fmb", "num_lcb", "fm_rank", "fmb_width", "bottom_width"),
    non_negative=("fmb_depth", "bottom_depth"),
)
