"""Model-size ladders: ONE named table, `SIZES`, from which every study takes its model shapes.

Source. `hstu/S` and `hstu/M` are the reference HSTU configurations of Zhai et al. 2024 ("Actions
Speak Louder than Words", §4.1.1; facebookresearch/generative-recommenders configs
`ml-1m/hstu-sampled-softmax-n128-final.gin` and `...-large-final.gin`): 2 blocks × 1 head × 50 and
8 blocks × 2 heads × 25 over d = 50. `sasrec/S` is SASRec's published setting (Kang & McAuley 2018,
§4.3: d = 50, 2 blocks, 1 head, FFN width d). The other rungs are ours: they extend the reference
shapes geometrically (about 4-6× N_dense per rung) with head dims of 25-64 as in the reference.

N_dense (non-embedding parameters, scaling_rec.flops.param_counts on nnx.eval_shape of the built
model) at max_len = 50 without time bias (Amazon S3-Rec data has no timestamps); HSTU's relative
position table adds 2·max_len − 1 per block, its time table num_time_buckets + 1 per block:

| name     | d   | blocks | heads × head dim | N_dense   |
|----------|-----|--------|------------------|-----------|
| hstu/XS  | 32  | 1      | 1 × 32           | 5,251     |
| hstu/S   | 50  | 2      | 1 × 50           | 25,298    |
| hstu/M   | 50  | 8      | 2 × 25           | 101,192   |
| hstu/L   | 128 | 8      | 4 × 32           | 657,176   |
| hstu/XL  | 256 | 12     | 8 × 32           | 3,936,420 |
| sasrec/XS| 32  | 1      | 1 × 32 (ffn 32)  | 6,336     |
| sasrec/S | 50  | 2      | 1 × 50 (ffn 50)  | 30,600    |
| sasrec/M | 64  | 4      | 2 × 32 (ffn 256) | 198,912   |
| sasrec/L | 128 | 8      | 4 × 32 (ffn 512) | 1,582,080 |
| sasrec/XL| 256 | 12     | 8 × 32 (ffn 1024)| 9,464,832 |

The paired ladder (experiments/hstu/size_ladder.py: HSTU vs SASRec at the same width, depth and heads,
SASRec's FFN as wide as d as in its paper) is XS, S and these three per family (hstu/d128x8 has
hstu/L's shape):

| name            | d   | blocks | heads × head dim | N_dense   |
|-----------------|-----|--------|------------------|-----------|
| hstu/d64x4      | 64  | 4      | 2 × 32           | 82,572    |
| hstu/d128x8     | 128 | 8      | 4 × 32           | 657,176   |
| hstu/d256x16    | 256 | 16     | 8 × 32           | 5,248,560 |
| sasrec/d64x4    | 64  | 4      | 2 × 32 (ffn 64)  | 99,840    |
| sasrec/d128x8   | 128 | 8      | 4 × 32 (ffn 128) | 792,576   |
| sasrec/d256x16  | 256 | 16     | 8 × 32 (ffn 256) | 6,316,032 |

CTR ladders (experiments/wukong/scaling.py, experiments/rankmixer/frappe.py): each CTR family declares its
ladder in its own module (scaling_rec/models/ctr/<family>.py, `FAMILY.ladder`: rung values, stated N_dense and
source), named here '<family>/<rung>'. N_dense is on Frappe's 10 fields (no dense features) with embedding dim
10 and batch norm, as in the Frappe presets; `python -m scaling_rec.sweep.sizes` prints every ladder.

TIGER ladder (experiments/tiger/scaling.py). `tiger/r2` is the paper's model (Rajput et al. 2023 §4.1:
4 + 4 T5 layers, d_model 128, 6 heads × 64, FFN 1024); the other rungs are ours, widths and depths
around it; `tiger/s0`, `tiger/s1` are seconds-long smoke rungs for the tests. N_dense at the paper's
config (encoder-decoder, 32 relative-position buckets): every parameter but the token embedding table,
which is also the tied output layer:

| name     | d_model | layers per stack | heads × head dim | FFN  | N_dense    |
|----------|---------|------------------|------------------|------|------------|
| tiger/s0 | 16      | 1                | 2 × 8            | 32   | 5,360      |
| tiger/s1 | 32      | 1                | 2 × 16           | 64   | 20,832     |
| tiger/r0 | 64      | 2                | 4 × 32           | 256  | 328,704    |
| tiger/r1 | 96      | 3                | 4 × 48           | 512  | 1,255,264  |
| tiger/r2 | 128     | 4                | 6 × 64           | 1024 | 4,459,648  |
| tiger/r3 | 256     | 6                | 8 × 64           | 2048 | 22,028,800 |

`tests/sweep/test_sizes.py` recomputes every N_dense column and every CTR rung's stated N_dense;
`python -m scaling_rec.sweep.sizes` prints them.
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np

from scaling_rec.errors import ConfigError
from scaling_rec.families import CTR_FAMILIES
from scaling_rec.models import ctr


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """One rung: the model.* values it sets (qk_dim = v_dim = head_dim; ffn_dim for SASRec)."""

    family: str
    embed_dim: int
    num_blocks: int
    num_heads: int
    head_dim: int
    ffn_dim: int

    def overrides(self) -> dict[str, object]:
        """Dotted config keys -> values that put this size into a config."""
        return {
            "model.family": self.family, "model.embed_dim": self.embed_dim, "model.num_blocks": self.num_blocks,
            "model.num_heads": self.num_heads, "model.qk_dim": self.head_dim, "model.v_dim": self.head_dim,
            "model.ffn_dim": self.ffn_dim,
        }


def _hstu(d: int, blocks: int, heads: int, head_dim: int) -> ModelSize:
    return ModelSize("hstu", d, blocks, heads, head_dim, d)


def _sasrec(d: int, blocks: int, heads: int, ffn: int) -> ModelSize:
    return ModelSize("sasrec", d, blocks, heads, d // heads, ffn)


@dataclasses.dataclass(frozen=True)
class FamilySize:
    """One rung of a CTR or TIGER ladder: its family and the model.* values it sets, in the family's schema."""

    family: str
    values: tuple[tuple[str, int], ...]

    def overrides(self) -> dict[str, object]:
        """Dotted config keys -> values that put this size into a config."""
        return {"model.family": self.family, **{f"model.{k}": v for k, v in self.values}}


