#!/usr/bin/env bash
# Whole-process benchmarks: josefine against librdkafka 2.16 (bench/rdkafka_peer.c) and
# the Java client 4.4 (bench/JavaBenchPeer.java), produce, consume and group consume,
# same workload, same broker, same run, rotating order. Runs on Apache Kafka 4.4 and
# on Tansu (the Java peer on Kafka only). On Kafka also a CPU-bound handler (fixed work
# per record, 6 partitions) through ConsumerGroup::consume against the same work in one
# spawned task per partition (`bench consume --work`), and rebalances under the classic
# eager, classic cooperative and KIP-848 protocols (`bench rebalance`), and
# transactional producers (transactions of 1,000 records) of the three clients beside
# josefine's idempotent one. Method: docs/BENCHMARKS.md.
#
#   scripts/bench.sh            full: 3 runs each of 1,000,000 x 100 B and 200,000 x 1 KiB
#   scripts/bench.sh --smoke    one small run of each, debug build (what CI runs)
#   RUNS=5 scripts/bench.sh     more runs
#   BROKERS=kafka scripts/bench.sh   one broker only (kafka, tansu, mock)
#   SECTIONS="txn" scripts/bench.sh  some sections only, of: clients (produce, consume and
#                                    group consume), work, process, rebalance, txn,
#                                    assign, scale; all but clients and scale run on
#                                    Kafka only, assign (the group leader's assignors,
#                                    1,000 members x 10,000 partitions, beside the Java
#                                    client's) on none; scale: 200,000 keyed records
#                                    produced over 10,000 partitions, then group consumed;
#                                    latency: records produced at 10,000/s and read by a
#                                    group member in the same process, send to receive
#                                    percentiles, josefine's pair and librdkafka's;
#                                    members: 100 members on 1,000 partitions (tasks of
#                                    one process, then processes), 1 -> 100 -> 101,
#                                    times and CPU, on Kafka, Tansu and the mock cluster
#                                    (`josefine mock`, the members section only)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

mode="${1:-full}"
if [ "$mode" = "--smoke" ]; then
    runs=1
    workloads=("20000 100" "4000 1024")
    work_records=6000
    # Parallel processing: trivial-work records, 5 ms sleep-bound records (one at a
    # time per partition, and key-ordered with 500 in flight).
    process_records=20000
    sleep_records=1200
    parallel_sleep_records=20000
    txn_records=20000
    scale_partitions=1000
    scale_records=20000
    scale_idle=3
    latency_records=2000
    latency_warmup_ms=500
    members=10
    members_partitions=100
    profile=debug
    cargo build --locked -q -p josefine-cli
else
    runs="${RUNS:-3}"
    workloads=("1000000 100" "200000 1024")
    work_records=60000
    process_records=1000000
    sleep_records=6000
    parallel_sleep_records=200000
    txn_records=1000000
    scale_partitions=10000
    scale_records=200000
    scale_idle=60
    latency_records=300000
    latency_warmup_ms=2000
    members=100
    members_partitions=1000
    profile=release
    log "building josefine (release)"
    cargo build --locked --release -q -p josefine-cli
fi
# Records per transaction in the transactional section.
txn_size=1000
# Empty BROKERS: none (the assign section needs none).
read -r -a brokers <<<"${BROKERS-kafka tansu mock}"
read -r -a sections <<<"${SECTIONS:-clients work process rebalance txn assign scale latency members}"
for section in "${sections[@]}"; do
    case "$section" in
        clients | work | process | rebalance | txn | assign | scale | latency | members) ;;
        *) echo "unknown section $section (clients, work, process, rebalance, txn, assign, scale, latency, members)" >&2; exit 2 ;;
    esac
done
want() {
    [[ " ${sections[*]} " == *" $1 "* ]]
}
# A broker holding 10,000 partitions and serving them to one fetch needs more than
# the tests' 768 MB heap (it ran out of memory there).
if want scale && [ "$mode" != --smoke ]; then
    KAFKA_HEAP="${JOSEFINE_KAFKA_HEAP:-3g}"
