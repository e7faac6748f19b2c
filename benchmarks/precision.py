"""Quality of a sequence model trained in bfloat16 against float32 at matched seeds (issue 17).

    SCALING_REC_DATA=../shared/data python -m benchmarks.precision --config=experiments/hstu/precision.py:small \
        [--seeds=0,1,2] [--dtypes=float32,bfloat16] [--workdir=runs/precision] [--out=...]

Trains the config once per (seed, model.matmul_dtype), one run after another (a finished run is read back, not
retrained), and writes benchmarks/results/precision_<preset>_cpu.json after every run: each run's test and
validation metrics at its best validation step, its wall time and training loss; per dtype the mean and SE
over seeds; and per metric the paired difference (bfloat16 - float32, seed by seed; mean and SE over seeds)
beside the float32 runs' own evaluation SE (the spread of a metric over test users, metrics.py). A seed fixes
the initial parameters, the batch order, dropout and the negatives, so the paired difference isolates the
products' rounding. "within_one_se" asks whether |mean difference| <= that evaluation SE: the issue's "the
reproductions' metrics unchanged within one SE".
"""

from __future__ import annotations

import argparse
import pathlib
import statistics

from benchmarks.provenance import command_line, portable_paths, provenance
from scaling_rec import host_memory
from scaling_rec.io import atomic_write_json
from scaling_rec.sweep.spec import load_experiment
from scaling_rec.train.loop import train_and_evaluate

METRICS = ("test/hr@10", "test/ndcg@10", "test/mrr", "test/xent", "valid/ndcg@10", "valid/xent")


def load_config(spec: str):
    """The ConfigDict of 'path/to/file.py:preset' (the absl --config syntax)."""
    path, _, preset = spec.partition(":")
    module = load_experiment(path)
    return module.get_config(preset) if preset else module.get_config()


def _mean_se(values: list[float]) -> dict:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "se": se, "n": len(values)}


def summarise(runs: list[dict], dtypes: list[str]) -> dict:
    """Per dtype, mean and SE over seeds of each metric; per metric, the paired difference of the second dtype
    against the first over the seeds both finished, and whether it is within the first's evaluation SE."""
    by = {(r["seed"], r["matmul_dtype"]): r for r in runs}
    out = {"per_dtype": {}, "difference": {}}
    for dtype in dtypes:
        mine = [r for r in runs if r["matmul_dtype"] == dtype]
        out["per_dtype"][dtype] = {m: _mean_se([r["eval"][m] for r in mine]) for m in METRICS if mine}
    if len(dtypes) == 2:
        base, other = dtypes
        seeds = sorted({s for s, d in by if d == base} & {s for s, d in by if d == other})
        for m in METRICS if seeds else ():
            diffs = [by[s, other]["eval"][m] - by[s, base]["eval"][m] for s in seeds]
            eval_se = statistics.fmean(by[s, base]["eval"][m + "_se"] for s in seeds)
            d = _mean_se(diffs)
            out["difference"][m] = {**d, "seeds": seeds, "eval_se": eval_se,
                                    "within_one_se": abs(d["mean"]) <= eval_se}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/hstu/precision.py:small")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--dtypes", default="float32,bfloat16", help="model.matmul_dtype values; the first is the base")
    p.add_argument("--workdir", default="runs/precision")
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    preset = a.config.rpartition(":")[2] or "default"
    out_path = pathlib.Path(a.out or pathlib.Path(__file__).parent / "results" / f"precision_{preset}_cpu.json")
    dtypes = a.dtypes.split(",")
    launched = provenance()
    runs = []
    for seed in (int(s) for s in a.seeds.split(",")):
        for dtype in dtypes:
            c = load_config(a.config)
            c.seed, c.model.matmul_dtype = seed, dtype
            print(f"[precision] seed {seed} {dtype}", flush=True)
            r = train_and_evaluate(c, a.workdir)
            runs.append({"seed": seed, "matmul_dtype": dtype, "eval": r["eval"], "best_step": r["best_step"],
                         "wall_time_s": r.get("wall_time_s"), "final_train_loss": r.get("final_train_loss")})
            record = {"config_spec": a.config, "seeds": a.seeds, "dtypes": dtypes, "runs": runs,
                      "summary": summarise(runs, dtypes), "config": c.to_dict(),
                      "command": command_line("benchmarks.precision", [f"--config={a.config}", f"--seeds={a.seeds}",
                                                                       f"--dtypes={a.dtypes}"]),
                      **launched, "finished_utc": provenance()["utc"]}
            atomic_write_json(out_path, portable_paths(record))
    for m, d in record["summary"]["difference"].items():
        spread = f"± {d['se']:.4f}" if d["se"] is not None else "(one seed)"
        print(f"[precision] {m}: {dtypes[1]} - {dtypes[0]} = {d['mean']:+.4f} {spread} "
              f"(evaluation SE {d['eval_se']:.4f}, within one SE: {d['within_one_se']})")


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    main()
