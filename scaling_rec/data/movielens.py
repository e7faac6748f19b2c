"""Readers of the MovieLens rating files into chronological SequenceData, and an ML-1M writer.

Formats (GroupLens READMEs):
  ML-1M `ratings.dat`:          `UserID::MovieID::Rating::Timestamp`, no header.
  ML-20M / latest `ratings.csv`: header `userId,movieId,rating,timestamp`, comma separated.
  ML-100K `u.data`:             `user id \\t item id \\t rating \\t timestamp`, no header.
Timestamps are Unix seconds. Blank lines are ignored.

Sequences: each user's events are sorted by (timestamp, original line order), i.e. a stable sort
by time. Ids are remapped densely, by ascending original id: user index u is the u-th smallest
original user id (0-based), item id k is the k-th smallest original movie id (1-based; 0 = padding),
counting only the events kept after `min_rating`. So `np.unique(original_movie_ids_kept)[k - 1]`
recovers the MovieLens id of item k.
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import tempfile

import numpy as np
import pandas as pd

from scaling_rec.data.sequences import SequenceData, drop_consecutive_repeats
from scaling_rec.data.textio import int64_problem, read_lines, shown
from scaling_rec.errors import ConfigError, DataFormatError

_COLUMNS = ("user", "item", "rating", "timestamp")
_DTYPES = {"user": np.int64, "item": np.int64, "rating": np.float32, "timestamp": np.int64}
_CSV_HEADER = "userId,movieId,rating,timestamp"


def read_ml1m_ratings(
    path: str | os.PathLike, *, min_rating: float | None = None, dedup: bool = False, name: str = "ml-1m"
) -> SequenceData:
    """Reads ML-1M `ratings.dat` (`user::item::rating::timestamp`) into SequenceData."""
    path = pathlib.Path(path)
    events = _read_events(path, sep="::", header=None)
    return events_to_sequences(*events, name=name, source=str(path), min_rating=min_rating, dedup=dedup)


def read_ml_ratings_csv(
    path: str | os.PathLike, *, min_rating: float | None = None, dedup: bool = False, name: str = "ml-20m"
) -> SequenceData:
    """Reads ML-20M / ml-latest `ratings.csv` (header userId,movieId,rating,timestamp)."""
    path = pathlib.Path(path)
    events = _read_events(path, sep=",", header=_CSV_HEADER)
    return events_to_sequences(*events, name=name, source=str(path), min_rating=min_rating, dedup=dedup)


def read_ml100k_udata(
    path: str | os.PathLike, *, min_rating: float | None = None, dedup: bool = False, name: str = "ml-100k"
) -> SequenceData:
    """Reads ML-100K `u.data` (tab separated user, item, rating, timestamp) into SequenceData."""
    path = pathlib.Path(path)
    events = _read_events(path, sep="\t", header=None)
    return events_to_sequences(*events, name=name, source=str(path), min_rating=min_rating, dedup=dedup)


def events_to_sequences(
    users_E: np.ndarray,
    items_E: np.ndarray,
    ratings_E: np.ndarray,
    timestamps_E: np.ndarray,
    *,
    name: str,
    source: str,
    min_rating: float | None = None,
    dedup: bool = False,
) -> SequenceData:
    """Turns an event table (original ids, any row order) into chronological SequenceData.

    Args:
      users_E, items_E: int64 [E] original ids. ratings_E: float32 [E]. timestamps_E: int64 [E] s.
      min_rating: keep only events with rating >= min_rating (None keeps all).
      dedup: drop an event that repeats the item of the user's previous event (after sorting).

    Steps: filter by rating, stable sort by (user, timestamp, row), remap ids densely by ascending
    original id (see the module docstring), then drop consecutive repeats when `dedup`.
    """
    if min_rating is not None:
        keep = ratings_E >= min_rating
        if not keep.any():
            raise ConfigError(
                f"min_rating={min_rating} keeps no events of {source} (ratings there lie in "
                f"{ratings_E.min()}..{ratings_E.max()}); lower min_rating."
            )
        users_E, items_E = users_E[keep], items_E[keep]
        ratings_E, timestamps_E = ratings_E[keep], timestamps_E[keep]
    if users_E.size == 0:
        raise DataFormatError(f"{source}: no rating events.")
    order = np.lexsort((np.arange(users_E.size), timestamps_E, users_E))
    users_E, items_E = users_E[order], items_E[order]
    ratings_E, timestamps_E = ratings_E[order], timestamps_E[order]
    user_starts = np.flatnonzero(np.r_[True, users_E[1:] != users_E[:-1]])
    offsets = np.append(user_starts, users_E.size).astype(np.int64)
    item_ids, item_index_E = np.unique(items_E, return_inverse=True)
    data = SequenceData(
        name=name,
        num_items=int(item_ids.size),
        num_users=int(user_starts.size),
        items=(item_index_E.reshape(-1) + 1).astype(np.int32),
        timestamps=timestamps_E.astype(np.int64),
        ratings=ratings_E.astype(np.float32),
        user_offsets=offsets,
        source=source,
    )
    if dedup:
        data = drop_consecutive_repeats(data)
    return data.validate()


def _read_events(
    path: pathlib.Path, *, sep: str, header: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parses a 4-column rating file with pandas' C parser; returns (users, items, ratings, times).

    On any parse failure the file is scanned line by line to name the first bad line.
    """
    if not path.is_file():
        raise DataFormatError(f"{path}: not a file; expected a MovieLens ratings file.")
    if header is not None:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            first = fh.readline().strip()
        if first != header:
            raise DataFormatError(f"{path}:1: header is {first!r}, expected {header!r}.")
    source: pathlib.Path | io.BytesIO = path
    pandas_sep = sep
    if sep == "::":  # multi-character separators need pandas' slow python engine; use tabs instead
        source = io.BytesIO(path.read_bytes().replace(b"::", b"\t"))
        pandas_sep = "\t"
    first_fields = _first_data_line(path, has_header=header is not None)
    if first_fields is not None and len(first_fields.split(sep)) != len(_COLUMNS):
        _raise_first_bad_line(path, sep=sep, has_header=header is not None, reason=None)
    try:
        df = pd.read_csv(
            source,
            sep=pandas_sep,
            header=0 if header is not None else None,
            names=list(_COLUMNS),
            index_col=False,
            dtype=_DTYPES,
            engine="c",
        )
    except (ValueError, OverflowError, pd.errors.ParserError) as e:  # UnicodeDecodeError is a ValueError
        _raise_first_bad_line(path, sep=sep, has_header=header is not None, reason=str(e))
    ratings = df["rating"].to_numpy()
    if not np.all(np.isfinite(ratings)):
        _raise_first_bad_line(path, sep=sep, has_header=header is not None, reason="missing rating")
    return df["user"].to_numpy(), df["item"].to_numpy(), ratings, df["timestamp"].to_numpy()


