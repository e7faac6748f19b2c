"""One training engine for every model family: a family is a `Task`, the engine owns everything else.

The engine owns the run directory `<workdir>/runs/<run_id>/` (config.json, metrics.jsonl, result.json,
ckpt/ and, for tasks tested at the end, best/), resume, the mesh and the sharded initialisation, the jitted
step with the state donated (K = train.steps_per_call steps per call through a `lax.scan`), logging,
evaluation and the choice of the best checkpoint, divergence, early stopping, time limits, the degenerate
check, a 'failed' result on an exception and result.json. A task says what is particular to its family:
data, model, parameter counts, the run's plan (length and FLOPs per step), the loss, host batches,
evaluation and its extra result fields.

A finished run (status ok, diverged or degenerate) is returned as is; an unfinished one resumes from its
last checkpoint and, because batches, dropout and negatives are keyed by the global step, ends with the
same numbers as an uninterrupted run. Only process 0 writes run files.

Two ways to stop a call early: `stop_after_steps` stops without a result (resume tests), `partial_after_steps`
and train.time_limit_s stop with a checkpoint, the test evaluation of where the run stands and a result of
status 'partial' (the next call resumes).
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import functools
import math
import pathlib
import time
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from scaling_rec.data.stream import ProcessRows, place_process_rows
from scaling_rec.io import FINISHED, read_run_result
from scaling_rec.parallel.mesh import check_batch_divisible, make_mesh_from_config
from scaling_rec.parallel.rules import rules_for
from scaling_rec.parallel.sharding import init_opt_state, place_batch, replicated, sharded_init
from scaling_rec.provenance import code_version, data_provenance
from scaling_rec.train import bookkeeping
from scaling_rec.train.checkpoint import Checkpointer
from scaling_rec.train.logging import RunLogger, progress
from scaling_rec.train.step import LossFn, TrainState, learning_rate_schedule, make_optimizer


@dataclasses.dataclass(frozen=True)
class Plan:
    """The run's length, fixed before the first step (float64 arrays over the steps [S]).

    steps_per_epoch: for the result's 'epochs' (a float where batches do not divide an epoch evenly);
    tokens_per_step: None where a task has no tokens.
    """

    total_steps: int
    steps_per_epoch: float
    eval_every: int
    flops_per_step: np.ndarray
    examples_per_step: np.ndarray
    tokens_per_step: np.ndarray | None = None

    @classmethod
    def uniform(cls, total_steps: int, steps_per_epoch: float, eval_every: int, batch_size: int,
                flops_per_example: float) -> Plan:
        """A plan whose every step has `batch_size` examples of `flops_per_example` training FLOPs."""
        examples = np.full(total_steps, float(batch_size))
        return cls(total_steps, steps_per_epoch, eval_every, examples * flops_per_example, examples)

    def spent(self, step: int) -> dict[str, float]:
        """Result and log fields of the first `step` steps: examples_seen, flops_spent (and tokens_seen)."""
        out = {"examples_seen": float(self.examples_per_step[:step].sum()),
               "flops_spent": float(self.flops_per_step[:step].sum())}
        if self.tokens_per_step is not None:
            out["tokens_seen"] = float(self.tokens_per_step[:step].sum())
        return out


@functools.lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The seeded order of `n` training examples in epoch `epoch`: the same on every process and resume."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_rows(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """The examples of global step `step` when each epoch is a seeded order of `n` examples cut into
    n // batch_size batches (the remainder left out)."""
    epoch, i = divmod(step, n // batch_size)
    return epoch_order(seed, epoch, n)[i * batch_size:(i + 1) * batch_size]


class Task:
    """One family's part of a run; the engine makes one per run, after the run directory exists.

    Class attributes: `schema` (the config module: validate, run_id), `select_metric` / `higher_is_better` /
    `min_delta` (the validation metric that picks the best checkpoint, and by how much it must improve),
    `eval_loss_metric` (the validation metric reported as final_eval_loss; None: none), `test_at_end`
    (False: the test split is evaluated at each improving validation; True: the best parameters are kept in
    best/ and tested, with the last ones, at the end: for tasks whose evaluation is costly).
    """

    schema: types.ModuleType
    select_metric: str = ""
    higher_is_better: bool = True
    min_delta: float = 0.0
    eval_loss_metric: str | None = None
    test_at_end: bool = False

    def __init__(self, config: ml_collections.ConfigDict, data: Any, run_dir: pathlib.Path, main: bool) -> None:
        self.config, self.data, self.run_dir, self.main = config, data, run_dir, main

    @classmethod
    def validate(cls, config: ml_collections.ConfigDict) -> None:
        cls.schema.validate(config, num_devices=jax.device_count())

    @staticmethod
    def load(config: ml_collections.ConfigDict) -> Any:
        """The run's data; its errors surface here, before anything is written."""
        raise NotImplementedError

    def model(self) -> nnx.Module:
        """A fresh model (deterministic: it is built once abstractly and once sharded)."""
        raise NotImplementedError

    def counts(self, abstract: nnx.Module) -> tuple[int, int]:
        """(N_dense, N_emb) of the abstract model."""
        raise NotImplementedError

    def plan(self, abstract: nnx.Module) -> Plan:
        raise NotImplementedError

    def loss(self, graphdef: nnx.GraphDef) -> LossFn:
        raise NotImplementedError

    def batch(self, step: int) -> Any:
        """The host batch of global step `step`."""
        raise NotImplementedError

    def start(self, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh) -> None:
        """Called once the model exists (jit the evaluation here)."""

    def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
        """Metrics of `state` on split 'valid' or 'test'."""
        raise NotImplementedError

    def after_eval(self, state: TrainState, meta: dict[str, Any], improved: bool) -> dict[str, Any]:
        """Called after each validation (e.g. a learning rate that decays on a plateau); extra log fields."""
        return {}

    def log_fields(self, metrics: dict[str, np.ndarray]) -> dict[str, Any]:
        """Extra fields of a training log record, from the last step's metrics."""
        return {}

    def describe(self) -> str:
        """The run's one-line description for the progress output."""
        return ""

    def result_fields(self, state: TrainState, meta: dict[str, Any]) -> dict[str, Any]:
        """Extra (or overriding) result fields; state is None in a failed run's result."""
        return {}


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, seed: int,
                    steps: int = 1) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """train_step(state, batch) -> (state, metrics): metrics of loss_fn plus grad_norm; the step's random key
    is (seed, state.step). steps > 1: one call runs `steps` consecutive steps in a `lax.scan`, its batch
    leaves [B, steps, ...] (step k's batch in column k, so the data-parallel split of B holds) and every metric
    gains a leading [steps] axis; the updates are those of `steps` single calls."""
    base_key = jax.random.key(seed)

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(base_key, state.step)
        (_, (metrics, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.rest, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = TrainState(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                         step=state.step + 1, rest=rest)
        return new, {**metrics, "grad_norm": optax.global_norm(grads)}

    if steps == 1:
        return train_step
    return lambda state, batch: jax.lax.scan(train_step, state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), batch))


