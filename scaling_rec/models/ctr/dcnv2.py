"""DCNv2 (Wang et al. 2021, "DCN V2: Improved Deep & Cross Network", §3), parallel structure.

x_0 = concat(flatten(field embeddings), dense features) [D0]; cross layer (Eq. 1)
x_{l+1} = x_0 * (W_l x_l + b_l) + x_l with W_l [D0, D0] (or the low-rank U_l V_l^T of §3.3 with
rank r when cross_rank > 0); a deep MLP runs on x_0 in parallel; logit = w^T concat(x_L, deep(x_0)) + b.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from scaling_rec.models.ctr import CtrFamily, Rung
from scaling_rec.models.ctr_common import MLP, FieldEmbedding, mlp_flops
from scaling_rec.models.layers import Dense, KeyChain


class CrossLayer(nnx.Module):
    """x0 * (W x + b) + x, W full [D0, D0] or low rank U [D0, r] V [r, D0]."""

    def __init__(self, dim: int, rank: int, rngs: nnx.Rngs, matmul_dtype: str = "float32") -> None:
        self.dim, self.rank = dim, rank
        if rank > 0:
            self.down = Dense(dim, rank, ("embed", None), rngs, use_bias=False, matmul_dtype=matmul_dtype)
            self.up = Dense(rank, dim, (None, "embed"), rngs, matmul_dtype=matmul_dtype)
        else:
            self.full = Dense(dim, dim, ("embed", "mlp"), rngs, matmul_dtype=matmul_dtype)

    def __call__(self, x0_BxD: jax.Array, x_BxD: jax.Array) -> jax.Array:
        h_BxD = self.up(self.down(x_BxD)) if self.rank > 0 else self.full(x_BxD)
        return x0_BxD * h_BxD + x_BxD


class DCNv2(nnx.Module):
    """DCNv2 CTR model (parallel cross + deep): cat_BxF (+ num_BxM) -> logits_B."""

    def __init__(self, vocab_sizes: tuple[int, ...], num_dense: int, *, embed_dim: int, cross_layers: int,
                 cross_rank: int, mlp_width: int, mlp_depth: int, norm: str, dropout_rate: float,
                 rngs: nnx.Rngs, matmul_dtype: str = "float32") -> None:
        self.embedding = FieldEmbedding(vocab_sizes, embed_dim, rngs)
        self.d0 = len(vocab_sizes) * embed_dim + num_dense
        self.cross = nnx.List([CrossLayer(self.d0, cross_rank, rngs, matmul_dtype) for _ in range(cross_layers)])
        self.deep = MLP(self.d0, mlp_width, mlp_depth, 0, rngs, norm=norm, dropout_rate=dropout_rate,
                        matmul_dtype=matmul_dtype)
        self.out = Dense(self.d0 + mlp_width, 1, ("mlp", None), rngs)

    def __call__(self, cat_BxF: jax.Array, num_BxM: jax.Array | None = None, *, train: bool = False,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        keys = KeyChain(dropout_key)
        emb_BxFxD = self.embedding(cat_BxF)
        x0_BxD = emb_BxFxD.reshape(emb_BxFxD.shape[0], -1)
        if num_BxM is not None and self.d0 > x0_BxD.shape[1]:
            x0_BxD = jnp.concatenate([x0_BxD, num_BxM], axis=1)
        x_BxD = x0_BxD
        for layer in self.cross:
            x_BxD = layer(x0_BxD, x_BxD)
        deep_BxH = self.deep(x0_BxD, train=train, keys=keys)
        return self.out(jnp.concatenate([x_BxD, deep_BxH], axis=1))[:, 0]


def forward_flops(m, num_fields: int, num_dense: int) -> float:
    """Cross layers 2 d0² (full rank) or 4 d0 r (rank r) on the d0 = fields · d + dense inputs, the deep MLP,
    and the output layer over both."""
    d0 = num_fields * m.embed_dim + num_dense
    cross = m.cross_layers * (4.0 * d0 * m.cross_rank if m.cross_rank > 0 else 2.0 * d0 * d0)
    widths = list(m.mlp_width) if isinstance(m.mlp_width, Sequence) else [m.mlp_width] * m.mlp_depth
    return cross + mlp_flops(d0, m.mlp_width, m.mlp_depth, 0) + 2.0 * (d0 + ([d0, *widths])[-1])


FAMILY = CtrFamily(
    name="dcnv2",
    keys={"cross_layers": 4, "cross_rank": 0},
    build=lambda m, vocab_sizes, num_dense, common: DCNv2(
        vocab_sizes, num_dense, cross_layers=m.cross_layers, cross_rank=m.cross_rank, **common),
    forward_flops=forward_flops,
    ladder={"r0": Rung({"cross_layers": 1, "mlp_width": 64, "mlp_depth": 1}, 16_793),
            "r1": Rung({"cross_layers": 2, "mlp_width": 128, "mlp_depth": 2}, 50_125),
            "r2": Rung({"cross_layers": 3, "mlp_width": 256, "mlp_depth": 2}, 122_817),
            "r3": Rung({"cross_layers": 4, "mlp_width": 512, "mlp_depth": 3}, 619_573),
            "r4": Rung({"cross_layers": 6, "mlp_width": 1024, "mlp_depth": 3}, 2_267_421),
            "r5": Rung({"cross_layers": 8, "mlp_width": 2048, "mlp_depth": 4}, 12_887_045)},
    ladder_doc="Wang et al. 2021 (§3, parallel, full-rank cross layers): more cross layers and a wider deep "
               "MLP; the rungs are ours.",
    positive=("cross_layers",), non_negative=("cross_rank",),  # cross_rank 0 = full rank
)
