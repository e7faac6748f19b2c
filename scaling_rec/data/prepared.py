"""Prepare once, stream forever: an event log → sharded numpy arrays on disk, with a manifest.

Layout of a prepared directory:
  manifest.json          counts, columns, shards (user range, events, SHA-256 of every file), statistics,
                         the source (path, size, mtime) and the command that made it
  users.npy, items.npy   id maps: user index u is original id users[u]; item id k is items[k - 1]
  shard_00000/ ...       offsets.npy int64 [U_s + 1] (user u_start + j: events offsets[j]:offsets[j+1]),
                         items.npy int32 [E_s], and when mapped timestamps.npy int64, ratings.npy float32,
                         actions.npy int64, weights.npy float32; each user's events sorted by (timestamp, row)

Users and items are numbered as in the in-memory path (scaling_rec/data/events.py): by ascending
original id, so a prepared log and `load_events` of the same file give the same SequenceData. Shard s
holds a contiguous range of user indices, so a user's events live in one shard.

Why flat numpy arrays and not ArrayRecord through grain: a training example is one user's most
recent events, a contiguous slice of flat arrays, so the random access the stream needs is one
offset lookup and one positioned read per array (`os.pread`, or a slice of np.load(mmap_mode='r')):
no per-record decode, no serialisation layer; the page cache, not the process, holds the data; the
files are readable by any tool with numpy; and no dependency is added. ArrayRecord would pay a
record decode per example and tie the format to one reader, for a benefit (compressed,
self-delimiting records) that fixed-width int arrays do not need.
grain still drives the stream (scaling_rec/data/stream.py) through a random-access source.

Preparing runs in three resumable stages with memory bounded by the chunk size and the id maps
(O(users + items), not O(events)): (1) scan: read the log in chunks, collect the sorted unique user and
item ids; (2) partition: read it again, map ids to indices, append each event to the partition file
of its user's range; with kcore = k > 0, (2b) k-core: passes over the partition files count each user's
and item's events among those of kept users and items and drop the ones under k, to a fixed point (the
in-memory `events.kcore`, with O(users + items) memory); (3) shards: sort each partition by (user,
timestamp, row), keep the k-core's events renumbered densely in the same order, and write its shard.
The state after each chunk / shard is saved, so a killed prepare continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable

import numpy as np

from scaling_rec.data.events import CHUNK_BYTES, EventColumns, iter_chunks, per_second
from scaling_rec.data.sequences import SequenceData
from scaling_rec.errors import ConfigError, DataFormatError, DataNotFoundError

FORMAT_VERSION = 1
EVENTS_PER_SHARD = 4_000_000
_OPTIONAL = {"timestamp": ("timestamps", np.int64), "rating": ("ratings", np.float32),
             "action": ("actions", np.int64), "weight": ("weights", np.float32)}


def check_seconds(unit: str, path: str | os.PathLike) -> None:
    """Raises ConfigError unless `unit` is 's': a prepared directory holds seconds (prepare converted them)."""
    if unit != "s":
        raise ConfigError(f"data.timestamp_unit={unit!r}, but the prepared directory {path} holds seconds: "
                          "launch.prepare converted them (--timestamp_unit, recorded in its manifest.json). "
                          "Leave data.timestamp_unit='s'.")


def _record_dtype(roles: list[str]) -> np.dtype:
    fields = [("user", np.int64), ("item", np.int32), ("row", np.int64)]
    fields += [(_OPTIONAL[r][0], _OPTIONAL[r][1]) for r in _OPTIONAL if r in roles]
    return np.dtype(fields)


def _atomic_json(path: pathlib.Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def _save_npy(path: pathlib.Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 << 20):
            h.update(block)
    return h.hexdigest()


class Progress:
    """One progress line per update: stage, fraction done, rate and ETA (to stderr by default)."""

    def __init__(self, stage: str, total: float, unit: str, write: Callable[[str], None] | None = None) -> None:
        self.stage, self.total, self.unit = stage, max(total, 1e-9), unit
        self.t0 = time.time()
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))

    def update(self, done: float, extra: str = "") -> None:
        dt = max(time.time() - self.t0, 1e-9)
        rate = done / dt
        eta = (self.total - done) / max(rate, 1e-9)
        self.write(f"prepare {self.stage}: {100 * done / self.total:5.1f}% ({done:,.0f}/{self.total:,.0f} {self.unit}) "
                   f"{rate:,.0f} {self.unit}/s ETA {eta:.0f}s {extra}".rstrip())


def source_info(path: pathlib.Path) -> dict:
    """What identifies the source file: path, size, mtime and ctime (ns). The ctime changes with every write and
    cannot be set back, unlike the mtime (`cp -p`, `rsync -t`, `tar x` restore it on a changed file of the same
    size, which the size and mtime alone took for the prepared one)."""
    st = path.stat()
    return {"path": str(path), "size_bytes": st.st_size, "mtime": st.st_mtime, "ctime_ns": st.st_ctime_ns}


def _same_source(recorded: dict, now: dict) -> bool:
    """Whether a manifest's source is the file `now` describes (manifests before ctime_ns compare the rest)."""
    return all(now[k] == v for k, v in recorded.items() if k in now) and recorded.keys() <= now.keys()


