"""CTR datasets as integer field ids: Frappe rebuilt from the raw log, a Criteo-format reader, a reader of
tables with named fields (CSV / TSV / Parquet, data.name='table'), a libFM reader, and a synthetic generator
with planted field interactions. The Criteo and table readers share one chunked pyarrow path (`FieldIds`).

Every dataset becomes a `CTRDataset`: for each split `cat_NxF` int32 (field f's id in
0..vocab_sizes[f]-1, 0 = out-of-vocabulary), optional `num_NxM` float32 dense features, and
`label_N` float32 in {0, 1}. Vocabularies are built on the training split only, sorted by value
string (deterministic), and cached on disk with the encoded arrays (`load_ctr`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import pathlib
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from scaling_rec.data.textio import decode_utf8, int64_problem, read_lines, shown
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country",
                 "city")
# Field cardinalities of the NFM one-hot encoding (frappe-nfm/README.nfm.txt), in FRAPPE_FIELDS order.
NFM_FRAPPE_CARDINALITIES = (957, 4082, 7, 7, 2, 3, 2, 9, 80, 233)
FRAPPE_LOGS = 96_203
CRITEO_NUM_DENSE, CRITEO_NUM_CAT = 13, 26
_CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class CTRSplit:
    """One split: cat_NxF int32 field ids (0 = OOV), num_NxM float32 or None, label_N float32 in {0,1}."""

    cat_NxF: np.ndarray
    num_NxM: np.ndarray | None
    label_N: np.ndarray

    def __len__(self) -> int:
        return int(self.label_N.shape[0])


@dataclasses.dataclass(frozen=True)
class CTRDataset:
    """A split CTR dataset; vocab_sizes[f] counts field f's rows including the OOV row 0.

    oov_counts maps a split name to the number of its values (summed over fields) that were not in
    the training vocabulary and so were mapped to id 0.
    """

    name: str
    field_names: tuple[str, ...]
    vocab_sizes: tuple[int, ...]
    num_dense: int
    train: CTRSplit
    valid: CTRSplit
    test: CTRSplit
    oov_counts: dict[str, int]
    source: str = ""

    @property
    def num_fields(self) -> int:
        return len(self.field_names)

    def split(self, name: str) -> CTRSplit:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


# ----------------------------------------------------------------------------- encoding helpers


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """(train, valid, test) sizes: valid = round(f_v n), test = floor(f_t n), train = the rest.

    For Frappe's 288,609 rows and 7:2:1 this gives 202,027 / 57,722 / 28,860, the NFM/BARS sizes.
    """
    f_train, f_valid, f_test = fractions
    if min(fractions) < 0 or abs(f_train + f_valid + f_test - 1.0) > 1e-6:
        raise ConfigError(f"data.split = {tuple(fractions)} must be three non-negative fractions summing to 1.")
    n_valid, n_test = int(round(f_valid * n)), int(math.floor(f_test * n))
    return n - n_valid - n_test, n_valid, n_test


def hash_id(field: int, value: str, buckets: int) -> int:
    """Deterministic hashing trick: 1 + crc32('field:value') mod buckets (0 stays free for OOV)."""
    return 1 + zlib.crc32(f"{field}:{value}".encode()) % buckets


class FieldIds:
    """Categorical values -> field ids, fed chunk by chunk (the one encoder of every CTR reader).

    `add` gives each field's distinct values provisional ids in order of first appearance (memory: the
    distinct values and an int32 per value read); `finish` counts them on the training rows and remaps:
    the vocabulary is the train values seen >= min_count times, numbered 1..V by value string (0 = OOV),
    or with hash_buckets > 0 `hash_id` of every value instead.
    """

    def __init__(self, num_fields: int) -> None:
        self._index: list[dict[str, int]] = [{} for _ in range(num_fields)]
        self._parts: list[np.ndarray] = []

    def add(self, columns_F: Sequence) -> None:
        """One chunk: a column per field, each a pyarrow string array without nulls or a sequence of str."""
        import pyarrow as pa

        n = len(columns_F[0]) if columns_F else 0
        ids_nxF = np.empty((n, len(self._index)), np.int32)
        for f, col in enumerate(columns_F):
            encoded = (col if isinstance(col, pa.Array) else pa.array(col, pa.string())).dictionary_encode()
            index = self._index[f]
            values = encoded.dictionary.to_pylist()
            first_ids = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int32, len(values))
            ids_nxF[:, f] = first_ids[encoded.indices.to_numpy()]
        self._parts.append(ids_nxF)

    def finish(self, index_split_N: np.ndarray, *, min_count: int = 1,
               hash_buckets: int = 0) -> tuple[np.ndarray, tuple[int, ...], dict[str, int]]:
        """(ids_NxF int32, vocab sizes incl. OOV, OOV counts per split name); index_split_N: 0/1/2 per row."""
        first_NxF = np.concatenate(self._parts) if self._parts else np.zeros((0, len(self._index)), np.int32)
        ids_NxF = np.zeros_like(first_NxF)
        train_rows = index_split_N == 0
        sizes = []
        for f, index in enumerate(self._index):
            if hash_buckets > 0:
                table = np.fromiter((hash_id(f, v, hash_buckets) for v in index), np.int32, len(index))
                sizes.append(hash_buckets + 1)
            else:
                counts = np.bincount(first_NxF[train_rows, f], minlength=len(index))
                kept = sorted(v for v, c in zip(index, counts, strict=True) if c >= max(min_count, 1))
                table = np.zeros(len(index), np.int32)
                table[[index[v] for v in kept]] = np.arange(1, len(kept) + 1, dtype=np.int32)
                sizes.append(len(kept) + 1)
            ids_NxF[:, f] = table[first_NxF[:, f]]
        oov = {name: int(np.sum(ids_NxF[index_split_N == s] == 0)) for s, name in enumerate(("train", "valid", "test"))}
        return ids_NxF, tuple(sizes), oov


def encode_columns(columns_FxN: Sequence[Sequence[str]], index_split_N: np.ndarray, *, min_count: int = 1,
                   hash_buckets: int = 0) -> tuple[np.ndarray, tuple[int, ...], dict[str, int]]:
    """String columns -> (ids_NxF int32, vocab sizes incl. OOV, OOV counts per split name), via `FieldIds`.

    index_split_N: 0/1/2 = train/valid/test per row; vocabularies come from train rows only
    (hash_buckets > 0: hashing into that many buckets per field instead, no vocabulary).
    """
    ids = FieldIds(len(columns_FxN))
    ids.add(columns_FxN)
    return ids.finish(index_split_N, min_count=min_count, hash_buckets=hash_buckets)

def _make_dataset(name: str, fields: Sequence[str], ids_NxF: np.ndarray, num_NxM: np.ndarray | None,
                  label_N: np.ndarray, split_N: np.ndarray, sizes: tuple[int, ...], oov: dict[str, int],
                  source: str) -> CTRDataset:
    parts = []
    for s in range(3):
        rows = np.flatnonzero(split_N == s)
        parts.append(CTRSplit(ids_NxF[rows], None if num_NxM is None else num_NxM[rows],
                              label_N[rows].astype(np.float32)))
    return CTRDataset(name=name, field_names=tuple(fields), vocab_sizes=sizes,
                      num_dense=0 if num_NxM is None else num_NxM.shape[1], train=parts[0], valid=parts[1],
                      test=parts[2], oov_counts=oov, source=source)


def random_split(n: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """split_N in {0,1,2}: a seeded shuffle cut into train/valid/test of `split_sizes`."""
    n_train, n_valid, _ = split_sizes(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    split = np.full(n, 2, np.int8)
    split[order[:n_train]] = 0
    split[order[n_train:n_train + n_valid]] = 1
    return split


# ----------------------------------------------------------------------------- Frappe


def read_frappe_logs(zip_path: str | os.PathLike) -> list[list[str]]:
    """The 96,203 raw logs of Mobile_Frappe.zip as rows of the 10 FRAPPE_FIELDS (cnt dropped)."""
    path = pathlib.Path(zip_path)
    if not path.exists():
        raise DataNotFoundError(f"{path} not found; expected the original Mobile_Frappe.zip (see "
                                "../shared/data/frappe-raw/README.md).")
    member = "Mobile_Frappe/frappe/frappe.csv"
    with zipfile.ZipFile(path) as z:
        text = decode_utf8(z.read(member), f"{path}:{member}")
    lines = text.splitlines()
    header = lines[0].split("\t")
    want = [header.index(f) if f in header else -1 for f in FRAPPE_FIELDS]
    if -1 in want:
        raise DataFormatError(f"{path}:{member}:1: header {header} lacks one of {FRAPPE_FIELDS}.")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != len(header):
            raise DataFormatError(f"{path}:{member}:{lineno}: {len(parts)} fields, expected {len(header)}.")
        rows.append([parts[i] for i in want])
    return rows


def frappe_with_negatives(logs: list[list[str]], seed: int, negatives_per_log: int = 2) -> tuple[list, np.ndarray]:
    """NFM protocol (He & Chua 2017, §4.1): every log is a positive; for each, `negatives_per_log`
    distinct random apps that the user did not use in that context become negatives (same user and
    context). Returns (rows, label_N) with the positives first, then the negatives log by log.
    """
    items = sorted({r[1] for r in logs}, key=int)
    used: dict[tuple, set] = {}
    for r in logs:
        used.setdefault((r[0], *r[2:]), set()).add(r[1])
    rng = np.random.default_rng(seed)
    negatives = []
    for r in logs:
        seen = used[(r[0], *r[2:])]
        if len(items) - len(seen) < negatives_per_log:
            raise DataFormatError(f"user {r[0]} used {len(seen)} of the {len(items)} apps in context {r[2:]}; "
                                  f"cannot sample {negatives_per_log} unused apps as negatives.")
        picked: set[str] = set()
        while len(picked) < negatives_per_log:
            cand = items[int(rng.integers(len(items)))]
            if cand not in seen and cand not in picked:
                picked.add(cand)
                negatives.append([r[0], cand, *r[2:]])
    rows = logs + negatives
    label = np.concatenate([np.ones(len(logs)), np.zeros(len(negatives))]).astype(np.float32)
    return rows, label


def build_frappe(zip_path: str | os.PathLike, *, seed: int = 2024, fractions: Sequence[float] = (0.7, 0.2, 0.1),
                 min_count: int = 1) -> CTRDataset:
    """Frappe rebuilt with the NFM/BARS protocol: 288,609 rows, 10 fields, seeded 7:2:1 split.

    The sampled negatives of the published split cannot be recovered; this is a re-creation with the
    same sizes (see `compare_with_nfm`).
    """
    rows, label = frappe_with_negatives(read_frappe_logs(zip_path), seed)
    split = random_split(len(rows), fractions, seed)
    columns = list(zip(*rows, strict=True))
    ids, sizes, oov = encode_columns(columns, split, min_count=min_count)
    return _make_dataset("frappe", FRAPPE_FIELDS, ids, None, label, split, sizes, oov, str(zip_path))


def read_libfm(path: str | os.PathLike, num_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """A libFM/SVMlight file of one-hot rows -> (feature_idx_NxF int64, label_N float32 in {0,1}).

    Labels 1 -> 1 and -1 or 0 -> 0; any other label, a row without exactly `num_fields` idx:1
    pairs, or an unparsable pair raises DataFormatError naming file and line.
    """
    feats, labels = [], []
    for lineno, line in read_lines(path):
        parts = line.split()
        if not parts:
            continue
        if parts[0] not in ("1", "-1", "0", "1.0", "-1.0", "0.0"):
            raise DataFormatError(f"{path}:{lineno}: label {shown(parts[0])} is not one of 1, -1, 0.")
        if len(parts) != num_fields + 1:
            raise DataFormatError(f"{path}:{lineno}: {len(parts) - 1} features, expected {num_fields}.")
        idx = [p.split(":")[0] for p in parts[1:]]
        for k, text in enumerate(idx):
            problem = int64_problem(text)
            if problem:
                raise DataFormatError(f"{path}:{lineno}: feature {k + 1}'s index {shown(text)} {problem} "
                                      "(expected idx:value pairs).")
        feats.append([int(t) for t in idx])
        labels.append(1.0 if float(parts[0]) > 0 else 0.0)
    return np.asarray(feats, np.int64).reshape(-1, num_fields), np.asarray(labels, np.float32)


def compare_with_nfm(data: CTRDataset, nfm_dir: str | os.PathLike) -> dict:
    """Sizes, positive rates and per-field distinct values of our split vs NFM's validation/test files.

    NFM's feature ids are global one-hot indices over the fields in FRAPPE_FIELDS order, so the
    distinct values of field f are counted after subtracting the field offsets.
    """
    offsets = np.concatenate([[0], np.cumsum(NFM_FRAPPE_CARDINALITIES)])
    out: dict = {"ours": {}, "nfm": {}}
    for name in ("train", "valid", "test"):
        s = data.split(name)
        out["ours"][name] = {"rows": len(s), "positives": int(s.label_N.sum()),
                             "distinct_per_field": [int(len(np.unique(s.cat_NxF[:, f]))) for f in range(10)]}
    for name, fname in (("valid", "frappe.validation.libfm"), ("test", "frappe.test.libfm")):
        path = pathlib.Path(nfm_dir) / fname
        if not path.exists():
            continue
        x, y = read_libfm(path, 10)
        field_of = np.searchsorted(offsets, x, side="right") - 1
        out["nfm"][name] = {"rows": len(y), "positives": int(y.sum()),
                            "distinct_per_field": [int(len(np.unique(x[field_of == f]))) for f in range(10)]}
    out["vocab_sizes_ours_incl_oov"] = list(data.vocab_sizes)
    out["nfm_cardinalities"] = list(NFM_FRAPPE_CARDINALITIES)
    return out


# ----------------------------------------------------------------------------- Criteo and named-field tables


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
    return _make_dataset(name, names, ids_NxF, num, label, split, sizes, oov, source)


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

# ----------------------------------------------------------------------------- synthetic


def synthetic_ctr(num_examples: int = 4000, cardinalities: Sequence[int] = (50, 40, 30, 20, 10, 8), *,
                  num_pairs: int = 3, strength: float = 2.0, seed: int = 0,
                  fractions: Sequence[float] = (0.7, 0.2, 0.1)) -> tuple[CTRDataset, list[tuple[int, int]]]:
    """Seeded CTR data whose label depends on planted field interactions.

    Field f's value is Zipf-like over 1..cardinalities[f]; the logit is
    b + sum_f a_f[x_f] / 2 + strength * sum_{(i,j) planted} <u_i[x_i], u_j[x_j]> with 4-dim unit-scale
    u, so pairs carry most of the signal. b sets the positive rate near 1/3 (Frappe's).
    Returns (dataset, planted pairs).
    """
    rng = np.random.default_rng(seed)
    n_f = len(cardinalities)
    ids = np.zeros((num_examples, n_f), np.int32)
    for f, c in enumerate(cardinalities):
        p = 1.0 / np.arange(1, c + 1) ** 0.8
        ids[:, f] = rng.choice(c, size=num_examples, p=p / p.sum()) + 1
    all_pairs = [(i, j) for i in range(n_f) for j in range(i + 1, n_f)]
    pairs = [all_pairs[k] for k in sorted(rng.choice(len(all_pairs), size=min(num_pairs, len(all_pairs)),
                                                     replace=False))]
    logit = np.zeros(num_examples)
    for f, c in enumerate(cardinalities):
        logit += 0.5 * rng.normal(size=c + 1)[ids[:, f]]
    u = [rng.normal(size=(c + 1, 4)) / 2.0 for c in cardinalities]
    for i, j in pairs:
        logit += strength * np.sum(u[i][ids[:, i]] * u[j][ids[:, j]], axis=1)
    logit += np.log(0.5) - np.median(logit)
    label = (rng.random(num_examples) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    split = random_split(num_examples, fractions, seed)
    sizes = tuple(int(c) + 1 for c in cardinalities)
    data = _make_dataset("synthetic", [f"f{f}" for f in range(n_f)], ids, None, label, split, sizes,
                         {"train": 0, "valid": 0, "test": 0}, f"synthetic(seed={seed})")
    return data, pairs


# ----------------------------------------------------------------------------- cache + entry point


def _save(data: CTRDataset, path: pathlib.Path) -> None:
    arrays = {}
    for s in ("train", "valid", "test"):
        sp = data.split(s)
        arrays[f"{s}_cat"], arrays[f"{s}_label"] = sp.cat_NxF, sp.label_N
        if sp.num_NxM is not None:
            arrays[f"{s}_num"] = sp.num_NxM
    meta = {"name": data.name, "field_names": data.field_names, "vocab_sizes": data.vocab_sizes,
            "num_dense": data.num_dense, "oov_counts": data.oov_counts, "source": data.source}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _load(path: pathlib.Path) -> CTRDataset:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        parts = {s: CTRSplit(z[f"{s}_cat"], z[f"{s}_num"] if f"{s}_num" in z else None, z[f"{s}_label"])
                 for s in ("train", "valid", "test")}
    return CTRDataset(name=meta["name"], field_names=tuple(meta["field_names"]),
                      vocab_sizes=tuple(meta["vocab_sizes"]), num_dense=meta["num_dense"],
                      oov_counts=meta["oov_counts"], source=meta["source"], **parts)


def _file_key(path: pathlib.Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def source_files(data_config) -> list[pathlib.Path]:
    """The files a CTR config's `data` section reads ([] for 'synthetic'): data.path ('table': the file, or
    a directory's Parquet part files), else for 'frappe' <data_dir>/frappe-raw/Mobile_Frappe.zip with
    data_dir = data.data_dir, $SCALING_REC_DATA or ../shared/data.

    Raises:
      ConfigError: an unknown name, or 'criteo' / 'table' without data.path.
      DataNotFoundError: a file (or an explicit data.data_dir) does not exist.
    """
    d = data_config
    if d.name == "synthetic":
        return []
    if d.data_dir and not d.path and not pathlib.Path(d.data_dir).is_dir():
        raise DataNotFoundError(f"data_dir {d.data_dir} does not exist (data.data_dir); fix the path, or leave it "
                                "empty to use $SCALING_REC_DATA.")
    data_dir = pathlib.Path(d.data_dir or os.environ.get("SCALING_REC_DATA", "../shared/data"))
    if d.name == "frappe":
        src = pathlib.Path(d.path) if d.path else data_dir / "frappe-raw" / "Mobile_Frappe.zip"
    elif d.name in ("criteo", "table"):
        if not d.path:
            what = "Criteo-format file" if d.name == "criteo" else "CSV / TSV / Parquet file (or Parquet directory)"
            raise ConfigError(f"data.path must name the {what} for data.name={d.name!r}.")
        src = pathlib.Path(d.path)
    else:
        raise ConfigError(f"data.name = {d.name!r} is not one of 'frappe', 'criteo', 'table', 'synthetic'.")
    if not src.exists():
        raise DataNotFoundError(f"{src} not found (data.name={d.name!r}); set data.data_dir or data.path.")
    return table_files(src) if d.name == "table" else [src]


def load_ctr(data_config, cache_dir: str | os.PathLike | None = None) -> CTRDataset:
    """The dataset of a CTR config's `data` section, from the on-disk cache when present.

    Names: 'frappe' (data_dir/frappe-raw/Mobile_Frappe.zip or data.path), 'criteo' (data.path),
    'table' (data.path with the columns of data.fields: `read_table`), 'synthetic'. The cache key hashes
    the options and the source files' paths, sizes and mtimes.
    """
    d = data_config
    name = d.name
    if name == "synthetic":
        data, _ = synthetic_ctr(d.synthetic_examples, tuple(d.synthetic_cardinalities), seed=d.split_seed,
                                fractions=tuple(d.split))
        return data
    fields = TableFields.from_config(d.fields) if name == "table" else None
    files = source_files(d)
    options = {"v": _CACHE_VERSION, "name": name, "src": ";".join(_file_key(f) for f in files), "seed": d.split_seed,
               "split": list(d.split), "min_count": d.min_count, "hash_buckets": d.hash_buckets,
               "numeric": d.numeric}
    if fields is not None:
        options["fields"] = dataclasses.asdict(fields)
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    cache = pathlib.Path(cache_dir or d.cache_dir or os.environ.get("SCALING_REC_CACHE",
                                                                    pathlib.Path.home() / ".cache" / "scaling_rec"))
    path = cache / "ctr" / f"{name}-{key}.npz"
    if path.exists():
        return _load(path)
    common = dict(seed=d.split_seed, fractions=tuple(d.split), min_count=d.min_count)
    if name == "frappe":
        data = build_frappe(files[0], **common)
    elif fields is not None:
        data = read_table(d.path, fields, numeric=d.numeric, hash_buckets=d.hash_buckets, **common)
    else:
        data = read_criteo(files[0], numeric=d.numeric, hash_buckets=d.hash_buckets, **common)
    _save(data, path)
    return data
