"""Ties in trained models (issue 14): one short run per family, the same parameters scored under the new
and the old tie rule, and how often the target ties at all.

    SCALING_REC_DATA=../shared/data nice -n 5 python -m benchmarks.tie_check --workdir=/tmp/runs/tie_check

Runs (short, CPU): HSTU and SASRec on Amazon Beauty (--epochs of the reference recipe, default 8 of its
24, evaluated once on the first 5,000 users), DCNv2 on Frappe (--epochs of the BARS recipe, every
example), TIGER on Beauty (the tiny preset trained 300 steps, 2,000 test users). Every
evaluation scores its parameters once and computes the metrics under both rules from the same scores:
the sequential eval step and TIGER's beam evaluation are wrapped (unittest.mock) to add the old
'optimistic' sums (ties won; for TIGER the beam's position, ties in top_k's order) beside the default
'expected' ones. CTR's AUC counts ties as half before and after; its optimistic / pessimistic AUC are
AUC +- tied_share / 2, compared with the AUC's SE (Hanley & McNeil 1982). Writes
benchmarks/results/tie_check_cpu.json: per family the test metric under each rule, its SE, the
difference, whether it is within one SE, tie_fraction (examples whose target ties with at least one
competitor) and tied_share.
"""

from __future__ import annotations

import argparse
import functools
import math
import pathlib
import time
from unittest import mock

from benchmarks.provenance import ROOT, command_line, provenance
from experiments.hstu.beauty import get_config as beauty_config
from experiments.tiger.beauty import get_config as tiger_config
from experiments.wukong.frappe import get_config as frappe_config
from scaling_rec import host_memory, metrics
from scaling_rec.data.ctr import load_ctr
from scaling_rec.io import atomic_write_json
from scaling_rec.models.beam_search import ranks_in_beams
from scaling_rec.train import ctr_loop, loop, step, tiger_loop

OLD = "optimistic"


def _sequential_both(scores_BxV, targets_B, valid_B, exclude_BxH=None, *, ks, ties="expected"):
    """The eval step's sums under `ties` (the default) plus the old rule's, prefixed 'optimistic/'."""
    sums = metrics.ranking_metrics(scores_BxV, targets_B, valid_B, exclude_BxH, ks=ks, ties=ties)
    old = metrics.ranking_metrics(scores_BxV, targets_B, valid_B, exclude_BxH, ks=ks, ties=OLD)
    return {**sums, **{f"{OLD}/{k}": v for k, v in old.items() if k != metrics.COUNT_KEY and not k.startswith("tie")}}


def _beam_both(items_BxW, scores_BxW, targets_B, valid_B, ks):
    """TIGER's sums under the expected rule plus the old ones (rank = position in the beam), 'optimistic/'."""
    sums = metrics.beam_ranking_metrics(items_BxW, scores_BxW, targets_B, valid_B, ks)
    old = metrics.ranking_metrics_from_ranks(ranks_in_beams(items_BxW, targets_B), valid_B, ks)
    return {**sums, **{f"{OLD}/{k}": v for k, v in old.items() if k != metrics.COUNT_KEY}}


def compare(ev: dict, names: tuple[str, ...], old_of) -> dict:
    """Test metrics under the expected and old rule: values, SE, difference, |difference| <= SE."""
    out = {}
    for m in names:
        new, se, old = ev[f"test/{m}"], ev[f"test/{m}_se"], old_of(m)
        out[m] = {"expected": new, "se": se, OLD: old, "difference": new - old,
                  "within_one_se": bool(abs(new - old) <= se)}
    return out


def sequential(family: str, workdir: pathlib.Path, epochs: float) -> dict:
    c = beauty_config(family)
    c.train.num_epochs, c.train.eval_every, c.eval.max_users, c.eval.patience = epochs, 10**9, 5000, 0
    c.logging.wandb = c.logging.progress = False
    with mock.patch.object(step, "ranking_metrics", _sequential_both):
        r = loop.train_and_evaluate(c, workdir)
    ev = r["eval"]
    return {"run": {"status": r["status"], "steps": r["steps"], "test_users": ev["test/num_examples"]},
            "metrics": compare(ev, ("hr@10", "ndcg@10", "mrr"), lambda m: ev[f"test/{OLD}/{m}"]),
            "tie_fraction": ev["test/tie_fraction"], "tied_share": ev["test/tied_share"]}


def hanley_mcneil_se(a: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC `a` from n_pos positives and n_neg negatives (Hanley & McNeil 1982, eq. 2)."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))


def ctr(workdir: pathlib.Path, epochs: float) -> dict:
    c = frappe_config("dcnv2")
    c.train.num_epochs, c.logging.wandb, c.logging.progress = epochs, False, False
    r = ctr_loop.train_and_evaluate(c, workdir)
    ev = r["eval"]
    share, a = ev["test/tied_share"], ev["test/auc"]
    labels = load_ctr(c.data).test.label_N
    se = hanley_mcneil_se(a, int(labels.sum()), int(len(labels) - labels.sum()))
    return {"run": {"status": r["status"], "steps": r["steps"], "test_examples": ev["test/n"]},
            "auc": {"expected": a, "se": se, OLD: a + share / 2, "pessimistic": a - share / 2,
                    "difference": -share / 2, "within_one_se": bool(share / 2 <= se)},
            "tie_fraction": ev["test/tie_fraction"], "tied_share": share}


def tiger(workdir: pathlib.Path) -> dict:
    c = tiger_config("tiny")
    c.train.update(num_steps=300, eval_every=300, log_every=50)
    c.eval.update(valid_users=512, test_users=2000)
    c.logging.progress = False
    with mock.patch.object(tiger_loop, "beam_ranking_metrics", _beam_both):
        r = tiger_loop.train_and_evaluate(c, workdir)
    ev = r["eval"]
    return {"run": {"status": r["status"], "steps": r["steps"], "test_users": r["num_test_users"]},
            "metrics": compare(ev, ("recall@10", "ndcg@10"), lambda m: ev[f"test/{OLD}/{m}"]),
            "tie_fraction": ev["test/tie_fraction"], "tied_share": ev["test/tied_share"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", default="/tmp/runs/tie_check")
    p.add_argument("--families", default="hstu,sasrec,dcnv2,tiger")
    p.add_argument("--epochs", type=float, default=8.0, help="training epochs of the sequential and CTR runs")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tie_check_cpu.json"))
    args = p.parse_args()
    command = command_line("benchmarks.tie_check", [f"--{k}={v}" for k, v in vars(args).items() if k != "out"])
    runs = {"sasrec": functools.partial(sequential, "sasrec", epochs=args.epochs),
            "hstu": functools.partial(sequential, "hstu", epochs=args.epochs),
            "dcnv2": functools.partial(ctr, epochs=args.epochs), "tiger": tiger}
    out = {"command": command, "provenance": provenance(), "rule": "expected (scaling_rec/metrics.py)",
           "old_rule": OLD, "families": {}}
    for fam in args.families.split(","):
        t0, cpu0 = time.time(), time.process_time()
        out["families"][fam] = {**runs[fam](pathlib.Path(args.workdir) / fam), "wall_s": time.time() - t0,
                                "cpu_s": time.process_time() - cpu0}
        atomic_write_json(pathlib.Path(args.out), out)
        print(fam, out["families"][fam], flush=True)


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    main()
