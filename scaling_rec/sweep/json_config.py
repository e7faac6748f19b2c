"""A config file for config_flags that reads a stored run spec: `--config=<this file>:<spec.json>`.

Local worker processes run `python -m launch.train --config=scaling_rec/sweep/json_config.py:<root>/
sweep/specs/<run_id>.json`, so every run of a sweep goes through the same launcher as a manual run.
"""

from __future__ import annotations

import ml_collections

from scaling_rec.sweep.store import read_spec


def get_config(spec_path: str) -> ml_collections.ConfigDict:
    """The resolved config stored at `spec_path` (default_config() keys only)."""
    config, _ = read_spec(spec_path)
    return config