def _as_saveable(ids: np.ndarray) -> np.ndarray:
    """Id maps stored without pickles: int64, or fixed-width unicode for string ids."""
    return ids.astype(np.int64) if ids.dtype != object else ids.astype(str)


def prepare(input_path: str | os.PathLike, out_dir: str | os.PathLike, columns: EventColumns, *,
            num_shards: int = 0, skip_bad_rows: bool = False, chunk_bytes: int = CHUNK_BYTES,
            command: str = "", write: Callable[[str], None] | None = None,
            stop_after_chunks: int | None = None, timestamp_unit: str = "s", kcore: int = 0) -> dict:
    """Prepares `input_path` into `out_dir` (module docstring) and returns the manifest.

    Args:
      columns: the {role: column} mapping of the log.
      num_shards: shards (contiguous user ranges); 0 picks about EVENTS_PER_SHARD events per shard.
      skip_bad_rows: count and skip malformed rows instead of raising DataFormatError.
      chunk_bytes: text read per chunk (memory is a small multiple of it).
      command: the command line, recorded in the manifest.
      timestamp_unit: the log's timestamp unit ('s', 'ms', 'us', 'ns'); shards hold seconds (floored), each
        user's events ordered by the original timestamps.
      kcore: keep the k-core (every user and item with >= kcore events, iterated), as data.kcore does in
        memory; 0 keeps every event.
      stop_after_chunks: stop (as if killed) after this many chunks of reading — for tests of resume.
    Returns:
      the manifest dict (a directory whose manifest.json exists is returned as it is), or
      {'status': 'interrupted', 'stage': ...} when stop_after_chunks ran out.
    """
    src = pathlib.Path(input_path)
    out = pathlib.Path(out_dir)
    if not src.is_file():
        raise DataNotFoundError(f"{src}: not a file; --input must name an event log (.csv, .tsv, .parquet).")
    if (out / "manifest.json").exists():
        manifest = json.loads((out / "manifest.json").read_text())
        made_from = (manifest["source"], manifest["columns"], manifest.get("timestamp_unit_of_source", "s"),
                     manifest.get("kcore", {}).get("k", 0))
        if not _same_source(made_from[0], source_info(src)) or made_from[1:] != (columns.mapped(), timestamp_unit,
                                                                                   kcore):
            raise ConfigError(f"{out} was prepared from {made_from}, not from {src} with columns {columns.mapped()}, "
                              f"timestamp unit {timestamp_unit!r} and kcore {kcore} "
                              "(or the file changed since); delete it or use another --out.")
        return manifest
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    args = {"input": str(src), "columns": columns.mapped(), "num_shards": num_shards, "skip_bad_rows": skip_bad_rows,
            "chunk_bytes": chunk_bytes, "source": source_info(src), "format_version": FORMAT_VERSION,
            "timestamp_unit": timestamp_unit, "kcore": kcore}
    per_second(timestamp_unit)  # an unknown unit fails here, before anything is read
    state_path = work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"args": args, "stage": "scan"}
    recorded = state["args"]
    if ({k: v for k, v in recorded.items() if k != "source"} != {k: v for k, v in args.items() if k != "source"}
            or not _same_source(recorded["source"], args["source"])):
        raise ConfigError(f"{out} holds an unfinished prepare with other arguments or an older source file "
                          f"({state['args']} vs {args}); delete {out} or use another --out.")
    budget = [stop_after_chunks]
    if state["stage"] == "scan" and not _scan(src, columns, skip_bad_rows, chunk_bytes, work, state, state_path,
                                              budget, write):
        return {"status": "interrupted", "stage": "scan"}
    if state["stage"] == "partition" and not _partition(src, columns, skip_bad_rows, chunk_bytes, work, state,
                                                        state_path, budget, write):
        return {"status": "interrupted", "stage": "partition"}
    if state["stage"] == "kcore":
        _kcore(work, state, state_path, write)
    if state["stage"] == "shards":
        _shards(out, work, state, state_path, write)
    manifest = _manifest(out, work, state, command)
    shutil.rmtree(work)
    return manifest


