"""Runs a sweep: skip finished runs, resume unfinished ones, report progress, summarise, measure overhead.

A run is finished when its result.json says ok, diverged or degenerate; it is then never submitted again. Any
other run (never started, interrupted: resumed from its checkpoint by the loop, or failed: tried
again) is submitted. Progress goes to the console as one line per event (done / running / failed,
ETA); at the end a table of every run and the sweep's overhead:

    overhead = slots × total wall time − Σ runs' own time (elapsed_s: setup + training), as a % of that sum

(slots = runs in flight at once; 1 for inline). elapsed_s is the time of the run's last call, the one this
sweep made; its setup is elapsed_s − call_wall_time_s (wall_time_s itself sums the step loops of every call,
so after a resume it also holds time spent before this sweep). A failed run's stored error keeps the first
and last lines of its traceback (`clip_error`): the root cause and the named error.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from scaling_rec.errors import ResultError
from scaling_rec.sweep.executors import Executor, Job
from scaling_rec.sweep.spec import RunSpec
from scaling_rec.sweep.store import FINISHED, Store

BUSY_RETRY_S = 5.0


@dataclasses.dataclass
class RunState:
    """What the runner knows of one run."""

    spec: RunSpec
    state: str = "pending"  # pending | running | ok | diverged | degenerate | failed | skipped
    started: float = 0.0
    not_before: float = 0.0
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: str = ""
    resumed: bool = False


@dataclasses.dataclass
class SweepReport:
    """The outcome of `run_sweep`: per-run states, timings and the overhead measurement."""

    runs: list[RunState]
    wall_s: float
    run_wall_s: float
    setup_s: float
    slots: int
    executed: int

    @property
    def overhead_fraction(self) -> float:
        capacity = self.wall_s * self.slots
        return (capacity - self.run_wall_s) / self.run_wall_s if self.run_wall_s > 0 and self.executed else 0.0

    @property
    def failed(self) -> list[RunState]:
        return [r for r in self.runs if r.state == "failed"]


def _fmt_s(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _metric(result: dict[str, Any] | None, split: str, name: str) -> float:
    if not result:
        return math.nan
    return float(result.get("eval", {}).get(f"{split}/{name}", math.nan))


class _Console:
    def __init__(self, out: TextIO, total: int, t0: float) -> None:
        self.out, self.total, self.t0 = out, total, t0

    def line(self, msg: str) -> None:
        print(f"[sweep {_fmt_s(time.time() - self.t0)}] {msg}", file=self.out, flush=True)


def result_setup_s(result: dict[str, Any]) -> float:
    """Seconds of a result's last call outside its step loop (data, model init, compilation): elapsed_s minus
    that call's training time (call_wall_time_s; results written before it existed: wall_time_s)."""
    call_wall = result.get("call_wall_time_s", result.get("wall_time_s", 0.0))
    return max(0.0, float(result.get("elapsed_s", 0.0)) - float(call_wall))


