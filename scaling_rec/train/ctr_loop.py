"""One CTR training run (Wukong, DLRM, DCNv2): data -> model -> jitted steps under a mesh -> AUC/logloss.

Same run-directory contract as scaling_rec.train.loop: `<workdir>/runs/<run_id>/{config.json,
metrics.jsonl, result.json, ckpt/}`; a finished run is returned as is, an unfinished one resumes
from its last checkpoint (batches and dropout are keyed by epoch and step, so it ends with the same
numbers). Protocol (BARS/FuxiCTR): BCE loss, Adam(W) or Adagrad, gradient clipping, validation AUC
every epoch, learning rate x lr_decay_factor whenever it does not improve, early stop after
`eval.patience` evaluations without improvement; test metrics of the best validation point.

Several devices or processes: parameters are placed by their logical axes (the table row-sharded),
optimiser moments like their parameters, and every process builds the same global batch from the
seeded plan and places its own rows (`place_batch`); only process 0 writes run files.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from scaling_rec import ctr_config
from scaling_rec.calibration import ctr_loss_metrics
from scaling_rec.data.ctr import CTRDataset, CTRSplit, load_ctr
from scaling_rec.errors import ConfigError
from scaling_rec.flops import TRAIN_MULTIPLIER, ctr_forward_flops, param_counts
from scaling_rec.io import read_run_result
from scaling_rec.metrics import auc, auc_tie_stats, logloss_from_logits
from scaling_rec.models.registry import build_ctr_model
from scaling_rec.parallel.mesh import check_batch_divisible, make_mesh_from_config
from scaling_rec.parallel.rules import rules_for
from scaling_rec.parallel.sharding import init_opt_state, place_batch, replicated, sharded_init
from scaling_rec.provenance import data_provenance
from scaling_rec.train import bookkeeping
from scaling_rec.train.checkpoint import Checkpointer
from scaling_rec.train.logging import RunLogger, progress
from scaling_rec.train.loop import FINISHED


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW (Loshchilov & Hutter 2019) or Adagrad (Duchi et al. 2011); the
    learning rate is an injected hyperparameter so that reduce-on-plateau can change it."""

    def make(learning_rate: float) -> optax.GradientTransformation:
        if train.optimizer == "adagrad":
            opt = optax.adagrad(learning_rate, initial_accumulator_value=0.1, eps=1e-7)
        else:
            opt = optax.adamw(learning_rate, b1=train.b1, b2=train.b2, eps=1e-8, weight_decay=train.weight_decay)
        return optax.chain(optax.clip_by_global_norm(train.grad_clip), opt) if train.grad_clip > 0 else opt

    return optax.inject_hyperparams(make)(learning_rate=train.learning_rate)


def bce_with_logits(logits_B: jax.Array, label_B: jax.Array) -> jax.Array:
    """Per-example binary cross-entropy in nats: softplus(z) - y z."""
    return jax.nn.softplus(logits_B) - label_B * logits_B


def make_steps(graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation, config: ml_collections.ConfigDict):
    """(train_step, predict) pure functions; train_step(state, batch) -> (state, metrics)."""
    base_key = jax.random.key(config.seed)
    emb_l2 = config.train.embedding_l2

    def loss_fn(params, stats, batch, key):
        model = nnx.merge(graphdef, params, stats, copy=True)
        logits_B = model(batch["cat"], batch.get("num"), train=True, dropout_key=key)
        loss = jnp.mean(bce_with_logits(logits_B, batch["label"]))
        total = loss
        if emb_l2 > 0:  # FuxiCTR's embedding_regularizer: (lambda / 2) ||E||^2 over the whole table
            total = total + 0.5 * emb_l2 * jnp.sum(jnp.square(model.embedding.used_rows()))
        return total, (loss, nnx.state(model, nnx.BatchStat))

    def train_step(state: dict, batch: dict) -> tuple[dict, dict]:
        key = jax.random.fold_in(base_key, state["step"])
        (_, (loss, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], state["stats"],
                                                                               batch, key)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"params": params, "stats": stats, "opt_state": opt_state, "step": state["step"] + 1}
        return new, {"loss": loss, "grad_norm": optax.global_norm(grads)}

    def predict(params, stats, batch):
        return nnx.merge(graphdef, params, stats, copy=True)(batch["cat"], batch.get("num"), train=False)

    return train_step, predict


