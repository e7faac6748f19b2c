"""Reproduction of published retrieval quality on Amazon Beauty and Toys (issue 3).

Targets (SASRec rows of Table 1 in Rajput et al. 2023, "Recommender Systems with Generative
Retrieval"): Beauty Recall@10 >= 0.0605, NDCG@10 >= 0.0318; Toys >= 0.0675 / 0.0374. HSTU should
be at least as good as SASRec on both. Protocol: leave-one-out, ranking over all items, history
items NOT excluded (the TIGER/S3-Rec protocol ranks every item), model selected on the validation
item (NDCG@10), test reported.

Settings: the HSTU reference's sampled-softmax recipe (facebookresearch/generative-recommenders,
configs/ml-1m/*.gin: embedding 50, 2 blocks x 1 head, batch 128, AdamW lr 1e-3 betas (0.9, 0.98),
no weight decay, 128 uniform negatives, temperature 0.05, L2-normalised embeddings) with the Amazon
history length 50 and dropout 0.5 of SASRec on sparse Amazon data (Kang & McAuley 2018, §IV-B).
The S3-Rec Amazon files have no timestamps, so HSTU uses only its relative position bias.

Command (writes benchmarks/results/reproduce_<preset>.json):
  python -m benchmarks.reproduce --config=experiments/hstu/reproduce.py:beauty_sasrec --workdir=runs/reproduce
Runtime on the 2-core CPU: about 40 s per epoch of Beauty (175 steps of 128 users) plus ~10 s per
evaluation; the presets train `num_epochs` epochs with an evaluation every 2 epochs.
"""

from __future__ import annotations

import ml_collections

from scaling_rec.config import default_config

_DATASETS = {"beauty": "amazon-beauty", "toys": "amazon-toys"}


def get_config(preset: str = "beauty_sasrec") -> ml_collections.ConfigDict:
    """Presets '<dataset>_<model>[_ce][_d02][_h20]' with dataset in {beauty, toys}, model in {sasrec, hstu,
    hstu_large}; '_ce' trains with the full-softmax cross-entropy over all items instead of 128 sampled negatives,
    '_d02' uses dropout 0.2 (the HSTU reference's ML-1M value) instead of SASRec's 0.5 for sparse Amazon data,
    '_h20' caps histories at the last 20 items and reports @5 too: the TIGER protocol (issue 8's SASRec row);
    '_s128' draws the sampled negatives once per 128 consecutive target tokens (train.negative_sharing)."""
    base, full_softmax, dropout, history, sharing = preset, False, 0.5, 50, 1
    for suffix in ("_s128", "_h20", "_d02", "_ce"):
        if base.endswith(suffix):
            base = base.removesuffix(suffix)
            full_softmax |= suffix == "_ce"
            dropout = 0.2 if suffix == "_d02" else dropout
            history = 20 if suffix == "_h20" else history
            sharing = 128 if suffix == "_s128" else sharing
    dataset, _, model = base.partition("_")
    if dataset not in _DATASETS or model not in ("sasrec", "hstu", "hstu_large"):
        raise ValueError(f"unknown preset {preset!r}: use "
                         "<beauty|toys>_<sasrec|hstu|hstu_large>[_ce][_d02][_h20][_s128]")
    c = default_config()
    c.study = "reproduce"
    c.data.name = _DATASETS[dataset]
    c.data.max_len = history
    if history == 20:
        c.eval.ks = (5, 10, 50, 200)
    c.model.family = "sasrec" if model == "sasrec" else "hstu"
    c.model.dropout = dropout
    if model == "hstu_large":
        c.model.num_blocks, c.model.num_heads, c.model.qk_dim, c.model.v_dim = 8, 2, 25, 25
    c.train.num_epochs = 24.0
    c.train.eval_every = 350
    c.train.log_every = 175
    c.eval.select_metric = "ndcg@10"
    if full_softmax:
        c.train.loss = "full_softmax"
    if sharing > 1:
        if full_softmax:
            raise ValueError(f"preset {preset!r}: '_s128' shares sampled negatives; '_ce' samples none")
        c.train.negative_sharing = sharing
    return c
