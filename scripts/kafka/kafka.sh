# Apache Kafka 4.4 (KRaft) for the tests and benchmarks. Sourced by scripts/lib.sh; it
# changes nothing until a function is called.
#
#   ensure_kafka        checks Java 17+ and Maven, copies the pinned jars (pom.xml here)
#                       into build/kafka/libs once per pom change
#   start_kafka         one combined broker+controller on free loopback ports, with a
#                       PLAINTEXT, a SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256/512, users made at
#                       format time) and an SSL listener (PEM keystore, a CA made here),
#                       ACLs enforced (StandardAuthorizer); exports JOSEFINE_KAFKA* and
#                       stops the broker when the calling shell exits
#   start_kafka_cluster N   N brokers and one controller (the failover suite)
#   stop_kafka          stops every Kafka process this shell started
#
# The settings and why: docs/BROKERS.md.

KAFKA_DIR="$BUILD_DIR/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_LOG4J="$ROOT/scripts/kafka/log4j2.xml"
# Heap per Kafka process: bounded so that a three-broker cluster, the tests and the
# build fit beside each other on a small machine.
KAFKA_HEAP="${JOSEFINE_KAFKA_HEAP:-768m}"
KAFKA_PIDS=()
KAFKA_RUN_DIRS=()

# The SASL users every test broker knows (made at format time; PLAIN's are in its JAAS).
KAFKA_SASL_USER=alice
KAFKA_SASL_PASSWORD=alice-secret
KAFKA_SASL_OTHER_USER=bob
KAFKA_SASL_OTHER_PASSWORD=bob-secret
# Resources only the other user may read (ACLs made at start): the authorization tests.
KAFKA_ACL_TOPIC=josefine-acl-topic
KAFKA_ACL_GROUP=josefine-acl-group

ensure_kafka() {
    if ! command -v java >/dev/null; then
        echo "the tests need Java 17 or later (for Apache Kafka 4.4): install OpenJDK 17 and rerun" >&2
        return 1
    fi
    local major
    major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    if [ -z "$major" ] || [ "${major%%.*}" -lt 17 ]; then
        echo "the tests need Java 17 or later (for Apache Kafka 4.4); java here is ${major:-unknown}" >&2
        return 1
    fi
    local stamp="$KAFKA_LIBS/.pom.sha256" want
    want="$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if ! command -v mvn >/dev/null; then
        echo "the tests need Maven (mvn) to fetch Apache Kafka 4.4 from Maven Central: install it and rerun" >&2
        return 1
    fi
    log "fetching Apache Kafka 4.4.0 and the Java client from Maven Central into $KAFKA_LIBS"
    rm -rf "$KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
        -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime; then
        echo "Maven could not fetch Kafka (scripts/kafka/pom.xml); check that Maven Central is reachable" >&2
        return 1
    fi
    echo "$want" > "$stamp"
}

# Compiles Java source $1 against the pinned jars into directory $2, once per change
# of the source or the pom.
compile_java() {
    local source="$1" out="$2" want
    want="$(cat "$source" "$KAFKA_POM" | sha256sum | cut -d' ' -f1)"
    if [ -f "$out/.sha256" ] && [ "$(cat "$out/.sha256")" = "$want" ]; then
        return 0
    fi
    if ! command -v javac >/dev/null; then
        echo "compiling $(basename "$source") needs javac (a JDK 17+, not only a JRE): install it and rerun" >&2
        return 1
    fi
    log "compiling $(basename "$source") against kafka-clients 4.4"
    rm -rf "$out"
    mkdir -p "$out"
    javac -nowarn -d "$out" -cp "$KAFKA_LIBS/*" "$source" >&2
    echo "$want" >"$out/.sha256"
}

# The Java client interop peer (crates/josefine/tests/interop/JavaPeer.java); exports
# JOSEFINE_JAVA_PEER_CP, the classpath that runs it (`java -cp CP JavaPeer ...`).
ensure_java_peer() {
    compile_java "$ROOT/crates/josefine/tests/interop/JavaPeer.java" "$KAFKA_DIR/peer" || return 1
    export JOSEFINE_JAVA_PEER_CP="$KAFKA_DIR/peer:$KAFKA_LIBS/*"
}