@dataclasses.dataclass
class Trainer:
    """The model of a task built and initialised sharded on a mesh, with its jitted donating train step."""

    graphdef: nnx.GraphDef
    state: TrainState
    train_step: Callable
    counts: tuple[int, int]
    plan: Plan
    lr: Any


def init_training(config: ml_collections.ConfigDict, factory: Callable[[], nnx.Module],
                  make_loss: Callable[[nnx.GraphDef], LossFn], mesh: jax.sharding.Mesh,
                  total_steps: int = 0) -> tuple[nnx.GraphDef, TrainState, Callable]:
    """The model of `factory` initialised sharded on `mesh` by the config's logical-axis rules: (graphdef,
    step-0 TrainState, the jitted train step of `make_loss(graphdef)` on the state's shardings with the state
    donated). total_steps: the run's length, for a decaying learning rate."""
    graphdef, init = sharded_init(factory, mesh, rules_for(config))
    graphdef, params, rest = nnx.split(nnx.merge(graphdef, init()), nnx.Param, ...)
    optimizer = make_optimizer(config.train, total_steps)
    state = TrainState(params=params, opt_state=init_opt_state(optimizer, params, mesh),
                       step=jax.device_put(jnp.asarray(0, jnp.int32), replicated(mesh)), rest=rest)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    fn = make_train_step(make_loss(graphdef), optimizer, config.seed, config.train.get("steps_per_call", 1))
    train_step = jax.jit(fn, in_shardings=(shardings, None), out_shardings=(shardings, None), donate_argnums=0)
    return graphdef, state, train_step


