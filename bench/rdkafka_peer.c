/*
 * rdkafka_peer: a small whole-process benchmark peer for Josefine, linked
 * against the librdkafka shared object bundled in the confluent-kafka wheel
 * (librdkafka 2.16). Build it with bench/build-peer.sh.
 *
 *   rdkafka_peer produce --bootstrap HOST:PORT --topic T --records N --size BYTES
 *                [--keyed] [--acks all|1|0] [--compression none|gzip|snappy|lz4|zstd]
 *                [--linger-ms MS] [--batch-size BYTES] [--batch-num-messages N]
 *                [--idempotence true|false] [--transaction-size N] [--no-warmup]
 *                [--set NAME=VALUE]...
 *   rdkafka_peer consume --bootstrap HOST:PORT --topic T --partitions P --records N
 *                [--no-warmup] [--set NAME=VALUE]...
 *   rdkafka_peer group --bootstrap HOST:PORT --topic T --group G --records N
 *                [--session-timeout-ms MS] [--assignor range|roundrobin|cooperative-sticky]
 *                [--idle-seconds S] [--no-warmup] [--set NAME=VALUE]...
 *   rdkafka_peer latency --bootstrap HOST:PORT --topic T --group G --records N
 *                [--partitions P] [--rate R] [--size BYTES] [--warmup-ms MS]
 *                [--linger-ms MS] [--fetch-wait-ms MS] [--set NAME=VALUE]...
 * latency: end-to-end latency, as `josefine bench latency` measures it. One producer
 * (acks=all, idempotence on, linger MS) sends record i to partition i % P (default
 * 6) at R records a second (default 10,000), each at its due time; its value (BYTES,
 * default 100, at least 9) starts with the send time (CLOCK_MONOTONIC ns,
 * little-endian, taken just before rd_kafka_produce) and a flag byte, 1 for a
 * measured record. A high-level consumer in group G (the group mode's settings,
 * fetch.wait.max.ms MS, default 100) polls on its own thread and takes each measured
 * record's latency as its receive time minus its send time. Warm-up records (flag
 * 0) go out until the consumer received its first record and --warmup-ms (default
 * 2000) more passed; then N measured records. Its line adds "rate", "partitions",
 * "linger_ms", "fetch_wait_ms" and the nearest-rank "p50_ms", "p99_ms", "p999_ms",
 * "max_ms"; "seconds" spans the measured sends.
 * consume assigns partitions 0..P-1 directly from the beginning (no group join,
 * nothing committed). group is a high-level consumer subscribed to T in group G:
 * auto.offset.reset=earliest, auto commit every 1000 ms of the offsets stored per
 * record returned (enable.auto.offset.store), session.timeout.ms MS (default 6000),
 * heartbeat.interval.ms MS/10, one assignor (default range, the one librdkafka's
 * default "range,roundrobin" picks); it closes the consumer (final commit, leave
 * group) after the clock stops. Use a fresh group id per run: a group with committed
 * offsets resumes from them, and finds nothing left to read. --idle-seconds S: after
 * the N-th record, keep polling for S seconds with nothing left to read and add
 * "idle_seconds":S,"idle_cpu_per_minute":C (CPU seconds a minute meanwhile).
 * --set passes any librdkafka configuration property, applied after the defaults.
 * produce --transaction-size N produces in transactions of N records (the last may
 * hold fewer), with transactional.id "rdkafka-bench-<topic>-<pid>":
 * rd_kafka_init_transactions before the clock starts (after the warm-up), then
 * rd_kafka_begin_transaction, N records, rd_kafka_commit_transaction (which flushes
 * and serves their delivery reports) until all are sent; the clock stops when the
 * last commit returns. Its mode is "produce-txn", and it adds "transaction_size":N
 * and "partitions_per_transaction":F (partitions written per transaction, the mean,
 * from the delivery reports) after "seconds".
 * By default all modes warm up before the clock starts: two metadata requests for
 * the topic, so that the connection to the advertised broker is up, the partition
 * leaders are known and (idempotent producer) the producer id was acquired. See
 * warm_up() for why: without it librdkafka loses ~0.5 s to fixed start-up timers.
 * --no-warmup skips it (the clock then includes that start-up). The group join
 * itself is never warmed up: it is part of what group mode measures.
 *
 * Each mode prints exactly one JSON line on stdout at the end:
 *   {"client":"librdkafka","mode":"produce","records":N,"bytes":B,"seconds":S,
 *    "cpu_user":U,"cpu_sys":Y,"max_rss_kb":K}
 * bytes is the sum of value bytes; seconds spans the first produce call (or the
 * assign, or the subscribe) to the last delivery report (or the N-th record
 * received); cpu and rss are getrusage(RUSAGE_SELF) of the whole process (all
 * librdkafka threads) after the client handle was destroyed. group mode adds
 * "first_record_seconds":F after "seconds": subscribe to the first record, which
 * includes the group join (null if no record came). Progress goes to stderr, at most
 * once a second.
 *
 * Value of record i (0-based), byte j: (uint8_t)((i + j) * 31 + 7).
 * Key of record i with --keyed: "key-<i>" (decimal, no padding).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * The subset of librdkafka's public C API used here, declared by hand because
 * the wheel ships no headers. Prototypes, enum values, macros and the layouts of
 * rd_kafka_message_t and rd_kafka_topic_partition_list_t (group mode: subscribe,
 * rebalance callback, incremental assign, rd_kafka_error_t; produce: the
 * transactional API) follow librdkafka's public header src/rdkafka.h as of v2.15.0
 * (RD_KAFKA_VERSION 0x020f00ff; identical on its master branch leading to 2.16).
 * None of these changed in 2.x; the wheel's runtime reports 2.16.0, and main()
 * refuses a runtime other than 2.x.
 * ------------------------------------------------------------------------ */
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
typedef struct rd_kafka_error_s rd_kafka_error_t; /* opaque */
/* Only handled through pointers returned by librdkafka; layout not needed. */
typedef struct rd_kafka_topic_partition_s rd_kafka_topic_partition_t;
/* Public layout in rdkafka.h (only cnt is read here, in the rebalance callback). */
typedef struct rd_kafka_topic_partition_list_s {
    int cnt;                           /* current number of elements */
    int size;                          /* allocated size */
    rd_kafka_topic_partition_t *elems; /* element array */
} rd_kafka_topic_partition_list_t;
struct rd_kafka_metadata; /* only passed back to rd_kafka_metadata_destroy() */

