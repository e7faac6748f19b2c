"""HSTU train-step MFU at the PyTorch reference's large shapes and at long sequences (issue 17).

    python -m benchmarks.step_mfu [--cases=large/ml1m,large/len4096] [--matmul_dtype=bfloat16] [--steps=8] \
        [--harness_dir=../shared/peers] [--out=benchmarks/results/step_mfu_<device>.json]

Cases (the model: hstu_jax_bench.MODEL_CONFIGS, "small" or "large" = d 256 x 4 blocks x 4 heads):
- <config>/ml1m, <config>/beauty: benchmarks.peers' HSTU case, 128 histories of that length distribution
  (hstu_jax_bench.make_batch_np, up to 200 events), 128 sampled negatives per target, jagged batches;
- <config>/len<L>: --len_batch_tokens // L histories of exactly L events each (max_len L), same loss.

Each case's step (benchmarks.peers.hstu_side: the project's jitted train step) runs `--warmup` untimed steps
(the first compiles), then `--steps` timed ones. MFU = useful training FLOPs (scaling_rec.flops: 3 x the
analytic forward, causal pairs only) / median step time / the chip's peak: the dense bf16 tensor-core peak of
its data sheet on a known GPU (PEAK_BF16, or --peak_flops), else (a CPU) the bf16 matmul rate measured in the
same run, recorded as such. The JSON holds per case: step_s (every timed step), examples_per_s, tokens_per_s,
useful_flops_per_step, mfu, and the peak with its source.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import statistics
import sys
from collections.abc import Sequence

from benchmarks.peers import HSTU_BATCH, HSTU_GR_OUTPUT, HSTU_MAX_LEN, hstu_side, matmul_samples

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from NVIDIA's data sheets (H100 SXM / PCIe / NVL;
# H200 SXM / NVL), matched against jax's device_kind in this order.
PEAK_BF16 = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
             ("A100", 312e12))
NUM_BATCHES = 2


def peak_flops(device_kind: str, given: float = 0.0) -> tuple[float, str]:
    """(peak FLOP/s, where it came from) of the device; (0, why) when unknown and not given."""
    if given > 0:
        return given, "--peak_flops"
    for name, peak in PEAK_BF16:
        if name.lower() in device_kind.lower():
            return peak, f"data sheet dense bf16 peak of {name}"
    return 0.0, f"no data sheet peak for {device_kind!r}"


def long_batches(length: int, num_items: int, seed: int, batch_tokens: int) -> list[dict]:
    """NUM_BATCHES make_batch_np-like dicts of batch_tokens // length histories of exactly `length` events
    (random items, hour-scale log-normal gaps), each followed by its target."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = max(1, batch_tokens // length)
    n = length + HSTU_GR_OUTPUT
    out = []
    for _ in range(NUM_BATCHES):
        ids = rng.integers(1, num_items + 1, (rows, n)).astype(np.int64)
        gaps = np.exp(math.log(3600.0) + 2.0 * rng.standard_normal((rows, n)))
        ts = (9.6e8 + np.cumsum(gaps, axis=1)).astype(np.int64)
        out.append({"past_lengths": np.full(rows, length, np.int64), "past_ids": ids, "timestamps": ts})
    return out


def case_batches(case: str, harness_dir: str, seed: int, batch_tokens: int) -> tuple[str, list[dict], int, int]:
    """(model config, raw batches, num_items, max_len) of a case name."""
    import numpy as np

    sys.path.insert(0, os.path.abspath(harness_dir))
    import hstu_jax_bench as hj

    config, shape = case.split("/")
    if config not in hj.MODEL_CONFIGS:
        raise ValueError(f"case {case!r}: model config {config!r} not in {sorted(hj.MODEL_CONFIGS)}")
    if shape.startswith("len"):
        length, num_items = int(shape[3:]), hj.DISTS["ml1m"]["num_items"]
        return config, long_batches(length, num_items, seed, batch_tokens), num_items, length
    if shape not in hj.DISTS:
        raise ValueError(f"case {case!r}: {shape!r} is neither len<L> nor one of {sorted(hj.DISTS)}")
    rng = np.random.default_rng(seed)
    num_items = hj.DISTS[shape]["num_items"]
    raw = [hj.make_batch_np(shape, HSTU_BATCH, HSTU_MAX_LEN, HSTU_GR_OUTPUT + 1, num_items, rng)
           for _ in range(NUM_BATCHES)]
    return config, raw, num_items, HSTU_MAX_LEN