def build_trainer(task: Task, mesh: jax.sharding.Mesh) -> Trainer:
    """Plans the run, then `init_training` of the task's model over the planned length."""
    abstract = nnx.eval_shape(task.model)
    plan = task.plan(abstract)
    graphdef, state, train_step = init_training(task.config, task.model, task.loss, mesh, plan.total_steps)
    return Trainer(graphdef, state, train_step, task.counts(abstract), plan,
                   learning_rate_schedule(task.config.train, plan.total_steps))


def _per_step(fetched: list[dict[str, Any]], k: int) -> list[dict[str, np.ndarray]]:
    """Metrics of each step, from the fetched metrics of calls of `k` steps each."""
    if k == 1:
        return fetched
    return [{name: v[i] for name, v in m.items()} for m in fetched for i in range(k)]


def _loss_terms(m: dict[str, np.ndarray]) -> list[float]:
    """[summed loss, count] of one step: its loss_sum and targets, else its (mean) loss and 1."""
    if "loss_sum" in m:
        return [float(m["loss_sum"]), float(m["targets"])]
    return [float(m["loss"]), 1.0]


def _mean_loss(terms: list[list[float]]) -> float:
    t = np.array(terms, np.float64).reshape(-1, 2)
    return float(t[:, 0].sum() / max(t[:, 1].sum(), 1e-30)) if len(t) else float("nan")


def run(task_cls: type[Task], config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
        data: Any = None, stop_after_steps: int | None = None,
        partial_after_steps: int | None = None) -> dict[str, Any]:
    """Runs (or resumes, or returns the finished result of) the run of `config` with the family's task.

    Args:
      task_cls: the family's Task (scaling_rec.train.tasks.task_for).
      config: the family's default_config() plus changes; validated first.
      workdir: the study directory; the run lives in workdir/runs/<run_id>/.
      data: already loaded data (tests); default task_cls.load(config).
      stop_after_steps: stop without a result after this many steps of this call (resume tests).
      partial_after_steps: stop after this many steps of this call (rounded up to whole calls) with a
        'partial' result, as train.time_limit_s does.
    Returns:
      the result dict written to result.json (or {'status': 'interrupted', ...} with stop_after_steps).
    """
    task_cls.validate(config)
    rid = task_cls.schema.run_id(config)
    run_dir = pathlib.Path(workdir) / "runs" / rid
    done = read_run_result(run_dir)
    if done is not None and done.get("status") in FINISHED:
        return done
    t_start = time.time()
    code_version()  # the commit and dirtiness as the run starts (read once per process), not at its end
    data = data if data is not None else task_cls.load(config)
    main = bookkeeping.open_run_dir(run_dir, config)
    meta: dict[str, Any] = {"best": None, "evals_since_best": 0, "wall_time_s": 0.0, "recent": [],
                            "last_valid": None, "curve": [], "stopped": None}
    progress_step = [0]
    trainer = None
    try:
        task = task_cls(config, data, run_dir, main)
        mesh = make_mesh_from_config(config)
        check_batch_divisible(config.train.batch_size, mesh)
        trainer = build_trainer(task, mesh)
        task.start(trainer.graphdef, mesh)
        return _train(task, trainer, mesh, rid, run_dir, main, meta, t_start, stop_after_steps,
                      partial_after_steps, progress_step)
    except Exception as e:
        result = {"status": "failed", "run_id": rid, "study": config.study, "family": config.model.family,
                  "dataset": config.data.name, "steps": progress_step[0], "error": repr(e)}
        if trainer is not None:
            result = {**_result(task, trainer, None, meta, progress_step[0], t_start), **result}
        bookkeeping.write_result(run_dir, result, main)
        raise
    finally:
        _return_freed_heap()


