"""Pure train and eval steps, jitted once per shape with explicit shardings and donated state."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from scaling_rec.calibration import TARGET_IN_HISTORY, candidate_mask, xent_grid_sums
from scaling_rec.data.jagged import Batch, JaggedBatch
from scaling_rec.metrics import ranking_metrics
from scaling_rec.models.sequential import jagged_to_padded, token_view
from scaling_rec.train.losses import full_softmax_loss, sampled_softmax_loss

# loss_fn(params, rest, batch, key) -> (objective, (metrics, rest)): the objective is differentiated; the
# metrics hold at least 'loss' (and 'loss_sum' / 'targets' when the loss is a mean over a varying count).
LossFn = Callable[[nnx.State, nnx.State, Any, jax.Array], tuple[jax.Array, tuple[dict[str, jax.Array], nnx.State]]]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a step changes: parameters, optimiser state, step counter (int32 scalar), the model's
    non-parameter variables."""

    params: nnx.State
    opt_state: Any
    step: jax.Array
    rest: Any = dataclasses.field(default_factory=dict)  # the model's other variables (batch statistics)


def linear_warmup(peak: float, warmup_steps: int) -> optax.Schedule:
    """peak × min(1, (step + 1) / warmup_steps) at a 0-based int step (float32 scalar): the warm-up counted
    from 1 of every family, so the first step moves the parameters and step warmup_steps − 1 is at the peak."""

    def lr_schedule(step: jax.Array) -> jax.Array:
        return peak * jnp.minimum(1.0, (jnp.asarray(step).astype(jnp.float32) + 1.0) / max(warmup_steps, 1))

    return lr_schedule


def warmup_rsqrt_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    """Learning rate of a 0-based int step (TIGER, Rajput et al. 2023): `linear_warmup` over `warmup_steps`,
    then constant or, with `decay_start` > 0, inverse-square-root decay from step `decay_start` on (float32
    scalar)."""
    warm = linear_warmup(train.learning_rate, train.warmup_steps)
    if not train.decay_start:
        return warm

    def lr_schedule(step: jax.Array) -> jax.Array:
        s = jnp.asarray(step).astype(jnp.float32) + 1.0
        return warm(step) * jnp.sqrt(train.decay_start / jnp.maximum(s, train.decay_start))

    return lr_schedule


def learning_rate_schedule(train: ml_collections.ConfigDict, total_steps: int) -> float | optax.Schedule:
    """The learning rate of `train` over a run of `total_steps` optimizer steps.

    With train.decay_start (TIGER's schema): `warmup_rsqrt_schedule`. Otherwise an optional linear warm-up
    over the first train.warmup_steps steps (W, `linear_warmup`: step i takes learning_rate × (i + 1) / W); then
    constant (train.lr_decay='constant') or a cosine from learning_rate at step W down to
    final_lr_fraction × learning_rate at the run's last step, total_steps − 1 ('cosine'; a warm-up that
    leaves fewer than 2 steps of it is a ValueError). A learning rate that decays on a validation plateau
    (train.lr_decay_factor < 1) is set by the loop through `make_optimizer`'s injected hyperparameter.
    """
    if "decay_start" in train:
        return warmup_rsqrt_schedule(train)
    peak = train.learning_rate
    warmup = int(train.get("warmup_steps", 0))
    warm = linear_warmup(peak, warmup)
    if train.get("lr_decay", "constant") == "cosine":
        if total_steps - warmup < 2:
            raise ValueError(f"train.warmup_steps={warmup} leaves {max(total_steps - warmup, 0)} of the run's "
                             f"{total_steps} steps for the cosine decay (needs 2); lower the warm-up or use "
                             "train.lr_decay='constant'")
        decay = optax.cosine_decay_schedule(peak, total_steps - 1 - warmup, alpha=train.final_lr_fraction)
        return decay if warmup == 0 else optax.join_schedules([warm, decay], [warmup])
    return warm if warmup > 0 else peak


