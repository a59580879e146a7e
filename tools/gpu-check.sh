#!/usr/bin/env bash
# tools/gpu-check.sh — the one command of a GPU machine: builds the CUDA library for this GPU, runs the
# CUDA-vs-CPU parity suite, times every op, measures PyTorch's figures on the same GPU, and writes a report.
#
#   tools/gpu-check.sh [--no-parity] [--no-bench] [--no-aot] [--no-reference] [--no-dpo] [--time-limit S]
#
# Stages, each logged to a file under $OUT and each allowed to fail without stopping the rest:
#   configure   CMake in build/gpu: -DNVLM_CUDA_ARCHITECTURES=<this GPU's, e.g. 90-real; else native>,
#               -DNVLM_USE_BLAS=OFF, nvcc from PATH or /usr/local/cuda/bin
#   build-*     the library, then nvlm_test_backend_ops, then nvlm_bench_ops, with all cores
#   parity      build/gpu/nvlm_test_backend_ops --markdown $OUT/parity.md (exit 77: no CUDA device)
#   bench       build/gpu/nvlm_bench_ops --device cuda --json $OUT/bench.json
#   aot-*       when build/aot/nativevlm exists (a NativeAOT host carried from the CPU machine), with
#               NVLM_NATIVE_LIB=build/gpu/libnvlm.so: compare against transformers on
#               tests/fixtures/tiny-idefics3 (without and with the DoRA and the LoRA adapter), tiny-qwen3-smvl
#               and the stitched model of stitch-sources, the DPO step of each adapter fixture (compare
#               --dpo_batch: log-probs, loss, rewards, adapter gradients), KV-cached greedy generation of both generate-greedy
#               fixtures (tokens equal to transformers'), a 256M forward bench, and
#               per config of tools/configs (SmolVLM-256M-Instruct, SmolVLM-Instruct) NativeVlm's own DPO step
#               (bench --dpo_step: NF4 + DoRA r8, one 4×4-tiled image, 200 completion tokens) into
#               $OUT/dpo-step-<config>.json, and with --bf16 into dpo-step-<config>-bf16.json, and the embedded
#               DPO demo trained on the GPU (`demo --device cuda`, then again with --bf16)
#   reference   tools/gpu_reference.py: cuBLAS bf16 and copy ceilings, PyTorch SDPA, transformers + peft DPO step
#   report      tools/gpu_report.py: $OUT/gpu-check.md, printed compact to stdout at the end
# --no-X skips a stage (--no-dpo leaves out the DPO steps, the host's and the reference's); --time-limit S (default
# 570) is the budget of the whole run: stages get shorter timeouts near its end, and are skipped past it,
# so that the report is always written.
#
# Output under $OUT (default build/gpu-check/): gpu-check.md, bench.json, reference.json, dpo-step-*.json, and logs.tar.gz
# holding machine.txt, stages.tsv, parity.md and one .log per stage.
# Exit status: 0 when every stage that ran succeeded (the parity suite passing included), 1 otherwise.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/build/gpu-check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUILD=$ROOT/build/gpu
AOT_HOST=$ROOT/build/aot/nativevlm

run_parity=1 run_bench=1 run_aot=1 run_reference=1 run_dpo=1 reference_args=() TIME_LIMIT=570
while (( $# > 0 )); do
  case $1 in
    --no-parity) run_parity=0 ;;
    --no-bench) run_bench=0 ;;
    --no-aot) run_aot=0 ;;
    --no-reference) run_reference=0 ;;
    --no-dpo) run_dpo=0 reference_args+=(--skip-dpo) ;;
    --time-limit) TIME_LIMIT=$2; shift ;;
    *) echo "usage: tools/gpu-check.sh [--no-parity] [--no-bench] [--no-aot] [--no-reference] [--no-dpo] [--time-limit S]" >&2
       exit 2 ;;
  esac
  shift
done

REPORT_RESERVE=20  # seconds kept for the report
START=$SECONDS
failures=0
: > "$OUT/stages.tsv"

log() { printf '[%s +%3ds] %s\n' "$(date +%H:%M:%S)" $((SECONDS - START)) "$*"; }

