r"""Event logs at scale on the CPU (issue 18): generate a Zipf log, prepare it, stream HSTU training from it.

    nice -n 5 python -m benchmarks.events_scale --events=10000000,100000000 --workdir=/tmp/events_scale \
        --out=benchmarks/results/events_scale_cpu.json

For each log size E (users and items fixed, default 1M each): (1) generate `workdir/log_E.csv` (also
a command on its own: --mode=generate --events=E --log=PATH); (2) prepare it with launch/prepare's
library call in a child process; (3) train HSTU (default size, jagged batches of 128, data.num_items =
--items so every size trains the same model) through launch.train's entry, loop.train_and_evaluate, which
streams the prepared directory: a run of 3 steps and one of 3 + --train_steps, each ending with its
evaluation (--eval_users users) and checkpoint, in one child; the step time is the difference of their
step-loop times; (4) run the input pipeline alone (the run's stream, no train step) in a child. Each
child reports its own peak RSS (getrusage ru_maxrss) and wall time; the machine has 2 cores, so
preparing runs on 2 cores. Targets checked in the JSON: prepare peak RSS <= 2 GiB; training peak RSS of
the largest log within 10% of the smallest; pipeline examples/s >= 5x the train step's.

Measured on the shared 2-core CPU, 1M users x 1M items, events_scale_cpu_fixed_tokens.json (the command
above with --reuse_prepare --tokens_per_batch=6400, so both logs train on batches of the same shapes):
  prepare     10M: 103 s, peak RSS 755 MB      100M: 1228 s (20.5 min, 81k events/s), peak RSS 936 MB
              (load 13-15, at 4909e07; kept from that run by --reuse_prepare, its own provenance inside)
  train RSS   through the loop: 2208 MB vs 2212 MB (+0.2%; target 10%; load 8-10). Before the engine
              trimmed the C heap at the end of each run (commit 8862674) the same command measured 2495 vs
              2758 MB (+10.5%): the warm-up run's freed memory stayed in glibc's per-thread arenas and the
              timed run grew on top of it, more on the larger log (helper probe: 1,561 MB RSS after a
              100M run with 191 MB live, 1,097 MB after malloc_trim); within one run the per-step peak was
              already flat (2303 vs 2367 MB over 12 steps).
  throughput  pipeline alone 47-65k examples/s vs HSTU train 30-68 examples/s (690-2100x; the pipeline
              now reads ahead 4 batches with 2 threads instead of grain's default 500 with 16)
Runtime: about 40 min for both sizes (generation 5 min and preparation 25 min of it for 100M).

Log: every event's user is drawn with P(rank k) ~ k^-user_zipf, its item with P(rank k) ~ k^-item_zipf
(ranks mapped to shuffled ids), its time uniform over one year; rows are in random order.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

_MODE = flags.DEFINE_enum("mode", "all", ["all", "generate", "prepare", "train", "pipeline"],
                          "'all' runs every stage per size in child processes; the others are one stage.")
_EVENTS = flags.DEFINE_list("events", ["10000000", "100000000"], "Log sizes (events).")
_USERS = flags.DEFINE_integer("users", 1_000_000, "Users in the generated log.")
_ITEMS = flags.DEFINE_integer("items", 1_000_000, "Items in the generated log.")
_USER_ZIPF = flags.DEFINE_float("user_zipf", 0.5, "Zipf exponent of user activity.")
_ITEM_ZIPF = flags.DEFINE_float("item_zipf", 1.0, "Zipf exponent of item popularity.")
_SEED = flags.DEFINE_integer("seed", 0, "Generator seed.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/events_scale", "Logs and prepared directories (never the repo).")
_LOG = flags.DEFINE_string("log", "", "--mode=generate/prepare: the log path.")
_PREPARED = flags.DEFINE_string("prepared", "", "--mode=prepare/train/pipeline: the prepared directory.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 30, "Timed train steps (after 3 warm-up steps).")
_PIPE_BATCHES = flags.DEFINE_integer("pipeline_batches", 300, "Timed batches of the input pipeline alone.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Sequences per batch.")
_MAX_LEN = flags.DEFINE_integer("max_len", 50, "Longest training sequence.")
_TOKENS = flags.DEFINE_integer("tokens_per_batch", 0, "Jagged token budget T; 0 = automatic (grows with the "
                               "log's sequence lengths); batch_size * max_len gives every log the same shapes.")
_EVAL_USERS = flags.DEFINE_integer("eval_users", 256, "Users of the run's validation and test (eval.max_users): "
                                   "full ranking over 1M items costs 1M scores per user on the CPU.")
_OUT = flags.DEFINE_string("out", "", "--mode=all: the results JSON.")
_REUSE = flags.DEFINE_bool("reuse_prepare", False, "--mode=all: keep a prepared directory and the prepare "
                           "measurement saved beside it (with its own provenance) instead of preparing again.")

_ROWS_PER_CHUNK = 5_000_000
_WARMUP = 3
_YEAR_S = 365 * 24 * 3600


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _zipf_sampler(n: int, exponent: float, rng: np.random.Generator):
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -exponent)
    cdf /= cdf[-1]
    ids = rng.permutation(n).astype(np.int64)  # rank -> id, so that ids say nothing about popularity
    return lambda size: ids[np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)]


def generate(path: pathlib.Path, events: int, users: int, items: int, user_zipf: float, item_zipf: float,
             seed: int) -> dict:
    """Writes a `user,item,timestamp` CSV of `events` rows (module docstring); returns sizes and time."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    t0 = time.time()
    rng = np.random.default_rng([seed, events])
    draw_user, draw_item = _zipf_sampler(users, user_zipf, rng), _zipf_sampler(items, item_zipf, rng)
    tmp = path.with_name(f".{path.name}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink:
        writer = None
        for lo in range(0, events, _ROWS_PER_CHUNK):
            n = min(_ROWS_PER_CHUNK, events - lo)
            table = pa.table({"user": draw_user(n), "item": draw_item(n),
                              "timestamp": 1_600_000_000 + rng.integers(0, _YEAR_S, n)})
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema)
            writer.write_table(table)
        writer.close()
    os.replace(tmp, path)
    result = {"generate_s": time.time() - t0, "log_bytes": path.stat().st_size,
              "args": {"events": events, "users": users, "items": items, "user_zipf": user_zipf,
                       "item_zipf": item_zipf, "seed": seed}}
    path.with_name(path.name + ".json").write_text(json.dumps(result))
    return result