typedef enum rd_kafka_type_t { RD_KAFKA_PRODUCER = 0, RD_KAFKA_CONSUMER = 1 } rd_kafka_type_t;

/* rd_kafka_resp_err_t is an int-sized enum; only the values used are named. */
typedef enum {
    RD_KAFKA_RESP_ERR__PARTITION_EOF = -191,
    RD_KAFKA_RESP_ERR__QUEUE_FULL = -184,
    RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS = -175, /* rebalance_cb */
    RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS = -174, /* rebalance_cb */
    RD_KAFKA_RESP_ERR__FATAL = -150,
    RD_KAFKA_RESP_ERR_NO_ERROR = 0,
} rd_kafka_resp_err_t;

typedef enum {
    RD_KAFKA_CONF_UNKNOWN = -2,
    RD_KAFKA_CONF_INVALID = -1,
    RD_KAFKA_CONF_OK = 0,
} rd_kafka_conf_res_t;

#define RD_KAFKA_PARTITION_UA ((int32_t)-1)
#define RD_KAFKA_MSG_F_COPY 0x2
#define RD_KAFKA_OFFSET_BEGINNING -2

typedef struct rd_kafka_message_s {
    rd_kafka_resp_err_t err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

int rd_kafka_version(void);
const char *rd_kafka_version_str(void);
const char *rd_kafka_err2str(rd_kafka_resp_err_t err);
rd_kafka_resp_err_t rd_kafka_last_error(void);
rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size);
const char *rd_kafka_error_string(const rd_kafka_error_t *error);
void rd_kafka_error_destroy(rd_kafka_error_t *error);

rd_kafka_conf_t *rd_kafka_conf_new(void);
rd_kafka_conf_res_t rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                                      char *errstr, size_t errstr_size);
void rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf,
                                 void (*dr_msg_cb)(rd_kafka_t *rk,
                                                   const rd_kafka_message_t *rkmessage,
                                                   void *opaque));
void rd_kafka_conf_set_rebalance_cb(rd_kafka_conf_t *conf,
                                    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                                         rd_kafka_topic_partition_list_t *partitions,
                                                         void *opaque));

rd_kafka_t *rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                         size_t errstr_size);
void rd_kafka_destroy(rd_kafka_t *rk);
int rd_kafka_poll(rd_kafka_t *rk, int timeout_ms);
rd_kafka_resp_err_t rd_kafka_flush(rd_kafka_t *rk, int timeout_ms);
int rd_kafka_outq_len(rd_kafka_t *rk);

rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic,
                                     rd_kafka_topic_conf_t *conf);
void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);
int rd_kafka_produce(rd_kafka_topic_t *rkt, int32_t partition, int msgflags, void *payload,
                     size_t len, const void *key, size_t keylen, void *msg_opaque);
rd_kafka_error_t *rd_kafka_init_transactions(rd_kafka_t *rk, int timeout_ms);
rd_kafka_error_t *rd_kafka_begin_transaction(rd_kafka_t *rk);
rd_kafka_error_t *rd_kafka_commit_transaction(rd_kafka_t *rk, int timeout_ms);

rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int size);
void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *rkparlist);
rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(
    rd_kafka_topic_partition_list_t *rktparlist, const char *topic, int32_t partition);
rd_kafka_resp_err_t rd_kafka_topic_partition_list_set_offset(
    rd_kafka_topic_partition_list_t *rktparlist, const char *topic, int32_t partition,
    int64_t offset);
rd_kafka_resp_err_t rd_kafka_metadata(rd_kafka_t *rk, int all_topics, rd_kafka_topic_t *only_rkt,
                                      const struct rd_kafka_metadata **metadatap, int timeout_ms);
void rd_kafka_metadata_destroy(const struct rd_kafka_metadata *metadata);
rd_kafka_resp_err_t rd_kafka_poll_set_consumer(rd_kafka_t *rk);
rd_kafka_resp_err_t rd_kafka_assign(rd_kafka_t *rk,
                                    const rd_kafka_topic_partition_list_t *partitions);
rd_kafka_resp_err_t rd_kafka_subscribe(rd_kafka_t *rk,
                                       const rd_kafka_topic_partition_list_t *topics);
rd_kafka_error_t *rd_kafka_incremental_assign(rd_kafka_t *rk,
                                              const rd_kafka_topic_partition_list_t *partitions);
rd_kafka_error_t *rd_kafka_incremental_unassign(
    rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *partitions);
const char *rd_kafka_rebalance_protocol(rd_kafka_t *rk); /* "NONE", "EAGER", "COOPERATIVE" */
rd_kafka_message_t *rd_kafka_consumer_poll(rd_kafka_t *rk, int timeout_ms);
void rd_kafka_message_destroy(rd_kafka_message_t *rkmessage);
rd_kafka_resp_err_t rd_kafka_consumer_close(rd_kafka_t *rk);

/* ------------------------------------------------------------------------ */

