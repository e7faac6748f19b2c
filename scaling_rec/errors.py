"""Every error scaling_rec raises on purpose, in one place.

Messages say what was wrong, where (file:line or config key) and what to do about it.
"""

from __future__ import annotations


class ScalingRecError(Exception):
    """Base class of the library's own errors."""


class ConfigError(ScalingRecError, ValueError):
    """A config key is unknown, mistyped, out of range or inconsistent with the devices."""


class DataNotFoundError(ScalingRecError, FileNotFoundError):
    """A dataset is neither in the data directory, nor in the cache, nor downloadable."""


class DataFormatError(ScalingRecError, ValueError):
    """A data file is malformed; the message names the file and the line."""


class MeshError(ConfigError):
    """The requested device mesh does not match the devices or the batch."""


class FitError(ScalingRecError, ValueError):
    """A scaling-law fit was asked of too few points or a degenerate grid."""


class NoUsableRunError(FitError):
    """A study with runs but none usable: the report (which lists each run's reason) was written anyway."""


class ResultError(ScalingRecError, ValueError):
    """A stored run result is corrupted or incomplete."""


class KernelArgumentError(ScalingRecError, ValueError):
    """An attention kernel was called with arrays whose shapes or dtypes break its contract."""


class RunBusyError(ScalingRecError):
    """Another live process holds the run's lock (it is being trained right now)."""


class CheckpointCorruptError(ScalingRecError):
    """A checkpoint cannot be restored (truncated or altered files); the message names the step and the
    directory, and how to recover when no intact checkpoint is left.

    Attributes: step (the checkpoint's step), directory (its checkpoint directory).
    """

    def __init__(self, message: str, step: int, directory: str) -> None:
        super().__init__(message)
        self.step, self.directory = step, directory


class CheckpointMismatchError(ScalingRecError):
    """An intact checkpoint holds arrays of other dtypes or shapes than the state this code builds (the code
    changed under the run); the message names the leaves and how to proceed. Never set aside as corrupt."""
