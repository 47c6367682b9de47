#!/usr/bin/env bash
# The chaos suite (docs/RELIABILITY.md): Tansu on S3 (moto), a sequence-numbered
# producer, five group members as processes, and a seeded plan of member SIGKILLs,
# leaves and rejoins, and broker kill -9s; then the checks and one summary line.
# It starts and stops everything itself; logs and report.txt go to build/chaos.
#
#   scripts/chaos.sh                the short form (CI, ~1 min): 3 member kills,
#                                   1 leave, 1 broker kill
#   scripts/chaos.sh --long         the long form (~6 min): 24 member kills, 6 leaves,
#                                   4 broker kills
#   scripts/chaos.sh --seed N ...   replays plan N; other `josefine-chaos run` options
#                                   (see --help) pass through
#   scripts/chaos.sh --kafka ...    the same plan against Apache Kafka 4.4 (started and
#                                   stopped here) with group.protocol=consumer (KIP-848):
#                                   member kills and leaves, no broker kills; logs in
#                                   build/chaos-kafka
#   scripts/chaos.sh --kafka --parallel N ...   members process with
#                                   ConsumerGroup::process (key-ordered, N in flight;
#                                   commits carry done sets, which Tansu drops)
#   scripts/chaos.sh --kafka --exactly-once ... members run ConsumerGroup::transact
#                                   (a transactional id per member index, transactions
#                                   every 100 ms, 5 s timeout), one output record per
#                                   input; the output read read_committed must hold
#                                   every input exactly once (0 lost, 0 duplicates)
#                                   and the group's offsets must reach the input's end
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if [ "${1:-}" = --kafka ]; then
    shift
    ensure_kafka
    start_kafka
    cargo run --locked --quiet -p josefine-chaos -- run --kafka "$JOSEFINE_KAFKA" \
        --group-protocol consumer --dir build/chaos-kafka "$@"
    exit
fi
ensure_venv
ensure_chaos_venv
export_tansu
cargo run --locked --quiet -p josefine-chaos -- run "$@"
