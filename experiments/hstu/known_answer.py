r"""Known-answer study: HSTU IsoFLOP sweeps on hidden-Markov interest data whose best cross-entropy is known.

Commands:
  bash scripts/main.sh      (the README's main job: the quick preset, then its report into
                             docs/example_quick_report/ with benchmarks.known_answer_report)
  nice -n 5 python -m launch.sweep --config=experiments/hstu/known_answer.py:cpu --workdir=runs/known_answer \
      --executor=inline --noanalyze
  python -m benchmarks.known_answer_report --config=experiments/hstu/known_answer.py:cpu \
      --study=runs/known_answer/hstu_known_answer_cpu --out=benchmarks/results/known_answer_cpu
  (gpu: the same with :gpu on an H100/H200)

Data (scaling_rec/data/known_answer.py): 64 hidden interests over a Zipf catalogue of 1,000 items, sticky
interest chain (stay 0.9), histories of 20 events, a fresh history for every training example (the
study asks for more users than its largest run consumes, so every run trains under one epoch). The
model sees the 17 most recent events (data.max_len), so that the evaluated context length is one the
training covered; the fitted quantity is the calibrated test cross-entropy `eval/test/xent`
(docs/CONTRACTS.md) of each history's last event, whose Bayes-optimal value the report computes exactly
on the same users (benchmarks/known_answer_report.py): the floor E of the fits must find it.

Why this data for the main job (issue 15 item 2): on Amazon Beauty a CPU budget of minutes trains the
ladder's models 5-470 steps at chance level (12,101 items; see experiments/hstu/isoflop.py), so no law
can show. Here the catalogue is small enough that a full softmax is cheap, data is unlimited (no
epochs, so D is honest), and the answer is known, so a fitted floor can be checked, not only believed.

Sizes: HSTU at the shape of the ladder's first rung (scaling_rec/sweep/sizes.py hstu/XS: 1 block × 1
head, head dim = FFN width = d) over widths d = 8 … 128, labelled hstu/XS-d<d> (hstu/XS-d32 is hstu/XS;
N_dense 361 / 1,329 / 5,185 / 20,577 / 80k for d = 8 / 16 / 32 / 64 / 128). Width is what matters here:
2·d·V FLOPs per scored event are the full softmax, which dominates the cost, and the rank d of the
item table limits how well 64 interests can be told apart, so a narrow model learns fast per FLOP and
saturates early; a wide one costs more per example and keeps improving. The ladder's deeper rungs lost
in a pilot (validation xent at 3.5e11: hstu/S 3.525, hstu/XS 3.48): depth does not help this one-step-
memory process. Sizes are shifted per budget so that the optimum is bracketed (as FULL_SIZES in
experiments/hstu/isoflop.py). AdamW, constant learning rate, batch 128.

Presets:
  quick  11 budgets 1.41e10 … 4.53e11 (×√2 apart, 1.5 decades), widths 16 and 32 at every budget (the
         two that are best somewhere in this range, so that every budget's frontier point is its best
         run), plus 8 below them at the 3 lowest even budgets and 64 above them at the 3 highest, to
         bracket the optimum: 28 runs, learning rate 1e-2 (pilot: hstu/XS reached 3.90 / 3.73 at 2e10 /
         4e10 against 4.70 / 3.93 with 3e-3, whose slow start bent the frontier away from a power law
         and left α's CI 6.8× wide over 6 budgets), one evaluation at the end on 5,000 users.
  cpu    8 budgets 1e10 … 1.28e12 (×2), widths 16, 32, 64 (32, 64, 128 at the top two) = 24 runs,
         learning rate 3e-3: the known-answer check.
  gpu    the cpu budgets × 100 (1e12 … 1.28e14), widths shifting from 32-128 to 256-1024 (every
         budget's narrowest width then consumes at most 2.1M of the 2.5M histories). Not run yet; the
         widths are a guess from the CPU optima, and the loop holds every history in host memory as
         a Python object, which is why the users stop at 2.5M.

Runtime and expected results (2-core CPU shared with 4-5 other jobs, load average 12-16 throughout, so
every time here is several times an idle machine's; the true floor is 3.3689 nats on the 5,000 test
targets, chance ln 1000 = 6.908, item popularity 6.164):
  quick  28 runs, 884 s summed run time (elapsed_s; 65 s of it setup) + 40 s report, under that load;
         on 2 idle cores `bash scripts/main.sh` from a fresh clone took 5 min 05 s wall, venv build,
         28 runs and report included (/usr/bin/time, 2026-12-06, commit 92d0ce9).
         docs/example_quick_report/: L(C) α = 0.743 [0.287, 1.391] (CI
         ends 4.85× apart: the ≤ 2× target is MISSED), E = 3.488 [3.335, 3.579]; the largest budget held
         out is predicted within 0.60% (L(C)) and 0.72% (L(N, D)); all 6 bracketed budgets have an
         interior IsoFLOP optimum (d16 at the 3 lowest, moving to d32), N* ∝ C^a with a = 0.324 [0.176,
         0.421]; test xent 3.50-4.04 nats, far below chance. α's CI narrows with the span of budgets
         fitted (same runs, frontier sub-ranges: 1.2 decades 44×, 1.35 decades 6.4×, 1.5 decades
         4.9×): E and α trade off while the loss is within 0.2 nats of its floor, so ≤ 2× needs a
         wider span than a 10-minute CPU budget buys.
  cpu    24 runs, 1,204 s wall under that load (budget: 30 min). benchmarks/results/known_answer_cpu/:
         L(C) E = 3.450 [3.153, 3.500], the CI holds the true floor but E is 2.42% above it (the 2%
         target is MISSED: the frontier model hstu/XS-d32 is still improving at 1.28e12, 3.463);
         L(N, D) E = 3.364 [0, 3.482], 0.15% from the truth but its CI is uninformative below;
         α (L(C)) = 1.008 [0.503, 1.658]; holdout 0.14% (L(C)).
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.common import quick_eval
from scaling_rec.config import default_config

LENGTH = 20  # events per history (scaling_rec.data.known_answer.make_hmm default)
NUM_ITEMS = 1000
Q = (1e10, 2e10, 4e10, 8e10, 1.6e11, 3.2e11)  # ×2 apart
QUICK = tuple(1e10 * 2 ** (k / 2) for k in range(1, 12))  # 1.41e10 … 4.53e11, ×√2 apart: 11 frontier points
PRESETS = {
    # preset: (budgets, widths per budget, users generated, learning rate)
    "quick": (QUICK, tuple(((8, 16, 32) if k < 6 else (16, 32, 64)) if k % 2 == 0 else (16, 32) for k in range(11)),
              300_000, 1e-2),
    "cpu": ((*Q, 6.4e11, 1.28e12), ((16, 32, 64),) * 6 + ((32, 64, 128),) * 2, 400_000, 3e-3),
    "gpu": (tuple(100 * c for c in (*Q, 6.4e11, 1.28e12)),
            ((32, 64, 128),) * 2 + ((64, 128, 256),) * 2 + ((128, 256, 512),) * 2 + ((256, 512, 1024),) * 2,
            2_500_000, 3e-3),
}


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {list(PRESETS)}")
    c = default_config()
    c.study = f"hstu_known_answer_{preset}"
    c.data.name = "known-answer"
    c.data.synthetic_users = PRESETS[preset][2]
    c.data.synthetic_items = NUM_ITEMS
    c.data.max_len = LENGTH - 3  # leave-one-out: training inputs hold at most LENGTH - 3 events
    c.model.dropout = 0.0
    c.model.time_bias = False
    c.model.l2_norm = False  # a plain softmax over dot products: the trained loss is the evaluated one
    c.train.loss = "full_softmax"
    c.train.temperature = 1.0
    c.train.learning_rate = PRESETS[preset][3]
    c.train.flops_budget = PRESETS[preset][0][0]  # each sweep point sets its own budget
    return quick_eval(c, max_users=5000)


def width_overrides(d: int) -> dict[str, object]:
    """model.* keys of HSTU at hstu/XS's shape (1 block × 1 head) with width d."""
    return {"model.family": "hstu", "model.embed_dim": d, "model.num_blocks": 1, "model.num_heads": 1,
            "model.qk_dim": d, "model.v_dim": d, "model.ffn_dim": d}


def get_sweep(preset: str = "quick") -> list[dict[str, object]]:
    budgets, widths = PRESETS[preset][:2]
    return [{**width_overrides(d), "train.flops_budget": c, "size_label": f"hstu/XS-d{d}"}
            for c, ds in zip(budgets, widths, strict=True) for d in ds]


def get_analysis(preset: str = "quick") -> dict[str, str]:
    """launch.analyze flags: the calibrated test cross-entropy, as is."""
    return {"metric": "eval/test/xent", "transform": "none", "n_boot": "100" if preset == "quick" else "200"}