#define STALL_TIMEOUT_S 60.0

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "rdkafka_peer: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void usage(void) {
    fprintf(stderr,
            "usage:\n"
            "  rdkafka_peer produce --bootstrap HOST:PORT --topic T --records N --size BYTES\n"
            "               [--keyed] [--acks all|1|0] [--compression none|gzip|snappy|lz4|zstd]\n"
            "               [--linger-ms MS] [--batch-size BYTES] [--batch-num-messages N]\n"
            "               [--idempotence true|false] [--transaction-size N] [--no-warmup]\n"
            "               [--set NAME=VALUE]...\n"
            "  rdkafka_peer consume --bootstrap HOST:PORT --topic T --partitions P --records N\n"
            "               [--no-warmup] [--set NAME=VALUE]...\n"
            "  rdkafka_peer group --bootstrap HOST:PORT --topic T --group G --records N\n"
            "               [--session-timeout-ms MS] [--assignor range|roundrobin|cooperative-sticky]\n"
            "               [--idle-seconds S]\n"
            "               [--no-warmup] [--set NAME=VALUE]...\n"
            "  rdkafka_peer latency --bootstrap HOST:PORT --topic T --group G --records N\n"
            "               [--partitions P] [--rate R] [--size BYTES] [--warmup-ms MS]\n"
            "               [--linger-ms MS] [--fetch-wait-ms MS] [--set NAME=VALUE]...\n"
            "--set passes any librdkafka property (e.g. debug=eos), after the defaults.\n");
    exit(2);
}

static long long parse_count(const char *flag, const char *v, long long min) {
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min) die("bad value for %s", flag);
    return n;
}

static void set_conf(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "rdkafka_peer: config %s=%s: %s\n", name, value, errstr);
        exit(1);
    }
}

/* This process's CPU time so far, user and system, all threads. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* extra: "" or further JSON members, each starting with a comma, placed after seconds. */
static void print_result(const char *mode, long long records, long long bytes, double seconds,
                         const char *extra) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("{\"client\":\"librdkafka\",\"mode\":\"%s\",\"records\":%lld,\"bytes\":%lld,"
           "\"seconds\":%.6f%s,\"cpu_user\":%.6f,\"cpu_sys\":%.6f,\"max_rss_kb\":%ld}\n",
           mode, records, bytes, seconds, extra, user, sys, ru.ru_maxrss);
    fflush(stdout);
}

struct opts {
    const char *mode;
    const char *bootstrap;
    const char *topic;
    long long records;
    long long size;
    long long partitions;
    int keyed;
    const char *acks;
    const char *compression;
    const char *linger_ms;
    const char *batch_size;
    const char *batch_num_messages;
    const char *idempotence;
    long long transaction_size; /* 0: no transactions */
    const char *group;
    long long session_timeout_ms;
    long long idle_seconds;
    const char *assignor;
    long long rate;
    long long warmup_ms;
    long long fetch_wait_ms;
    int warmup;
    int n_extra;
    const char *extra[32]; /* --set NAME=VALUE, applied last */
};

static struct opts parse_args(int argc, char **argv) {
    struct opts o;
    memset(&o, 0, sizeof o);
    o.records = -1;
    o.size = -1;
    o.partitions = -1;
    o.acks = "all";
    o.compression = "none";
    o.linger_ms = "5";
    o.idempotence = "true";
    o.session_timeout_ms = 6000;
    o.assignor = "range";
    o.rate = 10000;
    o.warmup_ms = 2000;
    o.fetch_wait_ms = 100;
    o.warmup = 1;
    if (argc < 2) usage();
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--keyed") == 0) {
            o.keyed = 1;
            continue;
        }
        if (strcmp(a, "--warmup") == 0 || strcmp(a, "--no-warmup") == 0) { /* all modes */
            o.warmup = strcmp(a, "--warmup") == 0;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) usage();
        if (i + 1 >= argc) die("missing value for %s", a);
        const char *v = argv[++i];
        if (strcmp(a, "--bootstrap") == 0) o.bootstrap = v;
        else if (strcmp(a, "--topic") == 0) o.topic = v;
        else if (strcmp(a, "--records") == 0) o.records = parse_count(a, v, 1);
        else if (strcmp(a, "--size") == 0) o.size = parse_count(a, v, 0);
        else if (strcmp(a, "--partitions") == 0) o.partitions = parse_count(a, v, 1);
        else if (strcmp(a, "--acks") == 0) o.acks = v;
        else if (strcmp(a, "--compression") == 0) o.compression = v;
        else if (strcmp(a, "--linger-ms") == 0) o.linger_ms = v;
        else if (strcmp(a, "--batch-size") == 0) o.batch_size = v;
        else if (strcmp(a, "--batch-num-messages") == 0) o.batch_num_messages = v;
        else if (strcmp(a, "--idempotence") == 0) o.idempotence = v;
        else if (strcmp(a, "--transaction-size") == 0) o.transaction_size = parse_count(a, v, 1);
        else if (strcmp(a, "--group") == 0) o.group = v;
        else if (strcmp(a, "--session-timeout-ms") == 0) o.session_timeout_ms = parse_count(a, v, 1);
        else if (strcmp(a, "--idle-seconds") == 0) o.idle_seconds = parse_count(a, v, 0);
        else if (strcmp(a, "--assignor") == 0) o.assignor = v;
        else if (strcmp(a, "--rate") == 0) o.rate = parse_count(a, v, 1);
        else if (strcmp(a, "--warmup-ms") == 0) o.warmup_ms = parse_count(a, v, 0);
        else if (strcmp(a, "--fetch-wait-ms") == 0) o.fetch_wait_ms = parse_count(a, v, 0);
        else if (strcmp(a, "--set") == 0) {
            if (o.n_extra == 32 || !strchr(v, '=')) die("bad --set %s (NAME=VALUE, at most 32)", v);
            o.extra[o.n_extra++] = v;
        }
        else die("unknown option %s", a);
    }
    if (!o.bootstrap || !o.topic || o.records < 1) usage();
    if (strcmp(o.mode, "produce") == 0) {
        if (o.size < 0) usage();
        if (strcmp(o.acks, "all") == 0) o.acks = "-1";
        else if (strcmp(o.acks, "1") != 0 && strcmp(o.acks, "0") != 0 && strcmp(o.acks, "-1") != 0)
            die("--acks must be all, 1 or 0, not %s", o.acks);
        if (strcmp(o.idempotence, "true") != 0 && strcmp(o.idempotence, "false") != 0)
            die("--idempotence must be true or false, not %s", o.idempotence);
        if (o.transaction_size > 0 && (strcmp(o.idempotence, "true") != 0 || strcmp(o.acks, "-1") != 0))
            die("%s", "--transaction-size needs --idempotence true and --acks all");
    } else if (strcmp(o.mode, "consume") == 0) {
        if (o.partitions < 1) usage();
    } else if (strcmp(o.mode, "latency") == 0) {
        if (!o.group || !*o.group) usage();
        if (o.size < 0) o.size = 100;
        if (o.partitions < 0) o.partitions = 6;
        if (o.size < 9) die("%s", "--size must be at least 9 in latency mode");
    } else if (strcmp(o.mode, "group") == 0) {
        if (!o.group || !*o.group) usage();
        if (strcmp(o.assignor, "range") != 0 && strcmp(o.assignor, "roundrobin") != 0 &&
            strcmp(o.assignor, "cooperative-sticky") != 0)
            die("--assignor must be range, roundrobin or cooperative-sticky, not %s", o.assignor);
    } else {
        usage();
    }
    return o;
}

