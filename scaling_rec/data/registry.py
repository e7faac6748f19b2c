"""One entry point for sequential-recommendation datasets: `load_sequences(name, ...)`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from scaling_rec.data import amazon, events, movielens
from scaling_rec.data.sequences import SequenceData, drop_consecutive_repeats
from scaling_rec.data.sources import DEFAULT_TIMEOUT_S, get_spec, locate
from scaling_rec.errors import ConfigError

_ML_READERS: dict[str, Callable[..., SequenceData]] = {
    "ml-1m": movielens.read_ml1m_ratings,
    "ml-csv": movielens.read_ml_ratings_csv,
    "ml-100k": movielens.read_ml100k_udata,
}


def load_sequences(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    min_rating: float | None = None,
    dedup: bool = False,
    download: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    log_path: str = "",
    columns: Mapping[str, str] | None = None,
    kcore: int = 0,
    timestamp_unit: str = "s",
) -> SequenceData:
    """Loads a registered dataset ('amazon-beauty', 'amazon-toys', 'ml-100k', 'ml-1m', 'ml-20m',
    'ml-latest-small') or the user's own log ('events') as chronological SequenceData.

    Args:
      data_dir: searched first; then $SCALING_REC_DATA, the cache, and a download
        (scaling_rec/data/sources.py).
      min_rating: keep only events rated >= min_rating (MovieLens only; Amazon S3-Rec has no ratings).
      dedup: drop an event that repeats the user's previous item.
      download: allow fetching from the canonical URL into the cache.
      timeout_s: network timeout in seconds.
      log_path, columns: 'events' only: the log or prepared directory and its {role: column} mapping
        (scaling_rec/data/events.py).
      kcore: keep the k-core (every user and item with >= kcore events); 0 keeps all.
      timestamp_unit: 'events' only: the log's timestamp unit ('s', 'ms', 'us', 'ns'), read as seconds.

    Raises:
      ConfigError: unknown name, or min_rating on a dataset without ratings.
      DataNotFoundError: the files are nowhere (the message lists where it looked).
      DataFormatError: a file is malformed (the message names file and line).
    """
    if name == "events":
        return events.load_events(log_path, columns, min_rating=min_rating, dedup=dedup, kcore_k=kcore,
                                  timestamp_unit=timestamp_unit)
    spec = get_spec(name)
    if spec.format == "s3rec" and min_rating is not None:
        raise ConfigError(
            f"min_rating={min_rating} given for {name!r}, but the Amazon S3-Rec form has no ratings; "
            "use a MovieLens dataset for rating-based ablations, or leave min_rating=None."
        )
    paths = locate(spec, data_dir, download=download, timeout_s=timeout_s)
    path = paths[spec.files[0].filename]
    if spec.format == "s3rec":
        data = amazon.read_s3rec(path, name=name)
        return events.kcore(drop_consecutive_repeats(data).validate() if dedup else data, kcore)
    if spec.format not in _ML_READERS:
        raise ConfigError(f"dataset {name!r} has format {spec.format!r}, which no reader handles.")
    return events.kcore(_ML_READERS[spec.format](path, min_rating=min_rating, dedup=dedup, name=name), kcore)
