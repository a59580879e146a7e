#!/usr/bin/env bash
# NativeVlm build entry point.
#   ./build.sh test    install what is missing, build native + managed code, run every test
#   ./build.sh demo    install what is missing, build, run `nativevlm demo` on the CPU
#   ./build.sh native  configure and build the native library only (build/native/libnvlm.so)
#   ./build.sh aot     build the native library, then publish the console host with NativeAOT for linux-x64
#                      (build/aot/nativevlm, no .NET needed to run it) with that libnvlm.so next to it
#   ./build.sh deps    install the system packages only (Debian/Ubuntu, as root or with sudo)
# Environment: NVLM_NO_CUDA=1 skips the CUDA toolkit and the CUDA library;
#              CONFIGURATION=Debug|Release (default Release).
set -euo pipefail
cd "$(dirname "$0")"

CONFIGURATION=${CONFIGURATION:-Release}
ROOT=$(pwd)

log() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "build.sh: need root to run: $*" >&2; return 1
  fi
}

missing_packages() {
  local p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || printf '%s ' "$p"; done
}

# Debian's CUDA toolkit lives in the contrib and non-free components.
enable_contrib_non_free() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ] && grep -q '^Components: main$' "$f"; then
    as_root sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' "$f"
  elif [ -f /etc/apt/sources.list ] && grep -qE '^deb .* main$' /etc/apt/sources.list; then
    as_root sed -i -E 's/^(deb .* main)$/\1 contrib non-free/' /etc/apt/sources.list
  fi
}

deps() {
  if ! command -v apt-get >/dev/null; then
    echo "build.sh: not a Debian-like system; install cmake, a C++17 compiler, OpenBLAS and the .NET 10 SDK yourself" >&2
    return 0
  fi
  local want=(cmake g++ libopenblas-dev)
  [ "${NVLM_NO_CUDA:-0}" = 1 ] || want+=(nvidia-cuda-toolkit)
  local missing
  missing=$(missing_packages "${want[@]}")
  if [ -n "$missing" ]; then
    log "installing: $missing"
    [[ "$missing" == *nvidia-cuda-toolkit* ]] && enable_contrib_non_free
    as_root apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends $missing
  fi
  command -v dotnet >/dev/null || { echo "build.sh: the .NET 10 SDK (dotnet) is not on PATH" >&2; return 1; }
}

native() {
  log "native library (cmake, $CONFIGURATION)"
  local cuda=ON
  [ "${NVLM_NO_CUDA:-0}" = 1 ] && cuda=OFF
  cmake -S "$ROOT" -B "$ROOT/build/native" -DCMAKE_BUILD_TYPE="$CONFIGURATION" -DNVLM_CUDA=$cuda >/dev/null
  cmake --build "$ROOT/build/native" -j"$(nproc)"
  # Where a CUDA compiler is installed the CUDA backend must have compiled, not been skipped.
  if [ "$cuda" = ON ] && command -v nvcc >/dev/null && [ ! -f "$ROOT/build/native/libnvlm_cuda.a" ]; then
    echo "build.sh: nvcc is installed but the CUDA backend (build/native/libnvlm_cuda.a) was not built" >&2
    return 1
  fi
}

managed() {
  log "managed code (dotnet build, $CONFIGURATION)"
  dotnet build "$ROOT/NativeVlm.sln" -c "$CONFIGURATION" -nologo -v quiet
}

# The native parity suite: CUDA against the CPU twin where a GPU is present; elsewhere (exit 77) its
# CPU-against-CPU self-test, which checks the harness itself. Its cases are not counted as tests.
native_tests() {
  log "native parity suite (build/native/nvlm_test_backend_ops)"
  local suite="$ROOT/build/native/nvlm_test_backend_ops" out="$ROOT/build/test-results/native-parity.log" rc=0
  "$suite" > "$out" 2>&1 || rc=$?
  if [ "$rc" = 77 ]; then
    echo "$(head -n1 "$out"); running the CPU self-test"
    rc=0
    "$suite" --cpu-only > "$out" 2>&1 || rc=$?
  fi
  tail -n1 "$out"
  [ "$rc" = 0 ] || { grep '^FAIL' "$out" >&2; echo "build.sh: native parity suite failed (log: $out)" >&2; return 1; }
}

run_tests() {
  log "tests"
  rm -rf "$ROOT/build/test-results"
  dotnet test "$ROOT/NativeVlm.sln" -c "$CONFIGURATION" --no-build -nologo \
    --logger "console;verbosity=normal" --logger "trx;LogFileName=results.trx" \
    --results-directory "$ROOT/build/test-results"
  native_tests
}

aot() {
  log "NativeAOT console host (dotnet publish, $CONFIGURATION, linux-x64)"
  rm -rf "$ROOT/build/aot"
  dotnet publish "$ROOT/src/NativeVlm.Cli/NativeVlm.Cli.csproj" -c "$CONFIGURATION" -r linux-x64 -p:PublishAot=true \
    -o "$ROOT/build/aot" -nologo -v quiet
  # The host looks for the library next to itself first, so the folder can travel as it is; native() has
  # just built it from the same tree, so its ABI is the host's.
  cp "$ROOT/build/native/libnvlm.so" "$ROOT/build/aot/"
  ls -l "$ROOT/build/aot"
}

demo() {
  log "demo"
  dotnet "$ROOT/src/NativeVlm.Cli/bin/$CONFIGURATION/net10.0/nativevlm.dll" demo "$@"
}

case "${1:-}" in
  deps) deps ;;
  native) native ;;
  test) deps; native; managed; run_tests ;;
  aot) native; aot ;;
  demo) shift; NVLM_NO_CUDA=${NVLM_NO_CUDA:-1} deps; native; managed; demo "$@" ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