# The Java client benchmark peer (bench/JavaBenchPeer.java); prints its classpath.
ensure_java_bench_peer() {
    compile_java "$ROOT/bench/JavaBenchPeer.java" "$KAFKA_DIR/bench-peer" || return 1
    echo "$KAFKA_DIR/bench-peer:$KAFKA_LIBS/*"
}

# java with the broker's classpath and logging; the first argument is the run dir.
kafka_java() {
    local dir="$1"
    shift
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
        -Dkafka.logs.dir="$dir" "$@"
}

# A random cluster id. One starting with '-' would be read as an option by
# kafka-storage's argument parser (1 start in 64 failed so): draw again.
kafka_cluster_id() {
    python3 -c '
import base64, uuid
while True:
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not id.startswith("-"):
        print(id)
        break
'
}

# A CA and a server certificate for localhost/127.0.0.1 (PEM), in $1.
kafka_tls_material() {
    local dir="$1"
    (
        cd "$dir" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=josefine-test-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout ca.key -out ca.pem 2>/dev/null &&
            openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
                -keyout server.key -out server.csr 2>/dev/null &&
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext &&
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -extfile server.ext -out server.pem 2>/dev/null &&
            cat server.key server.pem >keystore.pem
    )
}

# Settings every test broker shares (docs/BROKERS.md says why).
kafka_common_properties() {
    cat <<EOF
num.partitions=1
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=4
transaction.abort.timed.out.transaction.cleanup.interval.ms=500
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500
group.consumer.min.session.timeout.ms=500
group.consumer.min.heartbeat.interval.ms=100
group.consumer.heartbeat.interval.ms=500
group.consumer.session.timeout.ms=10000
log.flush.interval.messages=9223372036854775807
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.check.interval.ms=600000
file.delete.delay.ms=1000
EOF
}

# Waits until the broker in $1 (pid $2) logs that it started.
kafka_wait_started() {
    local dir="$1" pid="$2" i
    for i in $(seq 1 600); do
        if grep -q "Transition from STARTING to STARTED" "$dir/kafka.log" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "Kafka exited at start; the end of its logs ($dir):" >&2
            tail -n 30 "$dir/stdout.log" "$dir/kafka.log" >&2 2>/dev/null
            return 1
        fi
        sleep 0.1
    done
    echo "Kafka did not start within 60 s; its logs: $dir" >&2
    return 1
}

kafka_launch() {
    kafka_launch_bg "$1" && kafka_wait_started "$1" "$(cat "$1/pid")"
}

# Starts the Kafka process of run dir $1 without waiting for it.
kafka_launch_bg() {
    local dir="$1"
    # java itself in the background (not a function, which would run in a subshell):
    # $! must be the JVM's pid, for stop_kafka to signal it.
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$dir" \
        -Xmx"$KAFKA_HEAP" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true kafka.Kafka "$dir/server.properties" \
        >"$dir/stdout.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/pid"
    KAFKA_PIDS+=("$pid")
    trap run_cleanups EXIT
    trap 'exit 130' INT TERM
}

