"""CTR datasets by name (`load_ctr`, cached on disk): Frappe rebuilt from the raw log, a libFM reader for NFM's
files, a synthetic generator with planted field interactions, and the Criteo and named-field table readers of
`scaling_rec.data.ctr_readers`. Types, split and encoding: `scaling_rec.data.ctr_dataset`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import zipfile
from collections.abc import Sequence

import numpy as np

from scaling_rec.data.ctr_dataset import CTRDataset, CTRSplit, encode_columns, make_dataset, random_split
from scaling_rec.data.ctr_readers import TableFields, read_criteo, read_table, table_files
from scaling_rec.data.textio import decode_utf8, int64_problem, read_lines, shown
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country",
                 "city")
# Field cardinalities of the NFM one-hot encoding (frappe-nfm/README.nfm.txt), in FRAPPE_FIELDS order.
NFM_FRAPPE_CARDINALITIES = (957, 4082, 7, 7, 2, 3, 2, 9, 80, 233)
FRAPPE_LOGS = 96_203
_CACHE_VERSION = 2  # 2: Frappe's negatives distinct per user and context (frappe_with_negatives)


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
    random apps that the user did not use in that context become negatives (same user and context),
    distinct over all the logs of that user and context: drawn per log, two logs of one user and context
    repeated a negative row, whose copies the row split sent to train and test (386 repeated rows, 53 test
    rows equal to a train row; NFM's validation and test files hold no repeated negative).
    Returns (rows, label_N) with the positives first, then the negatives log by log.
    """
    items = sorted({r[1] for r in logs}, key=int)
    taken: dict[tuple, set] = {}  # per (user, context): its used apps, then also the negatives drawn for it
    for r in logs:
        taken.setdefault((r[0], *r[2:]), set()).add(r[1])
    used = {key: len(apps) for key, apps in taken.items()}
    rng = np.random.default_rng(seed)
    negatives = []
    for r in logs:
        key = (r[0], *r[2:])
        excluded = taken[key]
        if len(items) - len(excluded) < negatives_per_log:
            raise DataFormatError(f"user {r[0]} used {used[key]} of the {len(items)} apps in context {r[2:]} and its "
                                  f"other logs there drew {len(excluded) - used[key]} negatives; cannot sample "
                                  f"{negatives_per_log} more unused apps as negatives.")
        drawn = 0
        while drawn < negatives_per_log:
            cand = items[int(rng.integers(len(items)))]
            if cand not in excluded:
                excluded.add(cand)
                negatives.append([r[0], cand, *r[2:]])
                drawn += 1
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
    return make_dataset("frappe", FRAPPE_FIELDS, ids, None, label, split, sizes, oov, str(zip_path))


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
    data = make_dataset("synthetic", [f"f{f}" for f in range(n_f)], ids, None, label, split, sizes,
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
