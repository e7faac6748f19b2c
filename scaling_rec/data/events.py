"""Bring-your-own event logs: CSV / TSV / Parquet with a column mapping → chronological SequenceData.

A log has one event per row and a header that names its columns; `EventColumns` maps the roles
user, item (required), timestamp, rating, action, weight (optional) to column names. Ids may be
integers or strings (an id column is integer when its first row holds an integer written canonically;
then every id must be: '01' would read as 1 and merge with it, so it is a malformed row). Timestamps are
integers (any unit; seconds for the time bias to be meaningful). Text must be UTF-8 (a byte that is not is
an error naming file and line: replaced, two distinct ids could become one).

The in-memory path (`load_events`, `data.name='events'`) follows the built-in readers
(scaling_rec/data/movielens.py): a user's events are sorted by (timestamp, row in the file), or kept
in file order when there is no timestamp column; users and items are numbered densely by ascending
original id (user index 0.., item id 1..; 0 is padding). Then, in this order: `min_rating` keeps
events rated >= it, `dedup` drops consecutive repeats, `kcore` keeps the k-core (every user and
every item with >= k events, iterated to a fixed point) and renumbers the items that are left in
the same order. Large logs go through `launch/prepare.py` instead (scaling_rec/data/prepared.py),
which reads the same chunks (`iter_chunks`) with bounded memory.

A malformed row (wrong number of fields, a non-integer id/timestamp, a missing value) raises
DataFormatError naming file and line, or is skipped and counted when `skip_bad_rows` is set.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import pathlib
from collections.abc import Iterator, Mapping

import numpy as np

from scaling_rec.config import TIMESTAMP_UNITS
from scaling_rec.data.sequences import SequenceData, drop_consecutive_repeats, select_events
from scaling_rec.data.textio import decode_utf8, int64_problem, shown
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

ROLES = ("user", "item", "timestamp", "rating", "action", "weight")
_INT_ROLES = ("timestamp", "action")
_FLOAT_ROLES = ("rating", "weight")
CHUNK_BYTES = 64 << 20
_CANONICAL_INT = r"^(0|-?[1-9][0-9]*)$"


@dataclasses.dataclass(frozen=True)
class EventColumns:
    """Column name of each role in the log; '' means the log has no such column."""

    user: str = "user"
    item: str = "item"
    timestamp: str = "timestamp"
    rating: str = ""
    action: str = ""
    weight: str = ""

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str] | None) -> EventColumns:
        """From a {role: column} mapping (e.g. config `data.columns`); roles left out take the defaults."""
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(ROLES))
        if unknown:
            raise ConfigError(f"data.columns has unknown roles {unknown}; the roles are {list(ROLES)}.")
        cols = cls(**mapping)
        if not cols.user or not cols.item:
            raise ConfigError("data.columns must name the 'user' and 'item' columns.")
        return cols

    def mapped(self) -> dict[str, str]:
        """{role: column} of the roles the log has."""
        return {r: getattr(self, r) for r in ROLES if getattr(self, r)}


def per_second(unit: str) -> int:
    """Timestamps per second in `unit` (config data.timestamp_unit: 's', 'ms', 'us' or 'ns')."""
    if unit not in TIMESTAMP_UNITS:
        raise ConfigError(f"timestamp unit {unit!r} is not one of {list(TIMESTAMP_UNITS)} (data.timestamp_unit, "
                          "launch.prepare --timestamp_unit).")
    return 1000 ** TIMESTAMP_UNITS.index(unit)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A public log's file, column mapping, timestamp unit and download command (README, 'Your own event
    log')."""

    file: str
    columns: EventColumns
    download: str
    timestamp_unit: str = "s"


PRESETS = {
    # GroupLens README: ratings.csv, header userId,movieId,rating,timestamp; Unix seconds.
    "ml-20m": Preset("ml-20m/ratings.csv", EventColumns("userId", "movieId", "timestamp", rating="rating"),
                     "curl -LO https://files.grouplens.org/datasets/movielens/ml-20m.zip && unzip ml-20m.zip"),
    # Amazon Reviews 2023 benchmark files (one category), 5core/rating_only/<Category>.csv:
    # user_id,parent_asin,rating,timestamp with string ids and Unix milliseconds.
    "amazon-2023": Preset("Toys_and_Games.csv", EventColumns("user_id", "parent_asin", "timestamp", rating="rating"),
                          "download <Category>.csv from https://amazon-reviews-2023.github.io (benchmark files, "
                          "5-core, rating_only)", timestamp_unit="ms"),
    # Yambda (Yandex music) flat Parquet, e.g. 50m/likes.parquet or listens.parquet: uid, item_id, timestamp,
    # is_organic (listens add played_ratio_pct, track_length_seconds); is_organic is kept as the action.
    # Its timestamps are uint32 seconds from the log's start, in steps of 5 s (the dataset card's sample rows:
    # 106910, 146130, ... 18111945), so the default unit 's' reads them as they are.
    "yambda": Preset("likes.parquet", EventColumns("uid", "item_id", "timestamp", action="is_organic"),
                     "curl -LO https://huggingface.co/datasets/yandex/yambda/resolve/main/flat/50m/likes.parquet"),
}


