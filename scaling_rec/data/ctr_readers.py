"""CTR files with named fields: the chunked Criteo reader (`read_criteo`) and the reader of CSV / TSV / Parquet
tables (`read_table`, data.name='table'). Both parse with pyarrow chunk by chunk, check every row (the first bad
one raises DataFormatError naming file and line or row), and encode through `FieldIds`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import pathlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from scaling_rec.data.ctr_dataset import CTRDataset, FieldIds, make_dataset, random_split
from scaling_rec.data.textio import read_lines, shown
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

CRITEO_NUM_DENSE, CRITEO_NUM_CAT = 13, 26


def criteo_numeric_token(value: str | float) -> str:
    """Log-bucketing of a Criteo integer feature (the Kaggle winners' rule): v > 2 -> floor(ln(v)^2),
    else v itself; empty -> 'NA'. Returned as a token for the field's vocabulary."""
    if value == "":
        return "NA"
    v = float(value)
    return str(int(math.floor(math.log(v) ** 2))) if v > 2 else str(int(v))


@dataclasses.dataclass(frozen=True)
class TableFields:
    """The columns of a CTR table: the 0/1 label, the categorical fields and the numeric features."""

    label: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, fields) -> TableFields:
        """From config `data.fields` (label, and comma-separated categorical and numeric column names)."""
        split = lambda text: tuple(name.strip() for name in text.split(",") if name.strip())
        out = cls(fields.label.strip(), split(fields.categorical), split(fields.numeric))
        names = [out.label, *out.categorical, *out.numeric]
        if not out.label:
            raise ConfigError("data.fields.label must name the label column (data.name='table').")
        if not out.categorical and not out.numeric:
            raise ConfigError("data.fields.categorical and data.fields.numeric name no column (data.name='table'); "
                              "give comma-separated column names, e.g. --config.data.fields.categorical=site,app.")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"data.fields names the columns {repeated} more than once (label, categorical, numeric).")
        return out

    def columns(self) -> list[str]:
        return [self.label, *self.categorical, *self.numeric]

    def role(self, column: str) -> str:
        return "label" if column == self.label else "categorical" if column in self.categorical else "numeric"


CRITEO_FIELDS = TableFields("label", tuple(f"C{j + 1}" for j in range(CRITEO_NUM_CAT)),
                            tuple(f"I{j + 1}" for j in range(CRITEO_NUM_DENSE)))
CHUNK_BYTES = 16 << 20  # text read per chunk
CHUNK_ROWS = 1 << 16  # Parquet rows per chunk


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """Consecutive checked rows: label_n float32 in {0,1}, one pyarrow string array (no nulls) per
    categorical column, numeric_nxM float64 (NaN = missing; every other value finite)."""

    label_n: np.ndarray
    categorical: list
    numeric_nxM: np.ndarray

    def head(self, n: int) -> _Chunk:
        return _Chunk(self.label_n[:n], [c.slice(0, n) for c in self.categorical], self.numeric_nxM[:n])


def _first_bad(bad_n: np.ndarray) -> int | None:
    rows = np.flatnonzero(bad_n)
    return int(rows[0]) if rows.size else None


