"""The sequence task (HSTU, SASRec) of the training engine (scaling_rec.train.engine): next-item retrieval
trained with a sampled or full softmax over jagged or padded batches and evaluated by full ranking.

The run's examples and batches come from scaling_rec.train.inputs (in memory, or streamed from a prepared
directory); the run's length (steps, epochs or FLOPs) is planned by walking the deterministic epoch plans
(`plan_schedule`), FLOPs per example from scaling_rec.flops.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from scaling_rec import config as config_lib
from scaling_rec.calibration import XentGridAccumulator, at_grid_edge
from scaling_rec.data.pipeline import TrainStream, eval_batches
from scaling_rec.flops import TRAIN_MULTIPLIER, forward_flops, param_counts, scored_per_target
from scaling_rec.metrics import MetricAccumulator
from scaling_rec.models.registry import build
from scaling_rec.parallel.sharding import place_batch
from scaling_rec.train import engine
from scaling_rec.train.inputs import RunInputs, prepare
from scaling_rec.train.logging import progress
from scaling_rec.train.step import LossFn, TrainState, make_eval_step, make_loss


def example_train_flops(config: ml_collections.ConfigDict, inputs: RunInputs) -> np.ndarray:
    """Training FLOPs of each training example (forward FLOPs are additive over examples); computed once
    per distinct (length, targets) pair, since they depend on nothing else (a sweep of 200k examples spent
    9 s per run here otherwise). Model FLOPs on either layout: the jagged count (flops.py, "Budgets count model
    FLOPs")."""
    scored = scored_per_target(config.train, inputs.num_items)
    unique, inverse = np.unique(inputs.train_flop_keys.reshape(-1, 2), axis=0, return_inverse=True)
    per_key = np.array([
        TRAIN_MULTIPLIER * forward_flops(config.model, np.array([n]), float(t), "jagged", config.data.max_len, scored)
        for n, t in unique
    ])
    return per_key[inverse.reshape(-1)]


def plan_schedule(config: ml_collections.ConfigDict, inputs: RunInputs, stream: TrainStream) -> engine.Plan:
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
    return engine.Plan(total_steps=len(flops), steps_per_epoch=steps_per_epoch,
                       eval_every=t.eval_every or steps_per_epoch, flops_per_step=np.array(flops),
                       examples_per_step=np.array(examples, np.float64), tokens_per_step=np.array(tokens))


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


def _factory(config: ml_collections.ConfigDict, num_items: int, has_time: bool) -> Callable[[], nnx.Module]:
    return lambda: build(config, num_items, time_bias=has_time, rngs=nnx.Rngs(params=config.seed))


def init_training(config: ml_collections.ConfigDict, num_items: int, has_time: bool,
                  mesh: jax.sharding.Mesh, total_steps: int = 0) -> tuple[nnx.GraphDef, TrainState, Any, Any]:
    """The model of `config` over items 1..num_items through engine.init_training: (graphdef, step-0
    TrainState, the jitted donating train step, the parameter counts). total_steps: the run's length, for a
    decaying learning rate."""
    factory = _factory(config, num_items, has_time)
    graphdef, state, train_step = engine.init_training(config, factory, lambda g: make_loss(g, config.train), mesh,
                                                       total_steps)
    return graphdef, state, train_step, param_counts(nnx.eval_shape(factory))


class SequenceTask(engine.Task):
    """Data: scaling_rec.train.inputs.prepare (RunInputs); batches: its TrainStream, a global step naming one
    batch; validation fits the cross-entropy's temperature, which the test of the same step applies."""

    schema = config_lib
    eval_loss_metric = "xent"

    def __init__(self, config: ml_collections.ConfigDict, data: RunInputs, run_dir: pathlib.Path,
                 main: bool) -> None:
        super().__init__(config, data, run_dir, main)
        self.select_metric = config.eval.select_metric
        self.higher_is_better = self.select_metric != "xent"
        self.stream = data.train_stream(config.seed)
        self.batches: Iterator[Any] | None = None
        self.next_step = -1
        self.temperature: float | None = None

    @staticmethod
    def load(config: ml_collections.ConfigDict) -> RunInputs:
        return prepare(config)

    def model(self) -> nnx.Module:
        d = self.data
        return _factory(self.config, d.num_items, d.has_time and self.config.model.time_bias)()

    def counts(self, abstract: nnx.Module) -> tuple[int, int]:
        counts = param_counts(abstract)
        return counts.n_dense, counts.n_emb

    def plan(self, abstract: nnx.Module) -> engine.Plan:
        return plan_schedule(self.config, self.data, self.stream)

    def loss(self, graphdef: nnx.GraphDef) -> LossFn:
        return make_loss(graphdef, self.config.train)

    def batch(self, step: int) -> Any:
        if step != self.next_step:
            self.batches = self.stream.iterate(step)
        self.next_step = step + 1
        return next(self.batches)

    def start(self, graphdef: nnx.GraphDef, mesh: jax.sharding.Mesh) -> None:
        self.mesh = mesh
        self.eval_step = jax.jit(make_eval_step(graphdef, self.config))

    def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
        d = self.data
        out = evaluate(self.eval_step, state.params, getattr(d, split), d.eval_spec, d.time_origin, self.mesh,
                       temperature=None if split == "valid" else self.temperature)
        if split == "valid":
            self.temperature = out["temperature"]
            if at_grid_edge(self.temperature):
                progress(f"valid xent={out['xent']:.3f} (raw {out['xent_raw']:.3f}): its temperature "
                         f"{self.temperature:.3g} is at the edge of its grid")
        return out

    def describe(self) -> str:
        d = self.data
        return f"layout={d.spec.layout} T={d.spec.tokens_per_batch} train examples={len(d.train):,}"

    def result_fields(self, state: TrainState | None, meta: dict[str, Any]) -> dict[str, Any]:
        d = self.data
        return {"layout": self.config.data.layout, "unique_examples": len(d.train), "num_items": d.num_items,
                "dropped_users": d.num_dropped_users}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       *, stop_after_steps: int | None = None) -> dict[str, Any]:
    """Runs (or resumes, or returns the finished result of) the run of `config` (engine.run); stop_after_steps:
    stop without a result after this many steps of this call (resume tests)."""
    return engine.run(SequenceTask, config, workdir, stop_after_steps=stop_after_steps)
