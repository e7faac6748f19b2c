r"""Prepare an event log once (CSV / TSV / Parquet) into sharded numpy arrays that training streams from.

    python -m launch.prepare --input=clicks.tsv --out=/data/clicks_prepared \
        --columns=user=uid,item=song,timestamp=ts [--timestamp_unit=s] [--kcore=0] [--skip_bad_rows] [--num_shards=0] \
        [--chunk_mb=64]
    python -m launch.prepare --input=likes.parquet --out=/data/yambda_likes --preset=yambda

The output (scaling_rec/data/prepared.py) holds manifest.json (counts, id maps, checksums, statistics and
this command), users.npy / items.npy and shard_*/. Run it again after a kill and it continues where it
stopped; a finished directory is left as it is. A malformed row stops it with file and line (exit 2),
unless --skip_bad_rows, which counts the skipped rows in the manifest. Train on it with
--config.data.name=events --config.data.path=<out>.
"""

from __future__ import annotations

import json
import shlex
import sys

from absl import flags

from launch import _cli

_INPUT = flags.DEFINE_string("input", None, "The event log: .csv, .tsv or .parquet with a header / named fields.")
_OUT = flags.DEFINE_string("out", None, "Output directory (created; a finished one is left as it is).")
_COLUMNS = flags.DEFINE_list("columns", ["user=user", "item=item", "timestamp=timestamp"],
                             "role=column pairs for user, item (required), timestamp, rating, action, weight; "
                             "roles left out take data.columns' defaults (timestamp=timestamp), as in memory; "
                             "timestamp= (empty) keeps file order.")
_PRESET = flags.DEFINE_enum("preset", None, ["ml-20m", "amazon-2023", "yambda"],
                            "A public log's column mapping (scaling_rec.data.events.PRESETS) instead of --columns.")
_SHARDS = flags.DEFINE_integer("num_shards", 0, "Shards (contiguous user ranges); 0 = about 4M events each.")
_CHUNK_MB = flags.DEFINE_integer("chunk_mb", 64, "MiB of text read per chunk (memory is a few times this).")
_UNIT = flags.DEFINE_enum("timestamp_unit", None, ["s", "ms", "us", "ns"],
                          "The log's timestamp unit, stored as seconds; default: the preset's, else 's'.")
_KCORE = flags.DEFINE_integer("kcore", 0, "Keep the k-core (every user and item with >= k events, iterated); "
                              "0 keeps every event. Chunked passes over the partitioned events.")
_SKIP = flags.DEFINE_bool("skip_bad_rows", False, "Count and skip malformed rows instead of stopping.")
flags.mark_flags_as_required(["input", "out"])


def main(argv: list[str]) -> int:
    del argv
    from scaling_rec.data.events import PRESETS, EventColumns
    from scaling_rec.data.prepared import prepare
    from scaling_rec.errors import ConfigError

    pairs = [c.split("=", 1) for c in _COLUMNS.value]
    if any(len(p) != 2 for p in pairs):
        raise ConfigError(f"--columns={','.join(_COLUMNS.value)}: each entry must be role=column, e.g. user=uid.")
    columns = PRESETS[_PRESET.value].columns if _PRESET.value else EventColumns.from_mapping(dict(pairs))
    command = "python -m launch.prepare " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    unit = _UNIT.value or (PRESETS[_PRESET.value].timestamp_unit if _PRESET.value else "s")
    manifest = prepare(_INPUT.value, _OUT.value, columns, num_shards=_SHARDS.value, skip_bad_rows=_SKIP.value,
                       chunk_bytes=_CHUNK_MB.value << 20, command=command, timestamp_unit=unit,
                       kcore=_KCORE.value)
    print(json.dumps(manifest["counts"]), flush=True)
    return 0


if __name__ == "__main__":
    _cli.run(main)
