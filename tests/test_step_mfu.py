"""benchmarks/step_mfu.py: the peak table, the long-sequence batches, and a tiny CPU run's JSON."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from benchmarks import step_mfu

HARNESS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "peers"


def test_peak_is_the_data_sheet_dense_bf16_of_the_chip():
    assert step_mfu.peak_flops("NVIDIA H200")[0] == 989e12
    assert step_mfu.peak_flops("NVIDIA H100 80GB HBM3")[0] == 989e12
    assert step_mfu.peak_flops("NVIDIA H100 PCIe")[0] == 756e12
    assert step_mfu.peak_flops("cpu") == (0.0, "no data sheet peak for 'cpu'")
    assert step_mfu.peak_flops("cpu", 1e12) == (1e12, "--peak_flops")


def test_long_batches_hold_histories_of_exactly_the_length():
    raw = step_mfu.long_batches(96, num_items=50, seed=0, batch_tokens=1000)
    assert len(raw) == step_mfu.NUM_BATCHES
    for b in raw:
        assert b["past_lengths"].tolist() == [96] * 10
        assert b["past_ids"].shape == (10, 96 + step_mfu.HSTU_GR_OUTPUT)
        assert b["past_ids"].min() >= 1 and b["past_ids"].max() <= 50
        assert np.all(np.diff(b["timestamps"], axis=1) >= 0)


@pytest.mark.skipif(not (HARNESS / "hstu_jax_bench.py").exists(), reason="needs ../shared/peers/hstu_jax_bench.py")
def test_a_tiny_cpu_run_writes_mfu_against_the_measured_bf16_rate(tmp_path):
    out = tmp_path / "mfu.json"
    step_mfu.main(["--cases=small/len64,small/beauty", "--steps=2", "--warmup=1", "--len_batch_tokens=512",
                   f"--harness_dir={HARNESS}", f"--out={out}"])
    r = json.loads(out.read_text())
    assert r["peak_source"].startswith("bf16 matmul rate measured") and r["peak_flops_per_s"] > 0
    assert [c["case"] for c in r["cases"]] == ["small/len64", "small/beauty"]
    long, beauty = r["cases"]
    assert long["max_len"] == 64 and long["ours_info"]["real_tokens_per_batch"] == [512, 512]
    for c in r["cases"]:
        assert len(c["step_s"]) == 2 and 0 < c["mfu"] < 1
        assert c["useful_flops_per_s"] == pytest.approx(c["useful_flops_per_step"] / c["step_s_median"])
    assert r["provenance"]["command"].startswith("python -m benchmarks.step_mfu --cases=small/len64,small/beauty")
