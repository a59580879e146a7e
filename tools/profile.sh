#!/usr/bin/env bash
# tools/profile.sh — Nsight Systems, and optionally Nsight Compute, over nvlm_bench_ops or the NativeAOT host.
#
#   tools/profile.sh [--filter OPS] [--ncu [--kernel REGEX] [--launches N]] [--host]
#
#   --filter OPS    nvlm_bench_ops --filter (comma-separated substrings of op names, e.g. attention,nf4_linear);
#                   default: every benchmark
#   --ncu           also run Nsight Compute (ncu --set full) over the filtered benchmarks, one repeat each
#   --kernel REGEX  only kernels whose name matches REGEX (ncu --kernel-name regex:REGEX); default: all
#   --launches N    profile at most N kernel launches (default 20; every launch is replayed, slowly)
#   --host          profile build/aot/nativevlm bench --device cuda --config tools/configs/smolvlm-256m-instruct.json
#                   (one forward of the 256M model) instead of nvlm_bench_ops
#
# Runs on a GPU machine after tools/gpu-check.sh has built build/gpu (it runs that build when
# build/gpu/nvlm_bench_ops is missing). Writes under $OUT (default build/profile/):
#   nsys.nsys-rep     the Nsight Systems timeline (--trace=cuda,nvtx): every benchmark repeat is an NVTX range
#                     "op shape" with the library's per-op range ("nvlm_<op>") inside it
#   nsys-stats.txt    nsys stats: GPU kernel time summary and NVTX range summary, readable without the GUI
#   ncu.ncu-rep, ncu-details.txt   with --ncu: the Nsight Compute report and its text export
#   *.log             each tool's output
# nsys and ncu are taken from PATH, /usr/local/cuda/bin or /opt/nvidia/nsight-*; a missing tool is an error.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/build/profile}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BUILD=$ROOT/build/gpu

filter="" ncu=0 kernel="" launches=20 host=0
while (( $# > 0 )); do
  case $1 in
    --filter) filter=$2; shift ;;
    --ncu) ncu=1 ;;
    --kernel) kernel=$2; shift ;;
    --launches) launches=$2; shift ;;
    --host) host=1 ;;
    *) echo "usage: tools/profile.sh [--filter OPS] [--ncu [--kernel REGEX] [--launches N]] [--host]" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# find_tool NAME: its path from PATH, the CUDA toolkit or an Nsight install, or nothing.
find_tool() {
  command -v "$1" 2>/dev/null && return
  local candidate
  for candidate in /usr/local/cuda/bin/"$1" /opt/nvidia/nsight-systems/*/bin/"$1" /opt/nvidia/nsight-compute/*/"$1"; do
    [[ -x $candidate ]] && { echo "$candidate"; return; }
  done
}

if (( host )); then
  [[ -x $ROOT/build/aot/nativevlm ]] || { echo "profile.sh: build/aot/nativevlm is missing" >&2; exit 1; }
  target=(env "NVLM_NATIVE_LIB=$BUILD/libnvlm.so" "$ROOT/build/aot/nativevlm" bench --device cuda
          --config "$ROOT/tools/configs/smolvlm-256m-instruct.json")
else
  if [[ ! -x $BUILD/nvlm_bench_ops ]]; then
    log "building build/gpu with tools/gpu-check.sh (build stages only)"
    OUT=$OUT/build-check "$ROOT/tools/gpu-check.sh" --no-parity --no-aot --no-reference > "$OUT/build.log" 2>&1
    [[ -x $BUILD/nvlm_bench_ops ]] || { echo "profile.sh: build failed, see $OUT/build.log" >&2; exit 1; }
  fi
  target=("$BUILD/nvlm_bench_ops" --device cuda ${filter:+--filter "$filter"})
fi

status=0
nsys=$(find_tool nsys)
if [[ -z $nsys ]]; then
  echo "profile.sh: nsys not found" >&2
  status=1
else
  log "nsys profile --trace=cuda,nvtx ${target[*]}"
  "$nsys" profile --trace=cuda,nvtx --force-overwrite=true -o "$OUT/nsys" "${target[@]}" > "$OUT/nsys.log" 2>&1 || status=1
  # Report names of nsys 2023.2 and later, then the older ones.
  "$nsys" stats --report cuda_gpu_kern_sum --report nvtx_sum "$OUT/nsys.nsys-rep" > "$OUT/nsys-stats.txt" 2>&1 ||
    "$nsys" stats --report gpukernsum --report nvtxppsum "$OUT/nsys.nsys-rep" > "$OUT/nsys-stats.txt" 2>&1 || status=1
  log "nsys: $OUT/nsys.nsys-rep, summary in $OUT/nsys-stats.txt"
fi

if (( ncu )); then
  ncu_path=$(find_tool ncu)
  if [[ -z $ncu_path ]]; then
    echo "profile.sh: ncu not found" >&2
    status=1
  else
    # One repeat of one call per benchmark: each kernel launch is replayed many times by ncu.
    (( host )) || target+=(--warmup 0 --repeats 1 --target-ms 0)
    log "ncu --set full ${kernel:+--kernel-name regex:$kernel }--launch-count $launches ${target[*]}"
    "$ncu_path" --set full --nvtx ${kernel:+--kernel-name "regex:$kernel"} --launch-count "$launches" \
      --force-overwrite -o "$OUT/ncu" "${target[@]}" > "$OUT/ncu.log" 2>&1 || status=1
    "$ncu_path" --import "$OUT/ncu.ncu-rep" --page details > "$OUT/ncu-details.txt" 2>&1 || status=1
    log "ncu: $OUT/ncu.ncu-rep, details in $OUT/ncu-details.txt (ERR_NVGPUCTRPERM in ncu.log: no access to GPU counters)"
  fi
fi
exit $status
