"""The HSTU vs SASRec size-ladder table (issue 19) from a finished sweep of experiments/hstu/size_ladder.py.

    python -m benchmarks.size_ladder --config=experiments/hstu/size_ladder.py:cpu --workdir=runs/ [--out=...]

For every dataset and rung: each family's N_dense, test NDCG@10 and HR@10 with their standard errors over
the test users (at the best validation step), and HSTU's relative lead (NDCG@10_HSTU / NDCG@10_SASRec - 1)
with its delta-method SE (the two SEs combined as independent: the families share test users, so this is
conservative). `leads_by_10pct` says whether the lead is at least 10% (point estimate) and
`leads_by_10pct_2se` whether it still is 2 SEs lower. Runs not finished are listed as missing, never
guessed. A run that ends with a higher training loss than a smaller rung of its family on the same dataset
(`fails_to_fit`: more parameters fitting the same training data worse under one recipe is a failed
optimisation, not a capacity result) makes its row not comparable: the lead is still printed, marked, but
`first_rung_hstu_leads_by_10pct` skips it. Writes benchmarks/results/size_ladder_<preset>_<device>.json
(default) with the command, the commit, the machine and each run's id.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
from typing import Any

from benchmarks.provenance import command_line, provenance
from scaling_rec import host_memory
from scaling_rec.io import atomic_write_json, read_run_result
from scaling_rec.sweep.spec import load_experiment
from scaling_rec.train.run import study_root

METRICS = ("ndcg@10", "hr@10")
LEAD = 0.10


def lead(h: float, s: float, h_se: float, s_se: float) -> tuple[float, float]:
    """(h / s - 1, its delta-method SE with independent h and s)."""
    ratio = h / s
    return ratio - 1.0, ratio * math.sqrt((h_se / h) ** 2 + (s_se / s) ** 2)


def collect(workdir: pathlib.Path, module: Any, preset: str) -> tuple[list[dict], str]:
    """One row per dataset x rung with both families' numbers (None where a run is missing) and the device."""
    config = module.get_config(preset)
    root = study_root(workdir, config)
    manifest = json.loads((root / "sweep" / "manifest.json").read_text())
    runs: dict[tuple[str, str, str], dict] = {}
    devices = set()
    for entry in manifest["runs"]:
        result = read_run_result(root / "runs" / entry["run_id"])
        if result is None or result.get("status") != "ok":
            continue
        dataset = json.loads((root / "runs" / entry["run_id"] / "config.json").read_text())["data"]["name"]
        family, rung = entry["size"].split("/")
        ev = result["eval"]
        runs[(dataset, rung, family)] = {
            "run_id": entry["run_id"], "n_dense": result["n_dense"], "best_step": result.get("best_step"),
            "epochs": result.get("epochs"), "wall_time_s": result.get("wall_time_s"),
            "final_train_loss": result.get("final_train_loss"),
            **{f"test/{m}": ev[f"test/{m}"] for m in METRICS}, **{f"test/{m}_se": ev[f"test/{m}_se"] for m in METRICS},
        }
        devices.add(f"{result.get('num_devices')}x {result.get('device_kind')}")
    rows = []
    for dataset in module.DATASETS[preset]:
        for family in ("hstu", "sasrec"):
            mark_fails_to_fit([runs.get((dataset, rung, family)) for rung in module.RUNGS[preset]])
        for rung in module.RUNGS[preset]:
            h, s = runs.get((dataset, rung, "hstu")), runs.get((dataset, rung, "sasrec"))
            row: dict[str, Any] = {"dataset": dataset, "rung": rung, "hstu": h, "sasrec": s}
            if h and s:
                value, se = lead(h["test/ndcg@10"], s["test/ndcg@10"], h["test/ndcg@10_se"], s["test/ndcg@10_se"])
                row.update(lead_ndcg10=value, lead_ndcg10_se=se, leads_by_10pct=value >= LEAD,
                           leads_by_10pct_2se=value - 2 * se >= LEAD,
                           comparable=not (h["fails_to_fit"] or s["fails_to_fit"]))
            rows.append(row)
    return rows, ", ".join(sorted(devices)) or "none"


def mark_fails_to_fit(ladder: list[dict | None]) -> None:
    """Sets `fails_to_fit` on each run of one family's ladder (smallest rung first; None = missing): True when
    its final training loss is above that of some smaller rung's run, None when a loss is unknown."""
    best = math.inf
    for run in ladder:
        if run is None:
            continue
        loss = run.get("final_train_loss")
        run["fails_to_fit"] = None if loss is None else bool(loss > best)
        if loss is not None:
            best = min(best, loss)


def markdown(rows: list[dict]) -> str:
    """The table as markdown: NDCG@10 ± SE of each family and HSTU's lead per dataset and rung."""
    def cell(r: dict | None) -> str:
        return f"{r['test/ndcg@10']:.4f} ± {r['test/ndcg@10_se']:.4f} ({r['n_dense']:,})" if r else "missing"

    lines = ["| dataset | rung | HSTU NDCG@10 (N_dense) | SASRec NDCG@10 (N_dense) | HSTU lead |",
             "|---|---|---|---|---|"]
    for r in rows:
        led = f"{r['lead_ndcg10']:+.1%} ± {r['lead_ndcg10_se']:.1%}" if "lead_ndcg10" in r else "-"
        if not r.get("comparable", True):
            failed = [f for f in ("hstu", "sasrec") if r[f]["fails_to_fit"]]
            led += f" (not comparable: {', '.join(failed)} fits its training data worse than a smaller rung)"
        lines.append(f"| {r['dataset']} | {r['rung']} | {cell(r['hstu'])} | {cell(r['sasrec'])} | {led} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="experiments/hstu/size_ladder.py:<preset>")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", default="", help="default benchmarks/results/size_ladder_<preset>_<device>.json")
    args = parser.parse_args(argv)
    path, _, preset = args.config.partition(":")
    module = load_experiment(path)
    preset = preset or "cpu"
    rows, devices = collect(pathlib.Path(args.workdir), module, preset)
    leads = {d: next((r["rung"] for r in rows if r["dataset"] == d and r.get("leads_by_10pct") and r["comparable"]),
                     None)
             for d in module.DATASETS[preset]}
    report = {"benchmark": "size_ladder", "command": command_line("benchmarks.size_ladder", argv),
              "preset": preset, "devices": devices, "rows": rows, "first_rung_hstu_leads_by_10pct": leads,
              "protocol": (module.__doc__ or "").strip().split("\n\n")[1], **provenance()}
    device = "gpu" if "cpu" not in devices.lower() and devices != "none" else "cpu"
    out = pathlib.Path(args.out or f"benchmarks/results/size_ladder_{preset}_{device}.json")
    atomic_write_json(out, report)
    print(markdown(rows))
    print(f"first rung where HSTU leads by >= 10%: {leads}; wrote {out}")
    return report


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    main()
