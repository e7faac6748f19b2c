"""Evaluation metrics, the single source of truth: full-ranking retrieval, CTR, codebooks.

Three groups:

* **Retrieval** (JAX, jit-friendly, batched): `target_rank_counts` counts the items scored above and
  tied with the target, `ranking_metrics` (or `ranking_metrics_from_ranks`) turns them into *sums* of
  HR@K, NDCG@K and MRR (plus sums of squares), and `MetricAccumulator` turns the sums of many
  batches into means with standard errors.
  Protocol as in the HSTU reference evaluation (Zhai et al. 2024, "Actions Speak Louder than
  Words", generative-recommenders `research/data/eval.py`): full ranking over every item, the
  user's history optionally excluded, one target per example.
* **CTR** (host, numpy float64): `auc` (exact, tie-aware) and `logloss` / `logloss_from_logits`.
* **Semantic-ID codebooks** (Rajput et al. 2023, TIGER): `codebook_usage`, `collision_rate`.

Ties (`ties=`). A target whose score equals that of e competitors (g strictly above it) can sit
anywhere in ranks g .. g + e:
  'expected' (default)   every metric is its expectation over a uniformly random order of the tied
                         items, i.e. over the rank uniform on {g, ..., g + e} (McSherry & Najork 2008,
                         "Computing information retrieval performance measures efficiently in the
                         presence of tied scores", ECIR); `rank_of_target` returns the mid-rank
                         g + e / 2, the expected rank (fractional, float32).
  'pessimistic'          rank = g + e: ties are lost.
  'optimistic'           rank = g: ties are won. Gameable: a collapsed model scoring every item
                         equally gets rank 0, so HR@K = NDCG@K = MRR = 1 (issue 14).
Why 'expected': a rule may not reward ties (so not 'optimistic'), and it should not bias a model whose
scores tie for a benign reason either (low-precision bf16 scores, quantised logits), which the
pessimistic rule does. The expectation is both: a collapsed model gets exactly the value of a random
ranking (HR@K = K / (V - 1)), and without ties every rule gives the same numbers. McSherry & Najork
show that the order in which an implementation happens to return tied items changes the measures and
give the expectation over all orders in closed form; Saha, Roy & Mitra 2022 ("On modifying evaluation
measures to deal with ties in ranked lists", JCDL) derive the same tie-aware form for Hit@K.
The expected metric is not the metric at the expected rank (HR@10 at the
mid-rank 63.5 of 128 tied items is 0, its expectation is 10/128), so metrics come from
`ranking_metrics` (or `ranking_metrics_from_ranks` with `tied_B`), never from the mid-rank.
Beam search (TIGER) returns W items, not a full ranking: `beam_rank_counts` applies the same rule
within the list, and a target whose tie group in the list includes the last item counts as a miss,
since the group may continue past the list. CTR's `auc` counts a tied (positive, negative) pair as half, the same
expectation. `tie_stats` / `beam_ranking_metrics` / `auc_tie_stats` measure how often ties happen; their
'tied_share' is 1 for a constant model, and the loops mark such a run `degenerate`
(scaling_rec.train.bookkeeping.degenerate_reason).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

TieMode = Literal["expected", "pessimistic", "optimistic"]
TIE_MODES = ("expected", "pessimistic", "optimistic")
COUNT_KEY = "num_examples"
SUMSQ_SUFFIX = "_sumsq"
SE_SUFFIX = "_se"
DEFAULT_KS = (10, 50, 200)
LOGLOSS_EPS = 1e-7


# --------------------------------------------------------------------------------------------
# Full-ranking retrieval
# --------------------------------------------------------------------------------------------


def target_rank_counts(
    scores_BxV: ArrayLike, targets_B: ArrayLike, exclude_BxH: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """How many competing items score above the target, how many tie with it, and how many compete.

    Args:
      scores_BxV: float scores, V = num_items + 1; column 0 is the padding item and never ranked.
      targets_B: int target item ids in [1, V).
      exclude_BxH: optional int item ids to exclude from the ranking (e.g. the user's history),
        0 (and negative) entries ignored, duplicates allowed. Equivalent to setting those scores
        to -inf before ranking, except that the target itself is never excluded.

    Returns:
      (greater_B, tied_B, competitors_B), int32: competitors are items 1..V-1 other than the target
      and not excluded. A NaN target score (or a target id outside [0, V)) counts every competitor
      as greater and none as tied, so a diverged model never looks good; NaN scores of competitors
      count as below the target.
    """
    scores_BxV = jnp.asarray(scores_BxV)
    targets_B = jnp.asarray(targets_B).astype(jnp.int32)
    if scores_BxV.ndim != 2 or targets_B.shape != scores_BxV.shape[:1]:
        raise ValueError(
            f"rank_of_target: scores_BxV {scores_BxV.shape} and targets_B {targets_B.shape} "
            "must be [B, V] and [B]"
        )
    B, V = scores_BxV.shape
    item_ids_V = jnp.arange(V, dtype=jnp.int32)
    competitor_BxV = (item_ids_V[None, :] != targets_B[:, None]) & (item_ids_V[None, :] != 0)
    if exclude_BxH is not None:
        exclude_BxH = jnp.asarray(exclude_BxH).astype(jnp.int32)
        if exclude_BxH.ndim != 2 or exclude_BxH.shape[0] != B:
            raise ValueError(f"rank_of_target: exclude_BxH {exclude_BxH.shape} must be [B={B}, H]")
        # 0 / negative ids -> V (out of range) -> dropped by the scatter.
        ids_BxH = jnp.where(exclude_BxH > 0, exclude_BxH, V)
        excluded_BxV = jnp.zeros((B, V), bool).at[jnp.arange(B)[:, None], ids_BxH].set(True, mode="drop")
        competitor_BxV = competitor_BxV & ~excluded_BxV

    in_range_B = (targets_B >= 0) & (targets_B < V)
    safe_targets_B1 = jnp.where(in_range_B, targets_B, 0)[:, None]
    target_score_B1 = jnp.take_along_axis(scores_BxV, safe_targets_B1, axis=1)
    target_bad_B = jnp.isnan(target_score_B1[:, 0]) | ~in_range_B

    competitors_B = competitor_BxV.sum(axis=1, dtype=jnp.int32)
    greater_B = (competitor_BxV & (scores_BxV > target_score_B1)).sum(axis=1, dtype=jnp.int32)
    tied_B = (competitor_BxV & (scores_BxV == target_score_B1)).sum(axis=1, dtype=jnp.int32)
    return jnp.where(target_bad_B, competitors_B, greater_B), jnp.where(target_bad_B, 0, tied_B), competitors_B


def _check_ties(ties: str) -> None:
    if ties not in TIE_MODES:
        raise ValueError(f"ties={ties!r}: expected one of {TIE_MODES}")


def rank_of_target(
    scores_BxV: ArrayLike,
    targets_B: ArrayLike,
    exclude_BxH: ArrayLike | None = None,
    *,
    ties: TieMode = "expected",
) -> jax.Array:
    """0-based rank of each target among all items (full ranking), ties as `ties` says.

    Args: as `target_rank_counts`, and ties: 'expected' | 'pessimistic' | 'optimistic' (module docstring).

    Returns:
      ranks_B: float32 mid-rank greater + tied / 2 ('expected'), int32 greater + tied ('pessimistic')
      or greater ('optimistic'). For metrics use `ranking_metrics`: under 'expected' the metric of the
      mid-rank is not the expected metric.
    """
    _check_ties(ties)
    greater_B, tied_B, _ = target_rank_counts(scores_BxV, targets_B, exclude_BxH)
    if ties == "optimistic":
        return greater_B
    if ties == "pessimistic":
        return greater_B + tied_B
    return greater_B.astype(jnp.float32) + 0.5 * tied_B.astype(jnp.float32)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int | np.integer) or k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise ValueError(f"ks={ks!r}: expected distinct positive integers, e.g. (10, 50, 200)")
    return tuple(int(k) for k in ks)


def _dcg_prefix(k: int) -> jax.Array:
    """[k + 1] float32: entry m is sum_{j < m} 1 / log2(j + 2), the DCG of hits at ranks 0 .. m-1."""
    return jnp.asarray(np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))]), jnp.float32)


def ranking_metrics_from_ranks(
    ranks_B: ArrayLike, valid_B: ArrayLike, ks: Sequence[int] = DEFAULT_KS, tied_B: ArrayLike | None = None
) -> dict[str, jax.Array]:
    """Per-batch sums of HR@K, NDCG@K and MRR over valid examples, for exact accumulation.

    Per example with 0-based rank r (one relevant item, so HR@K = Recall@K):
      HR@K = [r < K];  NDCG@K = [r < K] / log2(r + 2);  MRR = 1 / (r + 1)  (no cutoff).
    These equal the HSTU reference definitions with its 1-based rank r + 1 (Järvelin & Kekäläinen
    2002 DCG with the ideal DCG = 1 for a single target). With `tied_B` = t, r is the number of
    competitors strictly above the target and each metric is its mean over the ranks r .. r + t
    (the 'expected' tie rule, module docstring): HR@K = clip(K - r, 0, t + 1) / (t + 1), NDCG@K the
    mean of the DCG terms at those ranks below K, MRR = (H(r + t + 1) - H(r)) / (t + 1) with the
    harmonic numbers H; untied examples (t = 0) get exactly the formulas above.

    Args:
      ranks_B: ranks from `rank_of_target` (int or float), or `target_rank_counts`' greater_B.
      valid_B: bool; False rows (padding examples) contribute nothing, whatever their rank.
      ks: cutoffs, static Python ints.
      tied_B: optional int number of competitors tied with the target (then ranks_B are integers).

    Returns:
      float32 scalars: 'num_examples' (number of valid rows), and for each metric m in
      'hr@K', 'ndcg@K' (each K), 'mrr': the sum m and the sum of squares m + '_sumsq' (for the
      standard error). Feed them to `MetricAccumulator.update`.
    """
    ks = _check_ks(ks)
    ranks_B = jnp.asarray(ranks_B).astype(jnp.float32)
    valid_B = jnp.asarray(valid_B).astype(bool)
    if ranks_B.ndim != 1 or valid_B.shape != ranks_B.shape:
        raise ValueError(f"ranks_B {ranks_B.shape} and valid_B {valid_B.shape} must both be [B]")
    if tied_B is not None:
        tied_B = jnp.asarray(tied_B).astype(jnp.float32)
        if tied_B.shape != ranks_B.shape:
            raise ValueError(f"tied_B {tied_B.shape} must be [B] like ranks_B {ranks_B.shape}")
        untied_B, n_B = tied_B == 0, tied_B + 1.0
    per_example: dict[str, jax.Array] = {}
    for k in ks:
        hit_B = ranks_B < k
        per_example[f"hr@{k}"] = hit_B.astype(jnp.float32)
        per_example[f"ndcg@{k}"] = jnp.where(hit_B, 1.0 / jnp.log2(ranks_B + 2.0), 0.0)
        if tied_B is not None:
            dcg_K1 = _dcg_prefix(k)
            lo_B = jnp.clip(ranks_B, 0, k).astype(jnp.int32)
            hi_B = jnp.clip(ranks_B + n_B, 0, k).astype(jnp.int32)
            expected_hr_B = jnp.clip(k - ranks_B, 0.0, n_B) / n_B
            expected_ndcg_B = (dcg_K1[hi_B] - dcg_K1[lo_B]) / n_B
            per_example[f"hr@{k}"] = jnp.where(untied_B, per_example[f"hr@{k}"], expected_hr_B)
            per_example[f"ndcg@{k}"] = jnp.where(untied_B, per_example[f"ndcg@{k}"], expected_ndcg_B)
    per_example["mrr"] = 1.0 / (ranks_B + 1.0)
    if tied_B is not None:
        # H(m) = digamma(m + 1) + Euler's gamma; the difference is off by < 1e-5 in float32, far below any SE.
        expected_mrr_B = (jax.scipy.special.digamma(ranks_B + n_B + 1.0)
                          - jax.scipy.special.digamma(ranks_B + 1.0)) / n_B
        per_example["mrr"] = jnp.where(untied_B, per_example["mrr"], expected_mrr_B)

    sums = {COUNT_KEY: valid_B.sum(dtype=jnp.float32)}
    for name, value_B in per_example.items():
        value_B = jnp.where(valid_B, value_B, 0.0)
        sums[name] = value_B.sum()
        sums[name + SUMSQ_SUFFIX] = jnp.square(value_B).sum()
    return sums


def tie_stats(tied_B: ArrayLike, competitors_B: ArrayLike, valid_B: ArrayLike) -> dict[str, jax.Array]:
    """Per-batch sums of 'tie_fraction' ([the target ties with >= 1 competitor]) and 'tied_share'
    (tied competitors / competitors, 1 for a constant model) over valid examples, with 'num_examples'."""
    tied_B = jnp.asarray(tied_B).astype(jnp.float32)
    valid_B = jnp.asarray(valid_B).astype(bool)
    share_B = tied_B / jnp.maximum(jnp.asarray(competitors_B).astype(jnp.float32), 1.0)
    return {COUNT_KEY: valid_B.sum(dtype=jnp.float32),
            "tie_fraction": jnp.where(valid_B & (tied_B > 0), 1.0, 0.0).sum(),
            "tied_share": jnp.where(valid_B, share_B, 0.0).sum()}


def ranking_metrics(
    scores_BxV: ArrayLike,
    targets_B: ArrayLike,
    valid_B: ArrayLike,
    exclude_BxH: ArrayLike | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    ties: TieMode = "expected",
) -> dict[str, jax.Array]:
    """Sums of HR@K, NDCG@K, MRR (with sums of squares) under the tie rule `ties`, and the `tie_stats`
    sums 'tie_fraction' and 'tied_share' (jit with static ks/ties)."""
    _check_ties(ties)
    greater_B, tied_B, competitors_B = target_rank_counts(scores_BxV, targets_B, exclude_BxH)
    if ties == "expected":
        sums = ranking_metrics_from_ranks(greater_B, valid_B, ks, tied_B=tied_B)
    else:
        sums = ranking_metrics_from_ranks(greater_B + tied_B if ties == "pessimistic" else greater_B, valid_B, ks)
    return {**sums, **tie_stats(tied_B, competitors_B, valid_B)}


def beam_rank_counts(items_BxW: ArrayLike, scores_BxW: ArrayLike,
                     targets_B: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Rank of each target in a beam-search list, counted as in `target_rank_counts`.

    Args:
      items_BxW: int item ids, best first (0: no item); scores_BxW: their float scores (-inf for 0).
      targets_B: int target item ids (>= 1).

    Returns:
      (greater_B, tied_B, tie_at_target_B): listed items scoring above / tied with the target, and
      whether it ties with any listed item. A target absent from the list has greater = W, tied = 0
      (beyond every cutoff K <= W); so has one whose tie group in the list includes the last item, as
      the tie may continue past the list (the search cut it at W), so no rank within W is assured.
    """
    items_BxW, scores_BxW = jnp.asarray(items_BxW), jnp.asarray(scores_BxW)
    W = items_BxW.shape[1]
    hit_BxW = items_BxW == jnp.asarray(targets_B)[:, None]
    found_B = hit_BxW.any(axis=1)
    target_B1 = jnp.max(jnp.where(hit_BxW, scores_BxW, -jnp.inf), axis=1, keepdims=True)
    listed_BxW = (items_BxW != 0) & jnp.isfinite(scores_BxW)
    greater_B = (listed_BxW & (scores_BxW > target_B1)).sum(axis=1, dtype=jnp.int32)
    tied_BxW = listed_BxW & (scores_BxW == target_B1) & ~hit_BxW
    tied_B = tied_BxW.sum(axis=1, dtype=jnp.int32)
    tie_at_target_B = found_B & (tied_B > 0)
    miss_B = ~found_B | (tie_at_target_B & (scores_BxW[:, -1] == target_B1[:, 0]))
    return jnp.where(miss_B, W, greater_B), jnp.where(miss_B, 0, tied_B), tie_at_target_B


def beam_ranking_metrics(items_BxW: ArrayLike, scores_BxW: ArrayLike, targets_B: ArrayLike, valid_B: ArrayLike,
                         ks: Sequence[int] = DEFAULT_KS) -> dict[str, jax.Array]:
    """Sums of HR@K, NDCG@K, MRR (expected over ties, `beam_rank_counts`) of a beam-search list, plus
    'tie_fraction' (the target ties with a listed item) and 'tied_share' (share of the other listed
    items tied with the first: 1 when the model scores its whole list equally)."""
    greater_B, tied_B, tie_at_target_B = beam_rank_counts(items_BxW, scores_BxW, targets_B)
    sums = ranking_metrics_from_ranks(greater_B, valid_B, ks, tied_B=tied_B)
    scores_BxW = jnp.asarray(scores_BxW)
    listed_BxW = (jnp.asarray(items_BxW) != 0) & jnp.isfinite(scores_BxW)
    others_B = jnp.maximum(listed_BxW.sum(axis=1) - 1, 0)
    tied_top_B = (listed_BxW[:, 1:] & (scores_BxW[:, 1:] == scores_BxW[:, :1])).sum(axis=1)
    valid_B = jnp.asarray(valid_B).astype(bool)
    sums["tie_fraction"] = jnp.where(valid_B & tie_at_target_B, 1.0, 0.0).sum()
    sums["tied_share"] = jnp.where(valid_B, tied_top_B / jnp.maximum(others_B, 1), 0.0).sum()
    return sums


def mean_and_standard_error(total: float, total_sq: float, n: float) -> tuple[float, float]:
    """Mean and its standard error from the sum, the sum of squares and the count.

    SE = s / sqrt(n) with s the sample standard deviation (ddof = 1):
    s^2 = (sum x^2 - (sum x)^2 / n) / (n - 1). Examples (users) are the i.i.d. units.
    Returns (mean, SE); SE is NaN for n < 2. Raises ValueError for n <= 0.
    """
    if n <= 0:
        raise ValueError("no valid examples were accumulated: check valid_B and that update() was called")
    mean = total / n
    if n < 2:
        return mean, math.nan
    var = max(total_sq - total * total / n, 0.0) / (n - 1)
    return mean, math.sqrt(var / n)


class MetricAccumulator:
    """Host-side, float64 accumulation of per-batch metric sums into means ± standard errors.

    `update` takes a mapping like the one `ranking_metrics_from_ranks` returns: 'num_examples',
    sums m and optional sums of squares m + '_sumsq' (any array shape; everything is summed, so
    per-device partial sums also work). `result` returns {m: mean, m + '_se': SE, 'num_examples': n}.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}

    def update(self, sums: Mapping[str, ArrayLike]) -> None:
        """Adds one batch's sums (device arrays are fetched here)."""
        if COUNT_KEY not in sums:
            raise ValueError(f"MetricAccumulator.update: the sums need a {COUNT_KEY!r} entry")
        for name, value in jax.device_get(dict(sums)).items():
            self._sums[name] = self._sums.get(name, 0.0) + float(np.sum(np.asarray(value, np.float64)))

    def result(self) -> dict[str, float]:
        """Means over all accumulated examples, with the standard error of each mean."""
        n = self._sums.get(COUNT_KEY, 0.0)
        if n <= 0:
            raise ValueError("MetricAccumulator.result: no valid examples were accumulated (check valid_B)")
        out: dict[str, float] = {COUNT_KEY: n}
        for name, total in self._sums.items():
            if name == COUNT_KEY or name.endswith(SUMSQ_SUFFIX):
                continue
            total_sq = self._sums.get(name + SUMSQ_SUFFIX, math.nan)
            out[name], se = mean_and_standard_error(total, total_sq, n)
            if name + SUMSQ_SUFFIX in self._sums:
                out[name + SE_SUFFIX] = se
        return out


# --------------------------------------------------------------------------------------------
# CTR (host, numpy)
# --------------------------------------------------------------------------------------------


def _binary_labels(labels_N: ArrayLike, n_scores: int, where: str) -> np.ndarray:
    y = np.asarray(labels_N)
    if y.ndim != 1 or y.shape[0] != n_scores:
        raise ValueError(f"{where}: labels {y.shape} and scores ({n_scores},) must be the same 1-D length")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{where}: labels must be 0/1")
    return y.astype(bool)


def auc(labels_N: ArrayLike, scores_N: ArrayLike) -> float:
    """Exact ROC AUC, ties counted as half, in O(N log N).

    Mann–Whitney form (Hanley & McNeil 1982): with mid-ranks R (1-based, tied scores share the
    average of their ranks), AUC = (sum_{positives} R - P (P + 1) / 2) / (P * Nneg)
    = P(score_pos > score_neg) + P(score_pos = score_neg) / 2.

    Args:
      labels_N: 0/1 (or bool) labels.
      scores_N: real scores (logits or probabilities; only the order matters), finite.
    Raises ValueError for non-binary labels, non-finite scores, or a single class.
    """
    s = np.asarray(scores_N, np.float64)
    if s.ndim != 1:
        raise ValueError(f"auc: scores must be 1-D, got {s.shape}")
    y = _binary_labels(labels_N, s.shape[0], "auc")
    if not np.all(np.isfinite(s)):
        raise ValueError("auc: scores contain NaN or inf (a diverged model?)")
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auc: needs both classes, got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(s_sorted)) + 1])
    ends = np.concatenate([starts[1:], [s.shape[0]]])
    midrank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty_like(s)
    ranks[order] = np.repeat(midrank, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auc_tie_stats(labels_N: ArrayLike, scores_N: ArrayLike) -> dict[str, float]:
    """How often a CTR model's scores tie across the classes (the ties `auc` counts as half).

    Returns 'tied_share': the share of (positive, negative) pairs with equal scores (1 for a constant
    model, whose AUC is then exactly 0.5), and 'tie_fraction': the share of examples whose score equals
    that of an example of the other class.
    """
    s = np.asarray(scores_N, np.float64)
    y = _binary_labels(labels_N, s.shape[0] if s.ndim == 1 else -1, "auc_tie_stats")
    _, group_N, size_G = np.unique(s, return_inverse=True, return_counts=True)
    group_N = group_N.reshape(-1)
    pos_G = np.bincount(group_N, weights=y, minlength=size_G.size)
    neg_G = size_G - pos_G
    n_pos, n_neg = float(y.sum()), float((~y).sum())
    pairs = max(n_pos * n_neg, 1.0)
    other_class_N = np.where(y, neg_G[group_N], pos_G[group_N])
    return {"tied_share": float(np.sum(pos_G * neg_G) / pairs), "tie_fraction": float(np.mean(other_class_N > 0))}


def logloss(labels_N: ArrayLike, probs_N: ArrayLike, *, eps: float = LOGLOSS_EPS) -> float:
    """Mean binary cross-entropy in nats, probabilities clipped to [eps, 1 - eps] (eps = 1e-7).

    logloss = -mean(y log p + (1 - y) log(1 - p)), computed in float64; labels may be soft, in
    [0, 1]. The clip bounds the loss of one example by -log(eps) ~= 16.1 nats.
    """
    p = np.asarray(probs_N, np.float64)
    y = np.asarray(labels_N, np.float64)
    if p.ndim != 1 or y.shape != p.shape or p.shape[0] == 0:
        raise ValueError(f"logloss: labels {y.shape} and probs {p.shape} must be the same non-empty 1-D")
    if np.any((y < 0) | (y > 1)) or np.any(np.isnan(p)):
        raise ValueError("logloss: labels must lie in [0, 1] and probs must not be NaN")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def logloss_from_logits(labels_N: ArrayLike, logits_N: ArrayLike) -> float:
    """Mean binary cross-entropy in nats from logits, exact (no clip): mean(softplus(z) - y z)."""
    z = np.asarray(logits_N, np.float64)
    y = np.asarray(labels_N, np.float64)
    if z.ndim != 1 or y.shape != z.shape or z.shape[0] == 0:
        raise ValueError(f"logloss_from_logits: labels {y.shape} and logits {z.shape} must be the same 1-D")
    if np.any((y < 0) | (y > 1)) or np.any(np.isnan(z)):
        raise ValueError("logloss_from_logits: labels must lie in [0, 1] and logits must not be NaN")
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


# --------------------------------------------------------------------------------------------
# Semantic-ID codebooks
# --------------------------------------------------------------------------------------------


def codebook_usage(codes_NxL: ArrayLike, codebook_size: int) -> dict[str, jax.Array]:
    """Per-level codebook usage and perplexity of semantic IDs (jit-friendly, static size).

    Args:
      codes_NxL: int codes of N items at L levels, in [0, codebook_size); others are ignored.
      codebook_size: K, entries per level.

    Returns:
      'usage_L': fraction of the K codes used by at least one item, in [1/K, 1].
      'perplexity_L': exp(H) of the empirical code distribution per level, H in nats; in [1, K]
      (K = uniform use), the usual VQ codebook-utilisation measure (e.g. Zeghidour et al. 2021).
    """
    codes_NxL = jnp.asarray(codes_NxL).astype(jnp.int32)
    if codes_NxL.ndim != 2 or codebook_size < 1:
        raise ValueError(f"codebook_usage: codes {codes_NxL.shape} must be [N, L] and codebook_size >= 1")
    _, L = codes_NxL.shape
    in_range_NxL = (codes_NxL >= 0) & (codes_NxL < codebook_size)
    flat_NxL = jnp.where(in_range_NxL, jnp.arange(L)[None, :] * codebook_size + codes_NxL, L * codebook_size)
    counts_LxK = (
        jnp.zeros(L * codebook_size, jnp.float32).at[flat_NxL].add(1.0, mode="drop").reshape(L, codebook_size)
    )
    probs_LxK = counts_LxK / jnp.maximum(counts_LxK.sum(axis=1, keepdims=True), 1.0)
    used_LxK = counts_LxK > 0
    # 0 log 0 = 0; the inner where keeps log away from 0 (and NaN out of gradients).
    plogp_LxK = jnp.where(used_LxK, probs_LxK * jnp.log(jnp.where(used_LxK, probs_LxK, 1.0)), 0.0)
    entropy_L = -plogp_LxK.sum(axis=1)
    return {
        "usage_L": used_LxK.sum(axis=1) / codebook_size,
        "perplexity_L": jnp.exp(entropy_L),
    }


def collision_rate(codes_NxL: ArrayLike) -> float:
    """Fraction of items whose full code tuple (all L levels) is shared with another item (host).

    TIGER (Rajput et al. 2023, Sec. 3.1) resolves such collisions with an extra level; this
    measures how many items need it. 0 = every tuple unique; 1 = no item has a unique tuple.
    """
    codes = np.asarray(codes_NxL)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise ValueError(f"collision_rate: codes {codes.shape} must be a non-empty [N, L]")
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse.reshape(-1)] > 1))
