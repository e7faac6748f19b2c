"""CTR datasets as integer field ids: Frappe rebuilt from the raw log, a Criteo-format reader, a
libFM reader, and a synthetic generator with planted field interactions.

Every dataset becomes a `CTRDataset`: for each split `cat_NxF` int32 (field f's id in
0..vocab_sizes[f]-1, 0 = out-of-vocabulary), optional `num_NxM` float32 dense features, and
`label_N` float32 in {0, 1}. Vocabularies are built on the training split only, sorted by value
string (deterministic), and cached on disk with the encoded arrays (`load_ctr`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import pathlib
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence

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


def build_vocab(values: Iterable[str], min_count: int = 1) -> dict[str, int]:
    """value -> id in 1..V for values seen >= min_count times, ordered by value string (0 is OOV)."""
    counts = Counter(values)
    kept = sorted(v for v, c in counts.items() if c >= min_count)
    return {v: i + 1 for i, v in enumerate(kept)}


def hash_id(field: int, value: str, buckets: int) -> int:
    """Deterministic hashing trick: 1 + crc32('field:value') mod buckets (0 stays free for OOV)."""
    return 1 + zlib.crc32(f"{field}:{value}".encode()) % buckets


def encode_columns(columns_FxN: Sequence[Sequence[str]], index_split_N: np.ndarray, *, min_count: int = 1,
                   hash_buckets: int = 0) -> tuple[np.ndarray, tuple[int, ...], dict[str, int]]:
    """String columns -> (ids_NxF int32, vocab sizes incl. OOV, OOV counts per split name).

    index_split_N: 0/1/2 = train/valid/test per row; vocabularies come from train rows only
    (hash_buckets > 0: hashing into that many buckets per field instead, no vocabulary).
    """
    n = len(index_split_N)
    ids = np.zeros((n, len(columns_FxN)), np.int32)
    sizes, oov = [], {"train": 0, "valid": 0, "test": 0}
    train_rows = np.flatnonzero(index_split_N == 0)
    for f, col in enumerate(columns_FxN):
        if hash_buckets > 0:
            ids[:, f] = [hash_id(f, v, hash_buckets) for v in col]
            sizes.append(hash_buckets + 1)
            continue
        vocab = build_vocab((col[i] for i in train_rows), min_count)
        ids[:, f] = [vocab.get(v, 0) for v in col]
        sizes.append(len(vocab) + 1)
    for s, name in enumerate(("train", "valid", "test")):
        oov[name] = int(np.sum(ids[index_split_N == s] == 0))
    return ids, tuple(sizes), oov


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


# ----------------------------------------------------------------------------- Criteo


def criteo_numeric_token(value: str) -> str:
    """Log-bucketing of a Criteo integer feature (the Kaggle winners' rule): v > 2 -> floor(ln(v)^2),
    else v itself; empty -> 'NA'. Returned as a token for the field's vocabulary."""
    if value == "":
        return "NA"
    v = float(value)
    return str(int(math.floor(math.log(v) ** 2))) if v > 2 else str(int(v))


def read_criteo(path: str | os.PathLike, *, numeric: str = "log", min_count: int = 1, hash_buckets: int = 0,
                seed: int = 2024, fractions: Sequence[float] = (0.8, 0.1, 0.1), max_rows: int = 0) -> CTRDataset:
    """A Criteo-format file: label, 13 integer and 26 categorical columns; raw Kaggle TSV without a
    header, or CSV with the header `label,I1..I13,C1..C26` (detected from the first line).

    numeric='log': 13 dense features log(1 + max(v, 0)) (missing -> 0) for a bottom MLP;
    numeric='bucket': 13 more categorical fields of `criteo_numeric_token` (no dense features).
    Categorical values: vocabulary of train values seen >= min_count times, or hash_buckets > 0.
    Labels must be 0 or 1; a line with the wrong column count or a non-number in an integer column
    raises DataFormatError with file and line.
    """
    if numeric not in ("log", "bucket"):
        raise ConfigError(f"data.numeric = {numeric!r} must be 'log' or 'bucket'.")
    path = pathlib.Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} not found.")
    n_cols = 1 + CRITEO_NUM_DENSE + CRITEO_NUM_CAT
    labels: list[float] = []
    dense: list[list[float]] = []
    cat_cols: list[list[str]] = [[] for _ in range(CRITEO_NUM_CAT + (CRITEO_NUM_DENSE if numeric == "bucket" else 0))]
    lines = read_lines(path)
    first = next(lines, (1, ""))[1]
    sep = "\t" if "\t" in first else ","
    has_header = first.split(sep)[0].strip().lower() == "label"
    for lineno, line in (lines if has_header else _chain([(1, first)], lines)):
        parts = line.rstrip("\r\n").split(sep)
        if len(parts) != n_cols:
            raise DataFormatError(f"{path}:{lineno}: {len(parts)} columns, expected {n_cols} "
                                  "(label, I1..I13, C1..C26).")
        if parts[0] not in ("0", "1"):
            raise DataFormatError(f"{path}:{lineno}: label {shown(parts[0])} is not 0 or 1.")
        labels.append(float(parts[0]))
        ints = parts[1:1 + CRITEO_NUM_DENSE]
        try:
            if numeric == "log":
                dense.append([math.log1p(max(float(v), 0.0)) if v else 0.0 for v in ints])
            else:
                for j, v in enumerate(ints):
                    cat_cols[CRITEO_NUM_CAT + j].append(criteo_numeric_token(v))
        except ValueError:
            k = next((k for k, v in enumerate(ints) if v and not _is_finite(v)), 0)
            raise DataFormatError(f"{path}:{lineno}: integer column I{k + 1} {shown(ints[k])} is not a finite "
                                  "number.") from None
        for j, v in enumerate(parts[1 + CRITEO_NUM_DENSE:]):
            cat_cols[j].append(v)
        if max_rows and len(labels) >= max_rows:
            break
    label = np.asarray(labels, np.float32)
    split = random_split(len(label), fractions, seed)
    ids, sizes, oov = encode_columns(cat_cols, split, min_count=min_count, hash_buckets=hash_buckets)
    names = [f"C{j + 1}" for j in range(CRITEO_NUM_CAT)]
    names += [f"I{j + 1}" for j in range(CRITEO_NUM_DENSE)] if numeric == "bucket" else []
    num = np.asarray(dense, np.float32).reshape(-1, CRITEO_NUM_DENSE) if numeric == "log" else None
    return _make_dataset(path.stem, names, ids, num, label, split, sizes, oov, str(path))


