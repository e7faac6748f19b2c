"""Multi-process start-up (`jax.distributed`) and each process's share of the data.

Settings are resolved field by field: explicit arguments, then the standard environment
(JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), then SLURM (SLURM_STEP_NUM_TASKS /
SLURM_NTASKS, SLURM_PROCID, first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST and a port
from JAX_COORDINATOR_PORT or derived from SLURM_JOB_ID). One process: nothing to do.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

import jax

from scaling_rec.errors import ConfigError

DEFAULT_PORT = 12345


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits: the coordinator's host:port, how many processes, which one."""

    coordinator_address: str | None
    num_processes: int
    process_id: int
    local_device_ids: tuple[int, ...] | None = None


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[003-005,9],cpu1' -> 'gpu003'."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            end = i
            break
    first = nodelist[:end].strip()
    host = re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], first)
    if not host or "[" in host or "]" in host:
        raise ConfigError(f"cannot read the first host of the SLURM node list {nodelist!r}")
    return host


def _int_env(env: Mapping[str, str], *keys: str) -> int | None:
    """The first of `keys` set in `env`, as an int; ConfigError naming the variable if not one."""
    for key in keys:
        if env.get(key, "").strip():
            try:
                return int(env[key])
            except ValueError:
                raise ConfigError(f"environment variable {key}={env[key]!r} is not an integer") from None
    return None


def _slurm_coordinator(env: Mapping[str, str]) -> str | None:
    """host:port of the coordinator from the SLURM node list, None outside SLURM."""
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodelist:
        return None
    port = _int_env(env, "JAX_COORDINATOR_PORT")
    if port is None:
        job_id = env.get("SLURM_JOB_ID", "")
        port = 12000 + int(job_id) % 4096 if job_id.isdigit() else DEFAULT_PORT
    return f"{first_host(nodelist)}:{port}"


def resolve_process_group(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessGroup:
    """The process group from arguments, then JAX_* variables, then SLURM variables."""
    env = os.environ if env is None else env
    if num_processes is None:
        num_processes = _int_env(env, "JAX_NUM_PROCESSES", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
    if process_id is None:
        process_id = _int_env(env, "JAX_PROCESS_ID", "SLURM_PROCID")
    if coordinator_address is None:
        coordinator_address = env.get("JAX_COORDINATOR_ADDRESS") or _slurm_coordinator(env)
    num_processes = 1 if num_processes is None else num_processes
    process_id = 0 if process_id is None else process_id
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ConfigError(
            f"process {process_id} of {num_processes}: need num_processes >= 1 and "
            f"0 <= process_id < num_processes (JAX_NUM_PROCESSES / JAX_PROCESS_ID or SLURM)"
        )
    if num_processes > 1 and not coordinator_address:
        raise ConfigError(
            f"{num_processes} processes but no coordinator address: set JAX_COORDINATOR_ADDRESS="
            f"host:port (or run under SLURM, or pass coordinator_address)"
        )
    ids = None if local_device_ids is None else tuple(local_device_ids)
    return ProcessGroup(coordinator_address, num_processes, process_id, ids)


def maybe_initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    *,
    initialization_timeout_s: int = 300,
) -> ProcessGroup:
    """Start `jax.distributed` when more than one process is asked for; a no-op otherwise.

    Call before anything touches a device. Cross-process collectives on CPU use gloo unless
    another implementation was configured. Calling again after success does nothing.
    """
    group = resolve_process_group(coordinator_address, num_processes, process_id, local_device_ids)
    if group.num_processes == 1 or jax.distributed.is_initialized():
        return group
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=group.coordinator_address,
        num_processes=group.num_processes,
        process_id=group.process_id,
        local_device_ids=None if group.local_device_ids is None else list(group.local_device_ids),
        initialization_timeout=initialization_timeout_s,
    )
    return group


def process_shard(n_items: int, process_index: int | None = None, process_count: int | None = None) -> slice:
    """The contiguous slice of `n_items` this process reads (sizes differ by at most one).

    Defaults to `jax.process_index()` of `jax.process_count()`. Loaders that need equal step
    counts per process should drop the remainder (n_items // process_count each).
    """
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if count < 1 or not 0 <= index < count or n_items < 0:
        raise ConfigError(f"process_shard({n_items}, {index}, {count}): need n >= 0 and 0 <= index < count")
    base, extra = divmod(n_items, count)
    start = index * base + min(index, extra)
    return slice(start, start + base + (1 if index < extra else 0))