/* --set NAME=VALUE pairs, applied after this program's defaults. */
static void set_extra(rd_kafka_conf_t *conf, const struct opts *o) {
    for (int i = 0; i < o->n_extra; i++) {
        char name[256];
        const char *eq = strchr(o->extra[i], '=');
        size_t n = (size_t)(eq - o->extra[i]);
        if (n >= sizeof name) die("--set name too long: %s", o->extra[i]);
        memcpy(name, o->extra[i], n);
        name[n] = '\0';
        set_conf(conf, name, eq + 1);
    }
}

/* Warm-up (default; --no-warmup skips it): two metadata round trips for the topic
 * before the clock starts. The first, on the bootstrap connection, teaches
 * librdkafka the advertised broker and the partition leaders (librdkafka then drops
 * the bootstrap connection and opens one to the advertised broker ~50 ms later);
 * the second is answered over that new connection, so it is up when the clock
 * starts. Without this, both modes lose ~0.5 s to fixed librdkafka timers at
 * start-up: the idempotent producer's PID request finds no broker up and retries
 * after 500 ms, and an assigned partition whose leader is not yet known retries its
 * offset query after 500 ms. The stderr summary shows the latency to the first
 * delivery report / record, which stays at a few ms when the warm-up did its job. */
static void warm_up(rd_kafka_t *rk, rd_kafka_topic_t *rkt) {
    for (int i = 0; i < 2; i++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (err) die("warm-up metadata request: %s", rd_kafka_err2str(err));
        rd_kafka_metadata_destroy(md);
    }
}

/* ---------------------------------- produce ------------------------------ */

/* Partitions counted in partitions_per_transaction: the benchmark topics have 6. */
#define MAX_TXN_PARTITIONS 4096

struct produce_state {
    long long records;
    long long delivered;
    long long failed;
    double t_first_report;
    double t_last_report;
    rd_kafka_resp_err_t first_err;
    /* Transactions: the current one's number (from 1), and per partition the number of
     * the last one that wrote to it; partition-transactions counts each pair once. */
    long long txn;
    long long txn_of_partition[MAX_TXN_PARTITIONS];
    long long partition_txns;
};

static struct produce_state P;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (P.delivered + P.failed == 0) P.t_first_report = now_s();
    if (P.txn > 0 && m->partition >= 0 && m->partition < MAX_TXN_PARTITIONS &&
        P.txn_of_partition[m->partition] != P.txn) {
        P.txn_of_partition[m->partition] = P.txn;
        P.partition_txns++;
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        P.delivered++;
    } else {
        if (P.failed == 0) P.first_err = m->err;
        P.failed++;
    }
    if (P.delivered + P.failed == P.records) P.t_last_report = now_s();
}

/* Produces record i (value pattern + i % 256, key "key-<i>" when keyed), serving
 * delivery reports while librdkafka's local queue is full. */
static void produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const struct opts *o,
                        unsigned char *pattern, long long i, char *key, size_t key_cap) {
    char errstr[512];
    void *value = pattern + (i & 255);
    const void *k = NULL;
    size_t klen = 0;
    if (o->keyed) {
        klen = (size_t)snprintf(key, key_cap, "key-%lld", i);
        k = key;
    }
    double stalled_since = 0;
    long long done_then = 0;
    while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, value,
                            (size_t)o->size, k, klen, NULL) == -1) {
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (err == RD_KAFKA_RESP_ERR__FATAL) rd_kafka_fatal_error(rk, errstr, sizeof errstr);
            else snprintf(errstr, sizeof errstr, "%s", rd_kafka_err2str(err));
            die("rd_kafka_produce: %s", errstr);
        }
        /* Local queue full: serve delivery reports, which frees room. */
        rd_kafka_poll(rk, 10);
        double t = now_s();
        long long done = P.delivered + P.failed;
        if (stalled_since == 0 || done != done_then) {
            stalled_since = t;
            done_then = done;
        } else if (t - stalled_since > STALL_TIMEOUT_S) {
            die("%s", "no delivery progress for 60 s while the queue is full");
        }
    }
}

/* Dies with the message of a transactional call's error (a benchmark does not abort
 * and retry: the run does not count). */
static void txn_check(const char *call, rd_kafka_error_t *error) {
    if (!error) return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", call, rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    die("%s", msg);
}

/* Commits the open transaction: flushes (serving the delivery reports of its
 * records), then ends it. Every record produced so far must have its report after. */
