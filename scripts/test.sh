#!/usr/bin/env bash
# The test command (README, .ci/run): installs the pinned brokers and tools, checks
# formatting and lints, starts Apache Kafka 4.4 (the primary test broker) and runs every
# test against it, then runs the real-broker core suites again against Tansu (the second
# broker), then the benchmark smoke run, the demo and the chaos suite's short form.
# Which suite runs where, and why: docs/BROKERS.md.
#
#   scripts/test.sh            fmt, clippy, all tests (unit, mock broker, Kafka, Tansu),
#                              a benchmark smoke run, the README's demo, and the chaos
#                              suite's short form (scripts/chaos.sh)
#   JOSEFINE_FULL=1 scripts/test.sh   full-length benchmarks and the chaos suite's long
#                              form instead
#
# Needs: a Rust toolchain, Python 3, Java 17+ and Maven (Kafka's jars come from Maven
# Central once into build/kafka), and on Debian apt-get for stunnel4 and openssl.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

started=$(date +%s)
# A clean clone gains nothing from incremental caches (a third of a fresh build): CI
# builds without them. The build needs about 4 GiB of disk; say early when it is short.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
free_kib=$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((8 * 1024 * 1024)) ]; then
    log "WARNING: only $((free_kib / 1024)) MiB free on $ROOT's disk; the test build needs about 4 GiB"
fi
ensure_kafka
ensure_java_peer
ensure_venv
ensure_chaos_venv
export_python
export_tansu
ensure_stunnel

# rustup's server may be out of reach, so a missing component cannot be added: say so
# loudly and go on without that check rather than fail the whole command.
if cargo fmt --version >/dev/null 2>&1; then
    log "cargo fmt --check"
    cargo fmt --all -- --check
else
    log "WARNING: rustfmt is not installed for this toolchain: formatting NOT checked"
fi
if cargo clippy -V >/dev/null 2>&1; then
    log "cargo clippy -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
    # The workspace build unifies features (the CLI turns all of josefine's on), so the
    # library is also linted alone as users may build it: without its default features
    # and with all of them.
    log "josefine alone: clippy without default features, then with all features"
    cargo clippy -p josefine --no-default-features --all-targets --locked -- -D warnings
    cargo clippy -p josefine --all-features --all-targets --locked -- -D warnings
    # Every build with dev-dependencies has unstable-protocol and fuzzing on (josefine
    # dev-depends on itself with them, for its tests): the library as users get it is
    # linted on its own, with its default features and without any.
    log "josefine's library alone: clippy with its default features, then without any"
    cargo clippy -p josefine --lib --locked -- -D warnings
    cargo clippy -p josefine --no-default-features --lib --locked -- -D warnings
else
    log "WARNING: clippy is not installed for this toolchain: lints NOT checked"
    cargo check -p josefine --no-default-features --all-targets --locked
    cargo check -p josefine --all-features --all-targets --locked
    cargo check -p josefine --lib --locked
    cargo check -p josefine --no-default-features --lib --locked
fi
# The public API: docs/public-api.txt lists it (scripts/public_api.py, from rustdoc's
# JSON); a change to it must show in review, so the committed listing must match.
log "public API: docs/public-api.txt against the code (scripts/public_api.py --check)"
python3 scripts/public_api.py --check
log "cargo doc -D warnings: josefine's docs, and with its unstable protocol module"
RUSTDOCFLAGS="-D warnings" cargo doc -p josefine --no-deps --locked
RUSTDOCFLAGS="-D warnings" cargo doc -p josefine --no-deps --locked --features unstable-protocol
# No toolchain of the MSRV can be installed here: clippy's incompatible_msrv lint (above)
# checks our std use against rust-version, this the locked dependencies' rust-versions.
log "MSRV: the locked dependencies against rust-version (scripts/msrv.sh)"
bash scripts/msrv.sh
# The errors that name a disabled feature are unit tests of a build without them.
log "josefine's unit tests without default features"
cargo test -p josefine --no-default-features --lib --locked

# The publishable crates as crates.io would get them: each packaged (file lists in
# their Cargo.toml `include`), then built from its package, the mock and the CLI
# against the packaged josefine. --allow-dirty lets a local run with uncommitted edits
# through; CI's clone is clean. It warns that each test and benchmark is left out.
log "cargo package: josefine, josefine-mock, josefine-cli (built from the packages)"
cargo package --workspace --exclude josefine-chaos --locked --allow-dirty
# fuzz/ is its own workspace (nightly, not built here): its lockfile must still
# resolve, or the first `cargo fuzz` after a dependency change fails.
log "fuzz/Cargo.lock up to date"
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

