"""build(config) -> model and build_ctr_model(config.model, ...) -> model: the one place that turns a model
config into a module (sequence retrievers and CTR models; TIGER's model takes its TigerSpec directly)."""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
from flax import nnx

from scaling_rec.models import ctr
from scaling_rec.models.hstu import HSTU
from scaling_rec.models.sasrec import SASRec
from scaling_rec.models.sequential import SequentialRecommender


def build(config: ml_collections.ConfigDict, num_items: int, *, time_bias: bool | None = None,
          rngs: nnx.Rngs | None = None) -> SequentialRecommender:
    """The sequence model of `config.model` over `num_items` items (ids 1..num_items).

    Args:
      config: a validated full config (reads config.model, config.data.max_len, config.seed).
      time_bias: overrides config.model.time_bias (False when the data has no timestamps).
    """
    m = config.model
    rngs = rngs if rngs is not None else nnx.Rngs(params=config.seed)
    common = dict(embed_dim=m.embed_dim, num_blocks=m.num_blocks, num_heads=m.num_heads,
                  max_len=config.data.max_len, dropout_rate=m.dropout, l2_norm=m.l2_norm, rngs=rngs)
    if m.family == "hstu":
        return HSTU(num_items, qk_dim=m.qk_dim, v_dim=m.v_dim,
                    time_bias=m.time_bias if time_bias is None else time_bias,
                    num_time_buckets=m.num_time_buckets, time_bucket_divisor=m.time_bucket_divisor,
                    attention_impl=m.attention_impl, matmul_dtype=m.get("matmul_dtype", "float32"), **common)
    if m.family == "sasrec":
        return SASRec(num_items, ffn_dim=m.ffn_dim, **common)
    raise ValueError(f"unknown model.family {m.family!r}")


def build_ctr_model(model_config, vocab_sizes: Sequence[int], num_dense: int, rngs: nnx.Rngs) -> nnx.Module:
    """The CTR model of `config.model` (scaling_rec.ctr_config) over fields of `vocab_sizes`, built by its
    family's declaration (scaling_rec/models/ctr/<family>.py)."""
    m = model_config
    common = dict(embed_dim=m.embed_dim, mlp_width=m.mlp_width, mlp_depth=m.mlp_depth, norm=m.norm,
                  dropout_rate=m.dropout, matmul_dtype=m.get("matmul_dtype", "float32"), rngs=rngs)
    return ctr.get(m.family).build(m, tuple(int(v) for v in vocab_sizes), num_dense, common)
