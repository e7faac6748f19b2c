"""TIGER on Amazon Beauty: train/evaluate presets and write benchmarks/results/tiger_beauty_cpu.json.

    SCALING_REC_DATA=../shared/data python -m benchmarks.tiger_beauty --workdir=/tmp/runs/tiger \
        [--presets=cpu,cpu_rqkmeans,cpu_random] [--id_stats=rqvae,rqkmeans,random]

For every preset: test Recall@5/10 and NDCG@5/10 (beam search over valid IDs) at the last step and at the
step of the best validation NDCG@10, the popularity floor on the same test users, the learning curve
(validation metrics and train loss by step), status ('ok' = planned length reached, 'partial' = stopped by
the time limit: where the run stands), the semantic-ID statistics. `--id_stats` also records codebook
usage / collision rate / reconstruction of each tokenizer without training a retriever. The output is
rewritten after every run, next to the paper's numbers (Rajput et al. 2023, Table 1).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

from benchmarks.provenance import command_line, provenance
from experiments.tiger.beauty import get_config
from scaling_rec import host_memory
from scaling_rec.analysis.tiger_report import PAPER_EXAMPLES
from scaling_rec.io import atomic_write_json
from scaling_rec.train.tiger_loop import load_or_make_ids, popularity_metrics, prepare_data, train_and_evaluate

PAPER = {"TIGER": {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384},
         "SASRec": {"recall@5": 0.0387, "ndcg@5": 0.0249, "recall@10": 0.0605, "ndcg@10": 0.0318},
         "TIGER random IDs (Table 4 ablation)": {"recall@10": 0.0434},
         "source": "Rajput et al. 2023, Recommender Systems with Generative Retrieval, Table 1 / Sec. 4.3",
         "paper_training": "200k steps x batch 256 = 51.2M examples"}


def popularity_baseline(config) -> dict:
    """Recall@K / NDCG@K of recommending the K most frequent training items to every test user (a floor)."""
    split = prepare_data(config)["split"]
    return {"all_users": popularity_metrics(split.train, split.test.targets, (5, 10))}


def standing(out: dict) -> dict:
    """Where each run stands: share of the paper's training examples, test metrics with their SEs over test
    users (last step; and of the best validation step) vs the paper and the popularity floor on the same
    test users."""
    paper = out["paper"]["TIGER"]
    rows = {}
    for preset, r in out.get("runs", {}).items():
        best = r.get("best") or {}
        rows[preset] = {
            "status": r["status"], "steps": r["steps"], "ids_method": r["ids_method"], "arch": r["arch"],
            "examples_seen": r["examples_seen"], "share_of_paper_examples": r["examples_seen"] / PAPER_EXAMPLES,
            "wall_time_s": r["wall_time_s"], "final_train_loss": r["final_train_loss"],
            **{k: r["eval"].get(f"test/{k}") for k in paper},
            **{f"{k}_se": r["eval"].get(f"test/{k}_se") for k in paper},
            "best_valid_step": best.get("step"),
            **{f"best_valid_step_{k}": (best.get("test") or {}).get(k) for k in paper},
            **{f"best_valid_step_{k}_se": (best.get("test") or {}).get(f"{k}_se") for k in paper},
            "paper": paper, "popularity_same_users": r.get("popularity_test"),
        }
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/tiger")
    p.add_argument("--presets", default="cpu")
    p.add_argument("--id_stats", default="", help="tokenizers whose ID statistics to record (no training)")
    p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "tiger_beauty_cpu.json"))
    p.add_argument("--time_limit_s", type=float, default=0.0,
                   help="overrides every preset's train.time_limit_s when > 0 (seconds of training per call)")
    args = p.parse_args()
    out_path = pathlib.Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.exists() else {}
    command = command_line("benchmarks.tiger_beauty", [f"--{k}={v}" for k, v in vars(args).items() if k != "out"])
    out["commands"] = list(dict.fromkeys([*out.get("commands", [out["command"]] if "command" in out else []), command]))
    out.pop("command", None)
    prov = provenance()
    out.update({"git_commit": prov["git_commit"], "paper": PAPER,
                "machine": {**prov["machine"], "load_avg_1m_at_start": prov["load_avg"][0]}})
    out["popularity_baseline"] = popularity_baseline(get_config("cpu"))
    out.setdefault("runs", {})
    out.setdefault("id_stats", {})
    for method in [m for m in args.id_stats.split(",") if m]:
        c = get_config("cpu")
        c.ids.method = method
        t0 = time.time()
        ids = load_or_make_ids(c, pathlib.Path(args.workdir) / "ids" / method, 12101)
        out["id_stats"][method] = {**{k: v for k, v in ids.stats.items() if k != "rqvae_history"},
                                   "vocab_sizes": list(ids.vocab_sizes), "seconds": time.time() - t0,
                                   "ids_config": c.ids.to_dict()}
        atomic_write_json(out_path, out)
    for preset in [s for s in args.presets.split(",") if s]:
        config = get_config(preset)
        if args.time_limit_s > 0:
            config.train.time_limit_s = args.time_limit_s
        r = train_and_evaluate(config, args.workdir)
        out["runs"][preset] = {"config": config.to_dict(), **r}
        atomic_write_json(out_path, out)
        print(preset, r["status"], r["steps"], r["eval"])
    out["standing"] = standing(out)
    atomic_write_json(out_path, out)


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    main()