log "building tests"
cargo test --workspace --all-targets --locked --no-run

# Integration tests fail, never skip, when this is set and no broker is reachable.
export JOSEFINE_REQUIRE_BROKER=1

start_kafka
export JOSEFINE_BROKER="$JOSEFINE_KAFKA" JOSEFINE_BROKER_KIND=kafka
log "cargo test against Kafka 4.4 (unit, mock broker, real broker; benchmarks run once in test mode)"
cargo test --workspace --all-targets --locked --no-fail-fast
log "doc tests"
cargo test --workspace --doc --locked
log "the library's examples that need Kafka: TLS and SASL, parallel processing, exactly-once, Prometheus"
cargo run -q --locked -p josefine --example tls_sasl -- "$JOSEFINE_KAFKA_SSL" "$JOSEFINE_KAFKA_CA" \
    "$JOSEFINE_KAFKA_SASL" "$JOSEFINE_KAFKA_USER" "$JOSEFINE_KAFKA_PASSWORD"
for example in process transact; do
    cargo run -q --locked -p josefine --example "$example" -- "$JOSEFINE_KAFKA"
done
cargo run -q --locked -p josefine --example prometheus -- "$JOSEFINE_KAFKA" "127.0.0.1:$(free_port)"
stop_kafka

start_kafka_cluster 3
log "failover on a three-broker Kafka cluster (kafka_failover.rs, run alone: it kills a broker)"
cargo test --locked -p josefine --test kafka_failover -- --ignored
stop_kafka

start_broker
export JOSEFINE_BROKER_KIND=tansu
log "the real-broker core suites again, against Tansu (docs/BROKERS.md)"
suites=()
for suite in crates/josefine/tests/broker_*.rs crates/josefine/tests/tansu_sasl.rs; do
    suites+=(--test "$(basename "$suite" .rs)")
done
cargo test --locked -p josefine "${suites[@]}"
log "the library's examples against Tansu: produce, a partition, a group's handler and stream, a properties file"
for example in produce consume_partition group_handler group_stream; do
    cargo run -q --locked -p josefine --example "$example" -- "$JOSEFINE_BROKER"
done
JOSEFINE_BOOTSTRAP="$JOSEFINE_BROKER" cargo run -q --locked -p josefine --example properties
stop_broker

if [ "${JOSEFINE_FULL:-}" = 1 ]; then
    log "full benchmarks"
    cargo bench --locked -p josefine --bench record_decode
    bash scripts/bench.sh
else
    log "benchmark smoke run (josefine, librdkafka and the Java client; small workloads, Kafka and Tansu)"
    bash scripts/bench.sh --smoke
fi

log "the README main job: scripts/demo.sh (josefine demo on its own local broker)"
bash scripts/demo.sh

if [ "${JOSEFINE_FULL:-}" = 1 ]; then
    log "the chaos suite, long form: scripts/chaos.sh --long (docs/RELIABILITY.md)"
    bash scripts/chaos.sh --long
    log "the chaos suite on Kafka 4.4 with group.protocol=consumer, long form"
    bash scripts/chaos.sh --kafka --long
    log "the same with parallel key-ordered processing, long form"
    bash scripts/chaos.sh --kafka --long --parallel 64
    log "exactly-once (ConsumerGroup::transact, read_committed output checked), long form"
    bash scripts/chaos.sh --kafka --long --exactly-once
else
    log "the chaos suite, short form: scripts/chaos.sh (docs/RELIABILITY.md)"
    bash scripts/chaos.sh
    log "the chaos suite on Kafka 4.4 with group.protocol=consumer (KIP-848), short form"
    bash scripts/chaos.sh --kafka
    log "the same with parallel key-ordered processing (ConsumerGroup::process, 64 in flight)"
    bash scripts/chaos.sh --kafka --parallel 64
    log "exactly-once: ConsumerGroup::transact, every input's output once under read_committed"
    bash scripts/chaos.sh --kafka --exactly-once
fi

log "all green in $(( $(date +%s) - started )) s"
