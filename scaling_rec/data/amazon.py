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
from scaling_rec.data.textio import int64_problem, read_lines, shown
from scaling_rec.errors import DataFormatError


def read_s3rec(path: str | os.PathLike, name: str = "amazon") -> SequenceData:
    """Reads an S3-Rec `user item item ...` file into SequenceData (timestamps and ratings None).

    Users keep the file's line order (user index u = the u-th non-blank line); blank lines are
    skipped. num_items is the largest item id in the file.

    Raises:
      DataFormatError: a byte that is not UTF-8, a field that is not an int64 integer, an id < 1, no items,
        or a repeated user id, naming the file, the 1-based line number and the field.
    """
    path = pathlib.Path(path)
    lengths: list[int] = []
    chunks: list[np.ndarray] = []
    first_line_of_user: dict[int, int] = {}
    for line_no, line in read_lines(path):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{line_no}"
        try:
            ids = np.array([int(x) for x in fields], dtype=np.int64)
        except (ValueError, OverflowError):
            k, bad, problem = next((k, x, p) for k, x in enumerate(fields) if (p := int64_problem(x)))
            field = "user id (field 1)" if k == 0 else f"item {k} (field {k + 1})"
            raise DataFormatError(
                f"{where}: {field} {shown(bad)} {problem}; expected 'user_id item_id item_id ...' "
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

