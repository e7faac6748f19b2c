"""CTR dataset types, the train/valid/test split and the field-id encoder every CTR reader shares.

Every dataset becomes a `CTRDataset`: for each split `cat_NxF` int32 (field f's id in
0..vocab_sizes[f]-1, 0 = out-of-vocabulary), optional `num_NxM` float32 dense features, and
`label_N` float32 in {0, 1}. Vocabularies are built on the training split only, sorted by value
string (deterministic).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Sequence

import numpy as np

from scaling_rec.errors import ConfigError


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


def make_dataset(name: str, fields: Sequence[str], ids_NxF: np.ndarray, num_NxM: np.ndarray | None,
                 label_N: np.ndarray, split_N: np.ndarray, sizes: tuple[int, ...], oov: dict[str, int],
                 source: str) -> CTRDataset:
    """Rows of ids_NxF, num_NxM (or None) and label_N cut into a CTRDataset by split_N (0/1/2 = train/valid/test)."""
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