def _batch(split: CTRSplit, rows: np.ndarray) -> dict[str, np.ndarray]:
    b = {"cat": split.cat_NxF[rows], "label": split.label_N[rows]}
    if split.num_NxM is not None:
        b["num"] = split.num_NxM[rows]
    return b


def evaluate(predict, state: dict, split: CTRSplit, batch_size: int, mesh, base_rate: float) -> dict[str, float]:
    """AUC, logloss (nats) and the tie measures of `auc_tie_stats` over every example of `split` (last batch
    padded, padding dropped), with logloss's standard error and the normalised entropy against the
    training `base_rate` (ctr_loss_metrics)."""
    n = len(split)
    logits = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, start + batch_size) % n
        logits.append(np.asarray(predict(state["params"], state["stats"], place_batch(_batch(split, rows), mesh))))
    z = np.concatenate(logits)[:n].astype(np.float64)
    y = split.label_N.astype(np.float64)
    return {"auc": auc(y, z), "logloss": logloss_from_logits(y, z), "n": float(n), **auc_tie_stats(y, z),
            **ctr_loss_metrics(y, z, base_rate)}


def _improved(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best + 1e-6 if metric == "auc" else value < best - 1e-6


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       data: CTRDataset | None = None, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Runs (or resumes, or returns the finished result of) the CTR run described by `config`.

    Args:
      config: scaling_rec.ctr_config.default_config() plus changes; validated first.
      workdir: the study directory; the run lives in workdir/runs/<run_id>/.
      data: an already loaded dataset (tests); default load_ctr(config.data).
      stop_after_steps: stop without a result after this many steps of this call (resume tests).
    """
    ctr_config.validate(config, num_devices=jax.device_count())
    rid = ctr_config.run_id(config)
    run_dir = pathlib.Path(workdir) / "runs" / rid
    done = read_run_result(run_dir)
    if done is not None and done.get("status") in FINISHED:
        return done
    t_start = time.time()
    data = data if data is not None else load_ctr(config.data)  # data errors surface before anything is written
    main = bookkeeping.open_run_dir(run_dir, config)
    t = config.train
    n_train = len(data.train)
    if n_train < t.batch_size:
        raise ConfigError(f"'train.batch_size' = {t.batch_size} exceeds the {n_train} training examples.")
    mesh = make_mesh_from_config(config)
    check_batch_divisible(t.batch_size, mesh)

    def factory() -> nnx.Module:
        return build_ctr_model(config.model, data.vocab_sizes, data.num_dense, nnx.Rngs(params=config.seed))

    graphdef, init = sharded_init(factory, mesh, rules_for(config))
    abstract = nnx.eval_shape(factory)
    counts = param_counts(abstract)
    flops_per_example = TRAIN_MULTIPLIER * ctr_forward_flops(config.model, len(data.vocab_sizes), data.num_dense)
    graphdef, params, stats = nnx.split(nnx.merge(graphdef, init()), nnx.Param, nnx.BatchStat)
    optimizer = make_optimizer(t)
    state = {"params": params, "stats": stats, "opt_state": init_opt_state(optimizer, params, mesh),
             "step": jax.device_put(jnp.asarray(0, jnp.int32), replicated(mesh))}
    train_step, predict = make_steps(graphdef, optimizer, config)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    train_step = jax.jit(train_step, in_shardings=(shardings, None), out_shardings=(shardings, None),
                         donate_argnums=0)
    predict = jax.jit(predict, out_shardings=replicated(mesh))  # every process reads all logits

    steps_per_epoch = n_train // t.batch_size
    if t.num_steps > 0:
        total_steps = t.num_steps
    elif t.num_epochs > 0:
        total_steps = max(1, int(round(t.num_epochs * steps_per_epoch)))
    else:
        total_steps = max(1, int(t.flops_budget // (flops_per_example * t.batch_size)))
    eval_every = t.eval_every or steps_per_epoch

    ckpt = Checkpointer(run_dir / "ckpt")
    meta: dict[str, Any] = {"best": None, "evals_since_best": 0, "wall_time_s": 0.0, "recent": [],
                            "lr": t.learning_rate, "last_valid": None}
    start, state, meta = bookkeeping.resume(ckpt, state, meta, rid)
    logger = RunLogger(run_dir, config, rid, resume_step=start, enabled=main)
    logger.summary({"n_dense": counts.n_dense, "n_emb": counts.n_emb})
    progress(f"[{rid}] {config.model.family} N_dense={counts.n_dense:,} N_emb={counts.n_emb:,} "
             f"train FLOPs/example={flops_per_example:.3g} steps={total_steps} ({steps_per_epoch}/epoch)")
    sel = config.eval.select_metric
    base_rate = float(np.mean(data.train.label_N))  # NE's background click rate (He et al. 2014)

    def run_eval(step: int) -> None:
        """Validation, and test when validation improves (the best point in meta); the learning rate
        decays when it does not."""
        valid = evaluate(predict, state, data.valid, config.eval.batch_size, mesh, base_rate)
        improved = _improved(sel, valid[sel], bookkeeping.best_valid(meta, sel))
        test = lambda: evaluate(predict, state, data.test, config.eval.batch_size, mesh, base_rate)
        fields = bookkeeping.record_eval(meta, step, valid, improved, test)
        record = {"step": step, "lr": meta["lr"], **fields}
        if not improved and t.lr_decay_factor < 1.0:
            meta["lr"] = max(meta["lr"] * t.lr_decay_factor, t.min_learning_rate)
            state["opt_state"].hyperparams["learning_rate"] = jax.device_put(
                jnp.asarray(meta["lr"], jnp.float32), replicated(mesh))
        logger.log(record)
        progress(f"[{rid}] step {step} valid auc={valid['auc']:.5f} logloss={valid['logloss']:.5f} "
                 f"(best {sel}={meta['best']['valid'][sel]:.5f} @ {meta['best']['step']}) lr={meta['lr']:.2g}")

    status, step = "ok", start
    book = bookkeeping.Bookkeeper(rid, ckpt, logger, meta, config.eval.patience, start, stop_after_steps)
    pending: list = []
    with jax.set_mesh(mesh):
        while step < total_steps:
            epoch, i = divmod(step, steps_per_epoch)
            order = np.random.default_rng([config.seed, epoch]).permutation(n_train)
            rows = order[i * t.batch_size:(i + 1) * t.batch_size]
            state, metrics = train_step(state, place_batch(_batch(data.train, rows), mesh))
            step += 1
            pending.append(metrics)
            at_eval = step % eval_every == 0 or step == total_steps
            if step % t.log_every and not at_eval:
                continue
            losses = [float(m["loss"]) for m in jax.device_get(pending)]
            pending = []
            meta["recent"] = (meta["recent"] + losses)[-max(1, t.log_every):]
            if book.diverged(step, losses):
                status = "diverged"
                break
            logger.log({"step": step, "loss": losses[-1], "examples_seen": float(step * t.batch_size),
                        "flops_spent": float(step * t.batch_size * flops_per_example)})
            if at_eval:
                run_eval(step)
            action = book.after_step(step, state, save=at_eval, evaluated=at_eval)
            if action == "early_stop":
                break
            if action == "interrupt":
                return book.interrupted(step)
    book.stop_clock()
    best = meta.get("best") or {}
    result = {
        **bookkeeping.final_status(status, bookkeeping.reported_evaluations(meta), rid),
        "run_id": rid, "study": config.study, "family": config.model.family,
        "dataset": data.name, "flops_planned": float(config.train.flops_budget
                                                     or total_steps * t.batch_size * flops_per_example),
        "flops_spent": float(step * t.batch_size * flops_per_example), "flops_per_example": flops_per_example,
        "n_dense": counts.n_dense, "n_emb": counts.n_emb, "examples_seen": float(step * t.batch_size),
        "unique_examples": n_train, "epochs": step / steps_per_epoch, "steps": step, "total_steps": total_steps,
        "best_step": best.get("step"),
        "final_train_loss": float(np.mean(meta["recent"])) if meta["recent"] else float("nan"),
        "final_eval_loss": float((meta.get("last_valid") or {}).get("logloss", float("nan"))),
        "eval": bookkeeping.flatten_best(best), "oov_counts": data.oov_counts,
        **bookkeeping.run_times(meta["wall_time_s"], t_start, meta.get("resumed_wall_time_s", 0.0)),
        **bookkeeping.run_provenance(), **data_provenance(config),
    }
    book.finish(result, run_dir, main)
    return result
