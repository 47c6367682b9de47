#!/usr/bin/env bash
# Runs tests repeatedly with every core but one kept busy by a spinning process, to
# find tests that depend on timing or scheduling (docs/RELIABILITY.md, "Deterministic
# tests"). A test that fails here is a bug: fix it at its cause.
#
#   scripts/loaded.sh [RUNS] [-- CARGO TEST ARGS]
#       RUNS times `cargo test --workspace --all-targets` (default 10), or the cargo
#       test arguments given after `--` (for example `-- -p josefine --test mock_group`).
#       Real-broker tests run only when JOSEFINE_BROKER is set (as scripts/test.sh does);
#       without it they skip.
#   scripts/loaded.sh --full [RUNS]
#       RUNS times the whole test command (scripts/test.sh) under the same load.
#
# Prints one line per run and a summary; the logs of failed runs stay in build/loaded/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

full=0
if [ "${1:-}" = --full ]; then
    full=1
    shift
fi
runs="${1:-10}"
shift || true
[ "${1:-}" = -- ] && shift
args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(--workspace --all-targets --locked)

logs="$BUILD_DIR/loaded"
mkdir -p "$logs"
spinners=()
stop_spinners() {
    local pid
    for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_spinners EXIT
busy=$(( $(nproc) - 1 ))
[ "$busy" -ge 1 ] || busy=1
for _ in $(seq 1 "$busy"); do
    (while :; do :; done) &
    spinners+=($!)
done
log "$busy core(s) kept busy; $runs run(s)"

if [ "$full" = 0 ]; then
    cargo test "${args[@]}" --no-run >/dev/null 2>&1 || cargo test "${args[@]}" --no-run
fi
failed=0
for run in $(seq 1 "$runs"); do
    out="$logs/run-$run.log"
    began=$(date +%s)
    if [ "$full" = 1 ]; then
        status=0
        bash scripts/test.sh >"$out" 2>&1 || status=$?
    else
        status=0
        cargo test "${args[@]}" >"$out" 2>&1 || status=$?
    fi
    took=$(( $(date +%s) - began ))
    if [ "$status" = 0 ]; then
        counts=$(awk '/^test result:/ { p += $4; f += $6; i += $8 }
            END { printf "%d passed, %d failed, %d ignored", p, f, i }' "$out")
        echo "run $run: green in ${took} s ($counts)"
        rm -f "$out"
    else
        failed=$((failed + 1))
        echo "run $run: RED in ${took} s: $(grep -E '^test .* FAILED$|^    [a-z_:]+$' "$out" | tr -s ' ' | tr '\n' ' ' | cut -c1-300) (log: $out)"
    fi
done
echo "loaded runs: $runs, red: $failed"
[ "$failed" = 0 ]