static void commit_transaction(rd_kafka_t *rk, long long produced) {
    txn_check("rd_kafka_commit_transaction", rd_kafka_commit_transaction(rk, 60000));
    if (P.delivered + P.failed != produced)
        die("%s", "commit returned before every record of the transaction had its report");
}

static int produce_mode(const struct opts *o) {
    char errstr[512];
    char txn_id[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set_conf(conf, "bootstrap.servers", o->bootstrap);
    set_conf(conf, "client.id", "josefine-bench-rdkafka-peer");
    set_conf(conf, "linger.ms", o->linger_ms);
    set_conf(conf, "enable.idempotence", o->idempotence);
    set_conf(conf, "acks", o->acks);
    set_conf(conf, "compression.type", o->compression);
    if (o->batch_size) set_conf(conf, "batch.size", o->batch_size);
    if (o->batch_num_messages) set_conf(conf, "batch.num.messages", o->batch_num_messages);
    if (o->transaction_size > 0) {
        /* Unique per run: a reused id would fence, or wait for, an earlier run's producer. */
        snprintf(txn_id, sizeof txn_id, "rdkafka-bench-%s-%ld", o->topic, (long)getpid());
        set_conf(conf, "transactional.id", txn_id);
    }
    set_extra(conf, o);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);

    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) die("rd_kafka_new(producer): %s", errstr); /* conf is still ours, but we exit */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    if (!rkt) die("rd_kafka_topic_new: %s", rd_kafka_err2str(rd_kafka_last_error()));

    /* Record i's value is pattern[i % 256 .. i % 256 + size): byte j of it is
     * (uint8_t)((i + j) * 31 + 7), because 31 * 256 wraps to 0 in a byte. */
    size_t size = (size_t)o->size;
    unsigned char *pattern = malloc(size + 256);
    if (!pattern) die("%s", "out of memory");
    for (size_t k = 0; k < size + 256; k++) pattern[k] = (unsigned char)(k * 31 + 7);

    P.records = o->records;
    char key[32];
    if (o->warmup) {
        double tw = now_s();
        warm_up(rk, rkt);
        fprintf(stderr, "produce: warm-up took %.1f ms\n", (now_s() - tw) * 1e3);
    }
    if (o->transaction_size > 0) {
        double ti = now_s();
        txn_check("rd_kafka_init_transactions", rd_kafka_init_transactions(rk, 60000));
        fprintf(stderr, "produce: init_transactions took %.1f ms\n", (now_s() - ti) * 1e3);
    }
    double t0 = now_s();
    double next_progress = t0 + 1.0;

    for (long long i = 0; i < o->records; i++) {
        if (o->transaction_size > 0 && i % o->transaction_size == 0) {
            if (i > 0) commit_transaction(rk, i);
            P.txn++;
            txn_check("rd_kafka_begin_transaction", rd_kafka_begin_transaction(rk));
        }
        produce_one(rk, rkt, o, pattern, i, key, sizeof key);
        /* Serve delivery reports now and then rather than after every call. */
        if ((i & 1023) == 1023) {
            rd_kafka_poll(rk, 0);
            double t = now_s();
            if (t >= next_progress) {
                fprintf(stderr, "produce: %lld sent, %lld delivered, %lld failed\n", i + 1,
                        P.delivered, P.failed);
                next_progress = t + 1.0;
            }
        }
    }

    if (o->transaction_size > 0) {
        commit_transaction(rk, o->records);
        P.t_last_report = now_s(); /* the clock stops when the last commit returns */
    }
    /* Flush in 1 s steps so progress can be shown and a stalled broker noticed. */
    long long last_done = -1;
    double last_progress_at = now_s();
    while (rd_kafka_outq_len(rk) > 0) {
        rd_kafka_flush(rk, 1000);
        double t = now_s();
        long long done = P.delivered + P.failed;
        if (done != last_done) {
            last_done = done;
            last_progress_at = t;
        } else if (t - last_progress_at > STALL_TIMEOUT_S) {
            fprintf(stderr, "rdkafka_peer: no delivery progress for 60 s while flushing\n");
            break;
        }
        if (t >= next_progress && rd_kafka_outq_len(rk) > 0) {
            fprintf(stderr, "produce: flushing, %lld delivered, %lld failed, %d queued\n",
                    P.delivered, P.failed, rd_kafka_outq_len(rk));
            next_progress = t + 1.0;
        }
    }
    double t_end = P.t_last_report > 0 ? P.t_last_report : now_s();
    long long delivered = P.delivered, failed = P.failed;
    int stuck = P.delivered + P.failed != P.records;

    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(pattern);

    fprintf(stderr, "produce: %lld delivered, %lld failed%s%s; first delivery report %.1f ms "
            "after the first produce\n", delivered, failed, failed ? ", first error: " : "",
            failed ? rd_kafka_err2str(P.first_err) : "", (P.t_first_report - t0) * 1e3);
    char extra[128] = "";
    if (o->transaction_size > 0)
        snprintf(extra, sizeof extra, ",\"transaction_size\":%lld,\"partitions_per_transaction\":%.2f",
                 o->transaction_size, (double)P.partition_txns / (double)P.txn);
    print_result(o->transaction_size > 0 ? "produce-txn" : "produce", delivered,
                 delivered * (long long)size, t_end - t0, extra);
    return (failed > 0 || stuck) ? 1 : 0;
}

/* ---------------------------------- consume ------------------------------ */