@dataclasses.dataclass
class EventChunk:
    """A block of consecutive rows: one array per mapped role, and where it came from.

    columns: role -> array [n] (ids int64 or str objects, timestamp/action int64, rating/weight float32).
    first_line: the 1-based file line (Parquet: row) of the block's first row; next_line: the one after it.
    skipped: rows dropped as malformed (only with skip_bad_rows), with the first few as 'file:line: why'.
    """

    columns: dict[str, np.ndarray]
    first_line: int
    next_line: int = 0
    skipped: int = 0
    skipped_examples: list[str] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return int(self.columns["user"].shape[0])


def file_format(path: str | os.PathLike) -> str:
    """'csv', 'tsv' or 'parquet' from the file name."""
    name = str(path).lower()
    for ext, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".tab", "tsv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return fmt
    raise ConfigError(f"{path}: cannot tell the format from the name; use .csv, .tsv or .parquet.")


def iter_chunks(path: str | os.PathLike, columns: EventColumns, *, skip_bad_rows: bool = False,
                chunk_bytes: int = CHUNK_BYTES, start_offset: int = 0,
                start_line: int = 2) -> Iterator[tuple[EventChunk, int]]:
    """Yields (chunk, byte offset after it) over the log, about `chunk_bytes` of text (or rows) at a time.

    `start_offset`/`start_line` resume a CSV/TSV read at a chunk boundary returned earlier (Parquet:
    the offset is a row index). Memory is bounded by the chunk size, not the file size.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: not a file; data.path must name an event log (.csv, .tsv, .parquet).")
    fmt = file_format(path)
    if fmt == "parquet":
        yield from _parquet_chunks(path, columns, skip_bad_rows, max(chunk_bytes // 32, 1), start_offset)
    else:
        yield from _text_chunks(path, columns, "," if fmt == "csv" else "\t", skip_bad_rows, chunk_bytes,
                                start_offset, start_line)


def _text_chunks(path: pathlib.Path, columns: EventColumns, sep: str, skip_bad_rows: bool, chunk_bytes: int,
                 start_offset: int, start_line: int) -> Iterator[tuple[EventChunk, int]]:
    with path.open("rb") as fh:
        header_bytes = fh.readline()
        header = next(csv.reader([decode_utf8(header_bytes, str(path))], delimiter=sep))
        header = [h.strip() for h in header]
        missing = [f"{r}={c!r}" for r, c in columns.mapped().items() if c not in header]
        if missing:
            raise DataFormatError(
                f"{path}:1: header {header} lacks the mapped columns {', '.join(missing)}; set data.columns "
                "(role=column) to the names in the header."
            )
        parser = _BlockParser(path, header, header_bytes, columns, sep, skip_bad_rows)
        first_row = next(csv.reader([decode_utf8(fh.readline(), str(path), first_line=2)], delimiter=sep), [])
        for role in ("user", "item"):
            i = header.index(getattr(columns, role))
            parser.id_types[role] = "int" if i < len(first_row) and _is_int(first_row[i].strip()) else "str"
        offset, line = max(start_offset, len(header_bytes)), max(start_line, 2)
        fh.seek(offset)
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                return
            if not block.endswith(b"\n"):
                block += fh.readline()
            offset += len(block)
            chunk = parser.parse(block, line)
            line += block.count(b"\n")
            chunk.next_line = line
            yield chunk, offset


class _BlockParser:
    """Parses newline-aligned blocks of a delimited file with pyarrow; falls back to a row scan on errors."""

    def __init__(self, path: pathlib.Path, header: list[str], header_bytes: bytes, columns: EventColumns,
                 sep: str, skip_bad_rows: bool) -> None:
        self.path, self.header, self.header_bytes = path, header, header_bytes
        self.roles = columns.mapped()
        self.sep, self.skip_bad_rows = sep, skip_bad_rows
        self.id_types: dict[str, str] = {}  # 'int' or 'str', set from the first row

    def parse(self, block: bytes, first_line: int) -> EventChunk:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        types = {c: pa.int64() for r, c in self.roles.items() if r in _INT_ROLES}
        types |= {c: pa.float32() for r, c in self.roles.items() if r in _FLOAT_ROLES}
        # Integer ids are read as text and cast after a check that each is written as the integer it reads as:
        # parsed directly, '01' and '1' would both be user 1.
        types |= {self.roles[r]: pa.string() for r in self.id_types}
        try:
            table = pacsv.read_csv(
                pa.BufferReader(self.header_bytes + block),
                parse_options=pacsv.ParseOptions(delimiter=self.sep),
                convert_options=pacsv.ConvertOptions(include_columns=list(self.roles.values()), column_types=types,
                                                     strings_can_be_null=True),
            )
            if any(table.column(c).null_count for c in self.roles.values()):
                raise ValueError("missing value")
            table = self._int_ids(table)
            for r in _FLOAT_ROLES:
                if r in self.roles and not pc.all(pc.is_finite(table.column(self.roles[r]))).as_py():
                    raise ValueError("not finite")
        except (pa.ArrowInvalid, ValueError):
            return self._scan(block, first_line)
        return self._chunk(table, first_line)

    def _int_ids(self, table):
        """`table` with its integer id columns (read as text) cast to int64; ValueError when one is not written
        canonically ('01', '+1', ' 1'), ArrowInvalid when one does not fit int64 (the row scan then names it)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        for role, kind in self.id_types.items():
            if kind != "int":
                continue
            name = self.roles[role]
            col = pc.utf8_trim_whitespace(table.column(name))  # ' 5' is 5, as the row scan reads it
            if not pc.all(pc.match_substring_regex(col, _CANONICAL_INT)).as_py():
                raise ValueError("non-canonical integer id")
            table = table.set_column(table.schema.get_field_index(name), name, pc.cast(col, pa.int64()))
        return table

    def _chunk(self, table, first_line: int, skipped: int = 0, examples: list[str] | None = None) -> EventChunk:
        cols = {}
        for role, name in self.roles.items():
            arr = table.column(name).to_numpy()
            if role in ("user", "item"):
                arr = arr.astype(np.int64) if self.id_types[role] == "int" else arr.astype(object)
            cols[role] = arr
        return EventChunk(cols, first_line, 0, skipped, examples or [])

    def _row_problem(self, fields: list[str]) -> str | None:
        if len(fields) != len(self.header):
            return f"{len(fields)} fields, the header has {len(self.header)}"
        for role, name in self.roles.items():
            text = fields[self.header.index(name)].strip()
            if not text:
                return f"{role} column {name!r} is empty"
            want_int = role in _INT_ROLES or self.id_types.get(role) == "int"
            if want_int:
                problem = int64_problem(text)
                if problem:
                    return f"{role} {shown(text)} {problem}"
                if role in self.id_types and not _is_int(text):
                    return (f"{role} {shown(text)} is not written as the integer it reads as ({int(text)}): the "
                            f"column holds integer ids (its first row's is one), and {shown(text)} would merge with "
                            f"{int(text)}; write the ids one way, or make them non-numeric")
                continue
            try:
                if role in _FLOAT_ROLES and not math.isfinite(float(text)):
                    return f"{role} {text!r} is not finite"
            except ValueError:
                return f"{role} {text!r} is not a number"
        return None

    def _scan(self, block: bytes, first_line: int) -> EventChunk:
        """Finds the malformed rows of a block that pyarrow refused (error path only)."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        good, skipped, examples = [], 0, []
        lines = decode_utf8(block, str(self.path), first_line=first_line).splitlines(keepends=True)
        for i, (fields, raw) in enumerate(zip(csv.reader(lines, delimiter=self.sep), lines, strict=True)):
            if not raw.strip():
                continue
            problem = self._row_problem(fields)
            if problem is None:
                good.append(raw)
                continue
            where = f"{self.path}:{first_line + i}"
            if not self.skip_bad_rows:
                raise DataFormatError(
                    f"{where}: {problem}; expected the header's columns {self.header} with integer "
                    f"timestamp/action and numeric rating/weight. Line: {raw.rstrip()!r}. Fix the row, or pass "
                    "--skip_bad_rows to count and skip such rows."
                )
            skipped += 1
            if len(examples) < 5:
                examples.append(f"{where}: {problem}")
        text = self.header_bytes + "".join(good).encode("utf-8")
        types = {c: pa.int64() for r, c in self.roles.items() if r in _INT_ROLES}
        types |= {c: pa.float32() for r, c in self.roles.items() if r in _FLOAT_ROLES}
        types |= {self.roles[r]: pa.int64() if t == "int" else pa.string() for r, t in self.id_types.items()}
        table = pacsv.read_csv(pa.BufferReader(text), parse_options=pacsv.ParseOptions(delimiter=self.sep),
                               convert_options=pacsv.ConvertOptions(include_columns=list(self.roles.values()),
                                                                    column_types=types))
        return self._chunk(table, first_line, skipped, examples)


def _parquet_chunks(path: pathlib.Path, columns: EventColumns, skip_bad_rows: bool, rows: int,
                    start_row: int) -> Iterator[tuple[EventChunk, int]]:
    import pyarrow.parquet as pq

    roles = columns.mapped()
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    missing = [f"{r}={c!r}" for r, c in roles.items() if c not in names]
    if missing:
        raise DataFormatError(f"{path}: fields {names} lack the mapped columns {', '.join(missing)}; set data.columns.")
    import pyarrow as pa
    import pyarrow.compute as pc

    int_ids = {r: pa.types.is_integer(pf.schema_arrow.field(roles[r]).type) for r in ("user", "item")}
    for role, name in roles.items():
        kind = pf.schema_arrow.field(name).type
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_duration(kind):
            raise DataFormatError(f"{path}: column {name!r} ({role}) is {kind}; store it as integers in one unit "
                                  "(e.g. seconds since the epoch) and set data.timestamp_unit / --timestamp_unit.")
        if role in ("user", "item", *_INT_ROLES) and pa.types.is_uint64(kind):
            raise DataFormatError(f"{path}: column {name!r} ({role}) is uint64, whose values above 2^63 - 1 would "
                                  "wrap to negative int64; store it as int64 (ids: or as strings).")
    row = 0
    for batch in pf.iter_batches(batch_size=rows, columns=list(roles.values())):
        first, row = row, row + batch.num_rows
        if row <= start_row:
            continue
        bad = np.zeros(batch.num_rows, bool)
        for role, name in roles.items():
            col = batch.column(name)
            bad |= col.is_null().to_numpy(zero_copy_only=False)
            if pa.types.is_floating(col.type):  # NaN / inf, and for integer roles a fraction, as the CSV path refuses
                values = col.to_numpy(zero_copy_only=False).astype(np.float64)
                bad |= ~np.isfinite(values)
                if role in _INT_ROLES or role in ("user", "item"):
                    bad |= np.isfinite(values) & ((values != np.floor(values)) | (np.abs(values) >= 2.0**63))
        skipped, examples = 0, []
        if bad.any():
            rows_bad = np.flatnonzero(bad)
            if not skip_bad_rows:
                raise DataFormatError(f"{path}: row {first + int(rows_bad[0]) + 1}: a mapped column is null, not "
                                      "finite, or a fraction where an integer belongs. Fix it, or pass "
                                      "--skip_bad_rows to count and skip such rows.")
            skipped = int(bad.sum())
            examples = [f"{path}: row {first + int(r) + 1}: null, not finite or fractional" for r in rows_bad[:5]]
            batch = batch.filter(pa.array(~bad))
        cols: dict[str, np.ndarray] = {}
        for role, name in roles.items():
            col = batch.column(name)
            if role in ("user", "item"):
                arr = col.to_numpy().astype(np.int64) if int_ids[role] else np.asarray(
                    pc.cast(col, pa.string()).to_pylist(), dtype=object)
            else:
                arr = col.to_numpy(zero_copy_only=False).astype(np.int64 if role in _INT_ROLES else np.float32)
            cols[role] = arr
        yield EventChunk(cols, first + 1, row + 1, skipped, examples), row


def _is_int(text: str) -> bool:
    """Whether `text` is an int64 written canonically ('1', '-3'; not '01', '+1', or beyond int64: such a
    column is read as text)."""
    return int64_problem(text) is None and str(int(text)) == text
    return True


@dataclasses.dataclass
class EventTable:
    """A whole log in memory: role -> array [E], plus the count of skipped rows."""

    columns: dict[str, np.ndarray]
    skipped: int


def read_table(path: str | os.PathLike, columns: EventColumns, *, skip_bad_rows: bool = False) -> EventTable:
    """Reads every row of a log into memory (small and medium logs; large ones: launch/prepare.py)."""
    parts: dict[str, list[np.ndarray]] = {r: [] for r in columns.mapped()}
    skipped = 0
    for chunk, _ in iter_chunks(path, columns, skip_bad_rows=skip_bad_rows):
        skipped += chunk.skipped
        for r, a in chunk.columns.items():
            parts[r].append(a)
    if not parts["user"] or sum(len(a) for a in parts["user"]) == 0:
        raise DataFormatError(f"{path}: no events (only a header, or every row skipped).")
    return EventTable({r: np.concatenate(a) for r, a in parts.items()}, skipped)


def table_to_sequences(table: EventTable, *, name: str, source: str) -> SequenceData:
    """Sorts a table by (user, timestamp, row) and numbers users and items by ascending original id."""
    cols = table.columns
    user_ids, user_E = np.unique(cols["user"], return_inverse=True)
    item_ids, item_E = np.unique(cols["item"], return_inverse=True)
    rows = np.arange(user_E.size)
    ts = cols.get("timestamp")
    order = np.lexsort((rows, user_E)) if ts is None else np.lexsort((rows, ts, user_E))
    user_E = user_E.reshape(-1)[order]
    counts = np.bincount(user_E, minlength=user_ids.size)
    offsets = np.zeros(user_ids.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return SequenceData(
        name=name, num_items=int(item_ids.size), num_users=int(user_ids.size),
        items=(item_E.reshape(-1)[order] + 1).astype(np.int32),
        timestamps=None if ts is None else ts[order].astype(np.int64),
        ratings=None if "rating" not in cols else cols["rating"][order].astype(np.float32),
        user_offsets=offsets, source=source,
    ).validate()


def kcore(data: SequenceData, k: int) -> SequenceData:
    """The k-core: drops users and items with fewer than k events until none is left; renumbers items
    densely in their old order and drops users left empty (k <= 1 returns `data`)."""
    if k <= 1:
        return data
    keep_E = np.ones(data.num_events, bool)
    user_E = data.user_of_event()
    while True:
        user_n = np.bincount(user_E[keep_E], minlength=data.num_users)
        item_n = np.bincount(data.items[keep_E], minlength=data.num_items + 1)
        drop = keep_E & ((user_n[user_E] < k) | (item_n[data.items] < k))
        if not drop.any():
            break
        keep_E &= ~drop
    if not keep_E.any():
        raise ConfigError(f"data.kcore={k} leaves no events of {data.name!r} ({data.source}); lower it.")
    kept = select_events(data, keep_E)
    users = np.flatnonzero(np.diff(kept.user_offsets) > 0)
    offsets = np.append(kept.user_offsets[users], kept.num_events).astype(np.int64)
    item_ids, items = np.unique(kept.items, return_inverse=True)
    return dataclasses.replace(kept, items=(items.reshape(-1) + 1).astype(np.int32), num_items=int(item_ids.size),
                               num_users=int(users.size), user_offsets=offsets).validate()


def load_events(path: str | os.PathLike, columns: Mapping[str, str] | EventColumns | None = None, *,
                name: str = "events", min_rating: float | None = None, dedup: bool = False,
                kcore_k: int = 0, timestamp_unit: str = "s") -> SequenceData:
    """A log on disk (or a directory made by launch/prepare.py) → SequenceData (module docstring).

    timestamp_unit: the log's ('s', 'ms', 'us', 'ns'); timestamps become seconds (floored) after each
    user's events are ordered by the original ones. A prepared directory holds seconds already.
    """
    if not path:
        raise ConfigError("data.name='events' needs data.path: an event log (.csv/.tsv/.parquet) or a "
                          "directory made by launch/prepare.py.")
    path = pathlib.Path(path)
    cols = columns if isinstance(columns, EventColumns) else EventColumns.from_mapping(columns)
    if path.is_dir():
        from scaling_rec.data.prepared import PreparedData, check_seconds

        if min_rating is not None:
            raise ConfigError(f"data.min_rating applies to a raw log, not to the prepared directory {path}.")
        check_seconds(timestamp_unit, path)

        data = PreparedData.open(path).to_sequences(name=name)
    else:
        table = read_table(path, cols)
        if min_rating is not None:
            if "rating" not in table.columns:
                raise ConfigError(f"data.min_rating={min_rating} but data.columns maps no rating column of {path}.")
            keep = table.columns["rating"] >= min_rating
            table = EventTable({r: a[keep] for r, a in table.columns.items()}, table.skipped)
            if not keep.any():
                raise ConfigError(f"data.min_rating={min_rating} keeps no events of {path}; lower it.")
        data = table_to_sequences(table, name=name, source=str(path))
        if data.timestamps is not None and per_second(timestamp_unit) > 1:
            data = dataclasses.replace(data, timestamps=data.timestamps // per_second(timestamp_unit))
    if dedup:
        data = drop_consecutive_repeats(data).validate()
    return kcore(data, kcore_k)
