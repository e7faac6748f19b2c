"""Where dataset files live: a registry of datasets, and look-up with download into a cache.

Look-up of a dataset's folder (`DatasetSpec.folder`, e.g. `movielens-100k/`): an explicit `data_dir`
(`--config.data.data_dir`) is the only place looked at: a missing directory, or one without the dataset,
is a DataNotFoundError, never a silent fall-back to another copy. Without one, in order:
  1. the environment variable `SCALING_REC_DATA`,
  2. the local cache, `$SCALING_REC_CACHE` or `~/.cache/scaling_rec`,
  3. a download from the canonical URL into the cache (atomic: temporary file, checksum, rename).
The first place that holds every file the dataset needs wins. The cache has the same layout as a
data directory, so a downloaded dataset is found at step 2 next time.

`CANONICAL_SHA256` pins the content of every data file of the canonical copies (what the results so far
were computed on). A download also records, beside the file (`<file>.download.json`), the SHA-256 of what
it fetched from the registered URL and checked against the pinned checksum. scaling_rec.provenance leaves a
run's data identity out of its run id exactly when every file it reads is canonical: its bytes match its
own entry (`registry_key`) in CANONICAL_SHA256, or that download record made under the registry's present
URL and pins. So a dataset without a CANONICAL_SHA256 entry keeps its run ids when it is first downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
import zipfile

from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

log = logging.getLogger(__name__)

DATA_ENV = "SCALING_REC_DATA"
CACHE_ENV = "SCALING_REC_CACHE"
DEFAULT_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 20

_S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file a dataset needs, and where to get it.

    Attributes:
      filename: its name inside the dataset folder.
      url: canonical URL of the file itself, or of a zip archive holding it (then `member` is set).
      member: path of the file inside the zip archive, or None when `url` is the file.
      md5, sha256: hex digests of the downloaded bytes (of the archive when `member` is set),
        checked when given.
    """

    filename: str
    url: str
    member: str | None = None
    md5: str | None = None
    sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its folder under a data directory, its files and their reader.

    Attributes:
      name: registry key, e.g. 'ml-1m'.
      folder: folder name under a data directory (or the cache), e.g. 'movielens-1m'.
      files: the files the reader needs, with their canonical sources.
      format: which reader parses them: 's3rec', 'ml-1m', 'ml-csv' or 'ml-100k'.
      aliases: other folder names accepted in a data directory (e.g. 'ml-1m' as unzipped).
    """

    name: str
    folder: str
    files: tuple[RemoteFile, ...]
    format: str
    aliases: tuple[str, ...] = ()


DATASETS: dict[str, DatasetSpec] = {
    "amazon-beauty": DatasetSpec(
        "amazon-beauty",
        "amazon-beauty-s3rec",
        (RemoteFile("Beauty.txt", _S3REC + "Beauty.txt", md5="cb03635343187f36526ed4ba48102b53"),),
        "s3rec",
    ),
    "amazon-toys": DatasetSpec(
        "amazon-toys",
        "amazon-toys-s3rec",
        (
            RemoteFile(
                "Toys_and_Games.txt",
                _S3REC + "Toys_and_Games.txt",
                md5="b139ecacfc81d0fb642bc2f448f13843",
            ),
        ),
        "s3rec",
    ),
    "ml-100k": DatasetSpec(
        "ml-100k",
        "movielens-100k",
        (
            RemoteFile(
                "u.data", _GROUPLENS + "ml-100k.zip", "ml-100k/u.data", md5="0e33842e24a9c977be4e0107933c0723"
            ),
        ),
        "ml-100k",
        aliases=("ml-100k",),
    ),
    "ml-1m": DatasetSpec(
        "ml-1m",
        "movielens-1m",
        (
            RemoteFile(
                "ratings.dat",
                _GROUPLENS + "ml-1m.zip",
                "ml-1m/ratings.dat",
                md5="c4d9eecfca2ab87c1945afe126590906",
            ),
        ),
        "ml-1m",
        aliases=("ml-1m",),
    ),
    "ml-20m": DatasetSpec(
        "ml-20m",
        "movielens-20m",
        (
            RemoteFile(
                "ratings.csv",
                _GROUPLENS + "ml-20m.zip",
                "ml-20m/ratings.csv",
                md5="cd245b17a1ae2cc31bb14903e1204af3",
            ),
        ),
        "ml-csv",
        aliases=("ml-20m",),
    ),
    # ml-latest-small is re-released from time to time, so no checksum is pinned.
    "ml-latest-small": DatasetSpec(
        "ml-latest-small",
        "movielens-latest-small",
        (RemoteFile("ratings.csv", _GROUPLENS + "ml-latest-small.zip", "ml-latest-small/ratings.csv"),),
        "ml-csv",
        aliases=("ml-latest-small",),
    ),
}


# SHA-256 of the data files as distributed (the S3-Rec files match their md5 above; u.data is the member
# of the ml-100k.zip of that md5), measured on ../shared/data with `sha256sum`. Datasets not on that
# machine (ml-1m, ml-20m, ml-latest-small) have no entry: a copy of theirs is canonical when this library
# downloaded it (`downloaded_sha256`; ml-latest-small pins no checksum, so any release it fetches counts).
CANONICAL_SHA256 = {
    "amazon-beauty-s3rec/Beauty.txt": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    "amazon-beauty-s3rec/Beauty_item2attributes.json":
        "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
    "amazon-beauty-s3rec/p5_asin/user_sequence.txt":
        "47197cbee7bdc1896926e10d96b807dce0aecb9a1f0c2ccc887c21090237c9b7",
    "amazon-beauty-meta/item_id_to_int.json": "3d1a1d362c7daeddf616057fae8fa24af9d70902fdaf4631852231a9953afa50",
    "amazon-beauty-meta/products_lookup.csv": "65133eca0615999df67fc5b26a93a7da762e53e613a083fd6b9e37174896d128",
    "amazon-toys-s3rec/Toys_and_Games.txt": "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f",
    "amazon-toys-s3rec/Toys_and_Games_item2attributes.json":
        "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0",
    "amazon-toys-s3rec/p5_asin/user_sequence.txt":
        "cf2dfd59149a603b8fb3e84bc3c2fc21df0b3332ce62ac4453133fb730f6adf3",
    "movielens-100k/u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "frappe-raw/Mobile_Frappe.zip": "4adc616de57170f282397f6e6e30215f97fa7ad1b7f40bd12ef5dceaaf3e9b4e",
    "ctr-samples-deepctr/criteo_sample.txt": "08b84f12a22438fb534e989a5e4fa245726b2bda001983556bc2aea2f094f724",
    "ctr-samples-deepctr/avazu_sample.txt": "43daa44dde764bf2c0dacf80002a73da4441088a53d40a3629094d3a2b1592f3",
}


DOWNLOAD_RECORD_SUFFIX = ".download.json"


def registry_key(path: str | os.PathLike) -> str | None:
    """'<folder>/<file>' under which the registry knows `path` (a CANONICAL_SHA256 key or a dataset's
    folder/filename, an alias folder read as its dataset's folder), from the path's last components; None
    for a file the registry does not know."""
    aliases = {a: spec.folder for spec in DATASETS.values() for a in spec.aliases}
    known = set(CANONICAL_SHA256) | {f"{spec.folder}/{f.filename}" for spec in DATASETS.values() for f in spec.files}
    parts = pathlib.Path(path).parts
    for key in sorted(known, key=lambda k: -k.count("/")):
        n = key.count("/") + 1
        if len(parts) >= n and "/".join((aliases.get(parts[-n], parts[-n]), *parts[len(parts) - n + 1:])) == key:
            return key
    return None


def _download_pins(remote: RemoteFile) -> dict[str, str | None]:
    return {"url": remote.url, "member": remote.member, "md5": remote.md5, "sha256_pinned": remote.sha256}


def downloaded_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 that `download_file` recorded for the file at `path` when it fetched it from the registered
    URL (and checked the pinned checksum, where one is pinned); None without a record, or when the record was
    made under another URL, member or pin than the registry's entry for that file now."""
    key = registry_key(path)
    remote = next((f for spec in DATASETS.values() for f in spec.files if f"{spec.folder}/{f.filename}" == key),
                  None)
    if remote is None:
        return None
    try:
        record = json.loads(pathlib.Path(str(path) + DOWNLOAD_RECORD_SUFFIX).read_text())
        pins_then = {k: record.get(k) for k in _download_pins(remote)}
        return str(record["sha256"]) if pins_then == _download_pins(remote) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no record, or not one of ours
        return None


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset called `name`; ConfigError listing the known names otherwise."""
    if name not in DATASETS:
        raise ConfigError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))} "
            "(registry: scaling_rec/data/sources.py, DATASETS)."
        )
    return DATASETS[name]


def cache_dir() -> pathlib.Path:
    """The download cache: `$SCALING_REC_CACHE`, else `~/.cache/scaling_rec`."""
    env = os.environ.get(CACHE_ENV)
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "scaling_rec"


def _places(data_dir: str | os.PathLike | None) -> list[tuple[str, pathlib.Path]]:
    """The directories to search, in order, each with a label saying why it is searched."""
    if data_dir:
        return [("data_dir", pathlib.Path(data_dir).expanduser())]
    places = []
    env = os.environ.get(DATA_ENV)
    if env:
        places.append((f"${DATA_ENV}", pathlib.Path(env).expanduser()))
    places.append((f"cache (${CACHE_ENV} or ~/.cache/scaling_rec)", cache_dir()))
    return places


def _find_in(spec: DatasetSpec, root: pathlib.Path) -> dict[str, pathlib.Path] | None:
    for folder in (spec.folder, *spec.aliases):
        paths = {f.filename: root / folder / f.filename for f in spec.files}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


def locate(
    dataset: str | DatasetSpec,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, pathlib.Path]:
    """Finds (or downloads) every file of a dataset; returns {filename: path}.

    Args:
      dataset: a registry name ('ml-1m', ...) or a DatasetSpec.
      data_dir: when given (not None or ''), the only place searched; else $SCALING_REC_DATA, the cache and
        a download (see the module docstring).
      download: whether to fetch missing files from their canonical URL into the cache.
      timeout_s: network timeout per connection, in seconds.

    Raises:
      DataNotFoundError: `data_dir` does not exist or lacks the files, or the files are nowhere; the
        message lists every place searched and how to get the files.
      DataFormatError: a download's checksum or archive content is wrong.
    """
    spec = get_spec(dataset) if isinstance(dataset, str) else dataset
    if data_dir:
        root = pathlib.Path(data_dir).expanduser()
        found = _find_in(spec, root) if root.is_dir() else None
        if found is None:
            why = "does not exist" if not root.exists() else f"has no {spec.folder}/ with the dataset's files"
            raise DataNotFoundError(
                f"data_dir {root} {why} (data.data_dir; {spec.name!r} needs "
                f"{', '.join(f'{spec.folder}/{f.filename}' for f in spec.files)} under it). Fix the path, or "
                f"leave data.data_dir empty to use ${DATA_ENV}, the cache or a download.")
        return found
    places = _places(data_dir)
    for label, root in places:
        found = _find_in(spec, root)
        if found is not None:
            log.info("dataset %s: using %s (%s)", spec.name, root, label)
            return found
    failures = []
    if download:
        target = cache_dir() / spec.folder
        try:
            for f in spec.files:
                if not (target / f.filename).is_file():
                    download_file(f, target / f.filename, timeout_s=timeout_s)
            return {f.filename: target / f.filename for f in spec.files}
        except (OSError, urllib.error.URLError) as e:  # offline, refused, timed out, HTTP error
            failures.append(f"download into {target}: failed ({e})")
    else:
        failures.append("download: not attempted (download=False)")
    raise DataNotFoundError(_not_found_message(spec, places, failures))


def _not_found_message(spec: DatasetSpec, places: list[tuple[str, pathlib.Path]], failures: list[str]) -> str:
    wanted = ", ".join(f"{spec.folder}/{f.filename}" for f in spec.files)
    lines = [f"dataset {spec.name!r} not found: looked for {wanted} in"]
    for label, root in places:
        also = f" (also as {', '.join(spec.aliases)}/)" if spec.aliases else ""
        lines.append(f"  - {root}{also}  [{label}]: missing")
    lines += [f"  - {msg}" for msg in failures]
    lines.append("To fix: on a machine with internet,")
    for f in spec.files:
        if f.member:
            lines.append(f"  download {f.url} and extract its member {f.member}")
        else:
            lines.append(f"  download {f.url}")
        lines.append(f"  to <DIR>/{spec.folder}/{f.filename},")
    lines.append(
        f"then pass data_dir=<DIR> or set {DATA_ENV}=<DIR>; or put the folder in the cache {cache_dir()}."
    )
    return "\n".join(lines)


def download_file(remote: RemoteFile, dest: pathlib.Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Downloads `remote` to `dest` atomically (temporary file in dest's folder, checks, rename).

    When `remote.member` is set, the URL is a zip archive and only that member is kept.

    Raises:
      OSError / urllib.error.URLError: the network or the URL failed (nothing is left at dest).
      DataFormatError: the checksum does not match, or the archive lacks the member.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = pathlib.Path(tmp_name)
    try:
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        log.info("downloading %s -> %s", remote.url, dest)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout_s) as resp:
            while chunk := resp.read(_CHUNK_BYTES):
                out.write(chunk)
                md5.update(chunk)
                sha256.update(chunk)
        for algo, want, got in (("md5", remote.md5, md5), ("sha256", remote.sha256, sha256)):
            if want is not None and got.hexdigest() != want.lower():
                raise DataFormatError(
                    f"download of {remote.url} has {algo} {got.hexdigest()}, expected {want} "
                    f"(registry in scaling_rec/data/sources.py). The file is corrupt or was re-released: "
                    f"retry, or fetch it by hand into {dest}."
                )
        if remote.member is None:
            os.replace(tmp, dest)
            content_sha256 = sha256.hexdigest()
        else:
            content_sha256 = _extract_member(tmp, remote, dest)
        record = pathlib.Path(str(dest) + DOWNLOAD_RECORD_SUFFIX)
        record.write_text(json.dumps({**_download_pins(remote), "sha256": content_sha256}, indent=1))
    finally:
        tmp.unlink(missing_ok=True)


def _extract_member(archive: pathlib.Path, remote: RemoteFile, dest: pathlib.Path) -> str:
    """Copies `remote.member` out of the zip `archive` to `dest` through a temporary file; returns the
    SHA-256 of the member's bytes."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            if remote.member not in names:
                raise DataFormatError(
                    f"archive {remote.url} has no member {remote.member!r} (it has {names[:10]}); "
                    "fix the member path in scaling_rec/data/sources.py DATASETS."
                )
            fd, part = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as out, zf.open(remote.member) as src:
                    while chunk := src.read(_CHUNK_BYTES):
                        out.write(chunk)
                        digest.update(chunk)
                os.replace(part, dest)
                return digest.hexdigest()
            finally:
                pathlib.Path(part).unlink(missing_ok=True)
    except zipfile.BadZipFile as e:
        raise DataFormatError(f"download of {remote.url} is not a valid zip archive ({e}); retry.") from e
