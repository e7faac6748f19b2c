r"""Wukong vs DLRM on Frappe: does quality keep improving with compute per example where DLRM saturates?

Zhang et al. 2024 (Wukong, §5-6) scale Wukong by stacking more and wider layers (l, n_F, n_L, k, the
FMB and top MLPs) and DLRM by widening/deepening its MLPs, and report that Wukong's quality keeps
improving over two orders of magnitude of compute per example while DLRM's flattens. This study is
that experiment on our rebuilt Frappe split: two size ladders (compute per example, ~2e4 -> ~5e7
forward FLOPs) x examples seen (epochs), every run a fixed length at a constant learning rate,
evaluated once at its end (so C, D and the metric refer to the same model), fitted with
scaling_rec.analysis: test logloss (and 1 - AUC) vs training FLOPs C, per family.

Ladders: scaling_rec/sweep/sizes.py's wukong/r0-r5 and dlrm/r0-r5 (which cite their source and state
N_dense exactly); embedding dim 10 as in the Frappe presets; forward FLOPs per example, N_dense on Frappe:

| rung | Wukong l, n_F = n_L, k, FMB MLP, top MLP | FLOPs   | N_dense | DLRM ('dot') top MLP | FLOPs   | N_dense |
|------|------------------------------------------|---------|---------|----------------------|---------|---------|
| 0    | 1, 4, 4, 64x1, 64x1                      | 2.5e4   | 11k     | 64x1                 | 2.1e4   | 9k      |
| 1    | 2, 8, 8, 128x1, 128x2                    | 1.8e5   | 86k     | 128x2                | 7.2e4   | 36k     |
| 2    | 2, 16, 16, 256x1, 256x2                  | 8.5e5   | 407k    | 256x2                | 2.1e5   | 104k    |
| 3    | 4, 16, 16, 256x2, 256x3                  | 2.3e6   | 1.1M    | 512x3                | 1.2e6   | 602k    |
| 4    | 4, 32, 24, 512x2, 512x3                  | 1.0e7   | 5.1M    | 1024x3               | 4.5e6   | 2.3M    |
| 5    | 8, 32, 32, 1024x2, 1024x3                | 5.8e7   | 29M     | 2048x4               | 2.6e7   | 13M     |

Presets:
  quick  rungs 0-3 x {1, 4} epochs (16 runs, 9 min on the 2-core CPU shared with another sweep:
         6-52 s per epoch);
  cpu    rungs 0-4 x {1, 3} epochs and rungs 0-3 x 10 epochs (28 runs, 400x in compute per example,
         10x in examples; about 40 min here);
  full   rungs 0-5 x {1, 3, 10} epochs (36 runs; GPU).

Result (cpu preset, then the quick preset's 8 four-epoch runs into the same study: 36 runs trained at fb7cf58 on
the Frappe rebuild of d780587, 35 min on the 2-core CPU shared with the test suite; report, runs.csv and
provenance in benchmarks/results/wukong_scaling_cpu/, written by
`python -m benchmarks.study_report --config=experiments/wukong/scaling.py:cpu --study=runs/wukong_scaling
--out=benchmarks/results/wukong_scaling_cpu`). Test logloss / AUC at 10 epochs, rungs 0 → 3:
  Wukong  .1753 / .9740   .1694 / .9764   .1663 / .9768   .1737 / .9758   (7e4 → 7e6 FLOPs per example)
  DLRM    .2163 / .9640   .1935 / .9721   .1800 / .9752   .1779 / .9754   (6e4 → 4e6)
(Frappe seed-to-seed std at the presets' sizes: test AUC .0003-.0008, test logloss .002-.006;
benchmarks/results/frappe_cpu.json.) So on Frappe the
paper's claim does not reproduce: DLRM improves with compute per example over the 60x it spans (flattening
at the last rung), while Wukong gains from rung 0 to rung 1 and is flat after; Wukong is better at every
compute. The compute frontiers (L(C) = E + A·C^-α on the Pareto frontier) saturate at E = .168 [.163, .172]
(Wukong) and .179 [.161, .202] (DLRM): the intervals overlap, so which floor is lower is not settled by these
36 runs (on the rebuild before d780587 they did not overlap: .163 [.096, .165] vs .180 [.165, .202]). At 1
epoch larger models of both families are worse (under-trained). Frappe has 200k training rows and 10 fields;
the paper's claim is about a 146B-example internal dataset, so this study bounds what a small public dataset
can say rather than refuting it. Rung 4 ran at 1 and 3 epochs only.

Every point carries a size label ('wukong/r0' … 'dlrm/r5') for the sweep table and the analysis;
launch.sweep routes the CTR families to scaling_rec.ctr_config (validation) and
scaling_rec.train.ctr_loop (training) by model.family. Command:
  SCALING_REC_DATA=../shared/data python -m launch.sweep \
      --config=experiments/wukong/scaling.py:quick --workdir=runs/ --executor=local --workers=2
"""

from __future__ import annotations

import ml_collections

from experiments.wukong.frappe import get_config as frappe_config

# preset -> blocks of (rungs 0..n-1, epochs): every rung of a block at every epoch count of it
PRESETS = {
    "quick": ((4, (1.0, 4.0)),),
    "cpu": ((5, (1.0, 3.0)), (4, (10.0,))),
    "full": ((6, (1.0, 3.0, 10.0)),),
}
FINAL_ONLY = 10**9  # eval_every larger than any run: one evaluation, at the last step


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    """The base config every point starts from: the Frappe Wukong preset, fixed length, no early stop."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {list(PRESETS)}")
    c = frappe_config("wukong")
    c.study = "wukong_scaling"
    c.train.embedding_l2 = 0.1
    c.train.lr_decay_factor = 1.0  # constant learning rate: the run's length is the only schedule
    c.train.eval_every = FINAL_ONLY
    c.eval.patience = 0
    return c


def wukong_point(rung: int) -> dict:
    return {"size": f"wukong/r{rung}"}


def dlrm_point(rung: int) -> dict:
    return {"size": f"dlrm/r{rung}", "model.interaction": "dot", "model.dropout": 0.4}


def get_sweep(preset: str = "quick") -> list[dict]:
    """Points (dotted config keys, scaling_rec/sweep/spec.py): both ladders x epochs."""
    return [{**point(r), "train.num_epochs": e} for rungs, epochs in PRESETS[preset] for e in epochs
            for point in (wukong_point, dlrm_point) for r in range(rungs)]


def get_analysis(preset: str = "quick") -> dict[str, str]:
    """launch.analyze flags: fit test logloss (nats) against training FLOPs, per family, on the Pareto
    frontier (every run has its own C here); the report's ladder section answers the per-example question."""
    return {"metric": "eval/test/logloss", "transform": "none", "frontier": "pareto",
            "n_boot": "50" if preset == "quick" else "200"}
