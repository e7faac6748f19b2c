"""Host-side bookkeeping that the step loops of scaling_rec.train.loop (sequence models) and
scaling_rec.train.ctr_loop (CTR models) have in common; the loops themselves stay in their modules.

`meta` is a loop's host state, checkpointed with its train state (JSON): 'best' ({'step', 'valid',
'test'} of the best validation point, or None), 'evals_since_best', 'last_valid', 'wall_time_s'
(seconds spent in the step loop, summed over resumed calls) and 'stopped' (None, 'early_stop' or
'diverged': the loop's decision to end, saved before the result is written), plus whatever else a loop
keeps there.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import jax
import ml_collections

from scaling_rec.io import atomic_write_json, remove_stale_temps
from scaling_rec.provenance import code_version
from scaling_rec.train.checkpoint import Checkpointer
from scaling_rec.train.logging import RunLogger, progress

Action = Literal["continue", "early_stop", "interrupt"]
# A run is degenerate when, at an evaluation it reports, the target ties on average with at least this
# share of what it competes with (items, beams, or (positive, negative) pairs for CTR): its scores have
# collapsed to (nearly) one value. A trained model's share is ~0 (benchmarks/results/tie_check_cpu.json);
# a constant one's is 1.
DEGENERATE_TIED_SHARE = 0.5


def open_run_dir(run_dir: pathlib.Path, config: ml_collections.ConfigDict) -> bool:
    """Creates `run_dir` and writes its config.json; True on the process that writes run files (process 0).
    Temporary files that a killed writer left there are deleted first (the caller owns the run)."""
    main = jax.process_index() == 0  # with several processes only the first writes files
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        remove_stale_temps(run_dir)
        atomic_write_json(run_dir / "config.json", config.to_dict())
    return main


def resume(ckpt: Checkpointer, state: Any, meta: dict[str, Any], rid: str) -> tuple[int, Any, dict[str, Any]]:
    """(start step, state, meta) of the newest intact checkpoint, restored onto `state`'s shardings; (0, state,
    meta) when there is none. A corrupt newer one is set aside (Checkpointer.restore_latest)."""
    restored = ckpt.restore_latest(state)
    if restored is None:
        return 0, state, meta
    start, state, meta = restored
    meta["resumed_wall_time_s"] = float(meta.get("wall_time_s", 0.0))  # for run_times' call_wall_time_s
    progress(f"[{rid}] resumed from step {start}")
    return start, state, meta


def best_valid(meta: dict[str, Any], metric: str) -> float | None:
    """The validation `metric` of the best point so far; None before the first evaluation."""
    best = meta["best"]
    return None if best is None else best["valid"][metric]


def record_eval(meta: dict[str, Any], step: int, valid: dict[str, float], improved: bool,
                evaluate_test: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Records the validation metrics `valid` of step `step` in `meta`.

    When `improved`, the test split is evaluated (`evaluate_test`) and this point becomes the best one;
    otherwise it counts as one more evaluation since the best. Returns the evaluation's metrics.jsonl
    fields: 'valid/<metric>' and, when improved, 'test/<metric>'.
    """
    meta["last_valid"] = valid
    fields = {f"valid/{k}": v for k, v in valid.items()}
    if improved:
        test = evaluate_test()
        meta["best"] = {"step": step, "valid": valid, "test": test}
        meta["evals_since_best"] = 0
        fields.update({f"test/{k}": v for k, v in test.items()})
    else:
        meta["evals_since_best"] += 1
    return fields


def degenerate_reason(evaluations: dict[str, dict[str, float] | None]) -> str | None:
    """Why the run is degenerate, or None: the first of `evaluations` ({what: metrics of one evaluation},
    e.g. {'best validation (step 3)': ...}) whose 'tied_share' (scaling_rec.metrics tie measures) is at
    least DEGENERATE_TIED_SHARE. Its metrics are then those of a random ranking under the expected tie
    rule, not of a model: the analysis excludes such runs."""
    for what, metrics in evaluations.items():
        share = (metrics or {}).get("tied_share")
        if share is not None and share >= DEGENERATE_TIED_SHARE:
            return (f"scores collapsed: at the {what}, {share:.0%} of the score comparisons that rank the targets "
                    f"are ties (tied_share {share:.3f} >= {DEGENERATE_TIED_SHARE}); its metrics are those of a random "
                    "ranking. Lower the learning rate or check the model's outputs")
    return None


def reported_evaluations(meta: dict[str, Any]) -> dict[str, dict[str, float] | None]:
    """The evaluations a loop's result reports, for `final_status`: the best point's validation and test
    (its eval metrics) and the last validation (its final_eval_loss)."""
    best = meta.get("best") or {}
    return {f"best step {best.get('step')}'s validation": best.get("valid"),
            f"best step {best.get('step')}'s test": best.get("test"), "last validation": meta.get("last_valid")}


def final_status(status: str, evaluations: dict[str, dict[str, float] | None], rid: str) -> dict[str, str]:
    """Result fields 'status' and, for a degenerate run, 'degenerate_reason': an 'ok' run whose
    `evaluations` are degenerate (`degenerate_reason`) becomes 'degenerate' (finished, never rerun)."""
    reason = degenerate_reason(evaluations) if status == "ok" else None
    if reason is None:
        return {"status": status}
    progress(f"[{rid}] degenerate: {reason}")
    return {"status": "degenerate", "degenerate_reason": reason}


def patience_exhausted(meta: dict[str, Any], patience: int) -> bool:
    """True when early stopping is on (`patience` > 0) and the last `patience` evaluations did not improve."""
    return patience > 0 and meta["evals_since_best"] >= patience


