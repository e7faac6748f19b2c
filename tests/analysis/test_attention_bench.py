"""scaling_rec.analysis.attention_bench on a hand-made benchmark result: every implementation the benchmark
writes (the like-for-like pallas_no_bias / triton_reference pair included) gets its rows and its lines."""

from __future__ import annotations

import numpy as np

from scaling_rec.analysis.attention_bench import attention_table, plot_attention


def _timing(seconds: float) -> dict:
    return {"median_s": seconds, "tflops_per_s": 1.0 / seconds}


def _result() -> dict:
    cases = []
    for max_len in (1024, 2048):
        impls = {name: {"fwd": _timing(t / 3), "fwd_bwd": _timing(t)} for name, t in
                 (("xla", 4.0), ("pallas", 1.0), ("pallas_no_bias", 0.8), ("triton_reference", 0.5),
                  ("new_kernel", 0.4))}
        impls["softmax_padded"] = {"skipped": "no cuDNN on this backend"}
        cases.append({"max_len": max_len, "layout": "jagged", "tokens": 4 * max_len, "real_tokens": 3 * max_len,
                      "num_sequences": 4, "impls": impls})
    return {"cases": cases}


def test_every_implementation_is_tabled_and_drawn():
    table = attention_table(_result())
    assert set(table["impl"]) == {"xla", "pallas", "pallas_no_bias", "triton_reference", "new_kernel",
                                  "softmax_padded"}
    ref = table[table["impl"] == "triton_reference"]
    np.testing.assert_allclose(ref["speedup_vs_xla"], 8.0)
    assert table[table["impl"] == "softmax_padded"]["note"].iloc[0] == "no cuDNN on this backend"
    fig = plot_attention(table)
    time_ax, speed_ax = fig.axes
    drawn = {line.get_label() for line in time_ax.get_lines()}
    assert drawn == {f"{impl} (jagged)" for impl in ("xla", "pallas", "pallas_no_bias", "triton_reference",
                                                     "new_kernel")}
    assert len(speed_ax.get_lines()) == 4 + 1  # every implementation but xla, and the 1x line