def _tiger(d_model: int, layers: int, heads: int, head_dim: int, d_ff: int) -> FamilySize:
    return FamilySize("tiger", (("d_model", d_model), ("num_layers", layers), ("num_heads", heads),
                                ("head_dim", head_dim), ("d_ff", d_ff)))


SIZES: dict[str, ModelSize | FamilySize] = {
    "hstu/XS": _hstu(32, 1, 1, 32),
    "hstu/S": _hstu(50, 2, 1, 50),
    "hstu/M": _hstu(50, 8, 2, 25),
    "hstu/L": _hstu(128, 8, 4, 32),
    "hstu/XL": _hstu(256, 12, 8, 32),
    "sasrec/XS": _sasrec(32, 1, 1, 32),
    "sasrec/S": _sasrec(50, 2, 1, 50),
    "sasrec/M": _sasrec(64, 4, 2, 256),
    "sasrec/L": _sasrec(128, 8, 4, 512),
    "sasrec/XL": _sasrec(256, 12, 8, 1024),
    "hstu/d64x4": _hstu(64, 4, 2, 32),
    "hstu/d128x8": _hstu(128, 8, 4, 32),
    "hstu/d256x16": _hstu(256, 16, 8, 32),
    "sasrec/d64x4": _sasrec(64, 4, 2, 64),
    "sasrec/d128x8": _sasrec(128, 8, 4, 128),
    "sasrec/d256x16": _sasrec(256, 16, 8, 256),
    "tiger/s0": _tiger(16, 1, 2, 8, 32),
    "tiger/s1": _tiger(32, 1, 2, 16, 64),
    "tiger/r0": _tiger(64, 2, 4, 32, 256),
    "tiger/r1": _tiger(96, 3, 4, 48, 512),
    "tiger/r2": _tiger(128, 4, 6, 64, 1024),
    "tiger/r3": _tiger(256, 6, 8, 64, 2048),
    **{f"{name}/{rung}": FamilySize(name, tuple(r.values.items()))
       for name in CTR_FAMILIES for rung, r in ctr.get(name).ladder.items()},
}
# Frappe (Baltrunas et al. 2015, the BARS Frappe_x1 protocol): 10 categorical fields, no dense features.
FRAPPE_NUM_FIELDS = 10


