#!/usr/bin/env bash
# Builds bench/rdkafka_peer.c against the librdkafka bundled in the confluent-kafka
# wheel (no headers needed: the program declares the API it uses). Output:
# build/bench/rdkafka_peer, with a RUNPATH to the wheel's library directory so it
# runs without LD_LIBRARY_PATH. Prints the binary's path on stdout.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"
ensure_venv

so="$(ls "$VENV"/lib/python3*/site-packages/confluent_kafka.libs/librdkafka-*.so.1 2>/dev/null | head -n 1)"
if [ -z "$so" ]; then
    echo "librdkafka not found under $VENV (confluent_kafka.libs); delete $VENV and rerun" >&2
    exit 1
fi
libdir="$(dirname "$so")"
out="$BUILD_DIR/bench/rdkafka_peer"
mkdir -p "$(dirname "$out")"
# RUNPATH relative to the binary (build/bench -> build/venv/...), plus the absolute
# directory as a fallback if the binary is copied elsewhere on this machine.
rel="$(realpath --relative-to="$(dirname "$out")" "$libdir")"
gcc -O2 -Wall -Wextra -std=c11 -o "$out" "$ROOT/bench/rdkafka_peer.c" "$so" \
    -Wl,-rpath,"\$ORIGIN/$rel" -Wl,-rpath,"$libdir" -lm -lpthread
echo "$out"
