"""librdkafka (through confluent-kafka) as the other side of interop tests.

Subcommands print JSON on stdout:
  partitions --bootstrap B --topic T --partitions N < keys.txt
      where librdkafka's murmur2_random partitioner puts each key (one per line):
      {"key": partition, ...}. It produces the keys to T to learn the placement.
  consume --bootstrap B --topic T --partitions N --count C
      reads C records from partitions 0..N-1 from the beginning (no group) and prints
      one JSON object per record: partition, offset, key, value, headers.
"""
import argparse
import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition


def partitions(args):
    keys = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    placed = {}

    def report(err, msg):
        if err is not None:
            raise SystemExit(f"delivery failed: {err}")
        placed[msg.key().decode()] = msg.partition()

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
    })
    for key in keys:
        producer.produce(args.topic, key=key.encode(), value=b"x", on_delivery=report)
        producer.poll(0)
    if producer.flush(30) != 0:
        raise SystemExit("librdkafka could not deliver every key within 30 s")
    json.dump(placed, sys.stdout)


def consume(args):
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "josefine-interop",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 100,
    })
    consumer.assign([TopicPartition(args.topic, p, -2) for p in range(args.partitions)])
    seen = 0
    idle = 0
    while seen < args.count:
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            if idle > 30:
                raise SystemExit(f"librdkafka read only {seen} of {args.count} records")
            continue
        idle = 0
        if msg.error():
            raise SystemExit(f"consume error: {msg.error()}")
        headers = [[k, None if v is None else v.decode()] for k, v in (msg.headers() or [])]
        print(json.dumps({
            "partition": msg.partition(),
            "offset": msg.offset(),
            "key": None if msg.key() is None else msg.key().decode(),
            "value": None if msg.value() is None else msg.value().decode(),
            "headers": headers,
        }))
        seen += 1
    consumer.close()


def group(args):
    """A group member: prints {"assigned": [...]} for partitions it gets and
    {"revoked": [...]} for partitions it gives up or loses (with cooperative-sticky
    these are the increments, with eager protocols the whole assignment), and
    {"partition": p, "offset": o} per record; exits after `--idle` seconds without a
    record once it has had an assignment, or after `--max` seconds. confluent-kafka
    applies each (incremental) assignment itself after the callback."""
    import time

    def on_assign(consumer, partitions):
        print(json.dumps({"assigned": sorted(p.partition for p in partitions)}), flush=True)

    def on_revoke(consumer, partitions):
        print(json.dumps({"revoked": sorted(p.partition for p in partitions)}), flush=True)

    config = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 200,
        "fetch.wait.max.ms": 100,
        "enable.partition.eof": False,
    }
    if args.protocol == "consumer":
        # KIP-848: the broker owns the assignor, session and heartbeat settings.
        config["group.protocol"] = "consumer"
    else:
        config.update({
            "partition.assignment.strategy": args.assignor,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        })
    consumer = Consumer(config)
    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    started = time.time()
    last = None
    while time.time() - started < args.max:
        msg = consumer.poll(0.2)
        if msg is None:
            if last is not None and time.time() - last > args.idle:
                break
            continue
        if msg.error():
            raise SystemExit(f"consume error: {msg.error()}")
        last = time.time()
        print(json.dumps({"partition": msg.partition(), "offset": msg.offset()}), flush=True)
    consumer.close()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("partitions")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, required=True)
    c = sub.add_parser("consume")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, required=True)
    c.add_argument("--count", type=int, required=True)
    g = sub.add_parser("group")
    g.add_argument("--bootstrap", required=True)
    g.add_argument("--topic", required=True)
    g.add_argument("--group", required=True)
    g.add_argument("--assignor", default="range")
    g.add_argument("--protocol", choices=["classic", "consumer"], default="classic")
    g.add_argument("--idle", type=float, default=4.0)
    g.add_argument("--max", type=float, default=40.0)
    args = parser.parse_args()
    {"partitions": partitions, "consume": consume, "group": group}[args.command](args)


if __name__ == "__main__":
    main()
