"""One training run, end to end: data → model → jitted steps under a mesh → evaluation → result.json.

The run directory `<workdir>/runs/<run_id>/` holds config.json, metrics.jsonl, result.json and ckpt/.
A finished run (result.json with status ok, diverged or degenerate) is returned as is; an unfinished
one resumes from its last checkpoint and, because batches, dropout and negatives are keyed by the global step,
ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from scaling_rec import config as config_lib
from scaling_rec.calibration import XentGridAccumulator, at_grid_edge
from scaling_rec.data.pipeline import TrainStream, eval_batches
from scaling_rec.flops import TRAIN_MULTIPLIER, forward_flops, param_counts, scored_per_target
from scaling_rec.io import FINISHED, read_run_result
from scaling_rec.metrics import MetricAccumulator
from scaling_rec.models.registry import build
from scaling_rec.parallel.mesh import check_batch_divisible, make_mesh_from_config
from scaling_rec.parallel.rules import rules_for
from scaling_rec.parallel.sharding import init_opt_state, place_batch, replicated, sharded_init
from scaling_rec.provenance import data_provenance
from scaling_rec.train import bookkeeping
from scaling_rec.train.checkpoint import Checkpointer
from scaling_rec.train.inputs import RunInputs, prepare
from scaling_rec.train.logging import RunLogger, progress
from scaling_rec.train.step import TrainState, make_eval_step, make_optimizer, make_train_step


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The run's length, fixed before the first step.

    total_steps: steps to run; flops_per_step / examples_per_step / tokens_per_step: float64 [S].
    eval_every: steps between evaluations.
    """

    total_steps: int
    flops_per_step: np.ndarray
    examples_per_step: np.ndarray
    tokens_per_step: np.ndarray
    eval_every: int
    steps_per_epoch: int


def example_train_flops(config: ml_collections.ConfigDict, inputs: RunInputs) -> np.ndarray:
    """Training FLOPs of each training example (forward FLOPs are additive over examples); computed once
    per distinct (length, targets) pair, since they depend on nothing else (a sweep of 200k examples spent
    9 s per run here otherwise)."""
    scored = scored_per_target(config.train, inputs.num_items)
    unique, inverse = np.unique(inputs.train_flop_keys.reshape(-1, 2), axis=0, return_inverse=True)
    per_key = np.array([
        TRAIN_MULTIPLIER * forward_flops(config.model, np.array([n]), float(t), "jagged", config.data.max_len, scored)
        for n, t in unique
    ])
    return per_key[inverse.reshape(-1)]


def plan_schedule(config: ml_collections.ConfigDict, inputs: RunInputs, stream: TrainStream) -> Schedule:
    """Walks the deterministic epoch plans until the configured length (steps, epochs or FLOPs)."""
    t = config.train
    per_example = example_train_flops(config, inputs)
    lengths = stream.lengths
    flops, examples, tokens = [], [], []
    epoch = 0
    target_steps = t.num_steps if t.num_steps > 0 else None
    if t.num_epochs > 0:
        full, frac = int(math.floor(t.num_epochs)), t.num_epochs - math.floor(t.num_epochs)
        target_steps = sum(stream.batches_per_epoch(e) for e in range(full))
        target_steps += int(round(frac * stream.batches_per_epoch(full)))
        target_steps = max(target_steps, 1)
    spent = 0.0
    while True:
        for idx in stream.plan(epoch):
            if target_steps is not None and len(flops) >= target_steps:
                break
            if target_steps is None and spent >= t.flops_budget:
                break
            f = float(per_example[idx].sum())
            flops.append(f)
            examples.append(len(idx))
            tokens.append(float(lengths[idx].sum()))
            spent += f
        else:
            epoch += 1
            continue
        break
    steps_per_epoch = stream.batches_per_epoch(0)
    return Schedule(
        total_steps=len(flops), flops_per_step=np.array(flops), examples_per_step=np.array(examples, np.float64),
        tokens_per_step=np.array(tokens), eval_every=t.eval_every or steps_per_epoch, steps_per_epoch=steps_per_epoch,
    )


def evaluate(eval_step: Any, params: nnx.State, examples: list, spec: Any, time_origin: int, mesh: Any,
             temperature: float | None = None) -> dict:
    """Metric means and standard errors over `examples` (every example exactly once), with the raw and
    calibrated cross-entropy (scaling_rec.calibration): temperature None fits T on these examples
    (validation), a value applies that T (test)."""
    acc, xent = MetricAccumulator(), XentGridAccumulator()
    for batch in eval_batches(examples, spec, time_origin):
        sums = dict(eval_step(params, place_batch(batch, mesh)))
        xent.pop_update(sums)
        acc.update(sums)
    result = acc.result()
    return {**result, **xent.result(result["num_examples"], temperature)}


