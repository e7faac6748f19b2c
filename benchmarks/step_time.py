"""HSTU train-step throughput, jagged (packed) vs padded batches, on real length distributions.

  python -m benchmarks.step_time [--steps=12] [--out=benchmarks/results]

For each length distribution (Amazon Beauty's training sequences, capped at 50; an ML-1M-like
generator, lengths >= 20 with a long tail capped at 200) the same examples are laid out both ways
and trained with the real train step (sampled softmax, 128 negatives). Printed and written to
benchmarks/results/step_time_<device>.json: examples/s of each layout, their ratio (measured in the
same run, layouts interleaved), useful FLOP/s (analytic jagged FLOPs, flops.py) as a fraction of this
machine's matmul FLOP/s measured in the same run, and the full-softmax loss of both layouts on the
same examples (it must agree: same model, same examples, different layout).

No-regression check (issue 17): the command exits with status 1, after writing the JSON, when the jagged
layout trains fewer examples/s than the padded one on any measured distribution, and prints which rows
and by how much. Packing exists to be faster than padding; a slower jagged step is a regression.
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from benchmarks.provenance import provenance
from scaling_rec import host_memory
from scaling_rec.config import default_config
from scaling_rec.data.jagged import SequenceExample, plan_fixed, plan_packs
from scaling_rec.data.pipeline import BatchSpec, auto_tokens_per_batch, make_batch
from scaling_rec.flops import TRAIN_MULTIPLIER, forward_flops, scored_per_target
from scaling_rec.io import atomic_write_json
from scaling_rec.models.registry import build
from scaling_rec.train.engine import make_train_step
from scaling_rec.train.inputs import prepare
from scaling_rec.train.step import TrainState, make_loss, make_optimizer

_STEPS = flags.DEFINE_integer("steps", 12, "timed steps per layout and repeat")
_REPEATS = flags.DEFINE_integer("repeats", 3, "interleaved repeats (A B A B ...)")
_OUT = flags.DEFINE_string("out", "benchmarks/results", "output directory")


def matmul_flops_per_s(n: int = 1024, reps: int = 20) -> float:
    """This machine's f32 matmul FLOP/s (n×n×n, 2n³ FLOPs each), best of `reps`."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def ml1m_like_examples(n_users: int, num_items: int, max_len: int, seed: int = 0) -> list[SequenceExample]:
    """Synthetic histories with ML-1M's shape: >= 20 events, median ~100, long tail, capped at max_len."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(20 + rng.lognormal(np.log(80), 1.0, n_users).astype(int), max_len + 1)
    out = []
    for n in lengths:
        items = rng.integers(1, num_items + 1, n).astype(np.int32)
        ts = np.cumsum(rng.integers(1, 10**5, n)).astype(np.int64)
        out.append(SequenceExample(items[:-1], items[1:], ts[:-1], ts[1:]))
    return out


def full_softmax_loss(graphdef, params, batches, temperature: float) -> float:
    """Mean cross-entropy of the full softmax over all items at every target token (deterministic)."""

    @jax.jit
    def sums(params, batch):
        model = nnx.merge(graphdef, params)
        h = model(batch)
        h = h.reshape(-1, h.shape[-1])
        t = (batch.target_ids_T if batch.layout == "jagged" else batch.target_ids_BxL).reshape(-1)
        logits = h @ model.item_embeddings()[1:].T / temperature
        ce = jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, jnp.maximum(t - 1, 0)[:, None], 1)[:, 0]
        w = (t > 0).astype(jnp.float32)
        return jnp.sum(ce * w), jnp.sum(w)

    total = count = 0.0
    for b in batches:
        s, c = sums(params, b)
        total, count = total + float(s), count + float(c)
    return total / count


def bench(name: str, examples: list[SequenceExample], num_items: int, max_len: int, peak: float) -> dict:
    c = default_config()
    c.data.max_len = max_len
    c.model.time_bias = True
    batch_size = 128
    lengths = np.array([len(e) for e in examples])
    order = np.random.default_rng(0).permutation(len(examples))
    tokens = auto_tokens_per_batch(lengths, batch_size, max_len)
    jagged_spec = BatchSpec("jagged", batch_size, max_len, tokens)
    padded_spec = BatchSpec("padded", batch_size, max_len, tokens)
    packs = plan_packs(lengths, order, batch_size, tokens)
    fixed = plan_fixed(order, batch_size)
    n_batches = _STEPS.value + 1

    def batches(spec, groups):
        return [make_batch([examples[i] for i in g], spec) for g in groups[:n_batches]]

    jagged, padded = batches(jagged_spec, packs), batches(padded_spec, fixed)
    model = build(c, num_items, time_bias=True)
    graphdef, params = nnx.split(model)
    opt = make_optimizer(c.train)
    step = jax.jit(make_train_step(make_loss(graphdef, c.train), opt, seed=0), donate_argnums=0)

    def timed(bs: list) -> float:
        state = TrainState(params=jax.tree.map(jnp.copy, params), opt_state=opt.init(params),
                           step=jnp.asarray(0, jnp.int32))
        state, m = step(state, bs[0])  # compile + warm-up
        jax.block_until_ready(m)
        t = time.perf_counter()
        for b in bs[1:]:
            state, m = step(state, b)
        jax.block_until_ready(m)
        return time.perf_counter() - t

    times = {"jagged": [], "padded": []}
    for _ in range(_REPEATS.value):
        times["jagged"].append(timed(jagged))
        times["padded"].append(timed(padded))
    ex = {"jagged": sum(int(b.num_sequences) for b in jagged[1:]),
          "padded": sum(int(b.num_sequences) for b in padded[1:])}
    eps = {k: ex[k] / float(np.median(times[k])) for k in times}
    useful = {}
    for k, groups in (("jagged", packs), ("padded", fixed)):
        idx = np.concatenate(groups[1:n_batches])
        f = TRAIN_MULTIPLIER * forward_flops(c.model, lengths[idx], float(lengths[idx].sum()), "jagged", max_len,
                                             scored_per_target(c.train, num_items))
        useful[k] = f / float(np.median(times[k]))
    # identical loss on the same examples: the first padded batch's examples, in both layouts
    same = [examples[i] for i in fixed[0]]
    loss_j = full_softmax_loss(graphdef, params, [make_batch(same, BatchSpec("jagged", batch_size, max_len,
                                                                             int(lengths[fixed[0]].sum())))],
                               c.train.temperature)
    loss_p = full_softmax_loss(graphdef, params, [make_batch(same, padded_spec)], c.train.temperature)
    row = {
        "distribution": name, "num_examples": len(examples), "mean_len": float(lengths.mean()),
        "max_len": max_len, "batch_size": batch_size, "tokens_per_batch": tokens,
        "examples_per_s": eps, "speedup_jagged_vs_padded": eps["jagged"] / eps["padded"],
        "step_times_s": times, "useful_flops_per_s": useful,
        "fraction_of_matmul_peak": {k: v / peak for k, v in useful.items()},
        "full_softmax_loss_same_examples": {"jagged": loss_j, "padded": loss_p, "abs_diff": abs(loss_j - loss_p)},
    }
    print(json.dumps({k: row[k] for k in ("distribution", "mean_len", "examples_per_s", "speedup_jagged_vs_padded",
                                          "fraction_of_matmul_peak", "full_softmax_loss_same_examples")}))
    return row


def slower_than_padded(rows: list[dict]) -> list[str]:
    """One message per row whose jagged examples/s is below its padded examples/s (same run)."""
    out = []
    for r in rows:
        j, p = r["examples_per_s"]["jagged"], r["examples_per_s"]["padded"]
        if j < p:
            out.append(f"{r['distribution']}: jagged {j:.1f} examples/s < padded {p:.1f} "
                       f"(speedup {j / p:.2f}x, must be >= 1)")
    return out


def check_no_regression(rows: list[dict]) -> None:
    """Exit with status 1 and a message naming the rows where the jagged step is slower than padded."""
    slow = slower_than_padded(rows)
    if slow:
        raise SystemExit("REGRESSION: the jagged step is slower than the padded one\n  " + "\n  ".join(slow))


def main(argv: list[str]) -> None:
    del argv
    peak = matmul_flops_per_s()
    print(f"matmul peak (f32, 1024^3): {peak / 1e9:.1f} GFLOP/s")
    c = default_config()
    c.data.name, c.data.max_len, c.train.num_epochs = "amazon-beauty", 50, 1.0
    beauty = prepare(c)
    rows = [bench("amazon-beauty (train sequences, cap 50)", beauty.train, beauty.num_items, 50, peak),
            bench("ml-1m-like (generated, cap 200)", ml1m_like_examples(1024, 3706, 200), 3706, 200, peak)]
    out = {"command": "python -m benchmarks.step_time", "model": "hstu (reference ML-1M size: d=50, 2x1 heads)",
           "default_batching": "jagged packing: B sequence slots and a token budget T per batch (greedy fill)",
           "matmul_flops_per_s": peak, "rows": rows, **provenance()}
    kind = jax.devices()[0].device_kind.replace(" ", "_").lower()
    path = pathlib.Path(_OUT.value) / f"step_time_{kind}.json"
    atomic_write_json(path, out)
    print(f"wrote {path}")
    check_no_regression(rows)


if __name__ == "__main__":
    host_memory.restart_with_huge_pages()
    app.run(main)