static int consume_mode(const struct opts *o) {
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set_conf(conf, "bootstrap.servers", o->bootstrap);
    set_conf(conf, "client.id", "josefine-bench-rdkafka-peer");
    /* Required by the consumer API even though partitions are assigned directly;
     * no JoinGroup happens without subscribe(), and nothing is committed. */
    set_conf(conf, "group.id", "josefine-bench-rdkafka-peer");
    set_conf(conf, "enable.auto.commit", "false");
    set_conf(conf, "enable.auto.offset.store", "false");
    set_conf(conf, "enable.partition.eof", "false");
    set_conf(conf, "fetch.wait.max.ms", "100");
    set_extra(conf, o);

    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) die("rd_kafka_new(consumer): %s", errstr);
    rd_kafka_poll_set_consumer(rk); /* errors and logs come out of consumer_poll */

    rd_kafka_topic_partition_list_t *parts =
        rd_kafka_topic_partition_list_new((int)o->partitions);
    for (int32_t p = 0; p < (int32_t)o->partitions; p++) {
        rd_kafka_topic_partition_list_add(parts, o->topic, p);
        rd_kafka_topic_partition_list_set_offset(parts, o->topic, p, RD_KAFKA_OFFSET_BEGINNING);
    }

    if (o->warmup) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
        if (!rkt) die("rd_kafka_topic_new: %s", rd_kafka_err2str(rd_kafka_last_error()));
        double tw = now_s();
        warm_up(rk, rkt);
        fprintf(stderr, "consume: warm-up took %.1f ms\n", (now_s() - tw) * 1e3);
        rd_kafka_topic_destroy(rkt);
    }

    long long count = 0, bytes = 0;
    double t0 = now_s();
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err) die("rd_kafka_assign: %s", rd_kafka_err2str(err));

    double next_progress = t0 + 1.0;
    double last_progress_at = t0;
    long long last_count = 0;
    double t_first = 0, t_end = 0;
    int timed_out = 0;
    while (count < o->records) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m) {
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (count == 0) t_first = now_s();
                count++;
                bytes += (long long)m->len;
                if (count == o->records) t_end = now_s();
                rd_kafka_message_destroy(m);
                if ((count & 1023) != 0) continue; /* clock checks once per 1024 records */
            } else {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    fprintf(stderr, "consume: error event: %s: %.*s\n", rd_kafka_err2str(m->err),
                            (int)m->len, m->payload ? (const char *)m->payload : "");
                rd_kafka_message_destroy(m);
            }
        }
        double t = now_s();
        if (count != last_count) {
            last_count = count;
            last_progress_at = t;
        }
        if (t >= next_progress) {
            fprintf(stderr, "consume: %lld records, %lld bytes\n", count, bytes);
            next_progress = t + 1.0;
        }
        if (t - last_progress_at > STALL_TIMEOUT_S) {
            fprintf(stderr, "rdkafka_peer: no new records for 60 s, got %lld of %lld\n", count,
                    o->records);
            timed_out = 1;
            break;
        }
    }
    if (t_end == 0) t_end = now_s();

    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    fprintf(stderr, "consume: %lld records, %lld bytes; first record %.1f ms after the assign\n",
            count, bytes, t_first > 0 ? (t_first - t0) * 1e3 : -1.0);

    print_result("consume", count, bytes, t_end - t0, "");
    return timed_out ? 1 : 0;
}

/* ---------------------------------- group -------------------------------- */

struct group_state {
    double t_subscribe;
    double t_first_assign;
    int assign_events;
    int revoke_events;
    int assigned; /* partitions in the current assignment */
};

static struct group_state G;

/* Does what librdkafka does without a rebalance callback (assign / incremental
 * assign, by the protocol of the chosen assignor), and logs each event to stderr
 * so that the join (subscribe -> first assignment) can be told apart from the first
 * fetch. Served from rd_kafka_consumer_poll() (and rd_kafka_consumer_close()). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    (void)opaque;
    double t = now_s();
    const char *proto = rd_kafka_rebalance_protocol(rk);
    int cooperative = proto && strcmp(proto, "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ret = RD_KAFKA_RESP_ERR_NO_ERROR;
    const char *what;
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        what = "assigned";
        if (G.t_first_assign == 0) G.t_first_assign = t;
        G.assign_events++;
        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
            G.assigned += parts->cnt;
        } else {
            ret = rd_kafka_assign(rk, parts);
            G.assigned = parts->cnt;
        }
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        what = "revoked";
        G.revoke_events++;
        if (cooperative) {
            error = rd_kafka_incremental_unassign(rk, parts);
            G.assigned -= parts->cnt;
        } else {
            ret = rd_kafka_assign(rk, NULL);
            G.assigned = 0;
        }
        break;
    default:
        what = "rebalance error, unassigned";
        fprintf(stderr, "group: rebalance error: %s\n", rd_kafka_err2str(err));
        ret = rd_kafka_assign(rk, NULL);
        G.assigned = 0;
        break;
    }
    fprintf(stderr, "group: %s %d partition(s) (%s) %.1f ms after the subscribe; %d assigned\n",
            what, parts ? parts->cnt : 0, proto ? proto : "?", (t - G.t_subscribe) * 1e3,
            G.assigned);
    if (error) {
        fprintf(stderr, "group: incremental (un)assign failed: %s\n", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    if (ret) fprintf(stderr, "group: assign failed: %s\n", rd_kafka_err2str(ret));
}

/* The settings group and latency mode share: group G, from the earliest offset, auto
 * commit every 1000 ms, no partition-EOF events. */
static rd_kafka_conf_t *group_conf(const struct opts *o) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set_conf(conf, "bootstrap.servers", o->bootstrap);
    set_conf(conf, "client.id", "josefine-bench-rdkafka-peer");
    set_conf(conf, "group.id", o->group);
    set_conf(conf, "auto.offset.reset", "earliest");
    set_conf(conf, "enable.auto.commit", "true");
    set_conf(conf, "auto.commit.interval.ms", "1000");
    set_conf(conf, "enable.partition.eof", "false");
    return conf;
}

