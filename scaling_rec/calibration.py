"""Held-out next-item cross-entropy of the sequential retrievers, raw and temperature-calibrated.

The quantity a scaling law is fitted to (Kaplan et al. 2020; Hoffmann et al. 2022 fit held-out
cross-entropy): for each held-out example, -log p(target | history) under the softmax over the
candidate items, in nats per event, averaged over users (one held-out event per user).

* **Raw**: the softmax of the logits as trained, scores / train.temperature (tau = 0.05 on cosine
  similarities for HSTU). Training with sampled negatives at a small tau leaves these logits
  over-confident: raw cross-entropy can rise while NDCG improves, so it is not a quantity to fit.
* **Calibrated**: the same logits divided by one temperature T per run (temperature scaling, Guo et
  al. 2017, "On Calibration of Modern Neural Networks", Sec. 4.2), T chosen to minimise the
  validation cross-entropy, then applied unchanged to the test split. T rescales every logit alike,
  so the ranking, and NDCG/HR/MRR, are unchanged; only the confidence is fitted.

Why a post-hoc temperature rather than a learned logit scale: it leaves training untouched (the
rank metrics and the FLOPs of existing studies stay as they were), it is cheap (one evaluation pass),
and it is one scalar fitted on ~10^4 validation users, so it cannot overfit in any measurable way.

How T is chosen (one pass, no host loop, deterministic): the jitted evaluation step sums the
per-example cross-entropy at every point of a fixed grid of inverse temperatures
beta = 1 / T = 2^(k/3), k = -18..9 (1/64 .. 8, 28 points, beta = 1 exactly at k = 0), and the host
picks the grid point with the lowest validation mean (`select_index`; on an exact tie beta = 1 when it is
among the lowest, else the first).
Because beta = 1 is a grid point, calibrated <= raw on validation by construction, and every number
reported is a measured cross-entropy, never an interpolation. The grid step costs little: with
u = ln beta, d^2 CE / du^2 at the optimum is kappa = E[Var_p(beta z)] (the variance of the calibrated
logits under the model's own predictive distribution), so being up to half a step (ln 2 / 6) off the
optimum costs at most kappa (ln 2)^2 / 72 ~= 0.0067 kappa nats (kappa is a few nats for a trained
model). That bound holds inside the grid only: at either end the optimum may lie beyond it, and the
reported value is then an upper bound whose bias has no limit (an audit's near-chance logits: 12.7 nats
at T = 64 against 5.79 at the optimum T ~ 300, worse than a uniform guess). Such a result carries
'temperature_at_grid_edge' = 1 (`at_grid_edge`), and scaling_rec.analysis.results leaves it out of fits
of the cross-entropy. A trained model's T is 2-3 here; an edge means a model at chance or barely past it.
Cost: one exp per candidate item and grid point; at 12k items on the shared 2-core CPU the evaluation
step with the grid took 0.16-0.18 s per 256 users against 0.06-0.11 s without it (load 8); cap
eval.max_users where that matters.

Measured on Amazon Beauty (12,101 items; ln V = 9.40 nats), hstu/S with the reference recipe
(`python -m launch.train --config=experiments/hstu/beauty.py:hstu --config.train.num_epochs=0
--config.train.num_steps=1400 --config.train.eval_every=175 --config.eval.max_users=3000`): from step
175 to 1400 validation NDCG@10 rose .0082 -> .0169 and the raw cross-entropy rose 9.62 -> 11.48 nats,
while the calibrated one fell 9.18 -> 8.95 (step 700) and then stayed within .03 of it (T = 2 to 2.5);
test at the best step: calibrated 9.10, raw 11.24, against 9.34 for the training items' unigram
popularity and 9.40 for a uniform guess.

Candidate set: the same items the rank metrics rank over (scaling_rec.metrics.rank_of_target):
items 1..V-1 (the padding row 0 never), minus the history items in the model's input window (the last
data.max_len events, as the HSTU reference) when eval.exclude_history is on,
the target always included. Cross-entropy and NDCG then score the same recommendation task. With
eval.exclude_history off (the default) this is the whole catalogue. With it on, a target that repeats a
history item is the one history item left in: the candidate set then depends on the target, the
probabilities over possible targets sum to more than 1, and a model that favours history items can score
below the true entropy. The evaluation reports the share of such targets ('target_in_history'; 0 on
MovieLens, where a user rates a movie once), and the analysis leaves a run with any out of xent fits.

CTR runs get their loss beside AUC from `ctr_loss_metrics`: logloss's standard error and the
normalised entropy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from scaling_rec.metrics import SE_SUFFIX, mean_and_standard_error

INV_TEMPERATURE_GRID = 2.0 ** (np.arange(-18, 10) / 3.0)
RAW_INDEX = 18  # INV_TEMPERATURE_GRID[RAW_INDEX] == 1.0 exactly
GRID_KEY = "xent_grid"
TARGET_IN_HISTORY = "target_in_history"  # eval sums: targets that repeat an excluded history item
M2_SUFFIX = "_m2"  # per-batch sum of squared deviations from the batch mean
COUNT_SUFFIX = "_count"  # per-batch number of valid rows


def candidate_mask(num_items_plus_one: int, targets_B: ArrayLike, exclude_BxH: ArrayLike | None) -> jax.Array:
    """bool [B, V]: the items the target competes with, and the target itself.

    Items 1..V-1 (never the padding row 0), minus the ids in exclude_BxH (0 / negative entries ignored),
    the target always kept: the candidate set of `scaling_rec.metrics.rank_of_target`.
    """
    targets_B = jnp.asarray(targets_B).astype(jnp.int32)
    V = num_items_plus_one
    ids_V = jnp.arange(V, dtype=jnp.int32)
    keep_BxV = jnp.broadcast_to(ids_V[None, :] != 0, (targets_B.shape[0], V))
    if exclude_BxH is not None:
        exclude_BxH = jnp.asarray(exclude_BxH).astype(jnp.int32)
        ids_BxH = jnp.where(exclude_BxH > 0, exclude_BxH, V)
        rows_Bx1 = jnp.arange(targets_B.shape[0])[:, None]
        keep_BxV = keep_BxV & ~jnp.zeros_like(keep_BxV).at[rows_Bx1, ids_BxH].set(True, mode="drop")
    return keep_BxV | (ids_V[None, :] == targets_B[:, None])


def xent_grid_sums(logits_BxV: ArrayLike, targets_B: ArrayLike, valid_B: ArrayLike, candidates_BxV: ArrayLike,
                   inv_temps_G: ArrayLike = INV_TEMPERATURE_GRID) -> dict[str, jax.Array]:
    """Per-batch sums of the cross-entropy at each inverse temperature of the grid (jit-friendly).

    Args:
      logits_BxV: the logits as trained (scores / train.temperature); column 0 is the padding item.
      targets_B: int target ids in [1, V); valid_B: bool, False rows (padding) contribute nothing;
      candidates_BxV: bool, the softmax's support (`candidate_mask`); inv_temps_G: the grid beta.
    Returns:
      float32 [G] arrays 'xent_grid' (sum over valid rows of logsumexp_candidates(beta z) - beta z_target,
      nats) and 'xent_grid_m2' (sum over valid rows of the squared deviation from this batch's mean), and
      the float32 scalar 'xent_grid_count' (valid rows). The deviations are centred per batch, not raw
      sums of squares: sum x^2 - (sum x)^2 / n cancels catastrophically in float32 when the mean
      (several nats) is large against the spread, and the standard error then depends on the reduction
      order (8 devices vs 1 differed by 1.6e-5 relative). `XentGridAccumulator` merges batches exactly
      (Chan, Golub & LeVeque 1983).
    """
    logits_BxV = jnp.asarray(logits_BxV, jnp.float32)
    valid_B = jnp.asarray(valid_B, bool)
    candidates_BxV = jnp.asarray(candidates_BxV, bool)
    # For beta > 0, max(beta z) = beta max(z): shift once, so each grid point costs one exp per item.
    max_B = jnp.max(jnp.where(candidates_BxV, logits_BxV, -jnp.inf), axis=1)
    shifted_BxV = jnp.where(candidates_BxV, logits_BxV - max_B[:, None], -jnp.inf)
    target_B = jnp.take_along_axis(shifted_BxV, jnp.asarray(targets_B, jnp.int32)[:, None], axis=1)[:, 0]

    def at(beta: jax.Array) -> tuple[jax.Array, jax.Array]:
        xent_B = jnp.log(jnp.sum(jnp.exp(beta * shifted_BxV), axis=1)) - beta * target_B
        xent_B = jnp.where(valid_B, xent_B, 0.0)
        total = jnp.sum(xent_B)
        return total, jnp.sum(jnp.where(valid_B, jnp.square(xent_B - total / jnp.maximum(n, 1.0)), 0.0))

    n = jnp.sum(valid_B.astype(jnp.float32))
    sums_G, m2_G = jax.lax.map(at, jnp.asarray(inv_temps_G, jnp.float32))
    return {GRID_KEY: sums_G, GRID_KEY + M2_SUFFIX: m2_G, GRID_KEY + COUNT_SUFFIX: n}


def select_index(grid_sums_G: ArrayLike) -> int:
    """Index of the grid point with the lowest summed cross-entropy; RAW_INDEX when it ties exactly for the
    lowest (constant scores make every point equal: a collapsed run then reports T = 1, not the grid's
    edge) or when no point is finite (a diverged model); else the first of any other exact tie."""
    sums = np.asarray(grid_sums_G, np.float64)
    sums = np.where(np.isfinite(sums), sums, np.inf)
    if not np.isfinite(sums).any() or sums[RAW_INDEX] == sums.min():
        return RAW_INDEX
    return int(np.argmin(sums))


def index_of_temperature(temperature: float) -> int:
    """The grid index whose temperature 1 / beta is `temperature` (nearest in log)."""
    return int(np.argmin(np.abs(np.log(INV_TEMPERATURE_GRID) + np.log(temperature))))


def at_grid_edge(temperature: float) -> bool:
    """True when `temperature` is the first or last grid point: the optimum may lie beyond the grid."""
    return index_of_temperature(temperature) in (0, len(INV_TEMPERATURE_GRID) - 1)


class XentGridAccumulator:
    """Host-side float64 accumulation of `xent_grid_sums` over batches into the reported cross-entropies."""

    def __init__(self) -> None:
        self._n = 0.0
        self._sums = np.zeros(len(INV_TEMPERATURE_GRID))
        self._m2 = np.zeros(len(INV_TEMPERATURE_GRID))

    def pop_update(self, sums: dict[str, ArrayLike]) -> None:
        """Removes the grid entries from one batch's `sums` (the rest goes to MetricAccumulator) and merges
        them: means and squared deviations combine by Chan et al.'s pairwise update, in float64."""
        grid, m2, n_b = jax.device_get((sums.pop(GRID_KEY), sums.pop(GRID_KEY + M2_SUFFIX),
                                        sums.pop(GRID_KEY + COUNT_SUFFIX)))
        grid, m2, n_b = np.asarray(grid, np.float64), np.asarray(m2, np.float64), float(n_b)
        if n_b == 0:
            return
        if self._n > 0:
            delta = grid / n_b - self._sums / self._n
            self._m2 += delta * delta * self._n * n_b / (self._n + n_b)
        self._m2 += m2
        self._sums += grid
        self._n += n_b

    def result(self, num_examples: float, temperature: float | None = None) -> dict[str, float]:
        """{'xent', 'xent_se', 'xent_raw', 'xent_raw_se', 'temperature', 'temperature_at_grid_edge'} in nats
        per example ('temperature_at_grid_edge': 1.0 when T is an end of the grid, `at_grid_edge`, else 0.0).

        temperature: None on validation (T is chosen here, `select_index`); on test, the validation T.
        'temperature' is T applied to the trained logits (1 = as trained; the effective temperature on
        the raw scores is train.temperature * T).
        """
        idx = select_index(self._sums) if temperature is None else index_of_temperature(temperature)
        out: dict[str, float] = {}
        if num_examples <= 0 or self._n != num_examples:
            raise ValueError(f"XentGridAccumulator: {self._n:g} rows accumulated, {num_examples:g} expected")
        for name, i in (("xent", idx), ("xent_raw", RAW_INDEX)):
            se = math.sqrt(self._m2[i] / (self._n - 1) / self._n) if self._n > 1 else math.nan
            out[name], out[name + SE_SUFFIX] = self._sums[i] / self._n, se
        out["temperature"] = float(1.0 / INV_TEMPERATURE_GRID[idx])
        out["temperature_at_grid_edge"] = float(idx in (0, len(INV_TEMPERATURE_GRID) - 1))
        return out



def binary_entropy(p: float) -> float:
    """Entropy in nats of a Bernoulli(p): -(p ln p + (1 - p) ln(1 - p)); 0 at p in {0, 1}."""
    return float(-sum(q * np.log(q) for q in (p, 1.0 - p) if q > 0.0))


def ctr_loss_metrics(labels_N: ArrayLike, logits_N: ArrayLike, base_rate: float) -> dict[str, float]:
    """CTR held-out loss beside AUC: {'logloss_se', 'ne'}.

    logloss_se: standard error over examples of the mean binary cross-entropy (nats), softplus(z) - y z.
    ne: normalised entropy, the mean cross-entropy divided by the entropy of the training base rate
    (He et al. 2014, "Practical Lessons from Predicting Clicks on Ads at Facebook", Sec. 2.1): 1 = no
    better than predicting the background click rate, lower is better. Within one dataset NE is logloss
    times a constant, so a law fitted to either has the same exponent; NE compares across datasets.
    """
    z = np.asarray(logits_N, np.float64)
    y = np.asarray(labels_N, np.float64)
    loss_N = np.logaddexp(0.0, z) - y * z
    _, se = mean_and_standard_error(float(loss_N.sum()), float(np.square(loss_N).sum()), float(len(loss_N)))
    h = binary_entropy(base_rate)
    return {"logloss_se": se, "ne": float(loss_N.mean() / h) if h > 0 else float("nan")}