def make_optimizer(train: ml_collections.ConfigDict, total_steps: int = 0) -> optax.GradientTransformation:
    """The optimizer of every family, on learning_rate_schedule(train, total_steps).

    Global-norm clipping when train.grad_clip > 0, then AdamW (Loshchilov & Hutter 2019; b1, b2 as
    configured, else 0.9 and 0.999), with train.optimizer='adagrad' Adagrad (Duchi et al. 2011), or with
    'adafactor' Adafactor (Shazeer & Stern 2018; optax.adafactor's defaults: factored second moments, decay
    0.8, update clipping at block RMS 1, steps relative to the parameters' RMS, no momentum) with the weight
    decay of AdamW (train.weight_decay x learning rate per step; optax.adafactor's weight_decay_rate is not
    scaled by the learning rate, so the same key would mean a per-step decay 1 / lr times stronger). With
    train.lr_decay_factor < 1 (reduce on plateau) the learning rate is an injected hyperparameter:
    state.opt_state.hyperparams['learning_rate'], which the loop lowers. total_steps only matters for a
    decaying schedule, which raises ValueError without it.
    """
    if train.get("lr_decay", "constant") != "constant" and total_steps <= 0:
        raise ValueError(f"train.lr_decay={train.lr_decay!r} needs the run's total number of steps")

    def make(learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
        name = train.get("optimizer", "adamw")
        if name == "adagrad":
            opt = optax.adagrad(learning_rate, initial_accumulator_value=0.1, eps=1e-7)
        elif name == "adafactor":
            opt = optax.chain(optax.scale_by_factored_rms(), optax.clip_by_block_rms(1.0),
                              optax.scale_by_param_block_rms(), optax.add_decayed_weights(train.weight_decay),
                              optax.scale_by_learning_rate(learning_rate))
        else:
            opt = optax.adamw(learning_rate, b1=train.get("b1", 0.9), b2=train.get("b2", 0.999), eps=1e-8,
                              weight_decay=train.weight_decay)
        clip = train.get("grad_clip", 0.0)
        return optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt

    lr = learning_rate_schedule(train, total_steps)
    if train.get("lr_decay_factor", 1.0) < 1.0:
        return optax.inject_hyperparams(make)(learning_rate=lr)
    return make(lr)


def _flat_targets(batch: Batch) -> jax.Array:
    return batch.target_ids_T if isinstance(batch, JaggedBatch) else batch.target_ids_BxL.reshape(-1)


def make_loss(graphdef: nnx.GraphDef, train: ml_collections.ConfigDict) -> LossFn:
    """The sequence models' loss for the engine's train step: the sampled or full softmax over the targets
    (mean over the batch's targets); dropout and negatives keyed by the step's key. Metrics: 'loss',
    'loss_sum' and 'targets' (its sum and count, so that a window's mean weighs steps by their targets)."""

    def loss_fn(params: nnx.State, rest: nnx.State, batch: Batch, key: jax.Array):
        model = nnx.merge(graphdef, params, rest)
        k_drop, k_neg = jax.random.split(key)
        hidden = model(batch, dropout_key=k_drop)
        hidden_NxD = hidden.reshape(-1, hidden.shape[-1])
        if train.loss == "full_softmax":
            loss_sum, count = full_softmax_loss(hidden_NxD, _flat_targets(batch), model.item_embeddings(),
                                                temperature=train.temperature, matmul_dtype=model.matmul_dtype)
        else:
            loss_sum, count = sampled_softmax_loss(
                hidden_NxD, _flat_targets(batch), model.item_embeddings(), k_neg,
                num_negatives=train.num_negatives, temperature=train.temperature, share=train.negative_sharing,
                matmul_dtype=model.matmul_dtype,
            )
        loss = loss_sum / jnp.maximum(count, 1.0)
        return loss, ({"loss": loss, "loss_sum": loss_sum, "targets": count}, rest)

    return loss_fn


def last_token(batch: Batch, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x at each sequence's last token [B, ...], valid_B) for a jagged [T, ...] or padded [B, L, ...] x."""
    if isinstance(batch, JaggedBatch):
        num_slots = batch.offsets_B1.shape[0] - 1
        idx = jnp.maximum(batch.offsets_B1[1:] - 1, 0)
        return x[idx], jnp.arange(num_slots) < batch.num_sequences
    idx = jnp.maximum(batch.lengths_B - 1, 0)
    return x[jnp.arange(x.shape[0]), idx], batch.lengths_B > 0


def history_ids(batch: Batch, max_len: int) -> jax.Array:
    """Item ids of each sequence as [B, L] (0-padded), for excluding history from the ranking."""
    if isinstance(batch, JaggedBatch):
        return jagged_to_padded(batch.item_ids_T, token_view(batch), max_len)
    return batch.item_ids_BxL


def make_eval_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict) -> Callable[[nnx.State, Batch], dict]:
    """eval_step(params, batch) -> metric sums (HR/NDCG@K, MRR, the cross-entropy grid 'xent_grid', and
    the tie measures 'tie_fraction' and 'tied_share').

    Ranks the target of each sequence's last token among all items (row 0 excluded), ties by their
    expected rank (scaling_rec.metrics, 'expected'); with
    eval.exclude_history the history items in the model's input (the last data.max_len events, as the HSTU
    reference filters its past_ids) are removed from the ranking (never the target), and
    'target_in_history' counts the targets that repeat one of them (its mean: their share).
    'xent_grid' / 'xent_grid_sumsq' [G]: sums of the cross-entropy of the softmax over the same candidate
    items as the ranking, of the logits as trained (scores / train.temperature) times each inverse
    temperature of scaling_rec.calibration's grid; scaling_rec.calibration.XentGridAccumulator turns
    them into the raw and calibrated cross-entropy (the loop's `evaluate`).
    """
    ks = tuple(config.eval.ks)

    def eval_step(params: nnx.State, batch: Batch) -> dict[str, jax.Array]:
        model = nnx.merge(graphdef, params)
        hidden = model(batch)
        targets = batch.target_ids_T if isinstance(batch, JaggedBatch) else batch.target_ids_BxL
        h_BxD, valid_B = last_token(batch, hidden)
        target_B, _ = last_token(batch, targets)
        scores_BxV = h_BxD @ model.item_embeddings().T
        exclude = history_ids(batch, config.data.max_len) if config.eval.exclude_history else None
        sums = ranking_metrics(scores_BxV, target_B, valid_B, exclude, ks=ks)
        if exclude is not None:  # a repeat of a history item: the cross-entropy's candidates depend on the target
            repeat_B = jnp.any(exclude == target_B[:, None], axis=1) & valid_B
            sums[TARGET_IN_HISTORY] = jnp.sum(repeat_B.astype(jnp.float32))
        candidates_BxV = candidate_mask(scores_BxV.shape[1], target_B, exclude)
        sums.update(xent_grid_sums(scores_BxV / config.train.temperature, target_B, valid_B, candidates_BxV))
        return sums

    return eval_step