fi
ensure_venv
ensure_kafka
peer="$(bash bench/build-peer.sh)"
java_cp="$(ensure_java_bench_peer)"
ours="$ROOT/target/$profile/josefine"
results="$BUILD_DIR/bench/results-$(date +%Y%m%d-%H%M%S).jsonl"
mkdir -p "$(dirname "$results")"
touch "$results"

# The group leader's work between JoinGroup and SyncGroup (decode the subscriptions,
# assign, encode the assignments) in josefine's four assignors and the Java client's:
# same members, topics and cases, each client's ownership from its own first round
# (crates/josefine/benches/assignors.rs, JavaBenchPeer assign); no broker. Prints the
# medians side by side.
assign_section() {
    local members=1000 per_topic=1000 samples=10 timing=() warm_up=3
    if [ "$mode" = "--smoke" ]; then
        members=100 per_topic=100 samples=3 warm_up=0.05
        timing=(--warm-up-time 0.05 --measurement-time 0.1)
    fi
    log "assignors: $members members x $((10 * per_topic)) partitions, josefine and the Java client"
    local out="$BUILD_DIR/bench/assign-$(date +%Y%m%d-%H%M%S)"
    ASSIGN_MEMBERS=$members ASSIGN_PARTITIONS_PER_TOPIC=$per_topic \
        cargo bench --locked -q -p josefine --bench assignors --profile "$( [ "$profile" = debug ] && echo dev || echo bench )" \
        -- --output-format bencher "${timing[@]}" >"$out.josefine" 2>"$out.stderr" ||
        { cat "$out.stderr" >&2; return 1; }
    java_peer assign --members "$members" --partitions-per-topic "$per_topic" --samples "$samples" \
        --warm-up-seconds "$warm_up" >"$out.java"
    python3 - "$out.josefine" "$out.java" <<'PY'
import json, re, sys
ours = {}
for line in open(sys.argv[1]):
    m = re.match(r"test .*/([a-z-]+)/([a-z]+) \.\.\. bench:\s+([\d,]+) ns/iter", line)
    if m:
        ours[(m[1], m[2])] = int(m[3].replace(",", "")) / 1e6
java = {(r["assignor"], r["case"]): r["median_ms"] for r in map(json.loads, open(sys.argv[2]))}
print(f'{"assignor":20} {"case":6} {"josefine ms":>11} {"java ms":>9} {"ratio":>7}')
assignors = ["range", "roundrobin", "sticky", "cooperative-sticky"]
cases = ["first", "again", "leave", "join", "mixed"]
for key in sorted(ours, key=lambda k: (assignors.index(k[0]), cases.index(k[1]))):
    j = java.get(key)
    print(f'{key[0]:20} {key[1]:6} {ours[key]:11.2f} {j if j else float("nan"):9.2f} '
          f'{ours[key] / j if j else float("nan"):7.2f}')
PY
}

create_bench_topic() {
    "$ours" --bootstrap "$JOSEFINE_BROKER" topics create "$1" --partitions 6 >/dev/null
}

java_peer() {
    java -Xmx1g -cp "$java_cp" JavaBenchPeer "$@"
}

run_produce() {
    local client="$1" records="$2" size="$3" topic="$4"
    create_bench_topic "$topic"
    case "$client" in
        librdkafka) "$peer" produce --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --records "$records" --size "$size" ;;
        java) java_peer produce --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --records "$records" --size "$size" ;;
        josefine) "$ours" --bootstrap "$JOSEFINE_BROKER" bench produce --topic "$topic" \
                        --records "$records" --size "$size" ;;
    esac
}

run_consume() {
    local client="$1" records="$2" topic="$3"
    case "$client" in
        librdkafka) "$peer" consume --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --partitions 6 --records "$records" ;;
        java) java_peer consume --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --partitions 6 --records "$records" ;;
        josefine) "$ours" --bootstrap "$JOSEFINE_BROKER" bench consume --topic "$topic" \
                        --partitions 6 --records "$records" ;;
    esac
}

