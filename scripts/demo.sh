#!/usr/bin/env bash
# The main job (README): starts a local Tansu broker, creates a demo topic, produces
# records into it and prints the cluster with the `josefine` CLI, then stops the broker.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ensure_venv
log "building the josefine CLI (release)"
cargo build --release --locked -p josefine-cli
start_broker
JOSEFINE=("$ROOT/target/release/josefine" --bootstrap "$JOSEFINE_BROKER")

log "creating topic demo-orders (6 partitions) with josefine"
"${JOSEFINE[@]}" topic create demo-orders --partitions 6 || true
log "producing 100,000 records into demo-orders (idempotent, acks=all)"
"${JOSEFINE[@]}" bench produce --topic demo-orders --records 100000 --size 100
log "consuming them back as consumer group demo-group (join, claims, commits)"
"${JOSEFINE[@]}" bench group --topic demo-orders --group demo-group --records 100000
log "the cluster as josefine sees it"
"${JOSEFINE[@]}" cluster
