"""Training and evaluation examples from a leave-one-out split (docs/CONTRACTS.md).

Training: each user's train events s (oldest first) give one example whose inputs are s[:-1] and
whose targets are s[1:], truncated to the most recent `max_len` positions (every position is a
training target, as in SASRec). Evaluation: the history (most recent `max_len` events) with the
held-out item as the target of the last position only.
"""

from __future__ import annotations

import numpy as np

from scaling_rec.data.jagged import SequenceExample
from scaling_rec.data.sequences import SequenceData
from scaling_rec.data.splits import EvalSplit, eval_user_indices


def train_examples(train: SequenceData, max_len: int) -> list[SequenceExample]:
    """One example per user with at least 2 train events."""
    out = []
    ts_all = train.timestamps
    for u in range(train.num_users):
        lo, hi = int(train.user_offsets[u]), int(train.user_offsets[u + 1])
        if hi - lo < 2:
            continue
        lo = max(lo, hi - max_len - 1)
        items = train.items[lo:hi].astype(np.int32)
        ts = None if ts_all is None else ts_all[lo:hi]
        out.append(SequenceExample(
            items=items[:-1], targets=items[1:],
            timestamps=None if ts is None else ts[:-1], query_timestamps=None if ts is None else ts[1:],
        ))
    return out


def eval_examples(split: EvalSplit, max_len: int, max_users: int = 0, pick: str = "sample") -> list[SequenceExample]:
    """One example per user: its history, the target at the last position (0 elsewhere).

    max_users > 0 keeps max_users users (for quick evaluations; which ones: `eval_user_indices`); 0 keeps all.
    """
    hist = split.history
    out = []
    for u in eval_user_indices(split.num_users, max_users, pick).tolist():
        lo, hi = int(hist.user_offsets[u]), int(hist.user_offsets[u + 1])
        lo = max(lo, hi - max_len)
        items = hist.items[lo:hi].astype(np.int32)
        targets = np.zeros_like(items)
        targets[-1] = split.targets[u]
        ts = qts = None
        if hist.timestamps is not None:
            ts = hist.timestamps[lo:hi]
            qts = np.concatenate([ts[1:], [split.target_timestamps[u]]])
        out.append(SequenceExample(items=items, targets=targets, timestamps=ts, query_timestamps=qts))
    return out


def time_origin(data: SequenceData) -> int:
    """Seconds subtracted from every timestamp so that batches can hold them as int32."""
    return 0 if data.timestamps is None or data.timestamps.size == 0 else int(data.timestamps.min())