def flatten_best(best: dict[str, Any] | None) -> dict[str, float]:
    """The best point's metrics as {'valid/<metric>': v, 'test/<metric>': v}; {} before any evaluation."""
    best = best or {}
    return {f"{split}/{k}": float(v) for split in ("valid", "test") for k, v in (best.get(split) or {}).items()}


def run_times(wall_time_s: float, t_start: float, resumed_wall_time_s: float = 0.0) -> dict[str, float]:
    """Result fields wall_time_s (the step loop's seconds summed over every call, resumes included), elapsed_s
    (this call's seconds since `t_start`: its setup and training; earlier calls of a resumed run are not in
    it) and call_wall_time_s (this call's part of wall_time_s; `resumed_wall_time_s` = meta's value when the
    call resumed, which `resume` records). The sweep's overhead compares elapsed_s with its own wall time and
    takes elapsed_s - call_wall_time_s as the call's setup (scaling_rec/sweep/runner.py)."""
    return {"wall_time_s": float(wall_time_s), "elapsed_s": time.time() - t_start,
            "call_wall_time_s": float(wall_time_s) - float(resumed_wall_time_s)}


def run_provenance() -> dict[str, Any]:
    """Result fields naming where and with which code the run ran: device_kind, num_devices, git_commit,
    git_dirty."""
    return {"device_kind": jax.devices()[0].device_kind, "num_devices": jax.device_count(), **code_version()}


def write_result(run_dir: pathlib.Path, result: dict[str, Any], main: bool) -> None:
    """Writes `result` to run_dir/result.json on the process that writes run files."""
    if main:
        atomic_write_json(run_dir / "result.json", result)


@dataclasses.dataclass
class Bookkeeper:
    """Wall time, checkpoints and stopping of one call of a resumable step loop.

    meta: the loop's host state (module docstring), the same dict its evaluation updates; patience:
    evaluations without improvement before an early stop (0: never); start: the step this call resumed
    from; stop_after_steps: steps after which this call stops without a result (None: never);
    t_loop: when the wall time not yet added to meta['wall_time_s'] began.
    """

    rid: str
    ckpt: Checkpointer
    logger: RunLogger
    meta: dict[str, Any]
    patience: int
    start: int
    stop_after_steps: int | None
    t_loop: float = dataclasses.field(default_factory=time.time)

    def diverged(self, step: int, losses: Iterable[float]) -> bool:
        """True, with a progress message, when one of the training `losses` logged at `step` is not finite."""
        if all(math.isfinite(x) for x in losses):
            return False
        progress(f"[{self.rid}] diverged at step {step} (non-finite loss)")
        return True

    def stop_clock(self) -> None:
        """Adds the wall time since `t_loop` to meta['wall_time_s'] and restarts the clock."""
        self.meta["wall_time_s"] += time.time() - self.t_loop
        self.t_loop = time.time()

    def after_step(self, step: int, state: Any, *, save: bool, evaluated: bool) -> Action:
        """What the loop does after `step`, once its logging and evaluation are done.

        save: checkpoint (state, meta) first, with the wall time so far; evaluated: the step was evaluated,
        so patience may be exhausted. Returns 'early_stop' (announced, and recorded as meta['stopped'] before
        the checkpoint, so that a call resumed from it stops there too) when it is; 'interrupt' when this call
        has run `stop_after_steps` steps (checkpoint saved once, with the wall time; logger closed; return
        `interrupted(step)`);
        else 'continue'.
        """
        stop = evaluated and patience_exhausted(self.meta, self.patience)
        if stop:
            self.meta["stopped"] = "early_stop"
        if save:
            self._save(step, state)
        if stop:
            progress(f"[{self.rid}] early stop: no improvement in {self.patience} evaluations")
            return "early_stop"
        if self.stop_after_steps is not None and step - self.start >= self.stop_after_steps:
            if not save:  # a step is saved once: orbax refuses a second save of the same step
                self._save(step, state)
            self.logger.close()
            return "interrupt"
        return "continue"

    def _save(self, step: int, state: Any) -> None:
        """Checkpoints (state, meta) with the wall time so far and the number of metrics.jsonl records, which a
        call resumed from this step keeps (RunLogger's resume_records): what was logged after is redone."""
        self.stop_clock()
        self.meta["log_records"] = self.logger.records
        self.ckpt.save(step, state, self.meta)

    def interrupted(self, step: int) -> dict[str, Any]:
        """The return value of a call stopped by `stop_after_steps` at `step` (no result.json)."""
        return {"status": "interrupted", "run_id": self.rid, "step": step}

    def finish(self, result: dict[str, Any], run_dir: pathlib.Path, main: bool) -> None:
        """Ends the run: `summary_values(result)` to the logger's summary, logger and checkpointer closed,
        result.json written."""
        self.logger.summary(summary_values(result))
        self.logger.close()
        self.ckpt.close()
        write_result(run_dir, result, main)


def summary_values(result: dict[str, Any]) -> dict[str, Any]:
    """What a run's W&B summary holds: result.json's numeric fields, its status (and degenerate_reason), and
    its `eval` metrics under their logged names ('valid/ndcg@10', …). The summary otherwise keeps each
    name's last logged value: the last evaluation's validation metrics beside the best step's test ones,
    and no word of a diverged or degenerate run."""
    out: dict[str, Any] = {k: v for k, v in result.items() if isinstance(v, int | float)}
    out.update({k: result[k] for k in ("status", "degenerate_reason") if isinstance(result.get(k), str)})
    if isinstance(result.get("eval"), dict):
        out.update({k: v for k, v in result["eval"].items() if isinstance(v, int | float)})
    return out