# record STAGE STATUS SECONDS LOG DETAIL: one line of stages.tsv (read by gpu_report.py).
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT/stages.tsv"; }

# skip STAGE REASON: a stage that did not run on purpose.
skip() { record "$1" skipped 0 "" "$2"; log "$1: skipped ($2)"; }

# run_stage STAGE MAX_SECONDS LOG CMD...: CMD with its output in $OUT/LOG, under a timeout of MAX_SECONDS
# (less when --time-limit is near); the result goes to stages.tsv. Returns CMD's exit status.
run_stage() {
  local stage=$1 max=$2 logfile=$3; shift 3
  local left=$(( TIME_LIMIT - (SECONDS - START) - REPORT_RESERVE ))
  local limit=$(( max < left ? max : left ))
  if (( limit < 15 )); then
    record "$stage" failed 0 "" "out of time (--time-limit $TIME_LIMIT)"
    log "$stage: not run, out of time"
    failures=$((failures + 1))
    return 124
  fi
  log "$stage: $* (timeout ${limit}s, log $logfile)"
  local began=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$logfile" 2>&1
  local rc=$?
  local took=$((SECONDS - began)) status=ok detail=""
  case $rc in
    0) ;;
    77) status=failed detail="no CUDA device (exit 77)" ;;
    124|137) status=timeout detail="killed after ${limit}s" ;;
    *) status=failed detail="exit $rc" ;;
  esac
  (( rc == 0 )) || failures=$((failures + 1))
  record "$stage" "$status" "$took" "$logfile" "$detail"
  log "$stage: $status${detail:+ ($detail)} in ${took}s"
  return $rc
}

