// The Java client (kafka-clients 4.4, scripts/kafka/pom.xml) as an interop peer for the
// tests: scripts/test.sh compiles it into build/kafka/peer. One JSON object per line on
// stdout; bytes as lowercase hex, null as null.
//
//   produce --bootstrap B --topic T --count N --partitions P --compression C
//       record i goes to partition i % P with timestamp 1700000000000 + i, key null when
//       i % 5 == 0 else "key-i", value null when i % 7 == 3 else "value-i-C", headers
//       h="a<i>", h="b", empty=null (a duplicate key and a null value, in that order);
//       prints {"produced": N} once every record is acknowledged
//   consume --bootstrap B --topic T --count N
//       reads every partition from the earliest offset until N records, printing
//       {"p":..,"o":..,"t":..,"k":..,"v":..,"h":[["name",value],...]} for each
//   group --bootstrap B --topic T --group G --assignor range|roundrobin|cooperative-sticky
//         [--protocol classic|consumer]
//       a group member (classic or KIP-848 protocol), as tests/interop/rdkafka.py's group mode:
//       {"assigned": [...]}, {"revoked": [...]}, {"partition": p, "offset": o}; leaves
//       after --idle seconds without a record once it had one, or after --max seconds

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class JavaPeer {
    private static final long BASE_TIMESTAMP = 1_700_000_000_000L;

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
        }
        switch (argv[0]) {
            case "produce" -> produce(args);
            case "consume" -> consume(args);
            case "group" -> group(args);
            default -> throw new IllegalArgumentException("unknown command " + argv[0]);
        }
    }

    private static byte[] utf8(String s) {
        return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
    }

    private static String hex(byte[] bytes) {
        if (bytes == null) {
            return "null";
        }
        StringBuilder out = new StringBuilder("\"");
        for (byte b : bytes) {
            out.append(String.format("%02x", b));
        }
        return out.append('"').toString();
    }

    private static void produce(Map<String, String> args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args.get("bootstrap"));
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        props.put("compression.type", args.get("compression"));
        props.put("linger.ms", "5");
        props.put("acks", "all");
        String topic = args.get("topic");
        int count = Integer.parseInt(args.get("count"));
        int partitions = Integer.parseInt(args.get("partitions"));
        String compression = args.get("compression");
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            List<Future<?>> sent = new ArrayList<>();
            for (int i = 0; i < count; i++) {
                byte[] key = i % 5 == 0 ? null : utf8("key-" + i);
                byte[] value = i % 7 == 3 ? null : utf8("value-" + i + "-" + compression);
                List<Header> headers = List.of(
                    new RecordHeader("h", utf8("a" + i)),
                    new RecordHeader("h", utf8("b")),
                    new RecordHeader("empty", (byte[]) null));
                sent.add(producer.send(new ProducerRecord<>(
                    topic, i % partitions, BASE_TIMESTAMP + i, key, value, headers)));
            }
            for (Future<?> f : sent) {
                f.get();
            }
        }
        System.out.println("{\"produced\": " + count + "}");
    }

    private static Properties consumerProps(Map<String, String> args) {
        Properties props = new Properties();
        props.put("bootstrap.servers", args.get("bootstrap"));
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        props.put("auto.offset.reset", "earliest");
        props.put("fetch.max.wait.ms", "100");
        if (args.containsKey("isolation")) {
            props.put("isolation.level", args.get("isolation"));
        }
        return props;
    }

    private static void consume(Map<String, String> args) {
        Properties props = consumerProps(args);
        props.put("enable.auto.commit", "false");
        String topic = args.get("topic");
        int count = Integer.parseInt(args.get("count"));
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            int seen = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    StringBuilder headers = new StringBuilder("[");
                    for (Header h : r.headers()) {
                        if (headers.length() > 1) {
                            headers.append(',');
                        }
                        headers.append("[\"").append(h.key()).append("\",").append(hex(h.value())).append(']');
                    }
                    headers.append(']');
                    System.out.println("{\"p\":" + r.partition() + ",\"o\":" + r.offset()
                        + ",\"t\":" + r.timestamp() + ",\"k\":" + hex(r.key()) + ",\"v\":" + hex(r.value())
                        + ",\"h\":" + headers + "}");
                    seen++;
                }
            }
        }
    }

    private static String list(Collection<TopicPartition> partitions) {
        List<Integer> ids = new ArrayList<>();
        for (TopicPartition tp : partitions) {
            ids.add(tp.partition());
        }
        ids.sort(null);
        List<String> text = new ArrayList<>();
        for (Integer id : ids) {
            text.add(id.toString());
        }
        return "[" + String.join(", ", text) + "]";
    }

    private static void group(Map<String, String> args) {
        Properties props = consumerProps(args);
        String assignor = switch (args.getOrDefault("assignor", "range")) {
            case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
            case "roundrobin" -> "org.apache.kafka.clients.consumer.RoundRobinAssignor";
            case "cooperative-sticky" -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
            default -> throw new IllegalArgumentException("assignor " + args.get("assignor"));
        };
        props.put("group.id", args.get("group"));
        if (args.getOrDefault("protocol", "classic").equals("consumer")) {
            // KIP-848: the broker owns the assignor, session and heartbeat settings.
            props.put("group.protocol", "consumer");
        } else {
            props.put("group.protocol", "classic");
            props.put("partition.assignment.strategy", assignor);
            props.put("session.timeout.ms", "6000");
            props.put("heartbeat.interval.ms", "500");
        }
        props.put("enable.auto.commit", "true");
        props.put("auto.commit.interval.ms", "200");
        double idle = Double.parseDouble(args.getOrDefault("idle", "4"));
        double max = Double.parseDouble(args.getOrDefault("max", "60"));
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(args.get("topic")), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    System.out.println("{\"assigned\": " + list(partitions) + "}");
                }

                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    System.out.println("{\"revoked\": " + list(partitions) + "}");
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> partitions) {
                    System.out.println("{\"revoked\": " + list(partitions) + "}");
                }
            });
            long started = System.currentTimeMillis();
            long last = -1;
            while (System.currentTimeMillis() - started < max * 1000) {
                var records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) {
                    if (last >= 0 && System.currentTimeMillis() - last > idle * 1000) {
                        break;
                    }
                    continue;
                }
                last = System.currentTimeMillis();
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    System.out.println("{\"partition\": " + r.partition() + ", \"offset\": " + r.offset() + "}");
                }
            }
        }
        System.out.flush();
    }
}