def _return_freed_heap() -> None:
    """Hands the C heap's free pages back to the OS at the end of a run (glibc's malloc_trim; a no-op where
    there is no glibc). Without it the memory a run freed (batches, host copies, compilation scratch) stays
    in glibc's per-thread arenas, so a process that runs several runs (an inline sweep; the events_scale
    benchmark's warm-up and timed runs) grows to the sum of their high-water marks: measured on the 100M-event
    log, RSS 1,561 MB after a run of which 191 MB was live, 1,097 MB after the trim (issue 18)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def _train(task: Task, trainer: Trainer, mesh: jax.sharding.Mesh, rid: str, run_dir: pathlib.Path, main: bool,
           meta: dict[str, Any], t_start: float, stop_after_steps: int | None, partial_after_steps: int | None,
           progress_step: list[int]) -> dict[str, Any]:
    config, plan, t = task.config, trainer.plan, task.config.train
    ckpt = Checkpointer(run_dir / "ckpt")
    # best/ keeps the newest best and the one before it: a new best is saved before the ckpt/ step that records
    # it, so a run killed between the two resumes from a checkpoint whose meta names the previous best.
    best_ckpt = Checkpointer(run_dir / "best", max_to_keep=2) if task.test_at_end else None
    start, state, restored = bookkeeping.resume(ckpt, trainer.state, meta, rid)
    meta.update(restored)  # in place: a failure from here on reports the resumed run's history (run's except)
    progress_step[0] = start
    meta.setdefault("curve", [])
    _note_code_version(meta, rid)
    if best_ckpt is not None:
        # A run killed between best/ and ckpt/ (or whose newer ckpt was set aside as corrupt) holds a best step
        # beyond `start`, which the replay would save again and orbax would refuse.
        best_ckpt.drop_after(start)
    logger = RunLogger(run_dir, config, rid, resume_step=start, resume_records=meta.get("log_records"),
                       enabled=main)
    n_dense, n_emb = trainer.counts
    logger.summary({"n_dense": n_dense, "n_emb": n_emb})
    progress(f"[{rid}] {config.model.family} N_dense={n_dense:,} N_emb={n_emb:,} steps {start}->{plan.total_steps} "
             f"({plan.steps_per_epoch:.0f}/epoch) {task.describe()}")
    book = bookkeeping.Bookkeeper(rid, ckpt, logger, meta, config.eval.get("patience", 0), start, stop_after_steps)
    sel, k = task.select_metric, t.get("steps_per_call", 1)

    def elapsed() -> float:
        return float(meta["wall_time_s"]) + time.time() - book.t_loop

    def current_lr(state: TrainState, step: int) -> float:
        hyper = getattr(state.opt_state, "hyperparams", None)
        if hyper is not None:
            return float(hyper["learning_rate"])
        return float(trainer.lr(step - 1)) if callable(trainer.lr) else float(trainer.lr)

    def run_eval(state: TrainState, step: int, *, scheduled: bool = True) -> bool:
        """Validation; the best point (and, unless tested at the end, its test) in meta. Returns True when the
        validation loss (task.eval_loss_metric) is not finite: the parameters diverged, whatever the rank
        metrics say (a NaN model's tied scores still rank). scheduled=False: a time limit's evaluation off
        the schedule, for the partial result only: `meta` is a copy that no checkpoint holds, best/ is left
        alone, and its metrics.jsonl line says off_schedule (a resumed run must end as an uninterrupted one)."""
        valid = task.evaluate(state, "valid")
        best = bookkeeping.best_valid(meta, sel)
        v = valid[sel]
        loss_name = task.eval_loss_metric
        diverged = loss_name in valid and not math.isfinite(valid[loss_name])
        improved = not diverged and math.isfinite(v) and (
            best is None or (v > best + task.min_delta if task.higher_is_better else v < best - task.min_delta))
        if task.test_at_end:
            meta["last_valid"] = valid
            fields = {f"valid/{name}": x for name, x in valid.items()}
            if improved:
                meta["best"], meta["evals_since_best"] = {"step": step, "valid": valid}, 0
                if scheduled:  # unscheduled: the best is this step, which _test_at_end tests without best/
                    best_ckpt.save(step, state.params, {"valid": valid})
            else:
                meta["evals_since_best"] += 1
        else:
            fields = bookkeeping.record_eval(meta, step, valid, improved, lambda: task.evaluate(state, "test"))
        point = {"step": step, "examples_seen": plan.spent(step)["examples_seen"], "elapsed_s": elapsed(),
                 **{f"valid/{name}": x for name, x in valid.items()}}
        meta["curve"] = list(meta["curve"]) + [point]
        logger.log({**point, **fields, **task.after_eval(state, meta, improved),
                    **({} if scheduled else {"off_schedule": True})})
        progress(f"[{rid}] step {step} valid {sel}={v:.5f} (best {meta['best']['valid'][sel]:.5f} "
                 f"@ {meta['best']['step']})" if meta["best"] else f"[{rid}] step {step} valid {sel}={v}")
        if diverged:
            progress(f"[{rid}] diverged at step {step} (non-finite validation {loss_name})")
        return diverged

    # A stop decided before a kill (early stop, divergence) is in the checkpoint's meta: the resumed call
    # ends there too instead of training on.
    status, step = ("diverged" if meta.get("stopped") == "diverged" else "ok"), start
    partial_eval = False
    window = max(1, min(t.log_every, plan.total_steps))
    pending: list[dict] = []
    since_log: list[list[float]] = []
    t_call = t_rate = time.time()
    last_logged = start
    with jax.set_mesh(mesh):
        while step < plan.total_steps and not meta.get("stopped"):
            host = [task.batch(step + i) for i in range(k)]
            batch = host[0] if k == 1 else jax.tree.map(lambda *xs: np.stack(xs, axis=1), *host)
            placed = place_process_rows(batch, mesh) if isinstance(batch, ProcessRows) else place_batch(batch, mesh)
            state, metrics = trainer.train_step(state, placed)
            step += k
            progress_step[0] = step
            pending.append(metrics)
            eval_due = step % plan.eval_every == 0 or step >= plan.total_steps
            ckpt_due = t.get("checkpoint_every", 0) > 0 and step % t.checkpoint_every == 0
            limit_hit = bool((t.get("time_limit_s", 0) and time.time() - t_call >= t.time_limit_s)
                             or (partial_after_steps and step - start >= partial_after_steps))
            if step % t.log_every and not (eval_due or ckpt_due or limit_hit):
                continue
            fetched, pending = _per_step(jax.device_get(pending), k), []
            terms = [_loss_terms(m) for m in fetched]
            meta["recent"] = (list(meta["recent"]) + terms)[-window:]
            since_log += terms
            if book.diverged(step, [float(m["loss"]) for m in fetched]):
                status = meta["stopped"] = "diverged"
                break
            now = time.time()
            rate, t_rate, last_logged = (step - last_logged) / max(now - t_rate, 1e-9), now, step
            loss, since_log = _mean_loss(since_log), []
            logger.log({"step": step, "loss": loss, "grad_norm": float(fetched[-1]["grad_norm"]),
                        "lr": current_lr(state, step), **plan.spent(step), "elapsed_s": elapsed(),
                        **task.log_fields(fetched[-1])})
            if config.logging.progress:
                progress(f"[{rid}] step {step}/{plan.total_steps} loss {loss:.4f} {rate:.1f} steps/s "
                         f"ETA {(plan.total_steps - step) / max(rate, 1e-9):.0f}s")
            if eval_due and run_eval(state, step):
                status = meta["stopped"] = "diverged"
                break
            action = book.after_step(step, state, save=eval_due or ckpt_due or limit_hit, evaluated=eval_due)
            if action == "early_stop":
                break
            if action == "interrupt":
                return book.interrupted(step)
            if limit_hit and step < plan.total_steps:
                status, partial_eval = "partial", not eval_due
                break
    book.stop_clock()
    logged = logger.records  # what a resume from the final checkpoint keeps: the end-of-run records are redone
    if partial_eval:  # the checkpoint at `step` is saved: evaluate for this partial result on a copy of meta
        meta = copy.deepcopy(meta)
        run_eval(state, step, scheduled=False)
    evaluations = bookkeeping.reported_evaluations(meta)
    if task.test_at_end:
        evaluations = _test_at_end(task, state, step, meta, best_ckpt, logger)
        best_ckpt.close()
    if ckpt.latest_step() != step:
        ckpt.save(step, state, {**meta, "log_records": logged})
    result = {**_result(task, trainer, state, meta, step, t_start),
              **bookkeeping.final_status(status, evaluations, rid)}
    book.finish(result, run_dir, main)
    return result


def _note_code_version(meta: dict[str, Any], rid: str) -> None:
    """Appends this call's code version (git commit, dirty) to meta['code_versions'] when it differs from the
    last call's, with a warning: a run resumed under other code may mix two versions' numbers, so its result
    lists every version it ran under (`_result`)."""
    versions = meta.setdefault("code_versions", [])
    now = code_version()
    if versions[-1:] == [now]:
        return
    if versions:
        progress(f"[{rid}] warning: resumed under {now['git_commit'][:12]} (dirty={now['git_dirty']}); earlier "
                 f"calls ran under {', '.join(v['git_commit'][:12] for v in versions)}: its result lists every version")
    versions.append(now)


def _test_at_end(task: Task, state: TrainState, step: int, meta: dict[str, Any], best_ckpt: Checkpointer,
                 logger: RunLogger) -> dict[str, dict[str, float] | None]:
    """Tests the last parameters and the best ones (restored from best/); meta['best']['test'] and
    meta['last_test'] hold them. Returns the evaluations the degenerate check reads."""
    test = task.evaluate(state, "test")
    logger.log({"step": step, **{f"test/{name}": v for name, v in test.items()}})
    best = meta["best"]
    if best is not None:
        if best["step"] == step:
            best_test = test
        else:
            params, _ = best_ckpt.restore(best["step"], state.params)
            best_test = task.evaluate(dataclasses.replace(state, params=params), "test")
        meta["best"] = best = {**best, "test": best_test}
    meta["last_test"] = test
    return {"best validation": (best or {}).get("valid"), "best step's test": (best or {}).get("test"),
            "last step's test": test}


def _result(task: Task, trainer: Trainer, state: TrainState | None, meta: dict[str, Any], step: int,
            t_start: float) -> dict[str, Any]:
    """The result fields every family shares, then the task's own (which may override them)."""
    config, plan = task.config, trainer.plan
    best = meta.get("best") or {}
    result = {
        "run_id": task.run_dir.name, "study": config.study, "family": config.model.family,
        "dataset": config.data.name,
        "flops_planned": float(config.train.get("flops_budget", 0.0) or plan.flops_per_step.sum()),
        "flops_per_example": float(plan.flops_per_step.sum() / max(plan.examples_per_step.sum(), 1.0)),
        **plan.spent(step), "n_dense": trainer.counts[0], "n_emb": trainer.counts[1],
        "epochs": step / max(plan.steps_per_epoch, 1e-30), "steps": step, "total_steps": plan.total_steps,
        "best_step": best.get("step"), "final_train_loss": _mean_loss(meta["recent"]), "curve": meta["curve"],
        "eval": ({f"test/{k}": v for k, v in meta["last_test"].items()} if "last_test" in meta
                 else bookkeeping.flatten_best(best)),
        **bookkeeping.run_times(meta["wall_time_s"], t_start, meta.get("resumed_wall_time_s", 0.0)),
        **bookkeeping.run_provenance(), **data_provenance(config),
    }
    if len(meta.get("code_versions", ())) > 1:
        result["code_versions"] = meta["code_versions"]
    if task.eval_loss_metric is not None:
        result["final_eval_loss"] = float((meta.get("last_valid") or {}).get(task.eval_loss_metric, float("nan")))
    return {**result, **task.result_fields(state, meta)}
