#!/usr/bin/env bash
# The main job (README): `josefine demo` against a local Tansu broker it starts and
# stops itself. The broker binary comes from the same pinned venv the tests use.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_venv
log "building the josefine CLI (release)"
cargo build --release --locked -q -p josefine-cli
JOSEFINE_TANSU="$(tansu_bin)" exec "$ROOT/target/release/josefine" demo "$@"