def _checked_chunk(batch, fields: TableFields, where) -> _Chunk:
    """A pyarrow RecordBatch of the table's columns -> _Chunk; DataFormatError at the first bad row
    (where(i) names row i: 'file:line' or 'file: row r')."""
    import pyarrow as pa
    import pyarrow.compute as pc

    problems: list[tuple[int, str]] = []
    label = batch.column(fields.label)
    if pa.types.is_string(label.type) or pa.types.is_large_string(label.type):
        ok = pc.fill_null(pc.is_in(label, pa.array(["0", "1"])), False).to_numpy(zero_copy_only=False)
        label_n = (pc.fill_null(pc.equal(label, "1"), False).to_numpy(zero_copy_only=False)).astype(np.float32)
    elif pa.types.is_integer(label.type) or pa.types.is_floating(label.type) or pa.types.is_boolean(label.type):
        label_n = pc.cast(label, pa.float32()).to_numpy(zero_copy_only=False)
        ok = (label_n == 0) | (label_n == 1)
    else:
        raise DataFormatError(f"{where(0)}: label column {fields.label!r} has type {label.type}; expected 0/1 "
                              "integers, booleans or the strings '0'/'1'.")
    i = _first_bad(~ok)
    if i is not None:
        problems.append((i, f"label {shown(str(label[i].as_py()))} is not 0 or 1."))
    categorical = []
    for name in fields.categorical:
        col = batch.column(name)
        if not pa.types.is_string(col.type):
            try:
                col = pc.cast(col, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataFormatError(f"{where(0)}: categorical column {name!r} has type {col.type}, which has no "
                                      "string form; expected strings or integers.") from None
        categorical.append(pc.fill_null(col, ""))
    numeric_nxM = np.empty((batch.num_rows, len(fields.numeric)), np.float64)
    for j, name in enumerate(fields.numeric):
        col = batch.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):  # numbers as text in Parquet
            texts = ["" if t is None else t for t in col.to_pylist()]
            bad_n = np.array([bool(t) and not _is_finite(t) for t in texts], bool)
            numeric_nxM[:, j] = [float(t) if t and not bad else np.nan for t, bad in zip(texts, bad_n, strict=True)]
        else:
            try:
                numeric_nxM[:, j] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise DataFormatError(f"{where(0)}: numeric column {name!r} has type {col.type}; expected "
                                      "numbers.") from None
            bad_n = ~np.isfinite(numeric_nxM[:, j]) & ~col.is_null().to_numpy(zero_copy_only=False)
        i = _first_bad(bad_n)
        if i is not None:
            problems.append((i, f"numeric column {name} {shown(str(col[i].as_py()))} is not a finite number."))
    if problems:
        i, message = min(problems)
        raise DataFormatError(f"{where(i)}: {message}")
    return _Chunk(label_n, categorical, numeric_nxM)


def _text_chunks(path: pathlib.Path, fields: TableFields, names: list[str], *, sep: str, quoted: bool,
                 header_lines: int, expected: str, chunk_bytes: int) -> Iterator[_Chunk]:
    """Chunks of a delimited text file whose columns are `names`, parsed by pyarrow `chunk_bytes` at a
    time. Rows never span lines, so row r (0-based) is line header_lines + r + 1. When pyarrow refuses a
    block, `_scan_text` finds the first bad line (UTF-8, column count, label, numeric) and names it."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {fields.label: pa.string()} | {c: pa.string() for c in fields.categorical}
    types |= {c: pa.float64() for c in fields.numeric}
    reader_options = dict(
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=header_lines, block_size=chunk_bytes),
        parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"' if quoted else False, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(include_columns=fields.columns(), column_types=types, null_values=[""],
                                             strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    rows = 0
    try:
        for batch in pacsv.open_csv(path, **reader_options):
            yield _checked_chunk(batch, fields, lambda i, first=rows: f"{path}:{header_lines + first + i + 1}")
            rows += batch.num_rows
    except pa.ArrowInvalid as e:
        _scan_text(path, fields, names, sep=sep, quoted=quoted, header_lines=header_lines, expected=expected)
        raise DataFormatError(f"{path}: pyarrow could not read it after line {header_lines + rows}: {e}") from None


def _scan_text(path: pathlib.Path, fields: TableFields, names: list[str], *, sep: str, quoted: bool,
               header_lines: int, expected: str) -> None:
    """Reads the file line by line (error path only) and raises DataFormatError at its first bad line."""
    label, numeric = names.index(fields.label), [(c, names.index(c)) for c in fields.numeric]
    for lineno, line in read_lines(path):
        if lineno <= header_lines:
            continue
        text = line.rstrip("\r\n")
        parts = next(csv.reader([text], delimiter=sep), []) if quoted else text.split(sep)
        if len(parts) != len(names):
            raise DataFormatError(f"{path}:{lineno}: {len(parts)} columns, expected {len(names)} ({expected}).")
        if parts[label] not in ("0", "1"):
            raise DataFormatError(f"{path}:{lineno}: label {shown(parts[label])} is not 0 or 1.")
        for name, k in numeric:
            if parts[k] and not _is_finite(parts[k]):
                raise DataFormatError(f"{path}:{lineno}: numeric column {name} {shown(parts[k])} is not a finite "
                                      "number.")


def _parquet_chunks(files: Sequence[pathlib.Path], fields: TableFields, chunk_rows: int) -> Iterator[_Chunk]:
    import pyarrow.parquet as pq

    for file in files:
        pf = pq.ParquetFile(file)
        have = pf.schema_arrow.names
        missing = [c for c in fields.columns() if c not in have]
        if missing:
            raise DataFormatError(f"{file}: no column {missing[0]!r} (data.fields.{fields.role(missing[0])}); its "
                                  f"columns are {have}.")
        rows = 0
        for batch in pf.iter_batches(batch_size=chunk_rows, columns=fields.columns()):
            yield _checked_chunk(batch, fields, lambda i, first=rows, f=file: f"{f}: row {first + i + 1}")
            rows += batch.num_rows


def _log_features(numeric_nxM: np.ndarray) -> np.ndarray:
    """log(1 + max(v, 0)) per value, missing (NaN) -> 0; float32. math.log1p on each distinct value, so the
    numbers do not depend on numpy's vector log."""
    out = np.zeros(numeric_nxM.shape, np.float32)
    for j in range(numeric_nxM.shape[1]):
        present = ~np.isnan(numeric_nxM[:, j])
        values, inverse = np.unique(numeric_nxM[present, j], return_inverse=True)
        logs = np.array([math.log1p(max(v, 0.0)) for v in values.tolist()], np.float64)
        out[present, j] = logs[inverse.reshape(-1)]
    return out


