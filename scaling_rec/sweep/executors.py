"""Where the runs of a sweep execute: `inline` (this process), `local` (worker processes), `slurm`.

All three share one small interface: `submit(spec) -> Job`, `Job.poll() -> Outcome | None` (None
while it runs), `slots` (how many runs may be in flight). The truth about a run is always its
result.json in the store; an Outcome only says that the attempt ended, and how.

* inline: `train_and_evaluate` in this process, one run at a time. Runs of equal shapes reuse
  compiled steps through JAX's persistent compilation cache (the loop builds new jit objects per run,
  so the in-memory jit cache cannot help).
* local: `python -m launch.train` per run, `workers` at a time, console output to
  sweep/logs/<run_id>.log; children die with the sweep (PR_SET_PDEATHSIG), so a killed sweep leaves
  no orphan training behind.
* slurm: submitit; `cluster='local'|'debug'` runs the same code path without SLURM (tests).
  Multi-node jobs (nodes > 1) start jax.distributed from the SLURM environment in each task.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import traceback
from typing import Any, Protocol

from scaling_rec.errors import RunBusyError
from scaling_rec.sweep.spec import RunSpec
from scaling_rec.sweep.store import Store
from scaling_rec.sweep.worker import run_spec_file
from scaling_rec.train.run import EXIT_BUSY, run_one

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
JSON_CONFIG = pathlib.Path(__file__).resolve().with_name("json_config.py")
EXECUTORS = ("inline", "local", "slurm")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an attempt ended: 'finished' (see result.json), 'busy' (another process runs it), 'error'."""

    kind: str
    error: str = ""


class Job(Protocol):
    run_id: str

    def poll(self) -> Outcome | None: ...

    def cancel(self) -> None: ...


class Executor(Protocol):
    name: str
    slots: int

    def submit(self, spec: RunSpec) -> Job: ...

    def close(self) -> None: ...


@dataclasses.dataclass
class _DoneJob:
    run_id: str
    outcome: Outcome

    def poll(self) -> Outcome | None:
        return self.outcome

    def cancel(self) -> None:
        pass


class InlineExecutor:
    """Runs each submitted run to completion inside `submit` (slots = 1)."""

    name, slots = "inline", 1

    def __init__(self, workdir: str | os.PathLike) -> None:
        self.workdir = pathlib.Path(workdir)

    def submit(self, spec: RunSpec) -> Job:
        try:
            run_one(spec.config, self.workdir)
        except RunBusyError as e:
            return _DoneJob(spec.run_id, Outcome("busy", str(e)))
        except Exception:  # noqa: BLE001 - a failed run is recorded and the sweep goes on
            return _DoneJob(spec.run_id, Outcome("error", traceback.format_exc(limit=8)))
        return _DoneJob(spec.run_id, Outcome("finished"))

    def close(self) -> None:
        pass


def _die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGKILL this child when the sweep process dies (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def log_tail(path: pathlib.Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclasses.dataclass
class _ProcessJob:
    run_id: str
    proc: subprocess.Popen
    log: pathlib.Path

    def poll(self) -> Outcome | None:
        code = self.proc.poll()
        if code is None:
            return None
        if code == 0:
            return Outcome("finished")
        if code == EXIT_BUSY:
            return Outcome("busy", log_tail(self.log, 1))
        return Outcome("error", f"exit status {code}; end of {self.log}:\n{log_tail(self.log)}")

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LocalExecutor:
    """`python -m launch.train` in a worker process per run, `workers` at a time."""

    name = "local"

    def __init__(self, workdir: str | os.PathLike, store: Store, workers: int = 2,
                 compilation_cache: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = pathlib.Path(workdir).resolve()
        self.store = store
        self.slots = max(1, workers)
        self.cache = compilation_cache
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), self.env.get("PYTHONPATH")]))
        self.env.update(extra_env or {})

    def command(self, spec: RunSpec) -> list[str]:
        spec_path = self.store.write_spec(spec).resolve()
        return [sys.executable, "-m", "launch.train", f"--config={JSON_CONFIG}:{spec_path}",
                f"--workdir={self.workdir}", f"--compilation_cache={self.cache or 'none'}"]

    def submit(self, spec: RunSpec) -> Job:
        log = self.store.log_path(spec.run_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            proc = subprocess.Popen(self.command(spec), stdout=f, stderr=subprocess.STDOUT, env=self.env,
                                    preexec_fn=_die_with_parent, cwd=os.getcwd())
        return _ProcessJob(spec.run_id, proc, log)

    def close(self) -> None:
        pass


@dataclasses.dataclass
class _SubmititJob:
    run_id: str
    job: Any

    def poll(self) -> Outcome | None:
        if not self.job.done():
            return None
        try:
            out = self.job.result()
        except Exception as e:  # noqa: BLE001 - submitit wraps the job's exception
            return Outcome("error", f"job {self.job.job_id}: {str(e)[-3000:]}")
        if isinstance(out, dict) and out.get("status") == "busy":
            return Outcome("busy", str(out.get("error", "")))
        return Outcome("finished")

    def cancel(self) -> None:
        try:
            self.job.cancel(check=False)
        except Exception:  # noqa: BLE001 - best effort on shutdown
            pass


class SlurmExecutor:
    """One submitit job per run (`cluster=None` detects SLURM; 'local'/'debug' for tests)."""

    name = "slurm"

    def __init__(self, workdir: str | os.PathLike, store: Store, *, slots: int = 64, cluster: str | None = None,
                 compilation_cache: str | None = None, parameters: dict[str, Any] | None = None) -> None:
        import submitit

        self.workdir = pathlib.Path(workdir).resolve()
        self.store = store
        self.slots = max(1, slots)
        self.cache = compilation_cache
        self.executor = submitit.AutoExecutor(folder=str(store.sweep_dir / "slurm" / "%j"), cluster=cluster)
        self.executor.update_parameters(**(parameters or {}))

    def submit(self, spec: RunSpec) -> Job:
        spec_path = self.store.write_spec(spec).resolve()
        job = self.executor.submit(run_spec_file, str(spec_path), str(self.workdir), self.cache)
        return _SubmititJob(spec.run_id, job)

    def close(self) -> None:
        pass


def slurm_parameters(*, name: str, timeout_min: int, partition: str | None, nodes: int, gpus_per_node: int,
                     cpus_per_task: int, mem_gb: int | None) -> dict[str, Any]:
    """submitit AutoExecutor parameters: one process per node driving all its GPUs (JAX's usual
    multi-host layout); with nodes > 1 each process starts jax.distributed from the SLURM environment."""
    params: dict[str, Any] = {"name": name, "timeout_min": timeout_min, "nodes": nodes, "tasks_per_node": 1,
                              "cpus_per_task": cpus_per_task}
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if mem_gb:
        params["mem_gb"] = mem_gb
    if partition:
        params["slurm_partition"] = partition
    return params


def make_executor(name: str, workdir: str | os.PathLike, store: Store, *, workers: int = 2,
                  compilation_cache: str | None = None, slurm_cluster: str | None = None,
                  slurm_params: dict[str, Any] | None = None) -> Executor:
    """The executor called `name` (one of EXECUTORS)."""
    if name == "inline":
        return InlineExecutor(workdir)
    if name == "local":
        return LocalExecutor(workdir, store, workers, compilation_cache)
    if name == "slurm":
        return SlurmExecutor(workdir, store, slots=workers, cluster=slurm_cluster,
                             compilation_cache=compilation_cache, parameters=slurm_params)
    raise ValueError(f"unknown executor {name!r}; use one of {EXECUTORS}")
