"""The CTR task (Wukong, DLRM, DCNv2) of the training engine (scaling_rec.train.engine).

Protocol (BARS/FuxiCTR): BCE loss, Adam(W) or Adagrad, gradient clipping, validation AUC every epoch,
learning rate x lr_decay_factor whenever it does not improve, early stop after `eval.patience` evaluations
without improvement; test metrics of the best validation point. Batches and dropout are keyed by epoch and
step. Several devices or processes: parameters are placed by their logical axes (the table row-sharded), and
every process builds the same global batch from the seeded plan and places its own rows (`place_batch`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from scaling_rec import ctr_config
from scaling_rec.calibration import ctr_loss_metrics
from scaling_rec.data.ctr import load_ctr
from scaling_rec.data.ctr_dataset import CTRDataset, CTRSplit
from scaling_rec.errors import ConfigError
from scaling_rec.flops import TRAIN_MULTIPLIER, ctr_forward_flops, param_counts
from scaling_rec.metrics import auc, auc_tie_stats, logloss_from_logits
from scaling_rec.models.registry import build_ctr_model
from scaling_rec.parallel.sharding import place_batch, replicated
from scaling_rec.train import engine
from scaling_rec.train.step import TrainState


def bce_with_logits(logits_B: jax.Array, label_B: jax.Array) -> jax.Array:
    """Per-example binary cross-entropy in nats: softplus(z) - y z."""
    return jax.nn.softplus(logits_B) - label_B * logits_B


def make_loss(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict) -> engine.LossFn:
    """The engine's loss: mean BCE (the metric 'loss') plus, with train.embedding_l2, FuxiCTR's embedding
    regulariser (lambda / 2) ||E||^2 over the whole table; the batch statistics are the updated `rest`."""
    emb_l2 = config.train.embedding_l2

    def loss_fn(params, stats, batch, key):
        model = nnx.merge(graphdef, params, stats, copy=True)
        logits_B = model(batch["cat"], batch.get("num"), train=True, dropout_key=key)
        loss = jnp.mean(bce_with_logits(logits_B, batch["label"]))
        total = loss
        if emb_l2 > 0:
            total = total + 0.5 * emb_l2 * jnp.sum(jnp.square(model.embedding.used_rows()))
        return total, ({"loss": loss}, nnx.state(model, nnx.BatchStat))

    return loss_fn


def make_predict(graphdef: nnx.GraphDef):
    """predict(params, stats, batch) -> logits_B of the model in inference mode."""

    def predict(params, stats, batch):
        return nnx.merge(graphdef, params, stats, copy=True)(batch["cat"], batch.get("num"), train=False)

    return predict


def _batch(split: CTRSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
    b = {"cat": split.cat_NxF[rows], "label": split.label_N[rows]}
    if split.num_NxM is not None:
        b["num"] = split.num_NxM[rows]
    return b


def evaluate(predict, state: TrainState, split: CTRSplit, batch_size: int, mesh, base_rate: float) -> dict[str, float]:
    """AUC, logloss (nats) and the tie measures of `auc_tie_stats` over every example of `split` (last batch
    padded, padding dropped), with logloss's standard error and the normalised entropy against the
    training `base_rate` (ctr_loss_metrics)."""
    n = len(split)
    logits = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size) % n
        logits.append(np.asarray(predict(state.params, state.rest, place_batch(_batch(split, rows), mesh))))
    z = np.concatenate(logits)[:n].astype(np.float64)
    y = split.label_N.astype(np.float64)
    return {"auc": auc(y, z), "logloss": logloss_from_logits(y, z), "n": float(n), **auc_tie_stats(y, z),
            **ctr_loss_metrics(y, z, base_rate)}


def budget_steps(flops_budget: float, flops_per_step: float) -> int:
    """Steps of a FLOPs-budget run: the fewest whose training FLOPs reach the budget (spent >= C, as the
    sequential plan, which stops at the first step that reaches it: scaling_rec.train.loop.plan_schedule)."""
    steps = max(1, int(flops_budget // flops_per_step))
    return steps + 1 if steps * flops_per_step < flops_budget else steps


class CTRTask(engine.Task):
    """Data: a CTRDataset (load_ctr); model: scaling_rec.models.registry.build_ctr_model; FLOPs:
    flops.ctr_forward_flops x TRAIN_MULTIPLIER per example; the run's length in steps, epochs or FLOPs."""

    schema = ctr_config
    eval_loss_metric = "logloss"
    min_delta = 1e-6

    def __init__(self, config: ml_collections.ConfigDict, data: CTRDataset, run_dir: pathlib.Path,
                 main: bool) -> None:
        super().__init__(config, data, run_dir, main)
        self.select_metric = config.eval.select_metric
        self.higher_is_better = self.select_metric == "auc"
        self.n_train = len(data.train)
        if self.n_train < config.train.batch_size:
            raise ConfigError(f"'train.batch_size' = {config.train.batch_size} exceeds the {self.n_train} "
                              "training examples.")
        self.base_rate = float(np.mean(data.train.label_N))  # NE's background click rate (He et al. 2014)

    @staticmethod
    def load(config: ml_collections.ConfigDict) -> CTRDataset:
        return load_ctr(config.data)

    def model(self) -> nnx.Module:
        return build_ctr_model(self.config.model, self.data.vocab_sizes, self.data.num_dense,
                               nnx.Rngs(params=self.config.seed))

    def counts(self, abstract: nnx.Module) -> tuple[int, int]:
        counts = param_counts(abstract)
        return counts.n_dense, counts.n_emb

    def plan(self, abstract: nnx.Module) -> engine.Plan:
        t = self.config.train
        flops_per_example = TRAIN_MULTIPLIER * ctr_forward_flops(self.config.model, len(self.data.vocab_sizes),
                                                                 self.data.num_dense)
        steps_per_epoch = self.n_train // t.batch_size
        if t.num_steps > 0:
            total = t.num_steps
        elif t.num_epochs > 0:
            total = max(1, int(round(t.num_epochs * steps_per_epoch)))
        else:
            total = budget_steps(t.flops_budget, flops_per_example * t.batch_size)
        return engine.Plan.uniform(total, steps_per_epoch, t.eval_every or steps_per_epoch, t.batch_size,
                                   flops_per_example)

    def loss(self, graphdef: nnx.GraphDef) -> engine.LossFn:
        return make_loss(graphdef, self.config)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        return _batch(self.data.train, engine.epoch_rows(self.config.seed, step, self.n_train,
                                                         self.config.train.batch_size))

    def start(self, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh) -> None:
        self.mesh = mesh
        self.predict = jax.jit(make_predict(graphdef), out_shardings=replicated(mesh))  # every process reads all

    def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
        return evaluate(self.predict, state, getattr(self.data, split), self.config.eval.batch_size, self.mesh,
                        self.base_rate)

    def after_eval(self, state: TrainState, meta: dict[str, Any], improved: bool) -> dict[str, Any]:
        """Reduce on plateau: the learning rate x train.lr_decay_factor (down to min_learning_rate) after a
        validation that did not improve."""
        t = self.config.train
        if t.lr_decay_factor >= 1.0:
            return {"lr": t.learning_rate}
        hyper = state.opt_state.hyperparams
        lr = float(hyper["learning_rate"])
        if not improved:
            hyper["learning_rate"] = jax.device_put(jnp.asarray(max(lr * t.lr_decay_factor, t.min_learning_rate),
                                                                jnp.float32), replicated(self.mesh))
        return {"lr": lr}

    def describe(self) -> str:
        return f"train examples={self.n_train:,}"

    def result_fields(self, state: TrainState | None, meta: dict[str, Any]) -> dict[str, Any]:
        return {"dataset": self.data.name, "unique_examples": self.n_train, "oov_counts": self.data.oov_counts}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: CTRDataset | None = None, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Runs (or resumes, or returns the finished result of) the CTR run of `config` (engine.run)."""
    return engine.run(CTRTask, config, workdir, data=data, stop_after_steps=stop_after_steps)
