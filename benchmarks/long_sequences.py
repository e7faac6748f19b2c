"""Long-sequence study runner (issue 6): HSTU at history lengths 200 → 4k (8k on GPU) on 'synthetic-long'.

    python -m benchmarks.long_sequences --preset=cpu [--steps=40] [--lengths=200,1000,4000]

Runs the lengths of experiments/hstu/long_sequences.py in sequence through train_and_evaluate and
writes benchmarks/results/long_sequences_<preset>.json after every finished length (so a cut-off run
leaves the lengths it finished): per length the test HR@10 / NDCG@10 with standard errors, training
tokens/s and examples/s (over the training loop's wall time, compilation and evaluation included, as
the loop measures it), the wall time, and tokens/examples seen; plus the config, the git commit and
machine (benchmarks/provenance.py, taken at launch) and the command.
"""

from __future__ import annotations

import pathlib
import time

from absl import app, flags

from benchmarks.provenance import command_line, provenance
from experiments.hstu.long_sequences import LENGTHS, get_config
from scaling_rec import host_memory
from scaling_rec.io import atomic_write_json
from scaling_rec.train.loop import train_and_evaluate

FLAGS = flags.DEFINE_string("preset", "cpu", "cpu | gpu (experiments/hstu/long_sequences.py)")
STEPS = flags.DEFINE_integer("steps", 0, "training steps per length (0: the preset's)")
LENGTHS_FLAG = flags.DEFINE_string("lengths", "", "comma-separated max_len values (default: the preset's)")
WORKDIR = flags.DEFINE_string("workdir", "/tmp/runs/long_sequences", "study directory (runs resume from here)")
OUT = flags.DEFINE_string("out", "", "output JSON (default benchmarks/results/long_sequences_<preset>.json)")
DATA = flags.DEFINE_string("data", "", "dataset name (default: the preset's, 'synthetic-long')")
IMPL = flags.DEFINE_string("attention_impl", "", "model.attention_impl (default: the preset's)")
FAMILY = flags.DEFINE_string("family", "", "model.family, e.g. sasrec as a control (default: the preset's hstu)")


def _row(n: int, r: dict) -> dict:
    e = r["eval"]
    wall = max(r["wall_time_s"], 1e-9)
    row = {"max_len": n, "status": r["status"], "run_id": r["run_id"], "steps": r["steps"],
           "wall_time_s": r["wall_time_s"], "elapsed_s": r["elapsed_s"],
           "tokens_seen": r["tokens_seen"], "examples_seen": r["examples_seen"],
           "tokens_per_s": r["tokens_seen"] / wall, "examples_per_s": r["examples_seen"] / wall,
           "flops_per_example": r["flops_per_example"], "final_train_loss": r["final_train_loss"]}
    for m in ("hr@10", "ndcg@10", "hr@50", "mrr"):
        for split in ("test", "valid"):
            row[f"{split}/{m}"] = e.get(f"{split}/{m}")
            row[f"{split}/{m}_se"] = e.get(f"{split}/{m}_se")
    return row


def _configured(preset: str):
    """The preset's config with the --steps, --data, --attention_impl and --family overrides."""
    c = get_config(preset)
    if STEPS.value:
        c.train.num_steps = STEPS.value
    if DATA.value:
        c.data.name = DATA.value
    if IMPL.value:
        c.model.attention_impl = IMPL.value
    if FAMILY.value:
        c.model.family = FAMILY.value
    return c


def main(argv: list[str]) -> None:
    del argv
    preset = FLAGS.value
    lengths = [int(x) for x in LENGTHS_FLAG.value.split(",")] if LENGTHS_FLAG.value else LENGTHS[preset]
    out_path = pathlib.Path(OUT.value or pathlib.Path(__file__).parent / "results" / f"long_sequences_{preset}.json")
    base = _configured(preset)
    out = {"command": command_line("benchmarks.long_sequences"),
           "provenance": provenance(), "preset": preset, "lengths": lengths, "config": base.to_dict(),
           "chance_hr@10": 10 / base.data.synthetic_items,
           "ceiling_hr@10": "min(1, 10 / profile size) = 1: profiles of 4 of 128 items (long_range.py)",
           "note": "same steps and batch at every length; tokens/s and examples/s over the training loop's "
                   "wall time (compilation and the final evaluation included)",
           "results": [], "complete": False}
    for n in lengths:
        c = _configured(preset)
        c.data.max_len = n
        t = time.time()
        r = train_and_evaluate(c, WORKDIR.value)
        row = _row(n, r)
        row["elapsed_this_call_s"] = time.time() - t
        out["results"].append(row)
        out["complete"] = n == lengths[-1]
        atomic_write_json(out_path, out)
        print(f"max_len={n} test hr@10={row['test/hr@10']:.4f}±{row['test/hr@10_se']:.4f} "
              f"ndcg@10={row['test/ndcg@10']:.4f}±{row['test/ndcg@10_se']:.4f} "
              f"tokens/s={row['tokens_per_s']:.0f} wall={row['wall_time_s']:.0f}s", flush=True)


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    app.run(main)