def _chain(head: list, rest: Iterable) -> Iterable:
    yield from head
    yield from rest


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


def source_file(data_config) -> pathlib.Path | None:
    """The file a CTR config's `data` section reads (None for 'synthetic'): data.path, else for 'frappe'
    <data_dir>/frappe-raw/Mobile_Frappe.zip with data_dir = data.data_dir, $SCALING_REC_DATA or ../shared/data.

    Raises:
      ConfigError: an unknown name, or 'criteo' without data.path.
      DataNotFoundError: the file (or an explicit data.data_dir) does not exist.
    """
    d = data_config
    if d.name == "synthetic":
        return None
    if d.data_dir and not d.path and not pathlib.Path(d.data_dir).is_dir():
        raise DataNotFoundError(f"data_dir {d.data_dir} does not exist (data.data_dir); fix the path, or leave it "
                                "empty to use $SCALING_REC_DATA.")
    data_dir = pathlib.Path(d.data_dir or os.environ.get("SCALING_REC_DATA", "../shared/data"))
    if d.name == "frappe":
        src = pathlib.Path(d.path) if d.path else data_dir / "frappe-raw" / "Mobile_Frappe.zip"
    elif d.name == "criteo":
        if not d.path:
            raise ConfigError("data.path must name the Criteo-format file for data.name='criteo'.")
        src = pathlib.Path(d.path)
    else:
        raise ConfigError(f"data.name = {d.name!r} is not one of 'frappe', 'criteo', 'synthetic'.")
    if not src.exists():
        raise DataNotFoundError(f"{src} not found (data.name={d.name!r}); set data.data_dir or data.path.")
    return src


def load_ctr(data_config, cache_dir: str | os.PathLike | None = None) -> CTRDataset:
    """The dataset of a CTR config's `data` section, from the on-disk cache when present.

    Names: 'frappe' (data_dir/frappe-raw/Mobile_Frappe.zip or data.path), 'criteo' (data.path),
    'synthetic'. The cache key hashes the options and the source file's path, size and mtime.
    """
    d = data_config
    name = d.name
    if name == "synthetic":
        data, _ = synthetic_ctr(d.synthetic_examples, tuple(d.synthetic_cardinalities), seed=d.split_seed,
                                fractions=tuple(d.split))
        return data
    src = source_file(d)
    assert src is not None
    options = {"v": _CACHE_VERSION, "name": name, "src": _file_key(src), "seed": d.split_seed,
               "split": list(d.split), "min_count": d.min_count, "hash_buckets": d.hash_buckets,
               "numeric": d.numeric}
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    cache = pathlib.Path(cache_dir or d.cache_dir or os.environ.get("SCALING_REC_CACHE",
                                                                    pathlib.Path.home() / ".cache" / "scaling_rec"))
    path = cache / "ctr" / f"{name}-{key}.npz"
    if path.exists():
        return _load(path)
    if name == "frappe":
        data = build_frappe(src, seed=d.split_seed, fractions=tuple(d.split), min_count=d.min_count)
    else:
        data = read_criteo(src, numeric=d.numeric, min_count=d.min_count, hash_buckets=d.hash_buckets,
                           seed=d.split_seed, fractions=tuple(d.split))
    _save(data, path)
    return data