def _stage_prepare() -> dict:
    from scaling_rec.data.events import EventColumns
    from scaling_rec.data.prepared import prepare

    t0 = time.time()
    manifest = prepare(_LOG.value, _PREPARED.value, EventColumns(), command=" ".join(sys.argv),
                       write=lambda line: print(line, file=sys.stderr, flush=True))
    wall = time.time() - t0
    size = sum(p.stat().st_size for p in pathlib.Path(_PREPARED.value).rglob("*") if p.is_file())
    return {"wall_s": wall, "peak_rss_mb": _peak_rss_mb(), "events_per_s": manifest["counts"]["events"] / wall,
            "prepared_bytes": size, "counts": manifest["counts"], "stats": manifest["stats"]}


def _train_config(steps: int):
    """What a user runs on a prepared directory: launch.train's config with data.path = the directory."""
    from scaling_rec.config import default_config

    c = default_config()
    c.study = "events_scale"
    c.data.name, c.data.path, c.data.num_items = "events", _PREPARED.value, _ITEMS.value
    c.data.max_len, c.data.tokens_per_batch = _MAX_LEN.value, _TOKENS.value
    c.train.batch_size, c.train.num_steps, c.train.eval_every, c.train.log_every = _BATCH.value, steps, steps, steps
    c.eval.max_users, c.eval.batch_size = _EVAL_USERS.value, 16
    c.logging.wandb = c.logging.progress = False
    return c


def _stage_pipeline() -> dict:
    from scaling_rec.train.inputs import prepare

    stream = prepare(_train_config(1)).train_stream(0)
    it = stream.iterate(0)
    next(it)
    t0, n = time.time(), 0
    for _ in range(_PIPE_BATCHES.value):
        n += int(next(it).num_sequences)
    wall = time.time() - t0
    return {"batches": _PIPE_BATCHES.value, "examples": n, "wall_s": wall, "examples_per_s": n / wall,
            "peak_rss_mb": _peak_rss_mb()}


def _stage_train() -> dict:
    """Two runs of launch.train's entry (scaling_rec.train.loop.train_and_evaluate) streamed from the prepared
    directory, _WARMUP and _WARMUP + --train_steps steps, each with its evaluation and checkpoint at the end;
    the step time is the difference of their step-loop times over --train_steps (compilation cancels)."""
    import tempfile

    from scaling_rec.train.loop import train_and_evaluate

    with tempfile.TemporaryDirectory(dir=_WORKDIR.value) as work:
        warm = train_and_evaluate(_train_config(_WARMUP), pathlib.Path(work) / "warm")
        full = train_and_evaluate(_train_config(_WARMUP + _TRAIN_STEPS.value), pathlib.Path(work) / "full")
    wall = full["wall_time_s"] - warm["wall_time_s"]
    n = full["examples_seen"] - warm["examples_seen"]
    return {"steps": _TRAIN_STEPS.value, "examples": n, "wall_s": wall, "step_s": wall / _TRAIN_STEPS.value,
            "examples_per_s": n / wall, "loss": full["final_train_loss"], "peak_rss_mb": _peak_rss_mb(),
            "status": full["status"], "elapsed_s": warm["elapsed_s"] + full["elapsed_s"],
            "valid_users": _EVAL_USERS.value, "valid_xent": full["final_eval_loss"],
            "unique_examples": full["unique_examples"], "n_emb": full["n_emb"], "n_dense": full["n_dense"],
            "model_items": full["num_items"]}