# The transactional section: josefine's idempotent producer (no transactions; its mode
# renamed produce-idempotent so that it is told apart from the clients section's
# produce) and the three clients' transactional producers, each into a fresh topic.
run_txn() {
    local client="$1" records="$2" topic="$3"
    create_bench_topic "$topic"
    case "$client" in
        josefine-idempotent) "$ours" --bootstrap "$JOSEFINE_BROKER" bench produce --topic "$topic" \
                        --records "$records" --size 100 \
                        | sed 's/"mode":"produce"/"mode":"produce-idempotent"/' ;;
        josefine) "$ours" --bootstrap "$JOSEFINE_BROKER" bench produce --topic "$topic" \
                        --records "$records" --size 100 --transaction-size "$txn_size" ;;
        librdkafka) "$peer" produce --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --records "$records" --size 100 --transaction-size "$txn_size" ;;
        java) java_peer produce --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --records "$records" --size 100 --transaction-size "$txn_size" ;;
    esac
}

# The same session timeout for all: Tansu holds the second JoinGroup for about half of it.
# Further arguments go to every client (--idle-seconds S).
run_group() {
    local client="$1" records="$2" topic="$3" group="$4"
    shift 4
    case "$client" in
        librdkafka) "$peer" group --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --group "$group" --records "$records" --session-timeout-ms 6000 "$@" ;;
        java) java_peer group --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --group "$group" --records "$records" --session-timeout-ms 6000 "$@" ;;
        josefine) "$ours" --bootstrap "$JOSEFINE_BROKER" bench group --topic "$topic" \
                        --group "$group" --records "$records" --session-timeout-ms 6000 "$@" ;;
    esac
}

if want assign; then
    assign_section
