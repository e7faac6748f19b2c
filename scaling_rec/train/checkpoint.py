"""Orbax checkpoints of the train state plus a JSON record of the loop's host-side state."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves (state, meta) under `<run_dir>/ckpt/<step>`; restores the latest one onto given shardings.

    Orbax writes each step to a temporary directory and renames it when complete, so a run killed
    mid-save resumes from the previous complete step.
    """

    def __init__(self, directory: pathlib.Path, max_to_keep: int = 2) -> None:
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self._mgr = ocp.CheckpointManager(directory.absolute(), options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        self._mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)
        self._mgr.wait_until_finished()

    def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
        """(state placed like `target`'s arrays, meta); target may be concrete or abstract arrays."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        out = self._mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                              meta=ocp.args.JsonRestore()))
        return out.state, dict(out.meta)

    def close(self) -> None:
        self._mgr.close()