def _bucket_tokens(values_n: np.ndarray):
    """`criteo_numeric_token` of each value (NaN = missing -> 'NA') as a pyarrow string array."""
    import pyarrow as pa

    present = ~np.isnan(values_n)
    values, inverse = np.unique(values_n[present], return_inverse=True)
    tokens = np.full(values_n.shape, "NA", object)
    tokens[present] = np.array([criteo_numeric_token(v) for v in values.tolist()], object)[inverse.reshape(-1)]
    return pa.array(tokens, pa.string())


def _dataset_from_chunks(name: str, fields: TableFields, chunks: Iterable[_Chunk], *, source: str, numeric: str,
                         min_count: int, hash_buckets: int, seed: int, fractions: Sequence[float],
                         max_rows: int) -> CTRDataset:
    """The shared tail of `read_criteo` and `read_table`: ids per field (`FieldIds`), numeric features
    ('log': dense log(1 + max(v, 0)); 'bucket': more categorical fields of `criteo_numeric_token`), the
    seeded `random_split`."""
    if numeric not in ("log", "bucket"):
        raise ConfigError(f"data.numeric = {numeric!r} must be 'log' or 'bucket'.")
    bucket = numeric == "bucket"
    ids = FieldIds(len(fields.categorical) + (len(fields.numeric) if bucket else 0))
    labels, dense = [], []
    rows = 0
    for chunk in chunks:
        if max_rows and rows + len(chunk.label_n) > max_rows:
            chunk = chunk.head(max_rows - rows)
        labels.append(chunk.label_n)
        columns = list(chunk.categorical)
        if bucket:
            columns += [_bucket_tokens(chunk.numeric_nxM[:, j]) for j in range(len(fields.numeric))]
        elif fields.numeric:
            dense.append(_log_features(chunk.numeric_nxM))
        ids.add(columns)
        rows += len(chunk.label_n)
        if max_rows and rows >= max_rows:
            break
    if rows == 0:
        raise DataFormatError(f"{source}: no rows.")
    label = np.concatenate(labels)
    split = random_split(rows, fractions, seed)
    ids_NxF, sizes, oov = ids.finish(split, min_count=min_count, hash_buckets=hash_buckets)
    names = [*fields.categorical, *(fields.numeric if bucket else ())]
    num = np.concatenate(dense) if dense else None
    return make_dataset(name, names, ids_NxF, num, label, split, sizes, oov, source)


