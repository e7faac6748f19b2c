"""Reader of the Amazon S3-Rec sequence form (Beauty.txt, Toys_and_Games.txt).

Format (RUCAIBox/CIKM2020-S3Rec, data/*.txt): one user per line, `user_id item_id item_id ...`,
space separated, items oldest first, 1-based ids. Item ids are kept as they are in the file (so
S3-Rec id k stays item k, which the TIGER item-content joins rely on); users are numbered by line.
The form has no timestamps and no ratings.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from scaling_rec.data.sequences import SequenceData
from scaling_rec.errors import DataFormatError


def read_s3rec(path: str | os.PathLike, name: str = "amazon") -> SequenceData:
    """Reads an S3-Rec `user item item ...` file into SequenceData (timestamps and ratings None).

    Users keep the file's line order (user index u = the u-th non-blank line); blank lines are
    skipped. num_items is the largest item id in the file.

    Raises:
      DataFormatError: a line with a non-integer field, an id < 1, no items, or a repeated user id,
        naming the file and the 1-based line number.
    """
    path = pathlib.Path(path)
    lengths: list[int] = []
    chunks: list[np.ndarray] = []
    first_line_of_user: dict[int, int] = {}
    with path.open("r", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{line_no}"
            try:
                ids = np.array([int(x) for x in fields], dtype=np.int64)
            except (ValueError, OverflowError):
                bad = next((x for x in fields if not _is_int(x)), line.strip())
                raise DataFormatError(
                    f"{where}: field {bad!r} is not an integer; expected 'user_id item_id item_id ...' "
                    "(S3-Rec form, space separated)."
                ) from None
            if len(ids) < 2:
                raise DataFormatError(
                    f"{where}: user {fields[0]} has no items; expected 'user_id item_id item_id ...'."
                )
            if ids.min() < 1:
                raise DataFormatError(f"{where}: ids must be >= 1 (1-based; 0 is padding), got {ids.min()}.")
            user = int(ids[0])
            if user in first_line_of_user:
                raise DataFormatError(
                    f"{where}: user {user} appears again (first at line {first_line_of_user[user]}); "
                    "the S3-Rec form has one line per user."
                )
            first_line_of_user[user] = line_no
            lengths.append(len(ids) - 1)
            chunks.append(ids[1:])
    if not chunks:
        raise DataFormatError(f"{path}: no sequences; expected lines 'user_id item_id item_id ...'.")
    items = np.concatenate(chunks)
    if items.max() > np.iinfo(np.int32).max:
        raise DataFormatError(f"{path}: item id {items.max()} does not fit int32.")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return SequenceData(
        name=name,
        num_items=int(items.max()),
        num_users=len(lengths),
        items=items.astype(np.int32),
        timestamps=None,
        ratings=None,
        user_offsets=offsets,
        source=str(path),
    ).validate()


def _is_int(text: str) -> bool:
    """Whether `text` parses as a Python int."""
    try:
        int(text)
    except ValueError:
        return False
    return True
