"""DLRM (Naumov et al. 2019, "Deep Learning Recommendation Model for Personalization and Recommendation
Systems", §2-3): a bottom MLP maps the dense features to one embedding-sized vector, categorical
fields are looked up, the interaction takes the pairwise dot products of all these vectors, and a top
MLP maps [vectors, interactions] to the logit.

interaction='dot': top input = concat(flatten(Z), triu_{i<j}(Z Z^T)), Z [m, d] (the paper concatenates
the dense vector with the dots; we keep every vector so that data without dense features, such as
Frappe, still has first-order terms). interaction='cat': top input = flatten(Z) (FuxiCTR's DLRM
option that BARS tuned on Frappe_x1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling_rec.models.ctr import CtrFamily, Rung
from scaling_rec.models.ctr_common import MLP, FieldEmbedding, bottom_mlp_flops, mlp_flops
from scaling_rec.models.layers import KeyChain


def dot_interaction(z_BxMxD: jax.Array) -> jax.Array:
    """The m(m-1)/2 pairwise dot products <z_i, z_j>, i < j, in row-major order: [B, m(m-1)/2]."""
    m = z_BxMxD.shape[1]
    gram_BxMxM = jnp.einsum("bmd,bnd->bmn", z_BxMxD, z_BxMxD)
    rows, cols = np.triu_indices(m, k=1)
    return gram_BxMxM[:, rows, cols]


class DLRM(nnx.Module):
    """DLRM CTR model: cat_BxF (+ num_BxM) -> logits_B."""

    def __init__(self, vocab_sizes: tuple[int, ...], num_dense: int, *, embed_dim: int, bottom_width: int,
                 bottom_depth: int, mlp_width: int, mlp_depth: int, interaction: str, norm: str,
                 dropout_rate: float, rngs: nnx.Rngs, matmul_dtype: str = "float32") -> None:
        self.embedding = FieldEmbedding(vocab_sizes, embed_dim, rngs)
        self.bottom = (MLP(num_dense, bottom_width, bottom_depth, embed_dim, rngs, norm=norm, matmul_dtype=matmul_dtype)
                       if num_dense else None)
        self.m = len(vocab_sizes) + (1 if num_dense else 0)
        self.interaction = interaction
        self.d = embed_dim
        d_top = self.m * embed_dim + (self.m * (self.m - 1) // 2 if interaction == "dot" else 0)
        self.top = MLP(d_top, mlp_width, mlp_depth, 1, rngs, norm=norm, dropout_rate=dropout_rate,
                       matmul_dtype=matmul_dtype)

    def __call__(self, cat_BxF: jax.Array, num_BxM: jax.Array | None = None, *, train: bool = False,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        keys = KeyChain(dropout_key)
        z_BxMxD = self.embedding(cat_BxF)
        if self.bottom is not None:
            dense_BxD = jax.nn.relu(self.bottom(num_BxM, train=train, keys=keys))
            z_BxMxD = jnp.concatenate([z_BxMxD, dense_BxD[:, None, :]], axis=1)
        top_in = z_BxMxD.reshape(z_BxMxD.shape[0], -1)
        if self.interaction == "dot":
            top_in = jnp.concatenate([top_in, dot_interaction(z_BxMxD)], axis=1)
        return self.top(top_in, train=train, keys=keys)[:, 0]


def forward_flops(m, num_fields: int, num_dense: int) -> float:
    """The bottom MLP, the full Gram matrix 2 m² d of the m embeddings ('dot'; what is computed, not its upper
    triangle) and the top MLP over the embeddings and the pairwise products."""
    n, d = num_fields + (1 if num_dense else 0), m.embed_dim
    d_top = n * d + (n * (n - 1) // 2 if m.interaction == "dot" else 0)
    gram = 2.0 * n * n * d if m.interaction == "dot" else 0.0
    return bottom_mlp_flops(m, num_dense) + gram + mlp_flops(d_top, m.mlp_width, m.mlp_depth, 1)


FAMILY = CtrFamily(
    name="dlrm",
    keys={"bottom_width": 64, "bottom_depth": 2, "interaction": "dot"},
    build=lambda m, vocab_sizes, num_dense, common: DLRM(
        vocab_sizes, num_dense, bottom_width=m.bottom_width, bottom_depth=m.bottom_depth,
        interaction=m.interaction, **common),
    forward_flops=forward_flops,
    ladder={"r0": Rung({"mlp_width": 64, "mlp_depth": 1}, 9_473),
            "r1": Rung({"mlp_width": 128, "mlp_depth": 2}, 35_585),
            "r2": Rung({"mlp_width": 256, "mlp_depth": 2}, 103_937),
            "r3": Rung({"mlp_width": 512, "mlp_depth": 3}, 602_113),
            "r4": Rung({"mlp_width": 1024, "mlp_depth": 3}, 2_252_801),
            "r5": Rung({"mlp_width": 2048, "mlp_depth": 4}, 12_898_305)},
    ladder_doc="Naumov et al. 2019 (§2) scale DLRM by its top MLP; the rungs are ours, 'dot' interaction.",
    positive=("bottom_width",), non_negative=("bottom_depth",), choices={"interaction": ("dot", "cat")},
)
