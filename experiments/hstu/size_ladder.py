r"""HSTU vs SASRec as a scaling question (issue 19): both families along one size ladder on Amazon Beauty and Toys.

Zhai et al. 2024 (HSTU, §4.3 and Fig. 6) report that HSTU keeps gaining with depth and width where SASRec
saturates. Here both families train at the same width d, depth and heads (the paired ladder of
scaling_rec/sweep/sizes.py: XS = d32 x 1 block, S = d50 x 2, d64x4, d128x8, d256x16; SASRec's FFN is d wide,
as in Kang & McAuley 2018) with one recipe: the reproductions' full-softmax cross-entropy over all items,
dropout 0.2, AdamW 1e-3, batch 128, max_len 50, 24 epochs with an evaluation every 350 steps and the test
metrics at the best validation NDCG@10 (experiments/hstu/reproduce.py, preset beauty_hstu_ce_d02).

Commands (the sweep, then the table: benchmarks/results/size_ladder_<preset>_<device>.json):
  SCALING_REC_DATA=../shared/data python -m launch.sweep --config=experiments/hstu/size_ladder.py:cpu \
      --workdir=runs/ --executor=local --workers=1
  python -m benchmarks.size_ladder --config=experiments/hstu/size_ladder.py:cpu --workdir=runs/
Presets:
  cpu   rungs XS and S on both datasets (8 runs; the S runs take about 20 min each on the 2-core CPU).
  cpu_large  rungs d64x4 and d128x8 on both datasets (8 runs of 4,200 steps; alone on the idle 2-core AVX-512
        CPU ~13 and ~6 HSTU steps/s, ~10 and ~4 SASRec steps/s between evaluations; measured 14-57 min a run,
        evaluations included, two runs sharing the CPU).
  cpu_warmup  SASRec d128x8 on Beauty with the learning rate warmed up linearly over its first WARMUP_STEPS
        steps (1 run): cpu_large's SASRec d128x8 ended with a higher training loss than its d64x4, so this arm
        asks whether that rung failed to optimise under the shared recipe rather than ran out of capacity.
  gpu   all five rungs on both datasets (20 runs; for one H100/H200).
  tiny  rungs XS and S on synthetic sequences, a few steps (the tests' end-to-end run).
Measured (cpu preset; Beauty runs 6ff6688c4817, 8ea18b9fd7b8, 9d80f783be80, 272616922e5f at d52be60, load 3-15;
Toys runs 29c4a26ed602, a49063c385cf, a025dc8661bf, a6f908062b24 from a checkout of d52be60, i.e. with the
threefry dropout masks like the Beauty runs, load 5-20): test NDCG@10 HSTU / SASRec, HSTU's lead:
  Beauty  XS .0370 / .0372 (-0.3% ± 3.6%)   S .0402 / .0391 (+2.9% ± 3.8%)
  Toys    XS .0377 / .0378 (-0.2% ± 3.7%)   S .0427 / .0394 (+8.5% ± 4.1%)
No rung leads by 10%; HSTU's lead grows from XS to S on both (by 3.2 and 8.7 points, each within ~1.5-2 SE).
Measured (cpu_large preset, runs from 5752e97 on, two at a time on the 2-core CPU, 14-57 min a run; Toys SASRec
d128x8 alone at 5d2a4b3, 41 min; table at 5c83a95):
  Beauty  d64x4 .0411 / .0400 (+2.9% ± 3.9%)   d128x8 .0433 / .0121 (SASRec fails to fit: training loss 8.07
          against 5.54 at d64x4; not comparable)
  Toys    d64x4 .0439 / .0395 (+11.0% ± 4.4%)  d128x8 .0469 / .0047 (SASRec fails to fit: training loss 8.94
          against 5.51 at d64x4, best validation at step 350; not comparable)
HSTU improves at every rung (on Beauty S -> d64x4 by < 1 SE); SASRec is flat after S. HSTU's lead grows with
size on Toys (-0.2% -> +8.5% -> +11.0%) and stays at +2.9% on Beauty (README).
"""

from __future__ import annotations

import ml_collections

from experiments.hstu.reproduce import get_config as reproduce_config

FAMILIES = ("hstu", "sasrec")
RUNGS = {"cpu": ("XS", "S"), "cpu_large": ("d64x4", "d128x8"), "cpu_warmup": ("d128x8",),
         "gpu": ("XS", "S", "d64x4", "d128x8", "d256x16"), "tiny": ("XS", "S")}
_AMAZON = ("amazon-beauty", "amazon-toys")
DATASETS = {"cpu": _AMAZON, "cpu_large": _AMAZON, "cpu_warmup": ("amazon-beauty",), "gpu": _AMAZON,
            "tiny": ("synthetic",)}
PRESET_FAMILIES = {"cpu_warmup": ("sasrec",)}  # presets that train one family only (default FAMILIES)
WARMUP_STEPS = {"cpu_warmup": 1000}  # linear learning-rate warm-up (train.warmup_steps; default none)


def get_config(preset: str = "cpu") -> ml_collections.ConfigDict:
    """The shared recipe (the sizes and the dataset come from the sweep's points)."""
    if preset not in RUNGS:
        raise ValueError(f"unknown preset {preset!r}; use one of {list(RUNGS)}")
    c = reproduce_config("beauty_hstu_ce_d02")
    c.study = f"size_ladder_{preset}"
    c.logging.wandb = False
    c.train.warmup_steps = WARMUP_STEPS.get(preset, 0)
    if preset == "tiny":
        c.data.synthetic_users, c.data.synthetic_items, c.data.max_len = 300, 60, 12
        c.train.num_epochs, c.train.num_steps, c.train.eval_every, c.train.log_every = 0.0, 12, 6, 6
        c.eval.batch_size = 64
        c.logging.progress = False
    return c


def get_sweep(preset: str = "cpu") -> list[dict]:
    """One point per dataset x rung x family (dataset-major, so a partial sweep has whole rows)."""
    return [{"size": f"{family}/{rung}", "data.name": dataset}
            for dataset in DATASETS[preset] for rung in RUNGS[preset]
            for family in PRESET_FAMILIES.get(preset, FAMILIES)]