def _stopped(budget: list[int | None]) -> bool:
    if budget[0] is None:
        return False
    budget[0] -= 1
    return budget[0] < 0


def _scan(src: pathlib.Path, columns: EventColumns, skip_bad_rows: bool, chunk_bytes: int, work: pathlib.Path,
          state: dict, state_path: pathlib.Path, budget: list[int | None], write) -> bool:
    """Stage 1: sorted unique user and item ids, the event count and the skipped rows; False if stopped."""
    pos = state.get("scan", {"offset": 0, "line": 2, "events": 0, "skipped": 0, "skipped_examples": []})
    users = np.load(work / "scan_users.npy", allow_pickle=False) if pos["offset"] else np.zeros(0, np.int64)
    items = np.load(work / "scan_items.npy", allow_pickle=False) if pos["offset"] else np.zeros(0, np.int64)
    bar = Progress("scan", src.stat().st_size, "bytes", write)
    for chunk, offset in iter_chunks(src, columns, skip_bad_rows=skip_bad_rows, chunk_bytes=chunk_bytes,
                                     start_offset=pos["offset"], start_line=pos["line"]):
        if _stopped(budget):
            return False
        users = np.union1d(users, np.unique(chunk.columns["user"]))
        items = np.union1d(items, np.unique(chunk.columns["item"]))
        pos = {"offset": offset, "line": chunk.next_line, "events": pos["events"] + len(chunk),
               "skipped": pos["skipped"] + chunk.skipped,
               "skipped_examples": (pos["skipped_examples"] + chunk.skipped_examples)[:20]}
        _save_npy(work / "scan_users.npy", _as_saveable(users))
        _save_npy(work / "scan_items.npy", _as_saveable(items))
        state["scan"] = pos
        _atomic_json(state_path, state)
        bar.update(offset, f"{pos['events']:,} events, {users.size:,} users, {items.size:,} items")
    if pos["events"] == 0:
        raise DataFormatError(f"{src}: no events (only a header, or every row skipped).")
    num_shards = state["args"]["num_shards"] or max(1, -(-pos["events"] // EVENTS_PER_SHARD))
    state.update(stage="partition", num_shards=int(min(num_shards, users.size)), num_users=int(users.size),
                 num_items=int(items.size), num_events=pos["events"])
    _atomic_json(state_path, state)
    return True


def shard_bounds(num_users: int, num_shards: int) -> np.ndarray:
    """User index ranges of the shards: int64 [S + 1], shard s holds users bounds[s]:bounds[s+1]."""
    return (np.arange(num_shards + 1, dtype=np.int64) * num_users) // num_shards


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if sorted_ids.dtype.kind == "U":
        ids = ids.astype(sorted_ids.dtype)
    return np.searchsorted(sorted_ids, ids).astype(np.int64)


def _partition(src: pathlib.Path, columns: EventColumns, skip_bad_rows: bool, chunk_bytes: int,
               work: pathlib.Path, state: dict, state_path: pathlib.Path, budget: list[int | None], write) -> bool:
    """Stage 2: every event, with ids as indices, appended to its user range's partition file; False if
    stopped."""
    users = np.load(work / "scan_users.npy", allow_pickle=False)
    items = np.load(work / "scan_items.npy", allow_pickle=False)
    roles = list(columns.mapped())
    dtype = _record_dtype(roles)
    bounds = shard_bounds(users.size, state["num_shards"])
    pos = state.get("partition", {"offset": 0, "line": 2, "row": 0, "sizes": [0] * state["num_shards"]})
    files = []
    for s, size in enumerate(pos["sizes"]):
        fh = open(work / f"part_{s:05d}.bin", "ab")  # noqa: SIM115 — closed below, many at once
        fh.truncate(size)  # drops what a killed run appended after its last saved state
        files.append(fh)
    bar = Progress("partition", src.stat().st_size, "bytes", write)
    try:
        for chunk, offset in iter_chunks(src, columns, skip_bad_rows=skip_bad_rows, chunk_bytes=chunk_bytes,
                                         start_offset=pos["offset"], start_line=pos["line"]):
            if _stopped(budget):
                return False
            rec = np.empty(len(chunk), dtype)
            rec["user"] = _lookup(users, chunk.columns["user"])
            rec["item"] = _lookup(items, chunk.columns["item"]) + 1
            rec["row"] = pos["row"] + np.arange(len(chunk))
            for role in roles:
                if role in _OPTIONAL:
                    rec[_OPTIONAL[role][0]] = chunk.columns[role]
            shard_E = np.searchsorted(bounds, rec["user"], side="right") - 1
            order = np.argsort(shard_E, kind="stable")
            cuts = np.searchsorted(shard_E[order], np.arange(len(files) + 1))
            for s, fh in enumerate(files):
                if cuts[s + 1] > cuts[s]:
                    rec[order[cuts[s]:cuts[s + 1]]].tofile(fh)
            for fh in files:
                fh.flush()
            pos = {"offset": offset, "line": chunk.next_line, "row": pos["row"] + len(chunk),
                   "sizes": [fh.tell() for fh in files]}
            state["partition"] = pos
            _atomic_json(state_path, state)
            bar.update(offset, f"{pos['row']:,} events")
    finally:
        for fh in files:
            fh.close()
    state["stage"] = "kcore" if state["args"]["kcore"] else "shards"
    _atomic_json(state_path, state)
    return True


def _partition_records(work: pathlib.Path, state: dict, records: int = 1 << 22):
    """Every partition's events, `records` at a time (memory bounded by the block)."""
    dtype = _record_dtype(list(state["args"]["columns"]))
    for s in range(state["num_shards"]):
        with open(work / f"part_{s:05d}.bin", "rb") as fh:
            while (block := np.fromfile(fh, dtype, count=records)).size:
                yield block


def _kcore(work: pathlib.Path, state: dict, state_path: pathlib.Path, write) -> None:
    """Stage 2b: the k-core's users and items as masks (kcore_users.npy bool [U], kcore_items.npy bool [I + 1]),
    each pass saved, so a killed prepare repeats at most one pass."""
    k = state["args"]["kcore"]
    users_path, items_path = work / "kcore_users.npy", work / "kcore_items.npy"
    if users_path.exists():
        user_keep, item_keep = np.load(users_path), np.load(items_path)
    else:
        user_keep, item_keep = np.ones(state["num_users"], bool), np.ones(state["num_items"] + 1, bool)
        item_keep[0] = False
    bar = Progress("kcore", 1, "passes", write)
    passes = state.get("kcore_passes", 0)
    while True:
        user_n, item_n = np.zeros(user_keep.size, np.int64), np.zeros(item_keep.size, np.int64)
        for rec in _partition_records(work, state):
            kept = rec[user_keep[rec["user"]] & item_keep[rec["item"]]]
            user_n += np.bincount(kept["user"], minlength=user_n.size)
            item_n += np.bincount(kept["item"], minlength=item_n.size)
        new_users, new_items = user_keep & (user_n >= k), item_keep & (item_n >= k)
        passes += 1
        bar.update(passes, f"pass {passes}: {int(new_users.sum()):,} users, {int(new_items.sum()):,} items")
        if np.array_equal(new_users, user_keep) and np.array_equal(new_items, item_keep):
            break
        user_keep, item_keep = new_users, new_items
        _save_npy(users_path, user_keep)
        _save_npy(items_path, item_keep)
        state["kcore_passes"] = passes
        _atomic_json(state_path, state)
    if not user_keep.any():
        raise ConfigError(f"kcore={k} leaves no events of {state['args']['input']}; lower it.")
    _save_npy(users_path, user_keep)
    _save_npy(items_path, item_keep)
    state.update(stage="shards", kcore_passes=passes)
    _atomic_json(state_path, state)


def _kept(work: pathlib.Path, state: dict, num_users: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Old index -> new index of users (int64 [U], -1 = dropped) and items (int64 [I + 1], 0 = dropped)."""
    if not state["args"]["kcore"]:
        return np.arange(num_users, dtype=np.int64), np.arange(num_items + 1, dtype=np.int64)
    user_keep, item_keep = np.load(work / "kcore_users.npy"), np.load(work / "kcore_items.npy")
    return (np.where(user_keep, np.cumsum(user_keep) - 1, -1).astype(np.int64),
            np.where(item_keep, np.cumsum(item_keep), 0).astype(np.int64))


def _shards(out: pathlib.Path, work: pathlib.Path, state: dict, state_path: pathlib.Path, write) -> None:
    """Stage 3: each partition sorted by (user, timestamp, row), cut to the k-core and written as a shard."""
    roles = list(state["args"]["columns"])
    dtype = _record_dtype(roles)
    user_new, item_new = _kept(work, state, state["num_users"], state["num_items"])
    kept_before = np.concatenate([[0], np.cumsum(user_new >= 0)])  # kept users below each old index
    bounds = kept_before[shard_bounds(state["num_users"], state["num_shards"])]
    done = state.setdefault("shards_done", {})
    bar = Progress("shards", state["num_shards"], "shards", write)
    item_counts = np.zeros(int(item_new.max()) + 1, np.int64)
    for s in range(state["num_shards"]):
        part = work / f"part_{s:05d}.bin"
        shard_dir = out / f"shard_{s:05d}"
        if str(s) in done:
            item_counts += np.bincount(np.load(shard_dir / "items.npy", mmap_mode="r"), minlength=item_counts.size)
            continue
        rec = np.fromfile(part, dtype)
        keys = [rec["row"]] + ([rec["timestamps"]] if "timestamps" in dtype.names else []) + [rec["user"]]
        rec = rec[np.lexsort(keys)]
        rec = rec[(user_new[rec["user"]] >= 0) & (item_new[rec["item"]] > 0)]
        rec["user"], rec["item"] = user_new[rec["user"]], item_new[rec["item"]]
        if "timestamps" in dtype.names:
            rec["timestamps"] //= per_second(state["args"]["timestamp_unit"])
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        counts = np.bincount(rec["user"] - lo, minlength=hi - lo)
        offsets = np.zeros(hi - lo + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        tmp = out / f".shard_{s:05d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        arrays = {"offsets": offsets, "items": rec["item"]}
        arrays |= {name: rec[name] for name in dtype.names if name not in ("user", "item", "row")}
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr))
        item_counts += np.bincount(rec["item"], minlength=item_counts.size)
        shutil.rmtree(shard_dir, ignore_errors=True)
        os.replace(tmp, shard_dir)
        ts = rec["timestamps"] if "timestamps" in dtype.names and rec.size else None
        done[str(s)] = {"user_start": lo, "user_end": hi, "events": int(rec.size),
                        "timestamp_range": None if ts is None else [int(ts.min()), int(ts.max())],
                        "sha256": {f"{n}.npy": _sha256(shard_dir / f"{n}.npy") for n in arrays}}
        _atomic_json(state_path, state)
        part.unlink()
        bar.update(len(done), f"{int(rec.size):,} events in shard {s}")
    _save_npy(work / "item_counts.npy", item_counts)
    state["stage"] = "manifest"
    _atomic_json(state_path, state)


def _manifest(out: pathlib.Path, work: pathlib.Path, state: dict, command: str) -> dict:
    user_new, item_new = _kept(work, state, state["num_users"], state["num_items"])
    for name, keep in (("users", user_new >= 0), ("items", item_new[1:] > 0)):
        ids = np.load(work / f"scan_{name}.npy", allow_pickle=False)
        _save_npy(out / f"{name}.npy", ids[keep])
    shards = [{"dir": f"shard_{s:05d}", **state["shards_done"][str(s)]} for s in range(state["num_shards"])]
    lengths = np.concatenate([np.diff(np.load(out / sh["dir"] / "offsets.npy")) for sh in shards])
    item_counts = np.load(work / "item_counts.npy")[1:]
    pct = (0, 1, 10, 50, 90, 99, 100)

    def percentiles(x: np.ndarray) -> dict[str, float]:
        return {str(p): float(v) for p, v in zip(pct, np.percentile(x, pct), strict=True)}

    manifest = {
        "format_version": FORMAT_VERSION, "columns": state["args"]["columns"], "source": state["args"]["source"],
        "timestamp_unit_of_source": state["args"]["timestamp_unit"],
        "command": command, "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "counts": {"events": int(lengths.sum()), "users": int(lengths.size), "items": int(item_counts.size),
                   "shards": state["num_shards"], "skipped_rows": state["scan"]["skipped"]},
        "kcore": {"k": state["args"]["kcore"], "passes": state.get("kcore_passes", 0),
                  "events_before": state["scan"]["events"], "users_before": state["num_users"],
                  "items_before": state["num_items"]},
        "skipped_examples": state["scan"]["skipped_examples"],
        "stats": {"events_per_user_percentiles": percentiles(lengths),
                  "events_per_user_mean": float(lengths.mean()),
                  "users_with_3_or_more_events": int((lengths >= 3).sum()),
                  "events_per_item_percentiles": percentiles(item_counts),
                  "top_item_share": float(item_counts.max() / max(item_counts.sum(), 1))},
        "id_maps": {"users.npy": _sha256(out / "users.npy"), "items.npy": _sha256(out / "items.npy")},
        "shards": shards,
    }
    _atomic_json(out / "manifest.json", manifest)
    return manifest


@dataclasses.dataclass
class PreparedData:
    """A prepared directory opened read-only, with an O(users) index in memory.

    lengths: int64 [U] events per user; starts: int64 [U] each user's first event within its shard;
    user_start: int64 [S + 1] first user of each shard. A user's events are read with `os.pread` from
    the .npy files (through the page cache, which the OS may evict), so the process's resident memory
    stays O(users) however many events have been read; np.load(..., mmap_mode='r') maps the same files.
    """

    path: pathlib.Path
    manifest: dict
    lengths: np.ndarray
    starts: np.ndarray
    user_start: np.ndarray
    _files: dict[int, dict[str, tuple[int, int, np.dtype]]] = dataclasses.field(default_factory=dict)

    @classmethod
    def open(cls, path: str | os.PathLike) -> PreparedData:
        path = pathlib.Path(path)
        if not (path / "manifest.json").is_file():
            raise DataFormatError(f"{path}: no manifest.json; make the directory with python -m launch.prepare.")
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DataFormatError(f"{path}/manifest.json: format_version {manifest.get('format_version')}, this "
                                  f"library reads {FORMAT_VERSION}; prepare the log again.")
        shards = manifest["shards"]
        offsets = [np.load(path / sh["dir"] / "offsets.npy") for sh in shards]
        lengths = np.concatenate([np.diff(o) for o in offsets])
        starts = np.concatenate([o[:-1] for o in offsets])
        user_start = np.array([sh["user_start"] for sh in shards] + [shards[-1]["user_end"]], np.int64)
        return cls(path, manifest, lengths, starts, user_start)

    @property
    def num_users(self) -> int:
        return int(self.manifest["counts"]["users"])

    @property
    def num_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    @property
    def has_time(self) -> bool:
        return "timestamp" in self.manifest["columns"]

    @property
    def time_origin(self) -> int:
        """The earliest timestamp (0 without timestamps), as scaling_rec.train.examples.time_origin."""
        starts = [sh["timestamp_range"][0] for sh in self.manifest["shards"] if sh["timestamp_range"]]
        return min(starts) if starts else 0

    def _shard_files(self, s: int) -> dict[str, tuple[int, int, np.dtype]]:
        """Shard s's per-event arrays as (file descriptor, data offset, dtype), opened once."""
        if s not in self._files:
            d = self.path / self.manifest["shards"][s]["dir"]
            files = {}
            for p in sorted(d.glob("*.npy")):
                if p.stem != "offsets":
                    header = np.load(p, mmap_mode="r")
                    files[p.stem] = (os.open(p, os.O_RDONLY), int(header.offset), header.dtype)
                    del header
            self._files[s] = files
        return self._files[s]

    def user_events(self, u: int, lo: int = 0, hi: int | None = None) -> dict[str, np.ndarray]:
        """Events lo:hi of user u (oldest first) as {'items', 'timestamps', ...} arrays (fresh copies)."""
        s = int(np.searchsorted(self.user_start, u, side="right") - 1)
        hi = int(self.lengths[u]) if hi is None else hi
        first, n = int(self.starts[u]) + lo, max(hi - lo, 0)
        out = {}
        for name, (fd, offset, dtype) in self._shard_files(s).items():
            buf = os.pread(fd, n * dtype.itemsize, offset + first * dtype.itemsize)
            out[name] = np.frombuffer(buf, dtype)
        return out

    def verify(self) -> None:
        """Checks every file against the manifest's SHA-256; raises DataFormatError on a mismatch."""
        for sh in self.manifest["shards"]:
            for name, digest in sh["sha256"].items():
                if _sha256(self.path / sh["dir"] / name) != digest:
                    raise DataFormatError(f"{self.path / sh['dir'] / name}: checksum differs from the manifest; "
                                          "the file changed or is truncated; prepare the log again.")

    def to_sequences(self, name: str = "events") -> SequenceData:
        """The whole log in memory (for logs that fit; training at scale streams: scaling_rec/data/stream.py)."""
        parts = [{p.stem: np.load(p) for p in (self.path / sh["dir"]).glob("*.npy")} for sh in self.manifest["shards"]]
        offsets = np.zeros(self.num_users + 1, np.int64)
        np.cumsum(self.lengths, out=offsets[1:])

        def cat(key: str, dtype: type) -> np.ndarray | None:
            return np.concatenate([p[key] for p in parts]).astype(dtype) if key in parts[0] else None

        return SequenceData(name=name, num_items=self.num_items, num_users=self.num_users,
                            items=cat("items", np.int32), timestamps=cat("timestamps", np.int64),
                            ratings=cat("ratings", np.float32), user_offsets=offsets,
                            source=str(self.path)).validate()
