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

`tests/sweep/test_sizes.py` recomputes the column; `python -m scaling_rec.sweep.sizes` prints it.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from scaling_rec.errors import ConfigError


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


SIZES: dict[str, ModelSize] = {
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
}


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
    """N_dense of the model `config` describes, from the abstract (eval_shape) model; no compute.

    N_dense does not depend on num_items (only N_emb does).
    """
    from flax import nnx

    from scaling_rec.flops import param_counts
    from scaling_rec.models.registry import build

    model = nnx.eval_shape(lambda: build(config, num_items, time_bias=time_bias, rngs=nnx.Rngs(params=0)))
    return param_counts(model).n_dense


def table(max_len: int = 50, time_bias: bool = False) -> list[tuple[str, int]]:
    """(name, N_dense) for every size at `max_len` (the numbers in the module docstring)."""
    from scaling_rec.config import default_config

    rows = []
    for name in SIZES:
        c = apply_size(default_config(), name)
        c.data.max_len = max_len
        rows.append((name, n_dense(c, time_bias=time_bias)))
    return rows


if __name__ == "__main__":
    for name, n in table():
        print(f"{name:10s} {n:>12,}")