def last_line(error: str) -> str:
    """The last non-empty line of an error (a traceback ends with the exception and its message)."""
    lines = [ln for ln in error.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def clip_error(error: str, head: int = 6, tail: int = 14, width: int = 400) -> str:
    """`error` cut to its first `head` and last `tail` lines (each at most `width` characters): a chained
    traceback names its root cause at the top and the error raised at the bottom; the middle is frames."""
    lines = [ln if len(ln) <= width else ln[:width] + " ..." for ln in error.splitlines()]
    if len(lines) <= head + tail:
        return "\n".join(lines)
    return "\n".join([*lines[:head], f"... ({len(lines) - head - tail} lines left out) ...", *lines[-tail:]])


def _estimate_s(st: RunState, done: list[RunState]) -> float:
    """Expected seconds of a run: from finished runs of the same size (setup + training scaled by the
    budget ratio), else the mean time of all finished runs."""
    same = [d for d in done if d.spec.size == st.spec.size and d.spec.curve == st.spec.curve
            and d.spec.budget > 0 and st.spec.budget > 0]
    if same:
        ests = []
        for d in same:
            r = d.result or {}
            wall = float(r.get("wall_time_s", 0.0))
            ests.append(result_setup_s(r) + wall * st.spec.budget / d.spec.budget)
        return sum(ests) / len(ests)
    return sum(float((d.result or {}).get("elapsed_s", 0.0)) for d in done) / len(done)


def _eta(states: list[RunState], slots: int, now: float) -> float:
    """Seconds left: each pending or running run's expected time (minus time already spent), / slots."""
    done = [s for s in states if s.state in FINISHED and s.result and s.started]
    left = [s for s in states if s.state in ("pending", "running")]
    if not left:
        return 0.0
    if not done:
        return math.nan
    total = 0.0
    for s in left:
        est = _estimate_s(s, done)
        total += max(est - (now - s.started), 0.0) if s.state == "running" else est
    return total / slots


def shown_metric(spec: RunSpec) -> str:
    """The test metric the console shows for a run: its config's eval.select_metric (TIGER configs,
    which select by nothing, show ndcg@10)."""
    return str(spec.config.eval.get("select_metric", "ndcg@10"))


def run_sweep(specs: list[RunSpec], store: Store, executor: Executor, *, source: str = "",
              out: TextIO = sys.stderr, poll_s: float = 0.5,
              on_event: Callable[[RunState], None] | None = None) -> SweepReport:
    """Runs every spec not yet finished through `executor`; returns the report (also printed)."""
    t0 = time.time()
    store.remove_stale_temps()
    store.write_manifest(specs, source)
    for s in specs:
        store.write_spec(s)
    states = [RunState(spec) for spec in specs]
    console = _Console(out, len(specs), t0)
    for st in states:
        try:
            status = store.status(st.spec.run_id)
        except ResultError as e:
            st.state, st.error = "failed", str(e)
            continue
        if status in FINISHED:
            st.state, st.result = "skipped", store.read_result(st.spec.run_id)
        st.resumed = status == "partial"
    skipped = sum(s.state == "skipped" for s in states)
    resumes = sum(s.resumed for s in states if s.state == "pending")
    console.line(f"{len(specs)} runs in {store.root}: {skipped} finished already (skipped), "
                 f"{resumes} to resume, {sum(s.state == 'pending' for s in states) - resumes} new; "
                 f"executor {executor.name} × {executor.slots}")
    running: dict[str, tuple[RunState, Job]] = {}
    executed = 0

    def save() -> None:
        store.write_status({s.spec.run_id: {"state": s.state, **s.spec.labels, "attempts": s.attempts,
                                             "error": clip_error(s.error)} for s in states})

    def progress(st: RunState, what: str) -> None:
        n = {k: sum(s.state == k for s in states) for k in (*FINISHED, "failed", "skipped", "running")}
        finished = sum(n[k] for k in FINISHED) + n["skipped"]
        eta = _eta(states, executor.slots, time.time())
        label = " ".join(x for x in (st.spec.group, st.spec.size or st.spec.family) if x) + (
            f" C={st.spec.budget:.2g}" if st.spec.budget else "")
        console.line(f"{finished}/{len(states)} done · {n['running']} running · {n['failed']} failed · "
                     f"ETA {_fmt_s(eta)} | {what} {st.spec.run_id} {label}")
        save()
        if on_event is not None:
            on_event(st)

    def finish(st: RunState, outcome_kind: str, error: str) -> None:
        nonlocal executed
        try:
            result = store.read_result(st.spec.run_id)
        except ResultError as e:
            result, error = None, str(e)
        if outcome_kind == "busy" and not (result and result.get("status") in FINISHED):
            st.state, st.not_before = "pending", time.time() + BUSY_RETRY_S
            progress(st, "busy elsewhere, retry later:")
            return
        if result and result.get("status") in FINISHED:
            st.state, st.result, st.error = str(result["status"]), result, ""
            executed += outcome_kind != "busy"
            sel = shown_metric(st.spec)
            progress(st, f"{st.state} in {_fmt_s(time.time() - st.started)} "
                         f"(test {sel}={_metric(result, 'test', sel):.4f}):")
            return
        st.state, st.result = "failed", result
        if not error and result and result.get("status") == "partial":
            error = (f"partial: stopped at its time limit at step {result.get('steps')} of {result.get('total_steps')} "
                     "(resumable: run the sweep again)")
        st.error = error or (result or {}).get("error", "") or "no result.json written"
        progress(st, "FAILED:")
        console.line(f"  {st.spec.run_id}: {last_line(st.error)}")

    try:
        save()
        while True:
            now = time.time()
            ready = [s for s in states if s.state == "pending" and s.not_before <= now]
            while ready and len(running) < executor.slots:
                st = ready.pop(0)
                st.state, st.started, st.attempts = "running", time.time(), st.attempts + 1
                progress(st, "resume" if st.resumed else "start")
                running[st.spec.run_id] = (st, executor.submit(st.spec))
            changed = False
            for rid, (st, job) in list(running.items()):
                outcome = job.poll()
                if outcome is not None:
                    del running[rid]
                    finish(st, outcome.kind, outcome.error)
                    changed = True
            if not running and not any(s.state == "pending" for s in states):
                break
            if not changed:
                time.sleep(poll_s)
    except BaseException:
        for _, job in running.values():
            job.cancel()
        for st in states:
            st.state = "pending" if st.state == "running" else st.state
        save()
        raise
    finally:
        executor.close()
    ran = [s for s in states if s.state in FINISHED and s.result]
    report = SweepReport(
        runs=states, wall_s=time.time() - t0, executed=executed,
        run_wall_s=sum(float(s.result.get("elapsed_s", s.result.get("wall_time_s", 0.0))) for s in ran),
        setup_s=sum(result_setup_s(s.result) for s in ran),
        slots=max(1, min(executor.slots, executed)),
    )
    print(summary_table(states), file=out, flush=True)
    for st in report.failed:  # the advice (e.g. a corrupt result.json: delete it) belongs in the summary too
        print(f"  {st.spec.run_id} failed: {last_line(st.error)}", file=out, flush=True)
    print(overhead_line(report), file=out, flush=True)
    return report


def summary_table(states: list[RunState]) -> str:
    """One row per run: id, size, N_dense, budget and FLOPs spent/planned, steps, status, metrics, time."""
    head = (f"{'run_id':12s} {'group':6s} {'size':10s} {'N_dense':>10s} {'C planned':>10s} {'spent/C':>7s} "
            f"{'steps':>6s} {'status':11s} {'valid':>8s} {'test':>8s} {'wall_s':>7s}")
    rows = [head, "-" * len(head)]

    def key(s: RunState) -> tuple:
        return (s.spec.curve, s.spec.budget, (s.result or {}).get("n_dense", 0), s.spec.run_id)

    for s in sorted(states, key=key):
        r = s.result or {}
        sel = shown_metric(s.spec)
        planned = float(r.get("flops_planned", s.spec.budget) or 0.0)
        ratio = float(r.get("flops_spent", math.nan)) / planned if planned else math.nan
        status = s.state if s.state != "skipped" else f"{r.get('status', '?')}*"
        rows.append(f"{s.spec.run_id:12s} {s.spec.curve:6s} {s.spec.size or '-':10s} {r.get('n_dense', 0):>10,} "
                    f"{planned:>10.3g} {ratio:>7.3f} {r.get('steps', 0):>6} {status:11s} "
                    f"{_metric(r, 'valid', sel):>8.4f} {_metric(r, 'test', sel):>8.4f} "
                    f"{float(r.get('wall_time_s', math.nan)):>7.1f}")
    if not states:
        rows.append("(no runs)")
    elif any(s.state == "skipped" for s in states):
        rows.append(f"(* finished before this sweep started; metric: {shown_metric(states[0].spec)})")
    else:
        rows.append(f"(metric: {shown_metric(states[0].spec)})")
    return "\n".join(rows)


def overhead_line(report: SweepReport) -> str:
    """The sweep's own overhead: what the runs' training time does not account for."""
    if not report.executed:
        return f"overhead: no run executed in this sweep (wall {report.wall_s:.1f} s)"
    capacity = report.wall_s * report.slots
    return (f"overhead: {100 * report.overhead_fraction:.1f}% on top of the runs' own time: {report.slots} slot(s) × "
            f"{report.wall_s:.1f} s wall − {report.run_wall_s:.1f} s summed over {report.executed} run(s) "
            f"(each run's elapsed_s, of which {report.setup_s:.1f} s was its setup: data, model init, compilation) "
            f"= {capacity - report.run_wall_s:.1f} s of sweep machinery")