def _child(mode: str, **kw: str) -> dict:
    args = [sys.executable, "-m", "benchmarks.events_scale", f"--mode={mode}", f"--items={_ITEMS.value}",
            f"--batch_size={_BATCH.value}", f"--max_len={_MAX_LEN.value}", f"--tokens_per_batch={_TOKENS.value}",
            f"--train_steps={_TRAIN_STEPS.value}", f"--eval_users={_EVAL_USERS.value}", f"--workdir={_WORKDIR.value}",
            f"--pipeline_batches={_PIPE_BATCHES.value}"] + [f"--{k}={v}" for k, v in kw.items()]
    print(f"[events_scale] {mode} {kw}", file=sys.stderr, flush=True)
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _run_all() -> dict:
    from benchmarks.provenance import provenance

    work = pathlib.Path(_WORKDIR.value)
    work.mkdir(parents=True, exist_ok=True)
    sizes = []
    for events in map(int, _EVENTS.value):
        log, prep = work / f"log_{events}.csv", work / f"prepared_{events}"
        args = {"events": events, "users": _USERS.value, "items": _ITEMS.value, "user_zipf": _USER_ZIPF.value,
                "item_zipf": _ITEM_ZIPF.value, "seed": _SEED.value}
        sidecar = log.with_name(log.name + ".json")
        gen = json.loads(sidecar.read_text()) if sidecar.exists() and log.exists() else None
        if gen is None or gen["args"] != args:
            gen = generate(log, **args)
        saved = prep.with_name(prep.name + ".prepare.json")
        if _REUSE.value and saved.exists() and (prep / "manifest.json").exists():
            prep_result = json.loads(saved.read_text())
        else:
            if prep.exists():
                subprocess.run(["rm", "-rf", str(prep)], check=True)  # a fresh prepare is what is timed
            prep_result = {**_child("prepare", log=str(log), prepared=str(prep)), "provenance": provenance()}
            saved.write_text(json.dumps(prep_result))
        row = {"events": events, **gen, "prepare": prep_result,
               "pipeline": _child("pipeline", prepared=str(prep)), "train": _child("train", prepared=str(prep))}
        row["pipeline_over_train"] = row["pipeline"]["examples_per_s"] / row["train"]["examples_per_s"]
        sizes.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    rss = [s["train"]["peak_rss_mb"] for s in sizes]
    return {
        "benchmark": "events_scale", "command": "python -m benchmarks.events_scale " + " ".join(sys.argv[1:]),
        "config": {"users": _USERS.value, "items": _ITEMS.value, "user_zipf": _USER_ZIPF.value,
                   "item_zipf": _ITEM_ZIPF.value, "seed": _SEED.value, "batch_size": _BATCH.value,
                   "max_len": _MAX_LEN.value, "tokens_per_batch": _TOKENS.value, "train_steps": _TRAIN_STEPS.value,
                   "eval_users": _EVAL_USERS.value, "model": "hstu default_config(), data.num_items = --items",
                   "layout": "jagged", "train_entry": "scaling_rec.train.loop.train_and_evaluate (launch.train)"},
        "sizes": sizes,
        "checks": {
            "prepare_peak_rss_le_2GiB": all(s["prepare"]["peak_rss_mb"] <= 2048 for s in sizes),
            "train_peak_rss_largest_over_smallest": rss[-1] / rss[0],
            "train_peak_rss_within_10pct": abs(rss[-1] / rss[0] - 1.0) <= 0.10,
            "pipeline_ge_5x_train": all(s["pipeline_over_train"] >= 5.0 for s in sizes),
        },
        "provenance": provenance(),
    }


def main(argv: list[str]) -> None:
    del argv
    mode = _MODE.value
    if mode == "generate":
        result = generate(pathlib.Path(_LOG.value), int(_EVENTS.value[0]), _USERS.value, _ITEMS.value,
                          _USER_ZIPF.value, _ITEM_ZIPF.value, _SEED.value)
    elif mode == "prepare":
        result = _stage_prepare()
    elif mode == "pipeline":
        result = _stage_pipeline()
    elif mode == "train":
        result = _stage_train()
    else:
        result = _run_all()
        if _OUT.value:
            out = pathlib.Path(_OUT.value)
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_text(json.dumps(result, indent=1) + "\n")
            os.replace(tmp, out)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
