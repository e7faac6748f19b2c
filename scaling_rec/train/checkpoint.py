"""Orbax checkpoints of the train state plus a JSON record of the loop's host-side state."""

from __future__ import annotations

import pathlib
import sys
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from scaling_rec.errors import CheckpointCorruptError, CheckpointMismatchError

CORRUPT_SUFFIX = ".corrupt"  # <ckpt>.corrupt/<step>-<unix time>/: a corrupt step set aside by restore_latest
LEAVES_KEY = "state_leaves"  # meta entry written by `save`: {leaf path: [dtype, shape]} of the saved state


def leaf_signature(tree: Any) -> dict[str, list[Any]]:
    """{jax key path of each leaf: [dtype name, shape as a list]} of concrete or abstract arrays, read from their
    metadata (never their values: a global array of several processes cannot be fetched by one)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): [str(leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf)),
                                         list(np.shape(leaf))] for path, leaf in flat}


def signature_mismatches(saved: dict[str, list[Any]], wanted: dict[str, list[Any]]) -> list[str]:
    """One line per leaf whose saved [dtype, shape] differs from the wanted one, or that only one side has."""
    lines = [f"{path}: saved {saved[path][0]}{tuple(saved[path][1])}, this code builds {wanted[path][0]}"
             f"{tuple(wanted[path][1])}" for path in saved if path in wanted and saved[path] != wanted[path]]
    lines += [f"{path}: saved, not in this code's state" for path in saved if path not in wanted]
    lines += [f"{path}: in this code's state, not saved" for path in wanted if path not in saved]
    return lines


def _quiet_orbax_read_failures() -> None:
    """Wraps sys.unraisablehook (once) to drop what orbax's abandoned array-read coroutines raise after a
    restore failed (each would print a ~60-line TensorStore spec when collected); the rest passes on."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_orbax_reads", False):
        return

    def hook(unraisable: Any) -> None:
        if getattr(unraisable.object, "__qualname__", "") != "_read_array_index_and_device_put":
            previous(unraisable)

    hook.drops_orbax_reads = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _first_line(e: BaseException) -> str:
    """`Type: first line of the message`, without TensorStore's appended spec dump, at most 300 characters."""
    text = str(e).strip().split(" See full TensorStore details")[0]
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


class Checkpointer:
    """Saves (state, meta) under `<run_dir>/ckpt/<step>`; restores the newest intact one onto given shardings.

    Orbax writes each step to a temporary directory and renames it when complete, so a run killed
    mid-save resumes from the previous complete step. A complete step whose files were damaged later
    (disk, copy, hand edit) is set aside by `restore_latest`, which falls back to the previous step.
    """

    def __init__(self, directory: pathlib.Path, max_to_keep: int = 2) -> None:
        self.directory = directory.absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Writes `state` and `meta` (plus LEAVES_KEY, the state's dtypes and shapes, which `restore` checks)."""
        meta = {**meta, LEAVES_KEY: leaf_signature(state)}
        self._mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)
        self._mgr.wait_until_finished()

    def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
        """(state placed like `target`'s arrays, meta); target may be concrete or abstract arrays.

        The saved dtypes and shapes are checked against the target's first: orbax would cast a float32
        array onto a bfloat16 target without a word. Checkpoints written before LEAVES_KEY skip the check.

        Raises:
          CheckpointCorruptError: orbax/TensorStore could not read the step (its first line is the cause).
          CheckpointMismatchError: the step is intact but its leaves differ from the target's in dtype or
            shape, or it has other leaves (the code changed under the run).
        """
        meta = self._read(step, meta=ocp.args.JsonRestore()).meta
        mismatches = signature_mismatches(meta[LEAVES_KEY], leaf_signature(target)) if LEAVES_KEY in meta else []
        if mismatches:
            shown = "; ".join(mismatches[:4]) + (f"; ... ({len(mismatches)} leaves in all)" if len(mismatches) > 4
                                                 else "")
            commits = [str(v.get("git_commit"))[:12] for v in meta.get("code_versions", [])]
            by = f"the code it was written by ({', '.join(commits)})" if commits else "the code it was written by"
            raise CheckpointMismatchError(
                f"checkpoint step {step} in {self.directory} does not fit the state this code builds ({shown}). "
                f"The code changed under the run: resume it with {by}, or delete {self.directory.parent} to "
                f"rerun it from scratch.")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        state = self._read(step, state=ocp.args.StandardRestore(abstract)).state
        return state, {k: v for k, v in dict(meta).items() if k != LEAVES_KEY}

    def _read(self, step: int, **items: Any) -> Any:
        """Orbax's restore of the named items of `step`; any failure to read is a CheckpointCorruptError."""
        try:
            return self._mgr.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax and TensorStore raise many types (ValueError, OSError, KeyError, ...)
            _quiet_orbax_read_failures()
            raise CheckpointCorruptError(
                f"checkpoint step {step} in {self.directory} cannot be restored ({_first_line(e)})",
                step, str(self.directory)) from e

    def restore_latest(self, target: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """(step, state, meta) of the newest checkpoint that restores; None when there is no checkpoint.

        A newer step that fails is moved to `<ckpt>.corrupt/` with a one-line warning on stderr, so that
        the run resumes from the intact one and later saves of that step succeed.

        Raises:
          CheckpointCorruptError: every checkpoint fails; the message says how to recover.
        """
        steps = sorted(self._mgr.all_steps(), reverse=True)
        failures: list[CheckpointCorruptError] = []
        for step in steps:
            try:
                state, meta = self.restore(step, target)
            except CheckpointCorruptError as e:
                failures.append(e)
                continue
            for bad in failures:
                aside = self._set_aside(bad.step)
                print(f"warning: {bad} -> moved to {aside}; resuming from step {step}", file=sys.stderr, flush=True)
            return step, state, meta
        if not failures:
            return None
        newest = failures[0]
        raise CheckpointCorruptError(
            f"{newest}; no intact checkpoint is left (steps tried: {steps}). To recover: delete "
            f"{self.directory} to restart this run from step 0 (or delete the run directory "
            f"{self.directory.parent} to rerun it from scratch).", newest.step, newest.directory) from newest

    def drop_after(self, step: int) -> None:
        """Deletes every saved step newer than `step`. Orbax refuses to save a step that exists
        (StepAlreadyExistsError), so a run resumed from `step` drops what it saved beyond it before replaying."""
        for newer in [s for s in self._mgr.all_steps() if s > step]:
            self._mgr.delete(newer)

    def _set_aside(self, step: int) -> pathlib.Path:
        """Moves step `step`'s directory to <ckpt>.corrupt/<step>-<time> and tells orbax; returns the new path."""
        dest = self.directory.with_name(self.directory.name + CORRUPT_SUFFIX) / f"{step}-{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        (self.directory / str(step)).rename(dest)
        self._mgr.reload()
        return dest

    def close(self) -> None:
        self._mgr.close()