static int group_mode(const struct opts *o) {
    char errstr[512], num[32];
    rd_kafka_conf_t *conf = group_conf(o);
    set_conf(conf, "enable.auto.offset.store", "true"); /* the default: store per record */
    set_conf(conf, "partition.assignment.strategy", o->assignor);
    snprintf(num, sizeof num, "%lld", o->session_timeout_ms);
    set_conf(conf, "session.timeout.ms", num);
    snprintf(num, sizeof num, "%lld", o->session_timeout_ms >= 10 ? o->session_timeout_ms / 10 : 1);
    set_conf(conf, "heartbeat.interval.ms", num);
    set_conf(conf, "fetch.wait.max.ms", "100");
    set_extra(conf, o);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);

    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk) die("rd_kafka_new(consumer): %s", errstr);
    /* Everything (records, errors, rebalance callbacks) comes out of consumer_poll. */
    rd_kafka_poll_set_consumer(rk);

    if (o->warmup) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
        if (!rkt) die("rd_kafka_topic_new: %s", rd_kafka_err2str(rd_kafka_last_error()));
        double tw = now_s();
        warm_up(rk, rkt);
        fprintf(stderr, "group: warm-up took %.1f ms\n", (now_s() - tw) * 1e3);
        rd_kafka_topic_destroy(rkt);
    }

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, o->topic, RD_KAFKA_PARTITION_UA);

    long long count = 0, bytes = 0;
    double t0 = now_s();
    G.t_subscribe = t0;
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) die("rd_kafka_subscribe: %s", rd_kafka_err2str(err));

    /* Before the first record the group join must fit as well: Tansu holds the
     * second JoinGroup for about half the session timeout. */
    double join_allowance = 2.0 * (double)o->session_timeout_ms / 1e3;
    double next_progress = t0 + 1.0;
    double last_progress_at = t0;
    long long last_count = 0;
    double t_first = 0, t_end = 0;
    int timed_out = 0;
    while (count < o->records) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m) {
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (count == 0) t_first = now_s();
                count++;
                bytes += (long long)m->len;
                if (count == o->records) t_end = now_s();
                rd_kafka_message_destroy(m);
                if ((count & 1023) != 0) continue; /* clock checks once per 1024 records */
            } else {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    fprintf(stderr, "group: error event: %s: %.*s\n", rd_kafka_err2str(m->err),
                            (int)m->len, m->payload ? (const char *)m->payload : "");
                rd_kafka_message_destroy(m);
            }
        }
        double t = now_s();
        if (count != last_count) {
            last_count = count;
            last_progress_at = t;
        }
        if (t >= next_progress) {
            fprintf(stderr, "group: %lld records, %lld bytes, %d partition(s) assigned\n", count,
                    bytes, G.assigned);
            next_progress = t + 1.0;
        }
        if (t - last_progress_at > STALL_TIMEOUT_S + (count == 0 ? join_allowance : 0)) {
            fprintf(stderr, "rdkafka_peer: no new records for %.0f s, got %lld of %lld\n",
                    t - last_progress_at, count, o->records);
            timed_out = 1;
            break;
        }
    }
    if (t_end == 0) t_end = now_s();
    double idle_cpu_per_minute = -1;
    if (o->idle_seconds > 0 && !timed_out) {
        double c0 = cpu_s(), until = now_s() + (double)o->idle_seconds;
        while (now_s() < until) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (m) rd_kafka_message_destroy(m);
        }
        idle_cpu_per_minute = (cpu_s() - c0) / (double)o->idle_seconds * 60.0;
    }

    /* Outside the clock: revokes the assignment, commits the stored offsets and
     * leaves the group. */
    double tc = now_s();
    err = rd_kafka_consumer_close(rk);
    if (err) fprintf(stderr, "group: rd_kafka_consumer_close: %s\n", rd_kafka_err2str(err));
    double close_ms = (now_s() - tc) * 1e3;
    rd_kafka_destroy(rk);

    fprintf(stderr, "group: %lld records, %lld bytes; first assignment %.1f ms and first record "
            "%.1f ms after the subscribe; %d assign / %d revoke event(s); close took %.1f ms\n",
            count, bytes, G.t_first_assign > 0 ? (G.t_first_assign - t0) * 1e3 : -1.0,
            t_first > 0 ? (t_first - t0) * 1e3 : -1.0, G.assign_events, G.revoke_events,
            close_ms);
    if (count > 1 && t_end > t_first)
        fprintf(stderr, "group: first to last record: %.3f s, %.0f records/s\n", t_end - t_first,
                (double)(count - 1) / (t_end - t_first));

    char extra[160];
    int at;
    if (t_first > 0) at = snprintf(extra, sizeof extra, ",\"first_record_seconds\":%.6f", t_first - t0);
    else at = snprintf(extra, sizeof extra, ",\"first_record_seconds\":null");
    if (idle_cpu_per_minute >= 0)
        snprintf(extra + at, sizeof extra - (size_t)at, ",\"idle_seconds\":%lld,\"idle_cpu_per_minute\":%.4f",
                 o->idle_seconds, idle_cpu_per_minute);
    print_result("group", count, bytes, t_end - t0, extra);
    return timed_out ? 1 : 0;
}

/* ---------------------------------- latency ------------------------------ */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct latency_state {
    rd_kafka_t *consumer;
    long long target;
    uint64_t first_ns;   /* the first record's receive time, 0 until then (atomic) */
    long long measured;  /* written by the consumer thread only (atomic) */
    uint64_t *lat_ns;
    int stop;            /* atomic */
    long long failed;    /* delivery reports with an error (producer thread) */
};

static struct latency_state L;