def read_criteo(path: str | os.PathLike, *, numeric: str = "log", min_count: int = 1, hash_buckets: int = 0,
                seed: int = 2024, fractions: Sequence[float] = (0.8, 0.1, 0.1), max_rows: int = 0,
                chunk_bytes: int = CHUNK_BYTES) -> CTRDataset:
    """A Criteo-format file: label, 13 integer and 26 categorical columns; raw Kaggle / 1TB TSV without a
    header, or CSV with the header `label,I1..I13,C1..C26` (detected from the first line).

    numeric='log': 13 dense features log(1 + max(v, 0)) (missing -> 0) for a bottom MLP;
    numeric='bucket': 13 more categorical fields I1..I13 of `criteo_numeric_token` (no dense features).
    Categorical values: vocabulary of train values seen >= min_count times, or hash_buckets > 0.
    Labels must be 0 or 1; a line with the wrong column count or a non-number in an integer column
    raises DataFormatError with file and line. Read in chunks of `chunk_bytes` (`read_table`'s path).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} not found.")
    first = next(read_lines(path), (1, ""))[1]
    sep = "\t" if "\t" in first else ","
    has_header = first.split(sep)[0].strip().lower() == "label"
    names = [CRITEO_FIELDS.label, *CRITEO_FIELDS.numeric, *CRITEO_FIELDS.categorical]
    chunks = _text_chunks(path, CRITEO_FIELDS, names, sep=sep, quoted=False, header_lines=int(has_header),
                          expected="label, I1..I13, C1..C26", chunk_bytes=chunk_bytes)
    return _dataset_from_chunks(path.stem, CRITEO_FIELDS, chunks, source=str(path), numeric=numeric,
                                min_count=min_count, hash_buckets=hash_buckets, seed=seed, fractions=fractions,
                                max_rows=max_rows)


def table_files(path: str | os.PathLike) -> list[pathlib.Path]:
    """The files of a CTR table: the file itself, or a directory's *.parquet part files in name order."""
    path = pathlib.Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not files:
            raise DataNotFoundError(f"{path} holds no *.parquet part files (data.path of data.name='table').")
        return files
    if not path.exists():
        raise DataNotFoundError(f"{path} not found (data.path of data.name='table').")
    return [path]


def read_table(path: str | os.PathLike, fields: TableFields, *, numeric: str = "log", min_count: int = 1,
               hash_buckets: int = 0, seed: int = 2024, fractions: Sequence[float] = (0.8, 0.1, 0.1),
               max_rows: int = 0, chunk_bytes: int = CHUNK_BYTES, chunk_rows: int = CHUNK_ROWS) -> CTRDataset:
    """A CTR table with named columns: a CSV / TSV file with a header, a Parquet file, or a directory of
    Parquet part files (read in name order), read in chunks of `chunk_bytes` of text or `chunk_rows` rows.

    fields names the label (0/1: integers, booleans, or the text '0'/'1'), the categorical columns
    (strings or integers; null or empty is a value of its own) and the numeric ones (numbers; empty or
    null = missing). Ids, numeric modes and the split are read_criteo's: a Criteo file converted to
    Parquet with columns label, I1..I13, C1..C26 gives read_criteo's dataset. A missing column, a label
    other than 0/1 or a numeric value that is not a finite number raises DataFormatError naming the file
    and its line (text) or row (Parquet).
    """
    files = table_files(path)
    sep = None if pathlib.Path(path).is_dir() else _separator(files[0])
    if sep is None:
        chunks = _parquet_chunks(files, fields, chunk_rows)
    else:
        header = next(csv.reader([next(read_lines(files[0]), (1, ""))[1].rstrip("\r\n")], delimiter=sep), [])
        header = [h.strip() for h in header]
        missing = [c for c in fields.columns() if c not in header]
        if missing:
            raise DataFormatError(f"{files[0]}:1: no column {missing[0]!r} (data.fields.{fields.role(missing[0])}); "
                                  f"the header has {header}.")
        chunks = _text_chunks(files[0], fields, header, sep=sep, quoted=True, header_lines=1,
                              expected="the header's columns", chunk_bytes=chunk_bytes)
    base = pathlib.Path(path)
    return _dataset_from_chunks(base.name if base.is_dir() else base.stem, fields, chunks, source=str(path),
                                numeric=numeric, min_count=min_count, hash_buckets=hash_buckets, seed=seed,
                                fractions=fractions, max_rows=max_rows)


def _separator(path: pathlib.Path) -> str | None:
    """',' for .csv, tab for .tsv / .tab / .txt, None for Parquet (.parquet / .pq), from the file name."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq", ".csv", ".tsv", ".tab", ".txt"):
        return None if suffix in (".parquet", ".pq") else "," if suffix == ".csv" else "\t"
    raise ConfigError(f"{path}: cannot tell the format from the name; use .csv, .tsv (.tab, .txt) or .parquet "
                      "(data.path of data.name='table').")


def _is_finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