def init_training(config: ml_collections.ConfigDict, num_items: int, has_time: bool,
                  mesh: jax.sharding.Mesh, total_steps: int = 0) -> tuple[nnx.GraphDef, TrainState, Any, Any]:
    """The model of `config` over items 1..num_items, initialised sharded on `mesh` by the config's
    logical-axis rules: (graphdef, step-0 TrainState, the jitted train step on the state's shardings with
    the state donated, the parameter counts). total_steps: the run's length, for a decaying learning rate."""

    def factory() -> nnx.Module:
        return build(config, num_items, time_bias=has_time, rngs=nnx.Rngs(params=config.seed))

    graphdef, init = sharded_init(factory, mesh, rules_for(config))
    optimizer = make_optimizer(config.train, total_steps)
    params = init()
    state = TrainState(params=params, opt_state=init_opt_state(optimizer, params, mesh),
                       step=jax.device_put(jnp.asarray(0, jnp.int32), replicated(mesh)))
    state_sharding = jax.tree.map(lambda x: x.sharding, state)
    train_step = jax.jit(make_train_step(graphdef, optimizer, config.train, config.seed),
                         in_shardings=(state_sharding, None), out_shardings=(state_sharding, None),
                         donate_argnums=0)
    return graphdef, state, train_step, param_counts(nnx.eval_shape(factory))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Runs (or resumes, or returns the finished result of) the run described by `config`.

    Args:
      config: a full config (scaling_rec.config.default_config() plus changes); validated first.
      workdir: the study directory; the run lives in workdir/runs/<run_id>/.
      stop_after_steps: stop (without a result) after this many steps of this call — for tests of resume.
    Returns:
      the result dict written to result.json (or {'status': 'interrupted', ...} with stop_after_steps).
    """
    config_lib.validate(config, num_devices=jax.device_count())
    rid = config_lib.run_id(config)
    run_dir = pathlib.Path(workdir) / "runs" / rid
    done = read_run_result(run_dir)
    if done is not None and done.get("status") in FINISHED:
        return done
    t_start = time.time()
    inputs = prepare(config)  # data errors surface here, before anything is written
    main = bookkeeping.open_run_dir(run_dir, config)
    mesh = make_mesh_from_config(config)
    check_batch_divisible(config.train.batch_size, mesh)
    stream = inputs.train_stream(config.seed)
    sched = plan_schedule(config, inputs, stream)
    graphdef, state, train_step, counts = init_training(config, inputs.num_items,
                                                        inputs.has_time and config.model.time_bias, mesh,
                                                        total_steps=sched.total_steps)
    eval_step = jax.jit(make_eval_step(graphdef, config))
    ckpt = Checkpointer(run_dir / "ckpt")
    meta: dict[str, Any] = {"best": None, "evals_since_best": 0, "wall_time_s": 0.0, "recent": [],
                            "last_valid": None}
    start, state, meta = bookkeeping.resume(ckpt, state, meta, rid)
    logger = RunLogger(run_dir, config, rid, resume_step=start, enabled=main)
    logger.summary({"n_dense": counts.n_dense, "n_emb": counts.n_emb})
    progress(f"[{rid}] {config.model.family} N_dense={counts.n_dense:,} N_emb={counts.n_emb:,} "
             f"steps={sched.total_steps} ({sched.steps_per_epoch}/epoch) layout={inputs.spec.layout} "
             f"T={inputs.spec.tokens_per_batch} train examples={len(inputs.train):,}")

    def run_eval(step: int) -> None:
        """Validation, and test when validation improves (the best point in meta)."""
        valid = evaluate(eval_step, state.params, inputs.valid, inputs.eval_spec, inputs.time_origin, mesh)
        sel = config.eval.select_metric
        best = bookkeeping.best_valid(meta, sel)
        test = lambda: evaluate(eval_step, state.params, inputs.test, inputs.eval_spec, inputs.time_origin, mesh,
                                temperature=valid["temperature"])
        improved = best is None or (valid[sel] < best if sel == "xent" else valid[sel] > best)
        fields = bookkeeping.record_eval(meta, step, valid, improved, test)
        logger.log({"step": step, **fields})
        progress(f"[{rid}] step {step} valid {sel}={valid[sel]:.4f} xent={valid['xent']:.3f} "
                 f"(raw {valid['xent_raw']:.3f}, T={valid['temperature']:.3g}"
                 f"{' at the edge of its grid' if at_grid_edge(valid['temperature']) else ''}) "
                 f"(best {meta['best']['valid'][sel]:.4f} @ {meta['best']['step']})")

    status, step = "ok", start
    window = max(1, min(config.train.log_every, sched.total_steps))
    book = bookkeeping.Bookkeeper(rid, ckpt, logger, meta, config.eval.patience, start, stop_after_steps)
    t_last, last_logged = time.time(), start
    batches = stream.iterate(start)
    pending: list[dict] = []
    try:
        with jax.set_mesh(mesh):
            while step < sched.total_steps:
                batch = place_batch(next(batches), mesh)
                state, metrics = train_step(state, batch)
                step += 1
                pending.append(metrics)
                ckpt_due = config.train.checkpoint_every > 0 and step % config.train.checkpoint_every == 0
                if step % config.train.log_every and step != sched.total_steps and step % sched.eval_every \
                        and not ckpt_due:
                    continue
                fetched, pending = jax.device_get(pending), []
                for m in fetched:
                    meta["recent"] = (meta["recent"] + [[float(m["loss_sum"]), float(m["targets"])]])[-window:]
                if book.diverged(step, [float(f["loss"]) for f in fetched]):
                    status = "diverged"
                    break
                now = time.time()
                rate = (step - last_logged) / max(now - t_last, 1e-9)
                t_last, last_logged = now, step
                eta = (sched.total_steps - step) / max(rate, 1e-9)
                loss = float(m["loss"])
                logger.log({"step": step, "loss": loss, "grad_norm": float(m["grad_norm"]),
                            "examples_seen": float(sched.examples_per_step[:step].sum()),
                            "tokens_seen": float(sched.tokens_per_step[:step].sum()),
                            "flops_spent": float(sched.flops_per_step[:step].sum())})
                if config.logging.progress:
                    progress(f"[{rid}] step {step}/{sched.total_steps} loss {loss:.4f} {rate:.1f} steps/s "
                             f"ETA {eta:.0f}s")
                eval_due = step % sched.eval_every == 0 or step == sched.total_steps
                if eval_due:
                    run_eval(step)
                action = book.after_step(step, state, save=eval_due or ckpt_due, evaluated=eval_due)
                if action == "early_stop":
                    break
                if action == "interrupt":
                    return book.interrupted(step)
    except Exception as e:
        logger.close()
        result = _result(config, rid, "failed", inputs, sched, counts, step, meta, t_start, error=repr(e))
        bookkeeping.write_result(run_dir, result, main)
        raise
    book.stop_clock()
    status_fields = bookkeeping.final_status(status, bookkeeping.reported_evaluations(meta), rid)
    result = {**_result(config, rid, status, inputs, sched, counts, step, meta, t_start), **status_fields}
    book.finish(result, run_dir, main)
    return result


def _result(config: ml_collections.ConfigDict, rid: str, status: str, inputs: RunInputs, sched: Schedule,
            counts: Any, step: int, meta: dict, t_start: float, error: str | None = None) -> dict[str, Any]:
    recent = np.array(meta["recent"], np.float64).reshape(-1, 2)
    final_loss = float(recent[:, 0].sum() / max(recent[:, 1].sum(), 1.0)) if len(recent) else float("nan")
    best = meta.get("best") or {}
    last_valid = meta.get("last_valid") or {}
    result = {
        "status": status, "run_id": rid, "study": config.study, "family": config.model.family,
        "dataset": config.data.name, "layout": config.data.layout,
        "flops_planned": float(config.train.flops_budget or sched.flops_per_step.sum()),
        "flops_spent": float(sched.flops_per_step[:step].sum()),
        "flops_per_example": float(sched.flops_per_step.sum() / max(sched.examples_per_step.sum(), 1.0)),
        "n_dense": counts.n_dense, "n_emb": counts.n_emb,
        "examples_seen": float(sched.examples_per_step[:step].sum()),
        "tokens_seen": float(sched.tokens_per_step[:step].sum()),
        "unique_examples": len(inputs.train), "epochs": step / max(sched.steps_per_epoch, 1),
        "steps": step, "total_steps": sched.total_steps, "best_step": best.get("step"),
        "final_train_loss": final_loss, "final_eval_loss": float(last_valid.get("xent", float("nan"))),
        "eval": bookkeeping.flatten_best(best),
        **bookkeeping.run_times(meta["wall_time_s"], t_start, meta.get("resumed_wall_time_s", 0.0)),
        "num_items": inputs.num_items, "dropped_users": inputs.num_dropped_users, **bookkeeping.run_provenance(),
        **data_provenance(config),
    }
    if error is not None:
        result["error"] = error
    return result