def _first_data_line(path: pathlib.Path, *, has_header: bool) -> str | None:
    """The first non-blank data line (without its newline), or None for an empty file."""
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        if has_header:
            fh.readline()
        for line in fh:
            if line.strip():
                return line.rstrip("\r\n")
    return None


def _raise_first_bad_line(path: pathlib.Path, *, sep: str, has_header: bool, reason: str | None) -> None:
    """Scans the file (error path only) and raises DataFormatError naming the first bad line."""
    expected = sep.join(_COLUMNS) if sep != "\t" else "\\t".join(_COLUMNS)
    for line_no, line in read_lines(path):
        if (has_header and line_no == 1) or not line.strip():
            continue
        fields = line.rstrip("\r\n").split(sep)
        problem = None
        if len(fields) != len(_COLUMNS):
            problem = f"{len(fields)} fields, expected {len(_COLUMNS)}. Line: {shown(line, 80)}"
        else:
            for k, (col, text) in enumerate(zip(_COLUMNS, fields, strict=True)):
                why = _field_problem(col, text)
                if why:
                    problem = f"{col} {shown(text)} (field {k + 1}) {why}"
                    break
        if problem:
            raise DataFormatError(f"{path}:{line_no}: {problem}; expected '{expected}'.")
    raise DataFormatError(f"{path}: could not be parsed as '{expected}' ({reason}).")


def _field_problem(column: str, text: str) -> str | None:
    """Why `text` is not a finite number (the rating) or an int64 (ids, timestamp); None when it is."""
    if column != "rating":
        return int64_problem(text)
    try:
        return None if math.isfinite(float(text)) else "is not a finite number"
    except ValueError:
        return "is not a number"


def write_ml1m_ratings_dat(
    path: str | os.PathLike, data: SequenceData, *, shuffle_seed: int | None = None
) -> None:
    """Writes `data` as an ML-1M `ratings.dat` (`user::item::rating::timestamp` lines, no header).

    User index u is written as id u + 1, items keep their ids, ratings are written as integers (ML-1M
    has whole-star ratings). Rows go user after user, or in a random order when `shuffle_seed` is
    given (to exercise the reader's sort). The file is written to a temporary name and renamed.

    Raises:
      DataFormatError: `data` has no timestamps or ratings, or a rating is not a whole number.
    """
    if data.timestamps is None or data.ratings is None:
        raise DataFormatError(
            f"write_ml1m_ratings_dat: SequenceData {data.name!r} has no "
            f"{'timestamps' if data.timestamps is None else 'ratings'}; ML-1M rows need both "
            "(e.g. synthetic_sequences(..., with_timestamps=True, with_ratings=True))."
        )
    ratings = data.ratings.astype(np.int64)
    if np.any(ratings != data.ratings):
        raise DataFormatError(
            f"write_ml1m_ratings_dat: {data.name!r} has non-integer ratings; ML-1M ratings are whole stars."
        )
    columns = [data.user_of_event() + 1, data.items.astype(np.int64), ratings, data.timestamps]
    table = np.stack(columns, axis=1)
    if shuffle_seed is not None:
        table = table[np.random.default_rng(shuffle_seed).permutation(len(table))]
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as fh:
            fh.writelines(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in table.tolist())
        os.replace(tmp, path)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)