# One combined broker+controller. Exports:
#   JOSEFINE_KAFKA            127.0.0.1:PORT (PLAINTEXT)
#   JOSEFINE_KAFKA_SASL       127.0.0.1:PORT (SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256/512)
#   JOSEFINE_KAFKA_SSL        localhost:PORT (SSL, server certificate for localhost)
#   JOSEFINE_KAFKA_CA         the CA's PEM
#   JOSEFINE_KAFKA_USER/_PASSWORD, JOSEFINE_KAFKA_OTHER_USER/_PASSWORD   SASL users
#   JOSEFINE_KAFKA_ACL_TOPIC/_GROUP   readable by the other user only
#   JOSEFINE_KAFKA_PID        the broker's pid (a test pauses it with SIGSTOP)
start_kafka() {
    local dir plain sasl ssl controller id
    dir="$KAFKA_DIR/run-$$-$(date +%s%N)"
    mkdir -p "$dir"
    KAFKA_RUN_DIRS+=("$dir")
    plain="$(free_port)"
    sasl="$(free_port)"
    ssl="$(free_port)"
    controller="$(free_port)"
    kafka_tls_material "$dir" || { echo "openssl could not make the test certificates" >&2; return 1; }
    local scram_jaas='org.apache.kafka.common.security.scram.ScramLoginModule required;'
    {
        cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$plain,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$plain,SASL_PLAINTEXT://127.0.0.1:$sasl,SSL://localhost:$ssl
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD" user_$KAFKA_SASL_OTHER_USER="$KAFKA_SASL_OTHER_PASSWORD";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$scram_jaas
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram_jaas
ssl.keystore.type=PEM
ssl.keystore.location=$dir/keystore.pem
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
super.users=User:ANONYMOUS
EOF
        kafka_common_properties
    } >"$dir/server.properties"
    id="$(kafka_cluster_id)"
    local scram=()
    local user password mechanism
    for user in "$KAFKA_SASL_USER:$KAFKA_SASL_PASSWORD" "$KAFKA_SASL_OTHER_USER:$KAFKA_SASL_OTHER_PASSWORD"; do
        password="${user#*:}"
        user="${user%%:*}"
        for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
            scram+=(--add-scram "$mechanism=[name=$user,password=$password]")
        done
    done
    if ! kafka_java "$dir" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" \
        "${scram[@]}" >"$dir/format.log" 2>&1; then
        echo "formatting Kafka's storage failed:" >&2
        cat "$dir/format.log" >&2
        return 1
    fi
    local began
    began=$(date +%s%N)
    kafka_launch "$dir" || return 1
    # The topic, and READ on it and on a group for the other user only: a topic or group
    # with an ACL is closed to everyone else (allow.everyone.if.no.acl.found covers the
    # rest). Made through the PLAINTEXT listener, whose principal is a super user.
    if ! kafka_java "$dir" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$plain" \
        --create --topic "$KAFKA_ACL_TOPIC" --partitions 1 >"$dir/acls.log" 2>&1 ||
        ! kafka_java "$dir" org.apache.kafka.tools.AclCommand --bootstrap-server "127.0.0.1:$plain" \
            --add --allow-principal "User:$KAFKA_SASL_OTHER_USER" --operation Read --operation Describe \
            --topic "$KAFKA_ACL_TOPIC" --group "$KAFKA_ACL_GROUP" >>"$dir/acls.log" 2>&1; then
        echo "creating the test ACLs failed:" >&2
        cat "$dir/acls.log" >&2
        return 1
    fi
    export JOSEFINE_KAFKA_ACL_TOPIC="$KAFKA_ACL_TOPIC" JOSEFINE_KAFKA_ACL_GROUP="$KAFKA_ACL_GROUP"
    export JOSEFINE_KAFKA="127.0.0.1:$plain" JOSEFINE_KAFKA_PID="$(cat "$dir/pid")"
    export JOSEFINE_KAFKA_SASL="127.0.0.1:$sasl"
    export JOSEFINE_KAFKA_SSL="localhost:$ssl"
    export JOSEFINE_KAFKA_CA="$dir/ca.pem"
    export JOSEFINE_KAFKA_USER="$KAFKA_SASL_USER" JOSEFINE_KAFKA_PASSWORD="$KAFKA_SASL_PASSWORD"
    export JOSEFINE_KAFKA_OTHER_USER="$KAFKA_SASL_OTHER_USER" JOSEFINE_KAFKA_OTHER_PASSWORD="$KAFKA_SASL_OTHER_PASSWORD"
    log "Kafka 4.4 (pid $(cat "$dir/pid")) started in $(( ($(date +%s%N) - began) / 1000000 )) ms: $JOSEFINE_KAFKA, SASL $JOSEFINE_KAFKA_SASL, SSL $JOSEFINE_KAFKA_SSL; logs: $dir"
}