fi
for broker in "${brokers[@]}"; do
    if [ "$broker" = tansu ] && ! want clients && ! want scale && ! want latency && ! want members; then
        continue # only the clients, scale, latency and members sections run on Tansu
    fi
    if [ "$broker" = mock ] && ! want members; then
        continue # only the members section runs on the mock
    fi
    case "$broker" in
        kafka)
            start_kafka
            export JOSEFINE_BROKER="$JOSEFINE_KAFKA"
            clients=(librdkafka java josefine) ;;
        tansu)
            start_broker
            clients=(librdkafka josefine) ;;
        mock)
            # `josefine mock`: a coordinator that answers at once.
            start_mock "$ours"
            clients=(josefine) ;;
        *) echo "unknown broker $broker (kafka, tansu, mock)" >&2; exit 2 ;;
    esac
    if [ "$broker" != mock ] && want clients; then
        for workload in "${workloads[@]}"; do
            read -r records size <<<"$workload"
            for run in $(seq 1 "$runs"); do
                # Rotate who goes first, so none always meets a warmer broker.
                order=("${clients[@]:$(( (run - 1) % ${#clients[@]} ))}" "${clients[@]:0:$(( (run - 1) % ${#clients[@]} ))}")
                for client in "${order[@]}"; do
                    log "produce $records x $size B, run $run/$runs: $client on $broker"
                    run_produce "$client" "$records" "$size" "bench-$client-$size-$run-$$" \
                        | tail -n 1 | sed "s/}\$/,\"size\":$size,\"broker\":\"$broker\"}/" >> "$results"
                done
                # All read the same records: the topic librdkafka wrote in this run.
                for client in "${order[@]}"; do
                    log "consume $records x $size B, run $run/$runs: $client on $broker"
                    run_consume "$client" "$records" "bench-librdkafka-$size-$run-$$" \
                        | tail -n 1 | sed "s/}\$/,\"size\":$size,\"broker\":\"$broker\"}/" >> "$results"
                done
                for client in "${order[@]}"; do
                    log "group consume $records x $size B, run $run/$runs: $client on $broker"
                    run_group "$client" "$records" "bench-librdkafka-$size-$run-$$" "bench-$client-$size-$run-$$" \
                        | tail -n 1 | sed "s/}\$/,\"size\":$size,\"broker\":\"$broker\"}/" >> "$results"
                done
            done
        done
    fi
    if [ "$broker" != mock ] && want scale; then
        # Scale (#17): one topic of $scale_partitions partitions. librdkafka fills it
        # with $scale_records keyed records of 100 B (key-<i>: spread over every
        # partition; not counted); each consumer reads all of it as the only member of
        # a fresh group (all partitions its own), then stays in the group with nothing
        # to read for $scale_idle s: the CPU it spends meanwhile is its idle cost. Then
        # each producer writes $scale_records more keyed records into the same topic.
        # One topic only: Kafka keeps a file open per partition, these machines allow
        # a process 20,000, and Kafka takes minutes to close a deleted topic's files.
        # Kafka's controller takes at most 10,000 records in one operation (a topic of
        # 10,000 partitions is 10,001): there the topic grows in steps of 5,000.
        scale_produce() {
            local client="$1" topic="$2"
            case "$client" in
                librdkafka) "$peer" produce --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                                --records "$scale_records" --size 100 --keyed ;;
                josefine) "$ours" --bootstrap "$JOSEFINE_BROKER" bench produce --topic "$topic" \
                                --records "$scale_records" --size 100 --keyed --existing ;;
            esac
        }
        topic="bench-scale-$$"
        n="$scale_partitions"
        [ "$broker" = kafka ] && [ "$n" -gt 5000 ] && n=5000
        "$ours" --bootstrap "$JOSEFINE_BROKER" topics create "$topic" --partitions "$n" >/dev/null
        while [ "$n" -lt "$scale_partitions" ]; do
            n=$(( n + 5000 < scale_partitions ? n + 5000 : scale_partitions ))
            "$ours" --bootstrap "$JOSEFINE_BROKER" topics add-partitions "$topic" --total "$n" >/dev/null
        done
        log "filling $topic ($scale_partitions partitions) for the group runs (librdkafka, not counted)"
        scale_produce librdkafka "$topic" >/dev/null
        consumers=(librdkafka josefine)
        [ "$broker" = kafka ] && consumers=(librdkafka java josefine)
        for run in $(seq 1 "$runs"); do
            k=$(( (run - 1) % ${#consumers[@]} ))
            order=("${consumers[@]:$k}" "${consumers[@]:0:$k}")
            for client in "${order[@]}"; do
                log "group consume $scale_records x 100 B over $scale_partitions partitions, run $run/$runs: $client on $broker"
                # A peer that stalls (librdkafka on Tansu at 10,000 partitions sometimes
                # stops getting records) is reported and left out; josefine never is.
                if line=$(run_group "$client" "$scale_records" "$topic" "bench-scale-$client-$run-$$" \
                    --idle-seconds "$scale_idle" | tail -n 1); then
                    echo "$line" | sed 's/"mode":"group"/"mode":"group-scale"/' \
                        | sed "s/}\$/,\"size\":100,\"broker\":\"$broker\"}/" >> "$results"
                elif [ "$client" = josefine ]; then
                    exit 1
                else
                    log "$client did not read all $scale_records records on $broker (run $run): not counted"
                fi
            done
        done
        producers=(librdkafka josefine)
        for run in $(seq 1 "$runs"); do
            order=("${producers[@]:$(( (run - 1) % 2 ))}" "${producers[@]:0:$(( (run - 1) % 2 ))}")
            for client in "${order[@]}"; do
                log "produce $scale_records x 100 B keyed over $scale_partitions partitions, run $run/$runs: $client on $broker"
                scale_produce "$client" "$topic" | tail -n 1 \
                    | sed 's/"mode":"produce"/"mode":"produce-scale"/' \
                    | sed "s/}\$/,\"size\":100,\"broker\":\"$broker\"}/" >> "$results"
            done
        done
        "$ours" --bootstrap "$JOSEFINE_BROKER" topics delete "$topic" >/dev/null
    fi
    if [ "$broker" != mock ] && want latency; then
        # End-to-end latency (#17): each pair (producer and group member in one
        # process) sends $latency_records measured records at 10,000/s, 100 B, to a
        # fresh 6-partition topic (record i to partition i % 6), linger 5 ms, fetch wait
        # 100 ms, after a warm-up that starts when the member's first record arrives.
        pairs=(librdkafka josefine)
        for run in $(seq 1 "$runs"); do
            order=("${pairs[@]:$(( (run - 1) % 2 ))}" "${pairs[@]:0:$(( (run - 1) % 2 ))}")
            for client in "${order[@]}"; do
                topic="bench-latency-$client-$run-$$"
                create_bench_topic "$topic"
                log "latency, $latency_records records at 10,000/s, run $run/$runs: $client on $broker"
                args=(--bootstrap "$JOSEFINE_BROKER" --topic "$topic" --group "bench-latency-$client-$run-$$"
                      --records "$latency_records" --rate 10000 --size 100 --partitions 6
                      --warmup-ms "$latency_warmup_ms" --linger-ms 5 --fetch-wait-ms 100)
                case "$client" in
                    librdkafka) "$peer" latency "${args[@]}" ;;
                    josefine) "$ours" --bootstrap "$JOSEFINE_BROKER" bench latency "${args[@]:2}" ;;
                esac | tail -n 1 | sed "s/}\$/,\"size\":100,\"broker\":\"$broker\"}/" >> "$results"
            done
        done
    fi
    if [ "$broker" = kafka ] && want work; then
        # The CPU-bound handler: 25,000 mixing rounds (~50 us) per record.
        topic="bench-work-$$"
        create_bench_topic "$topic"
        "$ours" --bootstrap "$JOSEFINE_BROKER" bench produce --topic "$topic" \
            --records "$work_records" --size 100 >/dev/null
        for run in $(seq 1 "$runs"); do
            modes=(consume group)
            [ $((run % 2)) -eq 0 ] && modes=(group consume)
            for m in "${modes[@]}"; do
                log "CPU-bound handler, $work_records x 100 B, run $run/$runs: $m"
                extra=()
                [ "$m" = group ] && extra=(--group "bench-work-$run-$$")
                "$ours" --bootstrap "$JOSEFINE_BROKER" bench consume --topic "$topic" --partitions 6 \
                    --records "$work_records" --work 25000 "${extra[@]}" \
                    | tail -n 1 | sed "s/}\$/,\"size\":100,\"broker\":\"$broker\"}/" >> "$results"
            done
        done
    fi
    if [ "$broker" = kafka ] && want process; then
        # Parallel processing (docs/PROCESSING.md), on one topic of keyed records
        # (10,000 keys, 6 partitions): trivial work through a handler (one batch at a
        # time per partition) and through ConsumerGroup::process (key-ordered, 500 in
        # flight), then 5 ms of sleep per record through both. Fresh groups each run.
        topic="bench-process-$$"
        create_bench_topic "$topic"
        "$ours" --bootstrap "$JOSEFINE_BROKER" bench produce --topic "$topic" \
            --records "$process_records" --size 100 --keys 10000 >/dev/null
        for run in $(seq 1 "$runs"); do
            modes=(handler parallel librdkafka)
            [ $((run % 2)) -eq 0 ] && modes=(librdkafka parallel handler)
            for m in "${modes[@]}"; do
                log "trivial work, $process_records x 100 B keyed, run $run/$runs: $m"
                if [ "$m" = librdkafka ]; then
                    "$peer" group --bootstrap "$JOSEFINE_BROKER" --topic "$topic" \
                        --group "bench-process-$m-$run-$$" --records "$process_records" \
                        --session-timeout-ms 6000
                else
                    extra=(--records "$process_records")
                    [ "$m" = parallel ] && extra+=(--process key --in-flight 500)
                    "$ours" --bootstrap "$JOSEFINE_BROKER" bench group --topic "$topic" \
                        --group "bench-process-$m-$run-$$" "${extra[@]}"
                fi | tail -n 1 | sed 's/"mode":"group"/"mode":"group-keyed"/' \
                    | sed "s/}\$/,\"size\":100,\"broker\":\"$broker\"}/" >> "$results"
            done
            for m in handler parallel; do
                extra=(--records "$sleep_records")
                [ "$m" = parallel ] && extra=(--records "$parallel_sleep_records" --process key --in-flight 500)
                log "5 ms per record, keyed, run $run/$runs: $m"
                "$ours" --bootstrap "$JOSEFINE_BROKER" bench group --topic "$topic" \
                    --group "bench-sleep-$m-$run-$$" --sleep-ms 5 "${extra[@]}" \
                    | tail -n 1 | sed "s/}\$/,\"size\":100,\"broker\":\"$broker\"}/" >> "$results"
            done
        done
    fi
    if [ "$broker" = kafka ] && want rebalance; then
        # Rebalances: classic eager, classic cooperative and KIP-848, 6 members then a 7th.
        protocols=(eager cooperative consumer)
        for run in $(seq 1 "$runs"); do
            order=("${protocols[@]:$(( (run - 1) % 3 ))}" "${protocols[@]:0:$(( (run - 1) % 3 ))}")
            for protocol in "${order[@]}"; do
                log "rebalance, run $run/$runs: $protocol"
                "$ours" --bootstrap "$JOSEFINE_BROKER" bench rebalance --protocol "$protocol" \
                    | tail -n 1 | sed "s/}\$/,\"broker\":\"$broker\"}/" >> "$results"
            done
        done
    fi
    if want members; then
        # Big groups (#17): $members members on $members_partitions partitions, each
        # with its own client, as tasks in one process and as processes of their own:
        # 1 -> N, then one more joins (`bench rebalance`, one record a second per
        # partition), with the members' CPU. KIP-848 on Kafka and the mock.
        protocols=(eager cooperative)
        [ "$broker" != tansu ] && protocols+=(consumer)
        for run in $(seq 1 "$runs"); do
            k=$(( (run - 1) % ${#protocols[@]} ))
            order=("${protocols[@]:$k}" "${protocols[@]:0:$k}")
            for protocol in "${order[@]}"; do
                for as in tasks processes; do
                    flag=()
                    [ "$as" = processes ] && flag=(--processes)
                    log "$members members ($as) on $members_partitions partitions, run $run/$runs: $protocol on $broker"
                    "$ours" --bootstrap "$JOSEFINE_BROKER" bench rebalance --protocol "$protocol" \
                        --members "$members" --partitions "$members_partitions" --rate 1 --work-ms 10 \
                        ${flag[@]+"${flag[@]}"} | tail -n 1 | sed "s/}\$/,\"broker\":\"$broker\"}/" >> "$results"
                done
            done
        done
    fi
    if [ "$broker" = kafka ] && want txn; then
        # Transactions of $txn_size records: josefine, librdkafka and Java, with
        # josefine's idempotent producer as the baseline, rotating who goes first.
        txn_clients=(josefine-idempotent josefine librdkafka java)
        for run in $(seq 1 "$runs"); do
            k=$(( (run - 1) % ${#txn_clients[@]} ))
            order=("${txn_clients[@]:$k}" "${txn_clients[@]:0:$k}")
            for client in "${order[@]}"; do
                log "transactions of $txn_size, $txn_records x 100 B, run $run/$runs: $client"
                run_txn "$client" "$txn_records" "bench-txn-$client-$run-$$" \
                    | tail -n 1 | sed "s/}\$/,\"size\":100,\"broker\":\"$broker\"}/" >> "$results"
            done
        done
    fi
    stop_broker
    stop_kafka
done

log "results: $results"
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rebalances = [r for r in rows if r["mode"].startswith("rebalance-")]
latencies = [r for r in rows if r["mode"] == "latency"]
rows = [r for r in rows if not r["mode"].startswith("rebalance-") and r["mode"] != "latency"]
groups = {}
for r in rows:
    groups.setdefault((r.get("broker", "tansu"), r["mode"], r["size"], r["client"]), []).append(r)
def med(rs, f): return statistics.median(f(r) for r in rs)
print(f'{"broker":6} {"mode":18} {"size":>5} {"client":11} {"runs":>4} {"msgs/s":>10} {"MB/s":>7} {"cpu-s":>6} {"ns cpu/rec":>10} {"rss MiB":>7} {"1st rec s":>9} {"clock cpu-s":>11}')
summary = {}
for (broker, mode, size, client), rs in sorted(groups.items()):
    n = rs[0]["records"]
    rate = med(rs, lambda r: r["records"] / r["seconds"])
    mbs = med(rs, lambda r: r["bytes"] / r["seconds"] / 1e6)
    # Without the idle period's CPU, where a run had one (reported apart below).
    cpu = med(rs, lambda r: r["cpu_user"] + r["cpu_sys"]
              - r.get("idle_cpu_per_minute", 0) * r.get("idle_seconds", 0) / 60)
    rss = med(rs, lambda r: r["max_rss_kb"] / 1024)
    firsts = [r["first_record_seconds"] for r in rs if r.get("first_record_seconds") is not None]
    first = f'{statistics.median(firsts):9.3f}' if firsts else f'{"":9}'
    clocks = [r["cpu_clock"] for r in rs if r.get("cpu_clock") is not None]
    clock = f'{statistics.median(clocks):11.3f}' if clocks else f'{"":11}'
    summary[(broker, mode, size, client)] = (rate, cpu, rss)
    print(f'{broker:6} {mode:18} {size:5} {client:11} {len(rs):4} {rate:10.0f} {mbs:7.1f} {cpu:6.3f} {cpu / n * 1e9:10.0f} {rss:7.1f} {first} {clock}')
work = {mode: rs for (broker, mode, size, client), rs in groups.items() if mode.endswith("-work")}
if "group-work" in work and "consume-work" in work:
    g = med(work["group-work"], lambda r: r["seconds"])
    g_after = med(work["group-work"], lambda r: r["seconds"] - r.get("first_record_seconds", 0))
    c = med(work["consume-work"], lambda r: r["seconds"])
    print(f'CPU-bound handler: group {g:.3f} s ({g_after:.3f} s after the first record), '
          f'spawned tasks {c:.3f} s: group/tasks x{g / c:.2f} (x{g_after / c:.2f} after the join)')
def by_mode(mode):
    return [r for (b, m, size, c), rs in groups.items() if m == mode for r in rs]
plain = [r for r in by_mode("group-keyed") if r["client"] == "josefine"]
peer_keyed = [r for r in by_mode("group-keyed") if r["client"] == "librdkafka"]
par = by_mode("process-key")
if plain and par:
    ns = lambda rs: med(rs, lambda r: (r["cpu_user"] + r["cpu_sys"]) / r["records"] * 1e9)
    line = f'parallel, trivial work: handler {ns(plain):.0f} ns CPU/record, process(key, 500) {ns(par):.0f}: x{ns(par) / ns(plain):.2f}'
    if peer_keyed:
        line += f'; librdkafka group consume {ns(peer_keyed):.0f} (process/librdkafka x{ns(par) / ns(peer_keyed):.2f})'
    print(line)
slow, fast = by_mode("group-sleep"), by_mode("process-key-sleep")
if slow and fast:
    s_rate = med(slow, lambda r: r["records"] / r["seconds"])
    f_rate = med(fast, lambda r: r["records"] / r["seconds"])
    print(f'parallel, 5 ms per record: handler {s_rate:.0f} records/s, process(key, 500) {f_rate:.0f}: x{f_rate / s_rate:.1f}')
if rebalances:
    # CPU: the members' (with tasks, the whole process's, the producer feeding the
    # topic included), from the start of the phase until the group is balanced.
    print(f'{"rebalance, members x partitions":44} {"runs":>4} {"1->N s":>7} {"join s":>7} {"gap ms":>7} '
          f'{"pause unmoved ms":>17} {"pause moved ms":>15} {"1->N cpu-s":>10} {"join cpu-s":>10} {"steady cpu/s":>12}')
    by = {}
    for r in rebalances:
        name = f'{r["mode"]} {r.get("members", "")}x{r.get("partitions", "")}'
        if r.get("processes"):
            name += " procs"
        if r.get("broker", "kafka") != "kafka":
            name += f' {r["broker"]}'
        by.setdefault(name, []).append(r)
    for mode, rs in sorted(by.items()):
        cpu = ""
        if all("join_cpu_seconds" in r for r in rs):
            cpu = (f' {med(rs, lambda r: r["scale_out_cpu_seconds"]):10.3f} {med(rs, lambda r: r["join_cpu_seconds"]):10.3f} '
                   f'{med(rs, lambda r: r["steady_cpu_per_second"]):12.3f}')
        print(f'{mode:44} {len(rs):4} {med(rs, lambda r: r["scale_out_seconds"]):7.3f} '
              f'{med(rs, lambda r: r["join_seconds"]):7.3f} {med(rs, lambda r: r["baseline_gap_ms"]):7.1f} '
              f'{med(rs, lambda r: r["pause_unmoved_ms"]):17.1f} {med(rs, lambda r: r["pause_moved_ms"]):15.1f}{cpu}')
# Transactions: the three transactional producers and josefine's idempotent one.
txn = [("josefine idempotent", rs) for (b, m, size, c), rs in groups.items() if m == "produce-idempotent"]
txn += sorted(((f"{c} transactional", rs) for (b, m, size, c), rs in groups.items() if m == "produce-txn"),
              key=lambda t: ("josefine", "librdkafka", "java").index(t[0].split()[0]))
if txn:
    stats = {}
    for name, rs in txn:
        clocks = [r["cpu_clock"] for r in rs if r.get("cpu_clock") is not None]
        stats[name] = (
            med(rs, lambda r: r["records"] / r["seconds"]),
            med(rs, lambda r: r["cpu_user"] + r["cpu_sys"]),
            med(rs, lambda r: (r["cpu_user"] + r["cpu_sys"]) / r["records"] * 1e9),
            statistics.median(clocks) if clocks else None,
            med(rs, lambda r: r.get("partitions_per_transaction", 0)),
            len(rs),
        )
    size = next((r.get("transaction_size") for _, rs in txn for r in rs if r.get("transaction_size")), "?")
    print(f'transactions of {size} records, 100 B each:')
    print(f'  {"producer":26} {"runs":>4} {"records/s":>10} {"cpu-s":>6} {"ns cpu/rec":>10} {"clock cpu-s":>11} {"partitions/txn":>14}')
    for name, (rate, cpu, ns, clock, parts, n) in stats.items():
        clock = f'{clock:11.3f}' if clock is not None else f'{"":11}'
        parts = f'{parts:14.2f}' if "transactional" in name else f'{"":14}'
        print(f'  {name:26} {n:4} {rate:10.0f} {cpu:6.3f} {ns:10.0f} {clock} {parts}')
    for base in ("librdkafka transactional", "josefine idempotent"):
        if base not in stats:
            continue
        b = stats[base]
        for name, s in stats.items():
            if name != base:
                print(f'  {name} / {base}: records/s x{s[0] / b[0]:.2f}  cpu x{s[1] / b[1]:.2f}')
if latencies:
    print("end-to-end latency, send to receive (ms; medians over runs of each percentile):")
    print(f'  {"broker":6} {"pair":11} {"runs":>4} {"p50":>7} {"p99":>7} {"p99.9":>7} {"max":>8} {"cpu-s":>6}')
    by = {}
    for r in latencies:
        by.setdefault((r["broker"], r["client"]), []).append(r)
    lat = {}
    for (b, c), rs in sorted(by.items()):
        lat[(b, c)] = [med(rs, lambda r: r[k]) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")]
        cpu = med(rs, lambda r: r["cpu_user"] + r["cpu_sys"])
        p50, p99, p999, mx = lat[(b, c)]
        print(f'  {b:6} {c:11} {len(rs):4} {p50:7.2f} {p99:7.2f} {p999:7.2f} {mx:8.2f} {cpu:6.2f}')
    for (b, c), ours in lat.items():
        peer = lat.get((b, "librdkafka"))
        if c == "josefine" and peer:
            print(f'  {b}: josefine/librdkafka  p50 x{ours[0] / peer[0]:.2f}  p99 x{ours[1] / peer[1]:.2f}  p99.9 x{ours[2] / peer[2]:.2f}')
idle = {(b, c): rs for (b, m, size, c), rs in groups.items() if m == "group-scale"}
if idle:
    print("idle with every partition assigned (group-scale, after the last record): CPU seconds a minute")
    for (b, c), rs in sorted(idle.items()):
        xs = [r["idle_cpu_per_minute"] for r in rs if r.get("idle_cpu_per_minute") is not None]
        if xs:
            print(f'  {b:6} {c:11} {statistics.median(xs):8.3f}  (runs: {len(xs)})')
for (broker, mode, size, client), (rate, cpu, rss) in sorted(summary.items()):
    if client != "josefine":
        continue
    for other in ("librdkafka", "java"):
        peer = summary.get((broker, mode, size, other))
        if peer:
            print(f'{broker} {mode} {size} B: josefine/{other}  throughput x{rate / peer[0]:.2f}  '
                  f'cpu x{cpu / peer[1]:.2f}  rss x{rss / peer[2]:.2f}')
PY
