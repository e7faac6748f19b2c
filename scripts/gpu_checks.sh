#!/usr/bin/env bash
# Attention-kernel checks on a lent GPU (the `device` tool; issues 6 and 17), run from the repo root in one
# call. STEPS picks the steps (default "tests bench long"; each has its own time limit in seconds, and the
# defaults together stay under one 600 s device command; issue 17 needs STEPS="tests bench step"):
#   tests  (TEST_S=90) the Pallas parity tests compiled for the GPU (tests/kernels, -k pallas; f32 at
#          highest matmul precision, see the test module's docstring);
#   bench  (BENCH_S=290) benchmarks/hstu_attention.py --full (lengths 256..16k, padded and jagged, XLA vs
#          Pallas vs cuDNN softmax attention), and at the lengths REF_LENGTHS (default "4096 16384"; set
#          it empty to skip) our Pallas kernels without bias (impls.pallas_no_bias) against the
#          reference Triton HSTU kernel of generative-recommenders (impls.triton_reference) on the same
#          q, k, v and offsets. The reference autotunes on each new shape (its first_call_s says what
#          that cost). Its checkout travels as the ignored folder .peers/gr (GR_DIR), made here once with
#            mkdir -p .peers && cp -r ../peers/gr .peers/ && echo /.peers/ >> .git/info/exclude
#          and the call carries [".whl", ".peers"]; without it the JSON says why it was skipped;
#   probe  (PROBE_S=40) length 4096 with PROBE_BLOCK-token Pallas tiles (default 32; 128 exceeds the
#          H200's shared memory);
#   step   (STEP_S=150) the HSTU train step's MFU with bf16 products (benchmarks/step_mfu.py): the
#          reference's large shapes on ML-1M-like histories and sequences of 4096 events (STEP_CASES,
#          default "large/ml1m,large/len4096"), against the chip's data-sheet dense bf16 peak; it needs
#          hstu_jax_bench.py in .peers (HARNESS_DIR): cp ../shared/peers/hstu_jax_bench.py .peers/
#   long   (LONG_S=200) the long-sequence study's gpu preset (benchmarks/long_sequences.py) on LONG_DATA
#          (lengths LONG_LENGTHS, default the preset's), with the Pallas kernels if the tests step passed
#          or did not run, else the XLA path.
# Each step writes under $OUT: env.txt, kernel_tests.txt, bench.log, hstu_attention_gpu{,_b<PROBE_BLOCK>}.json,
# step_mfu_gpu.json, step.log, long.log, long_sequences_gpu.json.
# Environment, wheels and $OUT/env.txt: scripts/device_env.sh.
set -u
source scripts/device_env.sh
steps=" ${STEPS:-tests bench long} "

tests_rc=0
if [[ $steps == *" tests "* ]]; then
  JAX_DEFAULT_MATMUL_PRECISION=highest timeout "${TEST_S:-90}" python3 -m pytest -p no:cacheprovider \
    -o addopts="" -q tests/kernels -k pallas 2>&1 | tee "$OUT/kernel_tests.txt"
  tests_rc=${PIPESTATUS[0]}
fi

if [[ $steps == *" bench "* ]]; then
  # REF_LENGTHS unquoted: one argument per length; set but empty gives none (no reference).
  timeout "${BENCH_S:-290}" python3 -m benchmarks.hstu_attention --full \
    --gr_dir "${GR_DIR:-.peers/gr}" --triton_reference_lengths ${REF_LENGTHS-4096 16384} \
    --out "$OUT/hstu_attention_gpu.json" 2>&1 | tee "$OUT/bench.log"
fi

if [[ $steps == *" probe "* ]]; then
  timeout "${PROBE_S:-40}" python3 -m benchmarks.hstu_attention --lengths 4096 --pallas_block "${PROBE_BLOCK:-32}" \
    --triton_reference_lengths --out "$OUT/hstu_attention_gpu_b${PROBE_BLOCK:-32}.json" 2>&1 | tee -a "$OUT/bench.log"
fi

if [[ $steps == *" step "* ]]; then
  timeout "${STEP_S:-150}" python3 -m benchmarks.step_mfu --cases "${STEP_CASES:-large/ml1m,large/len4096}" \
    --matmul_dtype bfloat16 --harness_dir "${HARNESS_DIR:-.peers}" --out "$OUT/step_mfu_gpu.json" 2>&1 \
    | grep -v '^[IW][0-9]\{4\} ' | tee "$OUT/step.log"
fi

if [[ $steps == *" long "* ]]; then
  impl=pallas
  [ "$tests_rc" -eq 0 ] || impl=xla
  echo "long-sequence study with attention_impl=$impl (kernel tests rc=$tests_rc)" | tee "$OUT/long.log"
  timeout "${LONG_S:-200}" python3 -m benchmarks.long_sequences --preset=gpu \
    --data="${LONG_DATA:-synthetic-long-personal}" --attention_impl=$impl --workdir=/tmp/runs \
    ${LONG_LENGTHS:+--lengths="$LONG_LENGTHS"} \
    --out="$OUT/long_sequences_gpu.json" 2>&1 | grep -v '^[IW][0-9]\{4\} ' | tee -a "$OUT/long.log"
fi
exit 0