def size_name(name: str, family: str | None = None) -> str:
    """The table key of `name` ('hstu/S', or 'S' with family='hstu'); ConfigError when unknown."""
    key = name if "/" in name or family is None else f"{family}/{name}"
    if key not in SIZES:
        raise ConfigError(f"unknown model size {key!r}; the table scaling_rec/sweep/sizes.py:SIZES has {list(SIZES)}.")
    return key


def apply_size(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """Sets config.model.* to the size `name` (in place) and returns config."""
    size = SIZES[size_name(name)]
    for key, value in size.overrides().items():
        section, field = key.split(".")
        config[section][field] = value
    return config


def n_dense(config: ml_collections.ConfigDict, num_items: int = 100, time_bias: bool = False) -> int:
    """N_dense of the sequential model (HSTU, SASRec) `config` describes, from the abstract (eval_shape) model.

    N_dense does not depend on num_items (only N_emb does).
    """
    from flax import nnx

    from scaling_rec.flops import param_counts
    from scaling_rec.models.registry import build

    model = nnx.eval_shape(lambda: build(config, num_items, time_bias=time_bias, rngs=nnx.Rngs(params=0)))
    return param_counts(model).n_dense


def ctr_n_dense(config: ml_collections.ConfigDict, num_fields: int = FRAPPE_NUM_FIELDS) -> int:
    """N_dense of the CTR model `config` describes over `num_fields` categorical fields (no dense features).

    N_dense does not depend on the fields' vocabulary sizes (only N_emb does).
    """
    from flax import nnx

    from scaling_rec.flops import param_counts
    from scaling_rec.models.registry import build_ctr_model

    model = nnx.eval_shape(lambda: build_ctr_model(config.model, (2,) * num_fields, 0, nnx.Rngs(params=0)))
    return param_counts(model).n_dense


def tiger_n_dense(config: ml_collections.ConfigDict) -> int:
    """N_dense of the TIGER model `config` describes: every parameter but the token embedding table.

    N_dense does not depend on the semantic-ID vocabulary (the output layer is the tied embedding table).
    """
    from flax import nnx

    from scaling_rec.models.tiger import Tiger, model_spec

    vocab = (config.ids.codebook_size,) * config.ids.levels
    model = nnx.eval_shape(lambda: Tiger(model_spec(config), vocab, nnx.Rngs(params=0)))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return n_params - int(np.prod(model.embed.table.shape))


def table(max_len: int = 50, time_bias: bool = False) -> list[tuple[str, int]]:
    """(name, N_dense) for every size (the numbers in the module docstring): the sequential models at
    `max_len`, the CTR models on Frappe's fields with the Frappe presets' embedding dim 10 and batch norm,
    TIGER at the paper's config (experiments/tiger/beauty.py's 'paper' defaults)."""
    from scaling_rec import config as seq_config
    from scaling_rec import ctr_config, tiger_config

    rows = []
    for name, size in SIZES.items():
        if size.family in CTR_FAMILIES:
            c = apply_size(ctr_config.default_config(), name)
            c.model.embed_dim, c.model.norm = 10, "batch"
            rows.append((name, ctr_n_dense(c)))
        elif size.family == "tiger":
            rows.append((name, tiger_n_dense(apply_size(tiger_config.default_config(), name))))
        else:
            c = apply_size(seq_config.default_config(), name)
            c.data.max_len = max_len
            rows.append((name, n_dense(c, time_bias=time_bias)))
    return rows


if __name__ == "__main__":
    for name, n in table():
        print(f"{name:13s} {n:>12,}")
