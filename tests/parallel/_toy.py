"""A toy NNX model with logical axes on every parameter, shared by the parallel tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scaling_rec.parallel.sharding import with_logical_axes, with_logical_constraint

VOCAB = 1000
WIDTH = 64
HIDDEN = 128
TOKENS = 64


def _dense(d_in: int, d_out: int, axes: tuple[str, str], rngs: nnx.Rngs) -> nnx.Linear:
    """A Linear layer whose kernel carries `axes` and whose bias carries the output axis."""
    return nnx.Linear(
        d_in,
        d_out,
        rngs=rngs,
        kernel_init=with_logical_axes(nnx.initializers.lecun_normal(), axes),
        bias_init=with_logical_axes(nnx.initializers.normal(0.1), axes[1:]),
    )


class Toy(nnx.Module):
    """Embedding table ('vocab', 'embed') -> Dense ('embed', 'mlp') -> Dense ('mlp', 'embed') -> tied logits."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.table = nnx.Embed(
            VOCAB, WIDTH, rngs=rngs, embedding_init=with_logical_axes(nnx.initializers.normal(1.0), ("vocab", "embed"))
        )
        self.up = _dense(WIDTH, HIDDEN, ("embed", "mlp"), rngs)
        self.down = _dense(HIDDEN, WIDTH, ("mlp", "embed"), rngs)

    def loss(self, item_ids_T: jax.Array, target_ids_T: jax.Array) -> jax.Array:
        """Mean softmax cross-entropy of the next item over the whole vocabulary."""
        seq_TxD = with_logical_constraint(self.table(item_ids_T), ("tokens", "embed"))
        hidden_TxH = with_logical_constraint(jax.nn.gelu(self.up(seq_TxD)), ("tokens", "mlp"))
        out_TxD = with_logical_constraint(seq_TxD + self.down(hidden_TxH), ("tokens", "embed"))
        logits_TxV = with_logical_constraint(out_TxD @ self.table.embedding[...].T, ("tokens", "vocab"))
        logp_TxV = jax.nn.log_softmax(logits_TxV, axis=-1)
        picked_T = jnp.take_along_axis(logp_TxV, target_ids_T[:, None], axis=-1)[:, 0]
        return -jnp.mean(picked_T)


def make_toy() -> Toy:
    """The toy model with a fixed seed (factories must be deterministic)."""
    return Toy(nnx.Rngs(0))


def toy_batch() -> dict[str, np.ndarray]:
    """A fixed host batch of T token ids and next-item targets."""
    rng = np.random.default_rng(0)
    return {
        "item_ids_T": rng.integers(1, VOCAB, size=TOKENS).astype(np.int32),
        "target_ids_T": rng.integers(1, VOCAB, size=TOKENS).astype(np.int32),
    }
