#!/usr/bin/env bash
# The test command (README, .ci/run): installs the pinned broker, checks formatting and
# lints, starts Tansu on a free port and runs every test against it, then stops it.
#
#   scripts/test.sh            fmt, clippy, all tests (unit, mock broker, real broker),
#                              a benchmark smoke run, the README's demo, and the chaos
#                              suite's short form (scripts/chaos.sh)
#   JOSEFINE_FULL=1 scripts/test.sh   full-length benchmarks and the chaos suite's long
#                              form instead
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

started=$(date +%s)
ensure_venv
ensure_chaos_venv
export_python
export_tansu
ensure_stunnel

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building tests"
cargo test --workspace --all-targets --locked --no-run

start_broker
# Integration tests fail, never skip, when this is set and no broker is reachable.
export JOSEFINE_REQUIRE_BROKER=1

log "cargo test (unit, mock broker, real broker; benchmarks run once in test mode)"
cargo test --workspace --all-targets --locked
log "doc tests"
cargo test --workspace --doc --locked

if [ "${JOSEFINE_FULL:-}" = 1 ]; then
    log "full benchmarks"
    cargo bench --locked -p josefine --bench record_decode
    bash scripts/bench.sh
else
    log "benchmark smoke run (josefine and the librdkafka peer, small workloads)"
    bash scripts/bench.sh --smoke
fi

log "the README main job: scripts/demo.sh (josefine demo on its own local broker)"
bash scripts/demo.sh

if [ "${JOSEFINE_FULL:-}" = 1 ]; then
    log "the chaos suite, long form: scripts/chaos.sh --long (docs/RELIABILITY.md)"
    bash scripts/chaos.sh --long
else
    log "the chaos suite, short form: scripts/chaos.sh (docs/RELIABILITY.md)"
    bash scripts/chaos.sh
fi

log "all green in $(( $(date +%s) - started )) s"
