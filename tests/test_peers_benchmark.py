"""benchmarks/peers.py without any peer installed: a fake peer worker process (stdlib only) speaks the
worker protocol, a fake our-side times sleeps, and the result file has issue 17's layout."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from benchmarks import peers
from scaling_rec.hardware import fastest_matmul_dtype

FAKE_PEER = """
import sys, time
sys.path.insert(0, {root!r})
from benchmarks.peers import serve
print("the peer's constructor talks on stdout")
serve({{"params": 7}}, lambda: (time.sleep(0.02), 64)[1])
"""


def _fake_peer(tmp_path) -> peers.Worker:
    root = str(__import__("pathlib").Path(peers.__file__).resolve().parents[1])
    return peers.Worker([sys.executable, "-c", FAKE_PEER.format(root=root)], log=subprocess.DEVNULL)


def test_worker_protocol_keeps_stdout_for_answers(tmp_path):
    w = _fake_peer(tmp_path)
    try:
        assert w.info == {"params": 7}
        seconds, examples = w.steps(3)
    finally:
        w.close()
    assert examples == [64, 64, 64]
    assert len(seconds) == 3 and all(0.015 < s < 1.0 for s in seconds)


def test_dead_worker_is_an_error():
    with pytest.raises(RuntimeError, match="exited with 3"):
        peers.Worker([sys.executable, "-c", "import sys; sys.exit(3)"], log=subprocess.DEVNULL)


def test_result_layout_and_ratio(tmp_path):
    w = _fake_peer(tmp_path)

    def ours_step() -> int:
        time.sleep(0.005)
        return 64

    ours = peers.OurSide({"params": 5}, ours_step, lambda i: 1e9)
    try:
        timing = peers.interleave(w, ours, warmup=1, rounds=3, round_s=0.03)
        short = peers.interleave(w, ours, warmup=1, rounds=1, round_s=1e-4)
        probed = peers.interleave(w, ours, warmup=1, rounds=2, round_s=0.03,
                                  probe=lambda: {"float32": [4e11], "bfloat16": [8e11]})
    finally:
        w.close()
    during = peers.case_record("hstu-torch", "large/ml1m", probed, 1e6, None, 1e6)
    assert probed["matmul_samples"] == {"float32": [4e11, 4e11], "bfloat16": [8e11, 8e11]}
    assert during["matmul_flops_per_s"] == 4e11 and during["bf16_matmul_flops_per_s"] == 8e11
    assert during["ours_fraction_of_matmul"] == pytest.approx(2 * during["ours_fraction_of_bf16_matmul"])
    assert during["ours_fraction_of_matmul"] < 1.0  # against the rate probed during the case, not the 1e6 given
    assert timing["peer"]["steps"] == 3 * timing["steps_per_round"]["peer"]
    assert timing["ours"]["steps"] == 3 * timing["steps_per_round"]["ours"]
    # Each side's share of a round lasts about as long as the other's, at least round_s: with round_s
    # below both steps the peer (20 ms) runs one step a round and ours (5 ms) several.
    assert short["steps_per_round"]["peer"] == 1 and short["steps_per_round"]["ours"] >= 2
    matmul = {"samples": [2e11, 1e11, 3e11]}
    rec = peers.case_record("hstu-torch", "large/ml1m", timing, 2e11, {"peer_info": w.info})
    out = peers.write_result(tmp_path / "r" / "peers_cpu.json", matmul, [rec], {"git_commit": "abc"})
    read = json.loads((tmp_path / "r" / "peers_cpu.json").read_text())
    assert read == json.loads(json.dumps(out))
    assert read["matmul_flops_per_s"] == 2e11
    case = read["cases"][0]
    for key in ("peer", "case", "peer_examples_per_s", "ours_examples_per_s", "ratio", "ours_fraction_of_matmul"):
        assert key in case
    assert case["peer"] == "hstu-torch" and case["case"] == "large/ml1m"
    # 64 examples per 20 ms sleep vs per 5 ms: ours is about 4x. Sleeps overshoot, never undershoot, and by
    # more on a loaded machine, so each side's rate has an upper bound but the ratio only the one of ours.
    assert case["peer_examples_per_s"] < 64 / 0.02 * 1.01
    assert 2.0 < case["ratio"] <= 64 / 0.005 * 1.01 / case["peer_examples_per_s"]
    assert case["ratio"] == pytest.approx(case["ours_examples_per_s"] / case["peer_examples_per_s"])
    # 1 GFLOP per step over >= 5 ms is at most 200 GFLOP/s: at most the whole matmul rate.
    assert 0.1 < case["ours_fraction_of_matmul"] <= 1.0
    assert case["target"] == {"ratio": 3.0, "fraction_of_matmul": 0.30}
    assert case["meets_target"] == (case["ratio"] >= 3.0 and case["ours_fraction_of_matmul"] >= 0.30)
    # The peer's 64 examples at 1e9 / 64 FLOPs each, over the 2e11 matmul rate; its inverse bounds the ratio.
    assert case["peer_fraction_of_matmul"] == pytest.approx(case["peer_examples_per_s"] * 1e9 / 64 / 2e11)
    assert case["ratio_at_matmul_rate"] == pytest.approx(1 / case["peer_fraction_of_matmul"])
    assert case["ratio"] == pytest.approx(case["ours_fraction_of_matmul"] / case["peer_fraction_of_matmul"])


def test_summary_is_the_median_of_per_step_rates():
    s = peers.summarize([1.0, 2.0, 4.0], [10, 10, 10])
    assert s["examples_per_s"] == 5.0 and s["step_s_median"] == 2.0
    assert s["step_s_min"] == 1.0 and s["step_s_max"] == 4.0


def test_ctr_matmul_dtype_reaches_our_side_and_the_record():
    assert peers.parse([]).ctr_matmul_dtype == peers.parse([]).hstu_matmul_dtype == fastest_matmul_dtype()
    assert peers.parse(["--ctr_matmul_dtype=bfloat16"]).ctr_matmul_dtype == "bfloat16"
    assert peers.parse(["--hstu_matmul_dtype=float32"]).hstu_matmul_dtype == "float32"
    assert peers.parse(["--worker=hstu"]).ctr_matmul_dtype == "auto"  # a worker (peer venv) resolves nothing
    for model in ("DLRM", "DCNv2", "WuKong"):
        assert peers.ctr_config(model).model.matmul_dtype == "float32"
        assert peers.ctr_config(model, "bfloat16").model.matmul_dtype == "bfloat16"
    wukong = peers.wukong_like_fuxictr((5, 6), 0, seed=0, matmul_dtype="bfloat16")
    assert wukong.top.layers[0].matmul_dtype == "bfloat16"
