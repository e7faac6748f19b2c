#!/usr/bin/env bash
# Issue 6 checks on a lent GPU (the `device` tool), run from the repo root in one call:
#   1. the Pallas parity tests compiled for the GPU (tests/kernels, -k pallas; f32 at highest
#      matmul precision, see the test module's docstring);
#   2. benchmarks/hstu_attention.py --full (lengths 256..16k, padded and jagged, XLA vs Pallas vs
#      cuDNN softmax attention), then length 4096 with PROBE_BLOCK-token Pallas tiles (default 32;
#      128 exceeds the H200's shared memory);
#   3. the long-sequence study's gpu preset (benchmarks/long_sequences.py) on LONG_DATA (lengths
#      LONG_LENGTHS, default the preset's), with the Pallas kernels if step 1 passed, else the XLA path.
# Each step has its own time limit (seconds: TEST_S, BENCH_S, PROBE_S, LONG_S) and writes under $OUT:
# env.txt, kernel_tests.txt, bench.log, hstu_attention_gpu{,_b<PROBE_BLOCK>}.json, long.log,
# long_sequences_gpu.json.
# Environment, wheels and $OUT/env.txt: scripts/device_env.sh.
set -u
source scripts/device_env.sh

JAX_DEFAULT_MATMUL_PRECISION=highest timeout "${TEST_S:-90}" python3 -m pytest -p no:cacheprovider \
  -o addopts="" -q tests/kernels -k pallas 2>&1 | tee "$OUT/kernel_tests.txt"
tests_rc=${PIPESTATUS[0]}

timeout "${BENCH_S:-230}" python3 -m benchmarks.hstu_attention --full \
  --out "$OUT/hstu_attention_gpu.json" 2>&1 | tee "$OUT/bench.log"

timeout "${PROBE_S:-40}" python3 -m benchmarks.hstu_attention --lengths 4096 --pallas_block "${PROBE_BLOCK:-32}" \
  --out "$OUT/hstu_attention_gpu_b${PROBE_BLOCK:-32}.json" 2>&1 | tee -a "$OUT/bench.log"

impl=pallas
[ "$tests_rc" -eq 0 ] || impl=xla
echo "long-sequence study with attention_impl=$impl (kernel tests rc=$tests_rc)" | tee "$OUT/long.log"
timeout "${LONG_S:-200}" python3 -m benchmarks.long_sequences --preset=gpu \
  --data="${LONG_DATA:-synthetic-long-personal}" --attention_impl=$impl --workdir=/tmp/runs \
  ${LONG_LENGTHS:+--lengths="$LONG_LENGTHS"} \
  --out="$OUT/long_sequences_gpu.json" 2>&1 | grep -v '^[IW][0-9]\{4\} ' | tee -a "$OUT/long.log"
exit 0