# A cluster of one KRaft controller and N brokers (default 3) on free loopback ports,
# for the replication and failover suite: replication factor 3 and min.insync.replicas
# 2 by default, for the internal topics too. Exports:
#   JOSEFINE_KAFKA_CLUSTER        the brokers' addresses, comma-separated
#   JOSEFINE_KAFKA_CLUSTER_PIDS   node:pid pairs, comma-separated (for kill -9)
start_kafka_cluster() {
    local n="${1:-3}" dir id controller i began port
    dir="$KAFKA_DIR/cluster-$$-$(date +%s%N)"
    mkdir -p "$dir"
    KAFKA_RUN_DIRS+=("$dir")
    id="$(kafka_cluster_id)"
    controller="$(free_port)"
    local shared
    shared="controller.quorum.voters=0@127.0.0.1:$controller
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
replica.lag.time.max.ms=5000
$(kafka_common_properties)"
    mkdir -p "$dir/node-0"
    printf 'process.roles=controller\nnode.id=0\nlisteners=CONTROLLER://127.0.0.1:%s\nlog.dirs=%s\n%s\n' \
        "$controller" "$dir/node-0/data" "$shared" >"$dir/node-0/server.properties"
    local ports=()
    for i in $(seq 1 "$n"); do
        port="$(free_port)"
        ports+=("$port")
        mkdir -p "$dir/node-$i"
        printf 'process.roles=broker\nnode.id=%s\nlisteners=PLAINTEXT://127.0.0.1:%s\nadvertised.listeners=PLAINTEXT://127.0.0.1:%s\nlog.dirs=%s\n%s\n' \
            "$i" "$port" "$port" "$dir/node-$i/data" "$shared" >"$dir/node-$i/server.properties"
    done
    for i in $(seq 0 "$n"); do
        if ! kafka_java "$dir/node-$i" kafka.tools.StorageTool format -t "$id" \
            -c "$dir/node-$i/server.properties" >"$dir/node-$i/format.log" 2>&1; then
            echo "formatting node $i failed:" >&2
            cat "$dir/node-$i/format.log" >&2
            return 1
        fi
    done
    began=$(date +%s%N)
    KAFKA_HEAP="${JOSEFINE_KAFKA_CONTROLLER_HEAP:-256m}" kafka_launch_bg "$dir/node-0" || return 1
    local pids=()
    for i in $(seq 1 "$n"); do
        KAFKA_HEAP="${JOSEFINE_KAFKA_CLUSTER_HEAP:-512m}" kafka_launch_bg "$dir/node-$i" || return 1
        pids+=("$i:$(cat "$dir/node-$i/pid")")
    done
    for i in $(seq 1 "$n"); do
        kafka_wait_started "$dir/node-$i" "$(cat "$dir/node-$i/pid")" || return 1
    done
    local addrs=()
    for port in "${ports[@]}"; do addrs+=("127.0.0.1:$port"); done
    JOSEFINE_KAFKA_CLUSTER="$(IFS=,; echo "${addrs[*]}")"
    JOSEFINE_KAFKA_CLUSTER_PIDS="$(IFS=,; echo "${pids[*]}")"
    export JOSEFINE_KAFKA_CLUSTER JOSEFINE_KAFKA_CLUSTER_PIDS
    log "Kafka 4.4 cluster (1 controller, $n brokers) started in $(( ($(date +%s%N) - began) / 1000000 )) ms: $JOSEFINE_KAFKA_CLUSTER; logs: $dir"
}

# Stops every Kafka process this shell started, the last started first (brokers before
# their controller, whose answer a broker's controlled shutdown waits for): SIGTERM,
# then SIGKILL after 20 s; removes their data. The logs of a failed run stay.
stop_kafka() {
    local pid i k
    for (( k=${#KAFKA_PIDS[@]}-1; k>=0; k-- )); do
        pid="${KAFKA_PIDS[$k]}"
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ "${#KAFKA_PIDS[@]}" -gt 0 ]; then
        log "stopped Kafka (pids ${KAFKA_PIDS[*]})"
    fi
    local dir
    for dir in "${KAFKA_RUN_DIRS[@]}"; do
        rm -rf "$dir/data" "$dir"/node-*/data "$dir"/*.key
    done
    KAFKA_PIDS=()
    KAFKA_RUN_DIRS=()
}
