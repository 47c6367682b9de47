// The Java client (kafka-clients 4.4, scripts/kafka/pom.xml) as a whole-process
// benchmark peer beside bench/rdkafka_peer.c: the same modes, workloads and JSON line,
// so scripts/bench.sh can put the three clients side by side (docs/BENCHMARKS.md).
// scripts/bench.sh compiles it into build/kafka/bench-peer.
//
//   produce --bootstrap B --topic T --records N --size BYTES [--transaction-size N]
//   consume --bootstrap B --topic T --partitions P --records N
//   group   --bootstrap B --topic T --group G --records N [--session-timeout-ms MS]
//           [--idle-seconds S]
//   assign  --members M --partitions-per-topic P [--samples N] [--warm-up-seconds S]
//
// Value of record i, byte j: (byte) ((i + j) * 31 + 7), no key, as the other peers.
// Defaults of the Java client everywhere (acks=all, idempotence on, linger.ms 5,
// batch.size 16 KiB), but fetch.max.wait.ms 100 as the other consumers. Warm-up as
// rdkafka_peer's: the topic's metadata is fetched before the clock starts (the
// producer's InitProducerId still happens inside the clock: Java gets it on the first
// send). Group mode subscribes with auto commit (Java's default 5 s interval) and
// closes the consumer (final commit, leave) after the clock stops. --idle-seconds S:
// after the N-th record, keep polling for S seconds with nothing left to read and add
// "idle_seconds":S,"idle_cpu_per_minute":C (the process's CPU seconds a minute).
//
// produce --transaction-size N produces in transactions of N records (the last may hold
// fewer) with transactional.id "java-bench-<topic>-<pid>": initTransactions before the
// clock starts (it finds the coordinator and gets the producer id), then
// beginTransaction, N sends, commitTransaction (which flushes them first); the clock
// stops when the last commit returns. Its mode is "produce-txn", and it adds
// "transaction_size":N and "partitions_per_transaction":F (partitions written per
// transaction, the mean, from the send callbacks).
//
// assign needs no broker: the group leader's work between JoinGroup and SyncGroup in
// the Java client's assignors, as crates/josefine/benches/assignors.rs measures ours
// (same members, topics, cases and ownership rules, each client's ownership from its
// own first round; read its header): each member's serialized subscription
// deserialized, the assignor's assign(Cluster, GroupSubscription), each assignment
// serialized. Each case warms up for S seconds (default 3, as criterion's warm-up for
// ours; at least 3 runs), then runs N times (default 10); one JSON line per case:
//   {"client":"java","mode":"assign","assignor":A,"case":C,"members":M,
//    "partitions":P,"median_ms":T,"min_ms":T}
//
// One JSON line on stdout at the end:
//   {"client":"java","mode":M,"records":N,"bytes":B,"seconds":S,"cpu_user":U,
//    "cpu_sys":0,"max_rss_kb":K[,"first_record_seconds":F][,"transaction_size":N,
//    "partitions_per_transaction":P],"cpu_clock":C}
// cpu_user is the whole process's CPU time (user and system, all threads, JVM start-up
// and JIT included) after the client was closed; cpu_clock only what was spent while
// the clock ran; max_rss_kb is VmHWM.

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class JavaBenchPeer {
    private static final double STALL_TIMEOUT_S = 60.0;

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        switch (argv[0]) {
            case "produce" -> produce(args);
            case "consume" -> consume(args);
            case "group" -> group(args);
            case "assign" -> assign(args);
            default -> throw new IllegalArgumentException("unknown mode " + argv[0]);
        }
    }

    private static long cpuNanos() {
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        return os.getProcessCpuTime();
    }

    private static long maxRssKb() throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", ""));
            }
        }
        return 0;
    }

    // extra: "" or further JSON members, each starting with a comma.
    private static void report(String mode, long records, long bytes, double seconds, String extra,
                               long clockCpuNanos) throws Exception {
        System.out.printf("{\"client\":\"java\",\"mode\":\"%s\",\"records\":%d,\"bytes\":%d,\"seconds\":%.3f,"
                + "\"cpu_user\":%.3f,\"cpu_sys\":0,\"max_rss_kb\":%d%s,\"cpu_clock\":%.3f}%n",
            mode, records, bytes, seconds, cpuNanos() / 1e9, maxRssKb(), extra, clockCpuNanos / 1e9);
    }

    private static double now() {
        return System.nanoTime() / 1e9;
    }

    private static void produce(Map<String, String> args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args.get("bootstrap"));
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        String topic = args.get("topic");
        long records = Long.parseLong(args.get("records"));
        int size = Integer.parseInt(args.get("size"));
        long txnSize = Long.parseLong(args.getOrDefault("transaction-size", "0"));
        if (txnSize > 0) {
            // Unique per run: a reused id would fence, or wait for, an earlier run's producer.
            props.put("transactional.id", "java-bench-" + topic + "-" + ProcessHandle.current().pid());
        }
        AtomicLong failed = new AtomicLong();
        // Partitions written by the open transaction (callbacks run on the I/O thread,
        // all of a transaction's before its commitTransaction returns).
        Set<Integer> touched = ConcurrentHashMap.newKeySet();
        long partitionTxns = 0;
        long transactions = 0;
        double start;
        double end;
        long cpu;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            producer.partitionsFor(topic);
            if (txnSize > 0) {
                producer.initTransactions();
            }
            // Record i's value depends on i % 256 only: the 256 values are made before
            // the clock starts, as the other peers make theirs (send copies the value
            // into its batch, so one array serves every record that uses it).
            byte[][] values = new byte[256][size];
            for (int k = 0; k < 256; k++) {
                for (int j = 0; j < size; j++) {
                    values[k][j] = (byte) ((k + j) * 31 + 7);
                }
            }
            cpu = cpuNanos();
            start = now();
            for (long i = 0; i < records; i++) {
                if (txnSize > 0 && i % txnSize == 0) {
                    producer.beginTransaction();
                }
                byte[] value = values[(int) (i % 256)];
                producer.send(new ProducerRecord<>(topic, value), (metadata, error) -> {
                    if (error != null) {
                        failed.incrementAndGet();
                    } else if (txnSize > 0) {
                        touched.add(metadata.partition());
                    }
                });
                if (txnSize > 0 && ((i + 1) % txnSize == 0 || i + 1 == records)) {
                    producer.commitTransaction();
                    partitionTxns += touched.size();
                    touched.clear();
                    transactions++;
                }
            }
            producer.flush();
            end = now();
            cpu = cpuNanos() - cpu;
        }
        if (failed.get() > 0) {
            throw new IllegalStateException(failed.get() + " records failed");
        }
        String mode = "produce";
        String extra = "";
        if (txnSize > 0) {
            mode = "produce-txn";
            extra = String.format(",\"transaction_size\":%d,\"partitions_per_transaction\":%.2f",
                txnSize, (double) partitionTxns / transactions);
        }
        report(mode, records, records * size, end - start, extra, cpu);
    }

    private static Properties consumerProps(Map<String, String> args) {
        Properties props = new Properties();
        props.put("bootstrap.servers", args.get("bootstrap"));
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        props.put("auto.offset.reset", "earliest");
        props.put("fetch.max.wait.ms", "100");
        return props;
    }

    private static void consume(Map<String, String> args) throws Exception {
        Properties props = consumerProps(args);
        props.put("enable.auto.commit", "false");
        String topic = args.get("topic");
        int partitions = Integer.parseInt(args.get("partitions"));
        long records = Long.parseLong(args.get("records"));
        long count = 0;
        long bytes = 0;
        double start;
        double end;
        long cpu;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.partitionsFor(topic);
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                tps.add(new TopicPartition(topic, p));
            }
            cpu = cpuNanos();
            start = now();
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            double last = now();
            while (count < records) {
                var batch = consumer.poll(Duration.ofMillis(100));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    count++;
                    bytes += r.value() == null ? 0 : r.value().length;
                }
                if (!batch.isEmpty()) {
                    last = now();
                } else if (now() - last > STALL_TIMEOUT_S) {
                    throw new IllegalStateException("no records for 60 s at " + count);
                }
            }
            end = now();
            cpu = cpuNanos() - cpu;
        }
        report("consume", count, bytes, end - start, "", cpu);
    }

    private static void group(Map<String, String> args) throws Exception {
        Properties props = consumerProps(args);
        props.put("group.id", args.get("group"));
        props.put("group.protocol", "classic");
        int session = Integer.parseInt(args.getOrDefault("session-timeout-ms", "6000"));
        props.put("session.timeout.ms", Integer.toString(session));
        props.put("heartbeat.interval.ms", Integer.toString(session / 10));
        String topic = args.get("topic");
        long records = Long.parseLong(args.get("records"));
        long count = 0;
        long bytes = 0;
        double start;
        double end;
        Double first = null;
        long cpu;
        long idleSeconds = Long.parseLong(args.getOrDefault("idle-seconds", "0"));
        String idleField = "";
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.partitionsFor(topic);
            cpu = cpuNanos();
            start = now();
            consumer.subscribe(List.of(topic));
            double last = now();
            while (count < records) {
                var batch = consumer.poll(Duration.ofMillis(100));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    if (first == null) {
                        first = now() - start;
                    }
                    count++;
                    bytes += r.value() == null ? 0 : r.value().length;
                }
                if (!batch.isEmpty()) {
                    last = now();
                } else if (now() - last > STALL_TIMEOUT_S) {
                    throw new IllegalStateException("no records for 60 s at " + count);
                }
            }
            end = now();
            cpu = cpuNanos() - cpu;
            if (idleSeconds > 0) {
                long idleCpu = cpuNanos();
                double until = now() + idleSeconds;
                while (now() < until) {
                    consumer.poll(Duration.ofMillis(100));
                }
                idleField = String.format(",\"idle_seconds\":%d,\"idle_cpu_per_minute\":%.4f",
                    idleSeconds, (cpuNanos() - idleCpu) / 1e9 / idleSeconds * 60.0);
            }
        }
        String firstField = first == null ? "" : String.format(",\"first_record_seconds\":%.3f", first);
        report("group", count, bytes, end - start, firstField + idleField, cpu);
    }

    // --- assign ---------------------------------------------------------------------

    private static final int TOPICS = 10;
    private static final int OWNED_GENERATION = 7;

    private static String assignTopic(int t) {
        return "topic-" + t;
    }

    private static List<String> topicsOf(int i, boolean mixed) {
        List<String> topics = new ArrayList<>();
        if (mixed) {
            for (int k = 0; k < 5; k++) {
                topics.add(assignTopic((i + k) % TOPICS));
            }
        } else {
            for (int t = 0; t < TOPICS; t++) {
                topics.add(assignTopic(t));
            }
        }
        return topics;
    }

    private static String memberId(int i) {
        return String.format("consumer-%04d-5f8c2a1e-93d4-4b7a-a0c6-1d2e3f405162", i);
    }

    private static org.apache.kafka.clients.consumer.ConsumerPartitionAssignor newAssignor(String name) {
        return switch (name) {
            case "range" -> new org.apache.kafka.clients.consumer.RangeAssignor();
            case "roundrobin" -> new org.apache.kafka.clients.consumer.RoundRobinAssignor();
            case "sticky" -> new org.apache.kafka.clients.consumer.StickyAssignor();
            case "cooperative-sticky" -> new org.apache.kafka.clients.consumer.CooperativeStickyAssignor();
            default -> throw new IllegalArgumentException(name);
        };
    }

    // What member i sends in JoinGroup, as josefine's members build it (the Java
    // client's ConsumerCoordinator differs only in also sending the generation under
    // the eager protocol, which the assignors here do not read): the assignor's user
    // data after it was told of its last assignment (owned, in OWNED_GENERATION; none
    // if owned is null); owned partitions and the generation only under the
    // cooperative protocol (eager members revoked everything before joining).
    private static java.nio.ByteBuffer joinMetadata(String name, int i, boolean mixed,
                                                    List<TopicPartition> owned) {
        var assignor = newAssignor(name);
        boolean cooperative = name.equals("cooperative-sticky");
        List<String> topics = topicsOf(i, mixed);
        java.nio.ByteBuffer userData = null;
        if (owned != null) {
            assignor.onAssignment(
                new org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Assignment(owned),
                new org.apache.kafka.clients.consumer.ConsumerGroupMetadata(
                    "bench", OWNED_GENERATION, memberId(i), java.util.Optional.empty()));
            userData = assignor.subscriptionUserData(new java.util.HashSet<>(topics));
        } else if (cooperative) {
            userData = assignor.subscriptionUserData(new java.util.HashSet<>(topics));
        }
        List<TopicPartition> reported = cooperative && owned != null ? owned : List.of();
        int generation = cooperative && owned != null ? OWNED_GENERATION : -1;
        var subscription = new org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Subscription(
            topics, userData, reported, generation, java.util.Optional.empty());
        return org.apache.kafka.clients.consumer.internals.ConsumerProtocol.serializeSubscription(subscription);
    }

    // The leader's work, timed by the caller: deserialize, assign, serialize.
    private static Map<String, java.nio.ByteBuffer> lead(
            org.apache.kafka.clients.consumer.ConsumerPartitionAssignor assignor,
            Map<String, java.nio.ByteBuffer> joined, org.apache.kafka.common.Cluster cluster) {
        Map<String, org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Subscription> subscriptions =
            new HashMap<>();
        for (var e : joined.entrySet()) {
            subscriptions.put(e.getKey(),
                org.apache.kafka.clients.consumer.internals.ConsumerProtocol.deserializeSubscription(
                    e.getValue().duplicate()));
        }
        var plan = assignor.assign(cluster,
            new org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.GroupSubscription(subscriptions));
        Map<String, java.nio.ByteBuffer> out = new HashMap<>();
        for (var e : plan.groupAssignment().entrySet()) {
            out.put(e.getKey(),
                org.apache.kafka.clients.consumer.internals.ConsumerProtocol.serializeAssignment(e.getValue()));
        }
        return out;
    }

    private static Map<String, java.nio.ByteBuffer> joined(String name, int from, int to, boolean mixed,
                                                          Map<String, List<TopicPartition>> owned) {
        Map<String, java.nio.ByteBuffer> joined = new HashMap<>();
        for (int i = from; i < to; i++) {
            joined.put(memberId(i), joinMetadata(name, i, mixed, owned == null ? null : owned.get(memberId(i))));
        }
        return joined;
    }

    private static Map<String, List<TopicPartition>> decoded(Map<String, java.nio.ByteBuffer> plan) {
        Map<String, List<TopicPartition>> out = new HashMap<>();
        for (var e : plan.entrySet()) {
            out.put(e.getKey(), org.apache.kafka.clients.consumer.internals.ConsumerProtocol
                .deserializeAssignment(e.getValue().duplicate()).partitions());
        }
        return out;
    }

    private static void assign(Map<String, String> args) {
        int members = Integer.parseInt(args.get("members"));
        int perTopic = Integer.parseInt(args.get("partitions-per-topic"));
        int samples = Integer.parseInt(args.getOrDefault("samples", "10"));
        double warmUp = Double.parseDouble(args.getOrDefault("warm-up-seconds", "3"));
        var node = new org.apache.kafka.common.Node(0, "localhost", 9092);
        List<org.apache.kafka.common.PartitionInfo> infos = new ArrayList<>();
        for (int t = 0; t < TOPICS; t++) {
            for (int p = 0; p < perTopic; p++) {
                infos.add(new org.apache.kafka.common.PartitionInfo(assignTopic(t), p, node,
                    new org.apache.kafka.common.Node[] {node}, new org.apache.kafka.common.Node[] {node}));
            }
        }
        var cluster = new org.apache.kafka.common.Cluster("bench", List.of(node), infos, Set.of(), Set.of());
        for (String name : List.of("range", "roundrobin", "sticky", "cooperative-sticky")) {
            var assignor = newAssignor(name);
            var first = joined(name, 0, members, false, null);
            var balanced = decoded(lead(assignor, first, cluster));
            var mixedOwned = decoded(lead(assignor, joined(name, 0, members, true, null), cluster));
            Map<String, Map<String, java.nio.ByteBuffer>> cases = new java.util.LinkedHashMap<>();
            cases.put("first", first);
            cases.put("again", joined(name, 0, members, false, balanced));
            cases.put("leave", joined(name, 1, members, false, balanced));
            cases.put("join", joined(name, 0, members + 1, false, balanced));
            cases.put("mixed", joined(name, 0, members, true, mixedOwned));
            // Warm-up as criterion's for josefine: each case runs for WARM_UP_S (at
            // least 3 times) before its samples, so the JIT has compiled what it runs.
            for (var c : cases.entrySet()) {
                double[] ms = new double[samples];
                double warmUntil = now() + warmUp;
                for (int k = 0; k < 3 || now() < warmUntil; k++) {
                    lead(assignor, c.getValue(), cluster);
                }
                for (int k = 0; k < samples; k++) {
                    long t0 = System.nanoTime();
                    lead(assignor, c.getValue(), cluster);
                    ms[k] = (System.nanoTime() - t0) / 1e6;
                }
                java.util.Arrays.sort(ms);
                System.out.printf("{\"client\":\"java\",\"mode\":\"assign\",\"assignor\":\"%s\",\"case\":\"%s\","
                        + "\"members\":%d,\"partitions\":%d,\"median_ms\":%.3f,\"min_ms\":%.3f}%n",
                    name, c.getKey(), members, TOPICS * perTopic, ms[samples / 2], ms[0]);
            }
        }
    }
}
