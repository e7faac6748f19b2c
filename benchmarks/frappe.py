"""Frappe reproduction benchmark: Wukong, DLRM, DCNv2 and RankMixer x 3 seeds on our rebuilt Frappe split.

    python -m benchmarks.frappe --workdir=/tmp/runs/wukong_frappe [--presets=wukong,dcnv2,dlrm,rankmixer]
        [--seeds=0,1,2]
        [--mlp_width=200 --mlp_depth=2]   (a cheaper top MLP for small CPUs; recorded in the output's config)
        [--matmul_dtype=bfloat16 --out=benchmarks/results/frappe_cpu_bf16.json]   (the dense layers' products in
                                          bfloat16, model.matmul_dtype: the quality check of that option)
        [--jobs=2]   (runs trained in that many worker processes at once; the same numbers as --jobs=1)

Writes benchmarks/results/frappe_cpu.json after every finished run (as runs finish): per preset the mean and standard
deviation (ddof=1) of test AUC and logloss over seeds, each seed's numbers, the config, the git commit,
the machine, the split's comparison with the NFM files, and the published reference numbers.
The data split is fixed (data.split_seed); the seed changes initialisation, batch order and dropout.
The rankmixer preset comes from experiments/rankmixer/frappe.py, the others from experiments/wukong/frappe.py.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import pathlib
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

from benchmarks.provenance import command_line, provenance
from experiments.rankmixer import frappe as rankmixer_frappe
from experiments.wukong import frappe as wukong_frappe
from scaling_rec import host_memory
from scaling_rec.data.ctr import compare_with_nfm, load_ctr
from scaling_rec.io import FINISHED, atomic_write_json, read_run_result
from scaling_rec.schema import run_id
from scaling_rec.train.ctr_loop import train_and_evaluate

PRESETS = ("wukong", "dcnv2", "dlrm", "rankmixer")  # the default --presets
REFERENCE = {
    "wukong": {"test/auc": 0.9868, "source": "Zhang et al. 2024, Wukong, Table 2 (Frappe)"},
    "dcnv2": {"test/auc": 0.9845, "test/logloss": 0.1491, "source": "BARS DCNv2_frappe_x1 (best run; 5-run mean "
              "0.983824)"},
    "dlrm": {"test/auc": 0.9840, "test/logloss": 0.1444, "source": "BARS DLRM_frappe_x1 (interaction 'cat')"},
    "dlrm_dot": {"test/auc": 0.9840, "source": "BARS DLRM_frappe_x1 ('cat'; no 'dot' reference)"},
}


def get_config(preset: str):
    """The preset's config: rankmixer from experiments/rankmixer/frappe.py, any other from experiments/wukong."""
    return (rankmixer_frappe if preset == "rankmixer" else wukong_frappe).get_config(preset)


def run_config(preset: str, seed: int, mlp_width: int, mlp_depth: int, matmul_dtype: str = ""):
    """The config of one benchmark run: the preset with this seed and the optional top-MLP and matmul-dtype
    overrides (0 / '': keep the preset's)."""
    c = get_config(preset)
    c.seed = seed
    c.model.mlp_width = mlp_width or c.model.mlp_width
    c.model.mlp_depth = mlp_depth or c.model.mlp_depth
    c.model.matmul_dtype = matmul_dtype or c.model.matmul_dtype
    return c


def finished_result(c, workdir: str) -> dict | None:
    """The result of the finished run of config `c` in `workdir` (None when it has not finished)."""
    r = read_run_result(pathlib.Path(workdir) / "runs" / run_id(c))
    return r if r is not None and r.get("status") in FINISHED else None


def train_one(preset: str, seed: int, mlp_width: int, mlp_depth: int, matmul_dtype: str, workdir: str) -> dict:
    """One run (or its finished result); the entry point of a worker process with --jobs > 1."""
    c = run_config(preset, seed, mlp_width, mlp_depth, matmul_dtype)
    return train_and_evaluate(c, workdir, data=load_ctr(c.data))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/wukong_frappe")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--mlp_width", type=int, default=0, help="override the presets' top MLP width (0: keep)")
    p.add_argument("--mlp_depth", type=int, default=0, help="override the presets' top MLP depth (0: keep)")
    p.add_argument("--matmul_dtype", default="", help="override the presets' model.matmul_dtype ('': keep)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes training runs at once")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "frappe_cpu.json"))
    args = p.parse_args(argv)
    presets, seeds = args.presets.split(","), [int(s) for s in args.seeds.split(",")]
    data = load_ctr(get_config(presets[0]).data)
    nfm_dir = pathlib.Path(os.environ.get("SCALING_REC_DATA", "../shared/data")) / "frappe-nfm"
    prov = provenance()
    out = {"git_commit": prov["git_commit"], "command": command_line("benchmarks.frappe", [
               f"--{k}={v}" for k, v in vars(args).items() if k not in ("out", "jobs")]),
           "machine": prov["machine"],
           "split": compare_with_nfm(data, nfm_dir) if data.name == "frappe" else None,
           "oov_counts": data.oov_counts, "models": {}}

    def cfg(preset: str, seed: int):
        return run_config(preset, seed, args.mlp_width, args.mlp_depth, args.matmul_dtype)

    pairs = [(preset, seed) for preset in presets for seed in seeds]
    done = {ps: r for ps in pairs if (r := finished_result(cfg(*ps), args.workdir))}
    todo = [ps for ps in pairs if ps not in done]
    pool = None
    if args.jobs > 1 and todo:  # spawn: JAX does not survive fork
        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        futures = {pool.submit(train_one, *ps, args.mlp_width, args.mlp_depth, args.matmul_dtype, args.workdir): ps
                   for ps in todo}
        trained = ((*futures[f], f.result()) for f in as_completed(futures))
    else:
        trained = ((*ps, train_and_evaluate(cfg(*ps), args.workdir, data=data)) for ps in todo)
    finished = itertools.chain(((*ps, r) for ps, r in done.items()), trained)
    runs = {preset: {} for preset in presets}
    for preset, seed, r in finished:  # finished runs first, then as they finish: a stopped benchmark keeps each
        runs[preset][seed] = {"seed": seed, "run_id": r["run_id"], "status": r["status"], **r["eval"],
                              "epochs": r["epochs"], "wall_time_s": r["wall_time_s"], "n_dense": r["n_dense"],
                              "n_emb": r["n_emb"], "flops_per_example": r["flops_per_example"]}
        rows = [runs[preset][s] for s in sorted(runs[preset])]
        summary = {}
        for key in ("test/auc", "test/logloss", "valid/auc", "valid/logloss"):
            vals = np.array([x[key] for x in rows if key in x])
            summary[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
        out["models"][preset] = {"summary": summary, "runs": rows, "reference": REFERENCE.get(preset),
                                 "config": cfg(preset, seeds[-1]).to_dict()}
        atomic_write_json(args.out, {**out, "models": {k: out["models"][k] for k in presets if k in out["models"]}})
        print(preset, seed, r["eval"].get("test/auc"), r["eval"].get("test/logloss"), flush=True)
    if pool is not None:
        pool.shutdown()


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    main()