# ---- machine -----------------------------------------------------------------------------------
NVCC=$(command -v nvcc || true)
[[ -z $NVCC && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
if [[ -n $NVCC ]]; then
  export PATH="$(dirname "$NVCC"):$PATH" CUDACXX=$NVCC
fi
compute_cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')
ARCH=${compute_cap:+${compute_cap}-real}
ARCH=${ARCH:-native}
{
  echo "gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n1 || echo 'nvidia-smi failed')"
  echo "compute capability: $(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1) (built for $ARCH)"
  echo "driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)"
  echo "cuda (driver): $(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | head -n1 | cut -d' ' -f3)"
  echo "nvcc: ${NVCC:-not found} $([[ -n $NVCC ]] && "$NVCC" --version | grep -i release)"
  echo "cmake: $(cmake --version 2>/dev/null | head -n1)"
  echo "c++: $(c++ --version 2>/dev/null | head -n1)"
  echo "python: $(python3 --version 2>&1)"
  echo "cpu cores: $(nproc)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
} > "$OUT/machine.txt"
log "machine: $(head -n1 "$OUT/machine.txt"); building for $ARCH; output in $OUT"

# ---- build -------------------------------------------------------------------------------------
if run_stage configure 180 configure.log \
     cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DNVLM_CUDA=ON -DNVLM_USE_BLAS=OFF \
       "-DNVLM_CUDA_ARCHITECTURES=$ARCH"; then
  if ! grep -q "nvlm: CUDA backend with nvcc" "$OUT/configure.log"; then
    record configure-cuda failed 0 configure.log "CMake found no CUDA compiler: the library has no CUDA backend"
    log "configure: no CUDA backend (nvcc: ${NVCC:-not found})"
    failures=$((failures + 1))
  fi
fi
jobs=$(nproc)
run_stage build-nvlm 420 build-nvlm.log cmake --build "$BUILD" --target nvlm -j "$jobs"
(( run_parity )) && run_stage build-parity 240 build-parity.log cmake --build "$BUILD" --target nvlm_test_backend_ops -j "$jobs"
(( run_bench )) && run_stage build-bench 120 build-bench.log cmake --build "$BUILD" --target nvlm_bench_ops -j "$jobs"

# ---- parity and kernels ------------------------------------------------------------------------
if (( ! run_parity )); then
  skip parity "--no-parity"
elif [[ -x $BUILD/nvlm_test_backend_ops ]]; then
  run_stage parity 240 parity.log "$BUILD/nvlm_test_backend_ops" --markdown "$OUT/parity.md"
  log "parity: $(grep -v '^[[:space:]]*$' "$OUT/parity.log" 2>/dev/null | tail -n1)"
else
  record parity failed 0 "" "build/gpu/nvlm_test_backend_ops was not built"
  failures=$((failures + 1))
fi

if (( ! run_bench )); then
  skip bench "--no-bench"
elif [[ -x $BUILD/nvlm_bench_ops ]]; then
  run_stage bench 180 bench.log "$BUILD/nvlm_bench_ops" --device cuda --json "$OUT/bench.json"
else
  record bench failed 0 "" "build/gpu/nvlm_bench_ops was not built"
  failures=$((failures + 1))
fi

# ---- the NativeAOT host --------------------------------------------------------------------------
fixtures=$ROOT/tests/fixtures
if (( ! run_aot )); then
  skip aot "--no-aot"
elif [[ ! -x $AOT_HOST ]]; then
  skip aot "build/aot/nativevlm absent (carry a NativeAOT host published on the CPU machine to run it)"
elif [[ ! -f $BUILD/libnvlm.so ]]; then
  record aot failed 0 "" "build/gpu/libnvlm.so was not built"
  failures=$((failures + 1))
else
  host=(env "NVLM_NATIVE_LIB=$BUILD/libnvlm.so" "$AOT_HOST")
  # python3 -c "$check_generate" HOST MODEL FIXTURE: runs `generate --device cuda --inputs FIXTURE/inputs.safetensors
  # --case batch` and compares the "row i: ids" lines with FIXTURE/generate.json; exit 1 on any difference.
  check_generate='
import json, re, subprocess, sys
host, model, fixture = sys.argv[1:4]
expected = json.load(open(fixture + "/generate.json"))
steps = expected["generate_kwargs"]["max_new_tokens"]
run = subprocess.run([host, "generate", "--device", "cuda", "--model", model, "--inputs", fixture + "/inputs.safetensors",
                      "--case", "batch", "--max_new_tokens", str(steps)], capture_output=True, text=True)
print(run.stdout + run.stderr)
rows = {int(i): [int(t) for t in ids.split()] for i, ids in re.findall(r"^row (\d+): ([\d ]+)$", run.stdout, re.M)}
want = {i: expected["generated_ids"]["single.%d" % i] for i in range(len(expected["prompts"]))}
differ = [i for i in want if rows.get(i) != want[i]]
print("generate on cuda: %d of %d rows equal transformers greedy tokens%s" % (len(want) - len(differ), len(want),
      "; rows that differ: %s" % differ if differ else ""))
sys.exit(run.returncode or (1 if differ else 0))
'
  run_stage aot-compare 120 aot-compare.log "${host[@]}" compare --device cuda --model "$fixtures/tiny-idefics3" \
    --inputs "$fixtures/tiny-idefics3/inputs.safetensors" --expected "$fixtures/tiny-idefics3/outputs.safetensors"
  run_stage aot-compare-dora 120 aot-compare-dora.log "${host[@]}" compare --device cuda \
    --model "$fixtures/tiny-idefics3" --adapter "$fixtures/tiny-idefics3-dora" \
    --inputs "$fixtures/tiny-idefics3/inputs.safetensors" --expected "$fixtures/tiny-idefics3-dora/dpo_outputs.safetensors"
  run_stage aot-compare-lora 120 aot-compare-lora.log "${host[@]}" compare --device cuda \
    --model "$fixtures/tiny-idefics3" --adapter "$fixtures/tiny-idefics3-lora" \
    --inputs "$fixtures/tiny-idefics3/inputs.safetensors" --expected "$fixtures/tiny-idefics3-lora/dpo_outputs.safetensors"
  run_stage aot-compare-qwen3 120 aot-compare-qwen3.log "${host[@]}" compare --device cuda --model "$fixtures/tiny-qwen3-smvl" \
    --inputs "$fixtures/tiny-qwen3-smvl/inputs.safetensors" --expected "$fixtures/tiny-qwen3-smvl/outputs.safetensors"
  run_stage aot-compare-stitched 120 aot-compare-stitched.log "${host[@]}" compare --device cuda \
    --model "$fixtures/stitch-sources/stitched" --inputs "$fixtures/stitch-sources/inputs.safetensors" \
    --expected "$fixtures/stitch-sources/outputs.safetensors"
  # One DPO step per adapter fixture (TRL's batch; policy = adapter on, reference = off): log-probs, the
  # sigmoid loss, rewards and every adapter tensor's gradient against TRL's.
  for adapter in lora dora dora-seedcfg; do
    run_stage "aot-compare-dpo-$adapter" 120 "aot-compare-dpo-$adapter.log" "${host[@]}" compare --device cuda \
      --model "$fixtures/tiny-idefics3" --adapter "$fixtures/tiny-idefics3-$adapter" \
      --dpo_batch "$fixtures/tiny-idefics3-$adapter/dpo_batch.safetensors" \
      --expected "$fixtures/tiny-idefics3-$adapter/dpo_outputs.safetensors" \
      --expected_grads "$fixtures/tiny-idefics3-$adapter/grads.safetensors"
  done
  # KV-cached greedy decoding of each generate fixture's left-padded batch: every row's tokens must be
  # transformers' (generate.json's generated_ids of the single runs, which the batch rows equal).
  for case in generate-greedy:tiny-idefics3 generate-greedy-qwen3:tiny-qwen3-smvl; do
    run_stage "aot-${case%%:*}" 120 "aot-${case%%:*}.log" env "NVLM_NATIVE_LIB=$BUILD/libnvlm.so" python3 -c "$check_generate" \
      "$AOT_HOST" "$fixtures/${case##*:}" "$fixtures/${case%%:*}"
  done
  run_stage aot-bench 120 aot-bench.log "${host[@]}" bench --device cuda --config "$ROOT/tools/configs/smolvlm-256m-instruct.json"
  # The shapes of gpu_reference.py's transformers + peft step. SmolVLM-Instruct's timeout is the larger
  # because its 2.2 B random weights are drawn on the host first (build_s in the JSON).
  # Each in fp32 math and in bf16 math (--bf16: dense products and attention on the tensor cores).
  for model in smolvlm-256m-instruct:120 smolvlm-instruct:240; do
    config=${model%%:*}
    for math in "" -bf16; do
      if (( run_dpo )); then
        run_stage "aot-dpo-step-$config$math" "${model##*:}" "aot-dpo-step-$config$math.log" "${host[@]}" bench --device cuda \
          --dpo_step ${math:+--bf16} --config "$ROOT/tools/configs/$config.json" --json "$OUT/dpo-step-$config$math.json"
      else
        skip "aot-dpo-step-$config$math" "--no-dpo"
      fi
    done
  done
  # The whole training path on the GPU: the embedded DPO demo (tiny model, 64 steps), which exits 0 only
  # when held-out reward accuracy reaches 0.9. Its files stay in build/gpu-demo, out of $OUT.
  run_stage aot-demo 120 aot-demo.log "${host[@]}" demo --device cuda --output_dir "$ROOT/build/gpu-demo"
  run_stage aot-demo-bf16 120 aot-demo-bf16.log "${host[@]}" demo --device cuda --bf16 --output_dir "$ROOT/build/gpu-demo-bf16"
fi

# ---- PyTorch on the same GPU ---------------------------------------------------------------------
if (( run_reference )); then
  run_stage reference 300 reference.log python3 "$ROOT/tools/gpu_reference.py" --output "$OUT/reference.json" \
    ${reference_args[@]+"${reference_args[@]}"}
else
  skip reference "--no-reference"
fi

# ---- report --------------------------------------------------------------------------------------
log "report: $OUT/gpu-check.md (failing stages: $failures)"
echo
if ! python3 "$ROOT/tools/gpu_report.py" --dir "$OUT" --compact; then
  echo "gpu_report.py failed; stages:"
  cat "$OUT/stages.tsv"
  failures=$((failures + 1))
fi
# The device tool brings back only a few files of $OUT, so the logs and raw tables travel as one
# archive beside the report and the JSON it was made from.
( cd "$OUT" && tar czf logs.tar.gz --remove-files -- *.log stages.tsv machine.txt parity.md 2>/dev/null )
log "done: $failures failing stage(s); $OUT: $(cd "$OUT" && echo *)"
(( failures == 0 ))