def measure(case: str, a: argparse.Namespace, peak: float) -> dict:
    """One case's timed steps and MFU."""
    config, raw, num_items, max_len = case_batches(case, a.harness_dir, a.seed, a.len_batch_tokens)
    ours = hstu_side(config, raw, num_items, a.harness_dir, a.matmul_dtype, max_len=max_len,
                     attention_impl=a.attention_impl)
    ours.steps(a.warmup)
    first = len(ours.flops)
    seconds, examples = ours.steps(a.steps)
    flops = ours.flops[first:]
    step_s = statistics.median(seconds)
    useful = statistics.fmean(flops)
    tokens = statistics.fmean(ours.info["real_tokens_per_batch"])
    out = {"case": case, "max_len": max_len, "step_s": seconds, "step_s_median": step_s,
           "examples_per_s": statistics.fmean(examples) / step_s, "tokens_per_s": tokens / step_s,
           "useful_flops_per_step": useful, "useful_flops_per_s": useful / step_s,
           "mfu": useful / step_s / peak if peak > 0 else None, "ours_info": ours.info}
    print(f"[step_mfu] {case}: {step_s * 1e3:.1f} ms/step, {useful / step_s / 1e12:.2f} TFLOP/s useful"
          + (f", MFU {out['mfu']:.1%}" if peak > 0 else ""), file=sys.stderr, flush=True)
    return out


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="large/ml1m,large/len4096")
    p.add_argument("--matmul_dtype", default="bfloat16", choices=("float32", "bfloat16"))
    p.add_argument("--attention_impl", default="auto", help="model.attention_impl (auto: Pallas on a GPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (the first compiles)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--len_batch_tokens", type=int, default=32768, help="history tokens of a len<L> batch")
    p.add_argument("--peak_flops", type=float, default=0.0, help="the peak to divide by (default: PEAK_BF16)")
    p.add_argument("--harness_dir", default=os.environ.get("SCALING_REC_PEER_HARNESS", "../shared/peers"),
                   help="the folder holding hstu_jax_bench.py")
    p.add_argument("--out", default="", help="default benchmarks/results/step_mfu_<backend>.json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    a = parse(argv)
    import jax

    from benchmarks.provenance import command_line, provenance
    from scaling_rec.io import atomic_write_json

    kind = jax.devices()[0].device_kind
    peak, source = peak_flops(kind, a.peak_flops)
    measured = None
    if peak <= 0 and jax.default_backend() == "cpu":
        measured = matmul_samples(dtype="bfloat16")
        peak, source = max(measured), "bf16 matmul rate measured in this run (best of its samples)"
    cases = [measure(case, a, peak) for case in a.cases.split(",")]
    if measured is not None:
        measured += matmul_samples(dtype="bfloat16")
    keep = ("cases", "matmul_dtype", "attention_impl", "warmup", "steps", "seed", "len_batch_tokens", "peak_flops")
    prov = provenance()
    prov["command"] = command_line("benchmarks.step_mfu", [f"--{k}={getattr(a, k)}" for k in keep])
    result = {"device_kind": kind, "peak_flops_per_s": peak, "peak_source": source,
              "bf16_matmul_samples": measured, "cases": cases, "provenance": prov}
    out = a.out or str(pathlib.Path(__file__).parent / "results" / f"step_mfu_{jax.default_backend()}.json")
    atomic_write_json(out, result)
    print(f"[step_mfu] wrote {out}", file=sys.stderr, flush=True)
    return result


if __name__ == "__main__":
    from scaling_rec import host_memory

    host_memory.restart_with_huge_pages()
    main()