static void *latency_consumer(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&L.stop, __ATOMIC_ACQUIRE)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(L.consumer, 100);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            uint64_t now = mono_ns();
            if (__atomic_load_n(&L.first_ns, __ATOMIC_ACQUIRE) == 0)
                __atomic_store_n(&L.first_ns, now, __ATOMIC_RELEASE);
            const unsigned char *v = m->payload;
            long long n = __atomic_load_n(&L.measured, __ATOMIC_ACQUIRE);
            if (v && m->len >= 9 && v[8] == 1 && n < L.target) {
                uint64_t sent = 0;
                for (int b = 7; b >= 0; b--) sent = (sent << 8) | v[b];
                L.lat_ns[n] = now > sent ? now - sent : 0;
                __atomic_store_n(&L.measured, n + 1, __ATOMIC_RELEASE);
            }
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            fprintf(stderr, "latency: consumer error event: %s\n", rd_kafka_err2str(m->err));
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static void on_latency_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (L.failed++ == 0) fprintf(stderr, "latency: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank, as josefine's harness takes it. */
static double percentile_ms(const uint64_t *sorted, long long n, double q) {
    if (n == 0) return 0;
    long long rank = (long long)ceil(q * (double)n);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)sorted[rank - 1] / 1e6;
}

static int latency_mode(const struct opts *o) {
    char errstr[512], num[32];
    rd_kafka_conf_t *cconf = group_conf(o);
    snprintf(num, sizeof num, "%lld", o->fetch_wait_ms);
    set_conf(cconf, "fetch.wait.max.ms", num);
    set_extra(cconf, o);
    L.consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, errstr, sizeof errstr);
    if (!L.consumer) die("rd_kafka_new(consumer): %s", errstr);
    rd_kafka_poll_set_consumer(L.consumer);
    L.target = o->records;
    L.lat_ns = calloc((size_t)o->records, sizeof *L.lat_ns);
    if (!L.lat_ns) die("%s", "out of memory");
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, o->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(L.consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) die("rd_kafka_subscribe: %s", rd_kafka_err2str(err));
    pthread_t reader;
    if (pthread_create(&reader, NULL, latency_consumer, NULL) != 0) die("%s", "pthread_create");

    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    set_conf(pconf, "bootstrap.servers", o->bootstrap);
    set_conf(pconf, "client.id", "josefine-bench-rdkafka-peer");
    set_conf(pconf, "linger.ms", o->linger_ms);
    set_conf(pconf, "enable.idempotence", "true");
    set_conf(pconf, "acks", "-1");
    set_extra(pconf, o);
    rd_kafka_conf_set_dr_msg_cb(pconf, on_latency_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof errstr);
    if (!rk) die("rd_kafka_new(producer): %s", errstr);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    if (!rkt) die("rd_kafka_topic_new: %s", rd_kafka_err2str(rd_kafka_last_error()));

    size_t size = (size_t)o->size;
    unsigned char *value = calloc(size, 1);
    if (!value) die("%s", "out of memory");
    double interval_ns = 1e9 / (double)o->rate;
    uint64_t start = mono_ns(), measuring_since = 0;
    long long sent_measured = 0;
    for (long long i = 0; sent_measured < o->records; i++) {
        uint64_t due = start + (uint64_t)((double)i * interval_ns);
        if (mono_ns() < due) {
            struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
        }
        if (!measuring_since) {
            uint64_t first = __atomic_load_n(&L.first_ns, __ATOMIC_ACQUIRE);
            if (first && mono_ns() - first >= (uint64_t)o->warmup_ms * 1000000ull)
                measuring_since = mono_ns();
            if (mono_ns() - start > 120ull * 1000000000ull)
                die("%s", "the consumer received nothing in 120 s");
        }
        value[8] = measuring_since ? 1 : 0;
        uint64_t t = mono_ns();
        for (int b = 0; b < 8; b++) value[b] = (unsigned char)(t >> (8 * b));
        while (rd_kafka_produce(rkt, (int32_t)(i % o->partitions), RD_KAFKA_MSG_F_COPY, value,
                                size, NULL, 0, NULL) == -1) {
            if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die("rd_kafka_produce: %s", rd_kafka_err2str(rd_kafka_last_error()));
            rd_kafka_poll(rk, 10);
        }
        rd_kafka_poll(rk, 0); /* serves delivery reports */
        if (measuring_since) sent_measured++;
    }
    double seconds = (double)(mono_ns() - measuring_since) / 1e9;
    if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) die("%s", "flush timed out");
    uint64_t deadline = mono_ns() + 60ull * 1000000000ull;
    while (__atomic_load_n(&L.measured, __ATOMIC_ACQUIRE) < o->records && mono_ns() < deadline) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&L.stop, 1, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    long long n = __atomic_load_n(&L.measured, __ATOMIC_ACQUIRE);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    rd_kafka_consumer_close(L.consumer);
    rd_kafka_destroy(L.consumer);
    if (L.failed > 0) die("%s", "some records failed");
    if (n < o->records) fprintf(stderr, "latency: received %lld of %lld measured records\n", n, o->records);

    qsort(L.lat_ns, (size_t)n, sizeof *L.lat_ns, cmp_u64);
    char extra[320];
    snprintf(extra, sizeof extra,
             ",\"rate\":%lld,\"partitions\":%lld,\"linger_ms\":%s,\"fetch_wait_ms\":%lld,"
             "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f",
             o->rate, o->partitions, o->linger_ms, o->fetch_wait_ms, percentile_ms(L.lat_ns, n, 0.50),
             percentile_ms(L.lat_ns, n, 0.99), percentile_ms(L.lat_ns, n, 0.999),
             percentile_ms(L.lat_ns, n, 1.0));
    print_result("latency", n, n * (long long)size, seconds, extra);
    return n < o->records ? 1 : 0;
}

int main(int argc, char **argv) {
    struct opts o = parse_args(argc, argv);
    int v = rd_kafka_version();
    if ((v >> 24) != 2)
        die("expected librdkafka 2.x at run time, found %s", rd_kafka_version_str());
    fprintf(stderr, "rdkafka_peer: librdkafka %s, %s\n", rd_kafka_version_str(), o.mode);
    if (strcmp(o.mode, "produce") == 0) return produce_mode(&o);
    if (strcmp(o.mode, "consume") == 0) return consume_mode(&o);
    if (strcmp(o.mode, "latency") == 0) return latency_mode(&o);
    return group_mode(&o);
}
