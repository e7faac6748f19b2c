"""Training losses of the sequential retrievers."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sampled_softmax_loss(
    hidden_NxD: jax.Array,
    targets_N: jax.Array,
    table_VxD: jax.Array,
    key: jax.Array,
    *,
    num_negatives: int,
    temperature: float,
    dense_logits: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Sampled softmax over the target and `num_negatives` uniform negatives per token.

    As in the HSTU reference (SampledSoftmaxLoss with the local sampler): negatives are drawn
    uniformly from items 1..V-1 for every target token; a negative equal to the target is masked;
    logits are dot products / temperature (cosines when embeddings are L2-normalised).

    The negatives' logits come one of two ways, equal up to summation order: gathering each token's K
    rows ([N, K, D], whose gradient is a scatter-add of as many rows into the table), or all N x V
    logits by one matmul and then each token's K of them (`dense_logits`; None = when the table has no
    more than K·D rows, so that it holds no more memory than the gathered rows). The dense way does
    V/K times the scoring FLOPs (flops.loss_flops counts the K) but runs on matmuls instead of
    gathers and scatters: on a loaded 2-core CPU, loss + gradient at the HSTU reference's large
    ML-1M shapes (N = 16k tokens, D = 256, V = 3953, K = 128) took 6.1 s dense against 13.4 s
    gathered, and 1.3 s against 1.7 s at Beauty-like ones (N = 1.2k, V = 12102) (issue 17).

    Args:
      hidden_NxD: user vectors; targets_N: int item ids, 0 = no target (ignored);
      table_VxD: the scoring table (row 0 = padding).
      dense_logits: score the negatives by the full N x V matmul (True), by gathered rows (False), or
        by the rule above (None).
    Returns:
      (sum of per-token losses, number of target tokens), both float32 scalars.
    """
    n = hidden_NxD.shape[0]
    num_items = table_VxD.shape[0] - 1
    neg_NxK = jax.random.randint(key, (n, num_negatives), 1, num_items + 1)
    pos_logit_N = jnp.sum(hidden_NxD * jnp.take(table_VxD, targets_N, axis=0), axis=-1) / temperature
    if dense_logits is None:
        dense_logits = table_VxD.shape[0] <= num_negatives * table_VxD.shape[1]
    if dense_logits:
        neg_logit_NxK = jnp.take_along_axis(hidden_NxD @ table_VxD.T / temperature, neg_NxK, axis=1)
    else:
        neg_NxKxD = jnp.take(table_VxD, neg_NxK, axis=0)
        neg_logit_NxK = jnp.einsum("nd,nkd->nk", hidden_NxD, neg_NxKxD) / temperature
    neg_logit_NxK = jnp.where(neg_NxK == targets_N[:, None], -jnp.inf, neg_logit_NxK)
    logits = jnp.concatenate([pos_logit_N[:, None], neg_logit_NxK], axis=1)
    loss_N = jax.nn.logsumexp(logits, axis=1) - pos_logit_N
    weight_N = (targets_N > 0).astype(jnp.float32)
    return jnp.sum(loss_N * weight_N), jnp.sum(weight_N)


def full_softmax_loss(
    hidden_NxD: jax.Array,
    targets_N: jax.Array,
    table_VxD: jax.Array,
    *,
    temperature: float,
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy of the softmax over every item (rows 1..V-1 of the table) per target token.

    The loss SASRec is trained with in Klenitskiy & Vasilev 2023 ("Turning Dross Into Gold Loss"),
    which they find ranks better than sampled negatives. Costs 2·D·(V−1) FLOPs per token
    (flops.scored_per_target). Same arguments and returns as `sampled_softmax_loss`.
    """
    logits_NxV = hidden_NxD @ table_VxD[1:].T / temperature
    safe_N = jnp.maximum(targets_N - 1, 0)
    pos_logit_N = jnp.take_along_axis(logits_NxV, safe_N[:, None], axis=1)[:, 0]
    loss_N = jax.nn.logsumexp(logits_NxV, axis=1) - pos_logit_N
    weight_N = (targets_N > 0).astype(jnp.float32)
    return jnp.sum(loss_N * weight_N), jnp.sum(weight_N)
