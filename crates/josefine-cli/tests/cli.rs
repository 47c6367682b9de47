//! The `josefine` command against the real broker: produce then consume round trips
//! in every format, a group consumer stopped with SIGINT whose commits equal what it
//! printed, bad input answered with one clear line and a non-zero exit, and settings
//! given before and after the subcommand (on Kafka's SASL listener).

#[path = "../../josefine/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{real_broker, real_kafka};
use josefine::{Producer, ProducerRecord, TopicPartition};

fn josefine(broker: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_josefine"));
    command
        .arg("--bootstrap")
        .arg(broker)
        // Short sessions: the real broker holds a join for half of one.
        .args([
            "-X",
            "session.timeout.ms=3000",
            "-X",
            "heartbeat.interval.ms=300",
        ])
        .env_remove("JOSEFINE_BOOTSTRAP");
    command
}

/// Runs to completion with `stdin`; panics with its stderr if it fails.
fn run_ok(command: &mut Command, stdin: &[u8]) -> Output {
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn run(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the josefine binary starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn create_topic(broker: &str, topic: &str, partitions: u32) {
    run_ok(
        josefine(broker)
            .args(["topics", "create", topic, "--partitions"])
            .arg(partitions.to_string()),
        b"",
    );
}

/// Bad input: a failure exit, exactly one `error:` line that contains `expected`,
/// and no panic.
fn assert_one_clear_line(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "should fail: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(errors[0].contains(expected), "{expected:?} in {stderr}");
}

#[test]
fn produce_then_consume_round_trips_in_every_format() {
    let broker = real_broker!();
    let topic = common::unique("cli-formats");
    create_topic(&broker, &topic, 1);
    let lines: Vec<String> = (0..50).map(|i| format!("key-{i}|value {i} ✓")).collect();
    let input = lines.join("\n") + "\n";
    let produced = run_ok(
        josefine(&broker).args(["produce", "--topic", &topic, "--key-separator", "|"]),
        input.as_bytes(),
    );
    assert!(
        String::from_utf8_lossy(&produced.stderr).contains("produced 50 record(s)"),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consume = |format: &str, extra: &[&str]| -> Vec<u8> {
        run_ok(
            josefine(&broker)
                .args([
                    "consume",
                    "--topic",
                    &topic,
                    "--from-beginning",
                    "--count",
                    "50",
                    "--format",
                    format,
                ])
                .args(extra),
            b"",
        )
        .stdout
    };
    // text with the key: the input exactly.
    assert_eq!(
        String::from_utf8(consume("text", &["--key-separator", "|"])).unwrap(),
        input
    );
    // raw: the values' bytes, newline-terminated.
    let values: String = (0..50).map(|i| format!("value {i} ✓\n")).collect();
    assert_eq!(String::from_utf8(consume("raw", &[])).unwrap(), values);
    // json: every field.
    let json = String::from_utf8(consume("json", &[])).unwrap();
    for (i, line) in json.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["topic"], topic.as_str());
        assert_eq!(v["partition"], 0);
        assert_eq!(v["offset"], i as i64);
        assert_eq!(v["key"], format!("key-{i}"));
        assert_eq!(v["value"], format!("value {i} ✓"));
        assert!(v["timestamp"].as_i64().unwrap() > 0);
    }
    assert_eq!(json.lines().count(), 50);
}

#[test]
fn a_group_consumer_stopped_by_sigint_commits_exactly_what_it_printed() {
    let broker = real_broker!();
    sigint_commits_what_was_printed(&broker, "classic");
}

/// The same with `-X group.protocol=consumer` (KIP-848); `groups describe` shows the
/// running member with its epoch and its three partitions.
#[test]
fn a_consumer_protocol_member_stopped_by_sigint_commits_exactly_what_it_printed() {
    let broker = real_broker!();
    sigint_commits_what_was_printed(&broker, "consumer");
}

fn sigint_commits_what_was_printed(broker: &str, protocol: &str) {
    let broker = broker.to_string();
    let topic = common::unique("cli-sigint");
    let group = common::unique("cli-group");
    create_topic(&broker, &topic, 3);
    let input: String = (0..20_000).map(|i| format!("record-{i}\n")).collect();
    run_ok(
        josefine(&broker).args(["produce", "--topic", &topic]),
        input.as_bytes(),
    );

    let mut child = josefine(&broker)
        .args([
            "consume",
            "--topic",
            &topic,
            "--group",
            &group,
            "--from-beginning",
            "--format",
            "json",
        ])
        // Slow the reader down: a small fetch per partition.
        .args(["-X", "max.partition.fetch.bytes=2048"])
        .args(["-X", &format!("group.protocol={protocol}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed: HashMap<i32, Vec<i64>> = HashMap::new();
    let record = |line: &str, printed: &mut HashMap<i32, Vec<i64>>| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        printed
            .entry(v["partition"].as_i64().unwrap() as i32)
            .or_default()
            .push(v["offset"].as_i64().unwrap());
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    let mut seen = 0;
    while seen < 500 {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "consume ended early"
        );
        record(&line, &mut printed);
        seen += 1;
        assert!(Instant::now() < deadline, "too slow");
    }
    if protocol == "consumer" {
        let describe = run_ok(josefine(&broker).args(["groups", "describe", &group]), b"");
        let describe = String::from_utf8_lossy(&describe.stdout);
        assert!(
            describe.contains("protocol consumer (KIP-848), assignor uniform"),
            "{describe}"
        );
        assert!(describe.contains("members 1"), "{describe}");
        assert!(describe.contains("  epoch "), "{describe}");
    }
    // SIGINT, then read what it printed until it exits.
    sigint(child.id());
    for line in stdout.lines() {
        record(&line.unwrap(), &mut printed);
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("leaving group"), "{stderr}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let committed: HashMap<i32, i64> = runtime.block_on(async {
        let client = common::client(&broker).await;
        let partitions: Vec<TopicPartition> =
            (0..3).map(|p| TopicPartition::new(&*topic, p)).collect();
        client
            .admin()
            .committed_offsets(&group, &partitions)
            .await
            .unwrap()
            .into_iter()
            .map(|(tp, offset)| (tp.partition, offset))
            .collect()
    });
    let total: usize = printed.values().map(Vec::len).sum();
    assert!(total < 20_000, "stopped before the end ({total} printed)");
    for p in 0..3 {
        let offsets = printed.get(&p).cloned().unwrap_or_default();
        // Printed from the start, in order, without gaps.
        assert!(
            offsets.iter().enumerate().all(|(i, &o)| o == i as i64),
            "partition {p}: {offsets:?}"
        );
        let expected = (!offsets.is_empty()).then_some(offsets.len() as i64);
        assert_eq!(
            committed.get(&p).copied(),
            expected,
            "partition {p}: committed equals printed"
        );
    }
}

fn sigint(pid: u32) {
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failure_exit() {
    let broker = real_broker!();
    let topic = common::unique("cli-bad");
    create_topic(&broker, &topic, 1);

    let output = run(
        josefine(&broker).args(["consume", "--topic", "no-such-topic-here", "-n", "1"]),
        b"",
    );
    assert_one_clear_line(&output, "does not exist");
    let output = run(
        josefine(&broker).args(["produce", "--topic", "no-such-topic-here"]),
        b"x\n",
    );
    assert_one_clear_line(&output, "does not exist");

    let output = run(
        Command::new(env!("CARGO_BIN_EXE_josefine")).args([
            "--bootstrap",
            "127.0.0.1:1",
            "-X",
            "socket.connection.setup.timeout.ms=500",
            "cluster",
        ]),
        b"",
    );
    assert_one_clear_line(&output, "cannot reach the cluster at 127.0.0.1:1");

    let output = run(
        josefine(&broker).args(["-X", "sesion.timeout.ms=100", "cluster"]),
        b"",
    );
    assert_one_clear_line(&output, "did you mean session.timeout.ms");
    let output = run(
        josefine(&broker).args(["-X", "fetch.max.wait.ms=soon", "cluster"]),
        b"",
    );
    assert_one_clear_line(&output, "expected a whole number of milliseconds");
    let output = run(josefine(&broker).args(["-X", "linger.ms", "cluster"]), b"");
    assert_one_clear_line(&output, "expected key=value");

    // Checked before anything is sent: a count or a name the broker would refuse
    // (or, for zero partitions, wait on forever).
    let output = run(
        josefine(&broker).args(["topics", "create", &format!("{topic}-zero"), "-p", "0"]),
        b"",
    );
    assert_one_clear_line(&output, "at least 1 partition");
    let output = run(
        josefine(&broker).args(["topics", "create", "bad name!"]),
        b"",
    );
    assert_one_clear_line(&output, "Kafka allows only ASCII letters");
    let output = run(
        josefine(&broker).args(["groups", "lag", &common::unique("no-such-group")]),
        b"",
    );
    assert_one_clear_line(&output, "has no committed offsets");

    // A value that is not UTF-8 under --format text.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = common::client(&broker).await;
        let producer = Producer::builder(client).build().unwrap();
        producer
            .send(ProducerRecord::new(&topic).value(vec![0xff, 0xfe, 0x00]))
            .await
            .unwrap();
        producer.close().await.unwrap();
    });
    let output = run(
        josefine(&broker).args(["consume", "--topic", &topic, "--from-beginning", "-n", "1"]),
        b"",
    );
    assert_one_clear_line(&output, "is not UTF-8 text; use --format json");
}

#[test]
fn groups_list_describe_and_lag_match_what_was_consumed() {
    let broker = real_broker!();
    let topic = common::unique("cli-lag");
    let group = common::unique("cli-lag-group");
    create_topic(&broker, &topic, 2);
    let input: String = (0..100).map(|i| format!("{i}\n")).collect();
    run_ok(
        josefine(&broker).args(["produce", "--topic", &topic]),
        input.as_bytes(),
    );
    let consumed = run_ok(
        josefine(&broker)
            .args(["consume", "--topic", &topic, "--group", &group])
            .args(["--from-beginning", "--count", "40"]),
        b"",
    );
    assert_eq!(consumed.stdout.iter().filter(|&&b| b == b'\n').count(), 40);

    let lag = run_ok(josefine(&broker).args(["groups", "lag", &group]), b"");
    let lag = String::from_utf8(lag.stdout).unwrap();
    assert!(
        lag.contains("total lag 60"),
        "100 produced, 40 committed: {lag}"
    );
    let partition_lags: i64 = lag
        .lines()
        .filter(|l| l.starts_with(&topic))
        .map(|l| l.split_whitespace().nth(4).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(partition_lags, 60, "{lag}");

    let list = run_ok(josefine(&broker).args(["groups", "list"]), b"");
    assert!(String::from_utf8_lossy(&list.stdout).contains(&group));
    let describe = run_ok(josefine(&broker).args(["groups", "describe", &group]), b"");
    assert!(
        String::from_utf8_lossy(&describe.stdout).starts_with(&format!("group {group}")),
        "{}",
        String::from_utf8_lossy(&describe.stdout)
    );
}

/// `consume --stats` writes the client's figures to stderr (a `stats:` line per
/// interval off a terminal, and one at the end), also beside `--metrics-addr` (the
/// recorder fans out to both); `top` shows a group's lag and, from its second frame
/// on, its rates.
#[test]
fn consume_stats_and_top_show_the_figures() {
    let broker = real_broker!();
    let topic = common::unique("cli-stats");
    let group = common::unique("cli-stats-group");
    create_topic(&broker, &topic, 2);
    run_ok(
        josefine(&broker).args(["produce", "--topic", &topic, "--count", "100"]),
        b"",
    );
    let consumed = run_ok(
        josefine(&broker)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["consume", "--topic", &topic, "--group", &group])
            .args(["--from-beginning", "--count", "100", "--format", "raw"])
            .args(["--stats", "0.2"]),
        b"",
    );
    let stderr = String::from_utf8(consumed.stderr).unwrap();
    let last = stderr
        .lines()
        .rfind(|l| l.starts_with("stats: "))
        .unwrap_or_else(|| panic!("no stats line: {stderr}"));
    // "records 100 (R/s), ..." after an earlier frame, "records 100, ..." without one.
    let records = last["stats: records ".len()..].split([' ', ',']).next();
    assert_eq!(records, Some("100"), "{last}");
    assert!(last.contains(" | group: generation "), "{last}");
    assert!(last.contains(" 0 failed"), "{last}");
    assert!(last.contains(" | network: requests "), "{last}");

    let top = run_ok(
        josefine(&broker).args(["top", &group, "--interval", "0.2", "--iterations", "2"]),
        b"",
    );
    let top = String::from_utf8(top.stdout).unwrap();
    let summaries: Vec<&str> = top
        .lines()
        .filter(|l| l.starts_with(&format!("group {group} ")))
        .collect();
    assert_eq!(summaries.len(), 2, "{top}");
    assert!(summaries[0].ends_with("total lag 0"), "{top}");
    assert!(
        summaries[1].ends_with("total lag 0, consuming 0/s, producers 0/s, caught up"),
        "{top}"
    );
    let rows = top.lines().filter(|l| l.starts_with(&topic)).count();
    // A row per partition with a commit (keyless records may all go to one), per frame.
    assert!(rows == 2 || rows == 4, "{top}");
}

#[test]
fn tls_settings_work_from_the_command_line() {
    use common::tls::{TlsBroker, TlsVariant};
    let Some(broker) = TlsBroker::start(TlsVariant::Valid) else {
        return;
    };
    let ssl = |ca: &std::path::Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_josefine"));
        command
            .args([
                "--bootstrap",
                &broker.bootstrap(),
                "-X",
                "security.protocol=SSL",
            ])
            .arg("-X")
            .arg(format!("ssl.ca.location={}", ca.display()))
            .arg("cluster");
        command
    };
    let ok = run_ok(&mut ssl(broker.ca_pem_path()), b"");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains(&broker.bootstrap()),
        "the cluster as seen over TLS: {}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let refused = run(&mut ssl(broker.other_ca_pem_path()), b"");
    assert_one_clear_line(&refused, "signed by a CA we do not trust");
}

/// `-X` before the subcommand (the cluster and its SASL login) and after it (a
/// client id) all apply: clap keeps a global argument given at two levels only at
/// the deeper one, which once sent this to localhost:9092 in plaintext.
#[test]
fn settings_before_and_after_the_subcommand_all_apply() {
    let kafka = real_kafka!();
    let (user, password) = &kafka.user;
    let output = run_ok(
        Command::new(env!("CARGO_BIN_EXE_josefine"))
            .env_remove("JOSEFINE_BOOTSTRAP")
            .arg("-X")
            .arg(format!("bootstrap.servers={}", kafka.sasl))
            .args([
                "-X",
                "security.protocol=SASL_PLAINTEXT",
                "-X",
                "sasl.mechanism=SCRAM-SHA-256",
            ])
            .arg("-X")
            .arg(format!("sasl.username={user}"))
            .arg("-X")
            .arg(format!("sasl.password={password}"))
            .args(["topics", "list", "-X", "client.id=cli-levels"]),
        b"",
    );
    assert!(output.status.success());
}

/// `groups reset-offsets`: a dry run prints the plan and changes nothing; with
/// `--execute` the next `consume --group` starts where the plan said; a group with a
/// member is refused; `groups delete` removes it. Bad input is one clear line.
#[test]
fn reset_offsets_moves_where_the_group_reads_next_and_delete_removes_it() {
    let broker = real_broker!();
    let topic = common::unique("cli-reset");
    let group = common::unique("cli-reset-group");
    create_topic(&broker, &topic, 2);
    // 20 records in each partition.
    let input: String = (0..20).map(|i| format!("{i}\n")).collect();
    for p in ["0", "1"] {
        run_ok(
            josefine(&broker).args(["produce", "--topic", &topic, "--partition", p]),
            input.as_bytes(),
        );
    }
    let consume = |count: &str| {
        let output = run_ok(
            josefine(&broker)
                .args(["consume", "--topic", &topic, "--group", &group])
                .args(["--from-beginning", "--count", count]),
            b"",
        );
        output.stdout.iter().filter(|&&b| b == b'\n').count()
    };
    let lag = |broker: &str| {
        let output = run_ok(josefine(broker).args(["groups", "lag", &group]), b"");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(consume("40"), 40);
    assert!(lag(&broker).contains("total lag 0"));
    // A third, empty partition: the resets below cover it too.
    run_ok(
        josefine(&broker).args(["topics", "add-partitions", &topic, "--total", "3"]),
        b"",
    );

    let dry = run_ok(
        josefine(&broker)
            .args(["groups", "reset-offsets", "--group", &group])
            .args(["--topic", &topic, "--to-earliest"]),
        b"",
    );
    let dry = String::from_utf8(dry.stdout).unwrap();
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    assert!(
        lag(&broker).contains("total lag 0"),
        "the dry run changed nothing"
    );

    // Partition 0 only, back by 5; then everything to the start.
    run_ok(
        josefine(&broker)
            .args(["groups", "reset-offsets", "--group", &group])
            .args([
                "--topic",
                &format!("{topic}:0"),
                "--shift-by",
                "-5",
                "--execute",
            ]),
        b"",
    );
    assert!(lag(&broker).contains("total lag 5"), "{}", lag(&broker));
    run_ok(
        josefine(&broker)
            .args(["groups", "reset-offsets", "--group", &group])
            .args(["--topic", &topic, "--to-earliest", "--execute"]),
        b"",
    );
    assert!(lag(&broker).contains("total lag 40"), "{}", lag(&broker));
    assert_eq!(consume("40"), 40, "read again from the start");

    // A group with a member is refused.
    let mut member = josefine(&broker)
        .args(["consume", "--topic", &topic, "--group", &group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = common::client(&broker).await.admin();
        let deadline = Instant::now() + Duration::from_secs(60);
        while admin
            .describe_group(&group)
            .await
            .unwrap()
            .members
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the member never joined");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let refused = run(
        josefine(&broker)
            .args(["groups", "reset-offsets", "--group", &group])
            .args(["--topic", &topic, "--to-latest", "--execute"]),
        b"",
    );
    assert_one_clear_line(&refused, "stop them before moving its offsets");
    let refused = run(josefine(&broker).args(["groups", "delete", &group]), b"");
    assert!(
        !refused.status.success(),
        "a group with a member is not deleted"
    );
    sigint(member.id());
    assert!(member.wait().unwrap().success());

    let bad = run(
        josefine(&broker)
            .args(["groups", "reset-offsets", "--group", &group])
            .args(["--topic", &topic, "--to-datetime", "yesterday"]),
        b"",
    );
    assert_one_clear_line(&bad, "expected RFC 3339");

    run_ok(josefine(&broker).args(["groups", "delete", &group]), b"");
    let gone = run(josefine(&broker).args(["groups", "lag", &group]), b"");
    assert_one_clear_line(&gone, "has no committed offsets");
}

/// kcat parity: headers (`-H`, a null one too), tombstones and no-key records
/// (`-Z`), fixed timestamps on the way in; a template (`-F`) and `--exit-at-end` on
/// the way out, which stops at the end each partition had when it started.
#[test]
fn headers_tombstones_templates_and_exit_at_end() {
    let broker = real_broker!();
    let topic = common::unique("cli-kcat");
    create_topic(&broker, &topic, 3);
    let produced = run_ok(
        josefine(&broker)
            .args([
                "produce",
                "--topic",
                &topic,
                "--partition",
                "0",
                "-K",
                ":",
                "-Z",
            ])
            .args([
                "-H",
                "trace=abc",
                "-H",
                "flag",
                "--timestamp",
                "1700000000000",
            ]),
        b"k1:v1\nk2:\n:v3\n",
    );
    // Not a terminal: no progress, only the summary.
    let stderr = String::from_utf8(produced.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("produced 3 record(s)"), "{stderr:?}");
    run_ok(
        josefine(&broker)
            .args(["produce", "--topic", &topic, "--partition", "1"])
            .args(["--timestamp", "1700000000001"]),
        b"x\n",
    );
    // Partition 2 stays empty: nothing to wait for there.
    let child = josefine(&broker)
        .args([
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--exit-at-end",
        ])
        .args(["-F", "%p %o %k|%s %K %S [%h] %T\\n"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (done, waited) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if waited.recv_timeout(Duration::from_secs(60)).is_err() {
            // Still running: --exit-at-end did not stop it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "0 0 k1|v1 2 2 [trace=abc,flag=] 1700000000000",
            "0 1 k2| 2 -1 [trace=abc,flag=] 1700000000000",
            "0 2 |v3 -1 2 [trace=abc,flag=] 1700000000000",
            "1 0 |x -1 1 [] 1700000000001",
        ]
    );
    let refused = run(
        josefine(&broker).args([
            "consume",
            "--topic",
            &topic,
            "--group",
            "g",
            "--exit-at-end",
        ]),
        b"",
    );
    assert_one_clear_line(&refused, "--exit-at-end reads partitions directly");
}

/// Shell completions and the man page come from the command definition, without a
/// cluster.
#[test]
fn completions_and_the_man_page_are_generated() {
    let bin = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_josefine"));
        command.env_remove("JOSEFINE_BOOTSTRAP");
        command
    };
    for shell in ["bash", "zsh", "fish"] {
        let out = run_ok(bin().args(["completions", shell]), b"");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("reset-offsets"), "{shell}: {script}");
    }
    let man = run_ok(bin().arg("man"), b"");
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(man.contains(".TH josefine 1"), "{man}");
    assert!(
        man.contains("josefine\\-groups(1)"),
        "subcommands listed: {man}"
    );
}

/// `josefine mock` serves a cluster that the other commands use as any other: its
/// topic from `--topic`, records produced and read back, a group's commits; SIGINT
/// stops it with a zero exit; a bad `--topic` is one clear line.
#[test]
fn the_mock_cluster_serves_the_other_commands_until_sigint() {
    /// Kills the mock if the test fails before it stops it.
    struct Running(Option<std::process::Child>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(child) = &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut mock = Running(Some(
        Command::new(env!("CARGO_BIN_EXE_josefine"))
            .args(["mock", "--topic", "orders:3"])
            .env_remove("JOSEFINE_BOOTSTRAP")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the josefine binary starts"),
    ));
    let child = mock.0.as_mut().unwrap();
    let mut address = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let broker = address.trim().to_string();
    assert!(broker.starts_with("127.0.0.1:"), "{address:?}");

    let cluster = run_ok(&mut josefine(&broker), b"");
    let cluster = String::from_utf8_lossy(&cluster.stdout);
    assert!(cluster.contains("orders"), "{cluster}");
    let input: String = (0..30).map(|i| format!("order {i}\n")).collect();
    run_ok(
        josefine(&broker).args(["produce", "--topic", "orders"]),
        input.as_bytes(),
    );
    let read = run_ok(
        josefine(&broker).args([
            "consume",
            "--topic",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "--count",
            "30",
        ]),
        b"",
    );
    let mut got: Vec<String> = String::from_utf8(read.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    got.sort_by_key(|line| line[6..].parse::<u32>().unwrap());
    let want: Vec<String> = (0..30).map(|i| format!("order {i}")).collect();
    assert_eq!(got, want);
    let lag = run_ok(josefine(&broker).args(["groups", "lag", "billing"]), b"");
    let lag = String::from_utf8_lossy(&lag.stdout);
    assert!(lag.contains("orders"), "the group committed: {lag}");

    let child = mock.0.take().unwrap();
    sigint(child.id());
    let stopped = child.wait_with_output().unwrap();
    assert!(
        stopped.status.success(),
        "{:?}: {}",
        stopped.status,
        String::from_utf8_lossy(&stopped.stderr)
    );

    let bad = run(
        Command::new(env!("CARGO_BIN_EXE_josefine")).args(["mock", "--topic", "orders"]),
        b"",
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("is not NAME:PARTITIONS"), "{stderr}");
}

/// `topics alter-config` and `describe-config` (Kafka: DescribeConfigs and
/// IncrementalAlterConfigs).
#[test]
fn topic_configs_from_the_command_line() {
    let broker = real_broker!();
    let topic = common::unique("cli-config");
    create_topic(&broker, &topic, 1);
    let altered = run_ok(
        josefine(&broker)
            .args(["topics", "alter-config", &topic])
            .args([
                "--set",
                "retention.ms=1000",
                "--append",
                "cleanup.policy=compact",
            ]),
        b"",
    );
    assert!(String::from_utf8_lossy(&altered.stdout).contains("2 config change(s)"));
    let described = run_ok(
        josefine(&broker).args(["topics", "describe-config", &topic, "--overrides"]),
        b"",
    );
    let described = String::from_utf8(described.stdout).unwrap();
    assert!(
        described.contains("retention.ms=1000\t(topic)"),
        "{described}"
    );
    assert!(
        described.contains("cleanup.policy=delete,compact\t(topic)"),
        "{described}"
    );
    let nothing = run(
        josefine(&broker).args(["topics", "alter-config", &topic]),
        b"",
    );
    assert_one_clear_line(&nothing, "nothing to change");
}

/// `topics delete-records` moves the log start, `topics describe` shows where each
/// partition's log starts and ends, and `consume --offset @TIME` starts at the first
/// record at or after a time.
#[test]
fn delete_records_describe_offsets_and_consume_from_a_time() {
    let broker = real_broker!();
    let topic = common::unique("cli-records");
    create_topic(&broker, &topic, 1);
    for ts in ["1000", "2000", "3000"] {
        run_ok(
            josefine(&broker).args(["produce", "--topic", &topic, "--timestamp", ts]),
            b"a\nb\n",
        );
    }
    let deleted = run_ok(
        josefine(&broker).args([
            "topics",
            "delete-records",
            &format!("{topic}:0"),
            "--before",
            "1",
        ]),
        b"",
    );
    assert!(String::from_utf8_lossy(&deleted.stdout).contains("the log starts at 1"));
    let described = run_ok(josefine(&broker).args(["topics", "describe", &topic]), b"");
    let described = String::from_utf8(described.stdout).unwrap();
    assert!(described.contains("offsets 1..6"), "{described}");
    let from_time = run_ok(
        josefine(&broker)
            .args([
                "consume",
                "--topic",
                &topic,
                "--offset",
                "@2000",
                "--exit-at-end",
            ])
            .args(["-F", "%o\\n"]),
        b"",
    );
    assert_eq!(String::from_utf8(from_time.stdout).unwrap(), "2\n3\n4\n5\n");
    let past = run(
        josefine(&broker).args([
            "topics",
            "delete-records",
            &format!("{topic}:0"),
            "--before",
            "99",
        ]),
        b"",
    );
    assert_one_clear_line(&past, "kept their records");
}

/// `produce --json` reads what `consume --format json` prints: keys, values (null,
/// text, base64), headers (a null one too), partitions and timestamps survive a copy
/// from one topic to another; a bad line stops with its line number; `--max-bytes`
/// cuts what is printed and says how much.
#[test]
fn json_lines_copy_a_topic_and_max_bytes_guards_the_output() {
    let broker = real_broker!();
    let (from, to) = (
        common::unique("cli-json-from"),
        common::unique("cli-json-to"),
    );
    create_topic(&broker, &from, 2);
    create_topic(&broker, &to, 2);
    let input = concat!(
        r#"{"key":"k1","value":"v1","partition":0,"timestamp":1700000000000,"headers":[{"key":"a","value":"1"},{"key":"n","value":null}]}"#,
        "\n",
        r#"{"key":null,"value":null,"partition":1,"timestamp":1700000000001}"#,
        "\n\n",
        r#"{"key":"bin","value":"/wA=","value_encoding":"base64","partition":1,"timestamp":1700000000002}"#,
        "\n",
        r#"{"value":"a long value that will be cut","partition":0,"timestamp":1700000000003}"#,
        "\n",
    );
    let produced = run_ok(
        josefine(&broker).args(["produce", "--topic", &from, "--json"]),
        input.as_bytes(),
    );
    assert!(String::from_utf8_lossy(&produced.stderr).starts_with("produced 4 record(s)"));
    let consume_json = |topic: &str| {
        let out = run_ok(
            josefine(&broker)
                .args([
                    "consume",
                    "--topic",
                    topic,
                    "--from-beginning",
                    "--exit-at-end",
                ])
                .args(["--format", "json"]),
            b"",
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let copied = consume_json(&from);
    run_ok(
        josefine(&broker).args(["produce", "--topic", &to, "--json"]),
        copied.as_bytes(),
    );
    let normalise = |text: &str| {
        let mut rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("topic");
                v
            })
            .collect();
        rows.sort_by_key(|v| v["timestamp"].as_i64());
        rows
    };
    let (original, copy) = (normalise(&copied), normalise(&consume_json(&to)));
    assert_eq!(original.len(), 4, "{copied}");
    assert_eq!(original, copy, "the copy has every field of the original");
    assert_eq!(original[0]["headers"][1]["value"], serde_json::Value::Null);
    assert_eq!(original[1]["value"], serde_json::Value::Null, "a tombstone");
    assert_eq!(original[2]["value_encoding"], "base64");

    let bad = run(
        josefine(&broker).args(["produce", "--topic", &to, "--json"]),
        b"{\"value\":\"ok\"}\n{\"value\": 5}\n",
    );
    assert_one_clear_line(&bad, "input line 2: value must be a string or null");

    let cut = run_ok(
        josefine(&broker)
            .args([
                "consume",
                "--topic",
                &from,
                "--from-beginning",
                "--exit-at-end",
            ])
            .args(["--partition", "0", "--max-bytes", "6"]),
        b"",
    );
    let cut = String::from_utf8(cut.stdout).unwrap();
    assert!(cut.lines().any(|l| l == "a long...[+23 bytes]"), "{cut}");
    assert!(cut.lines().any(|l| l == "v1"), "{cut}");
}

/// `acls create | list | delete`: a prefixed allow shows up for a topic it covers, a
/// literal list does not show it, delete says what it removed; unclear input fails
/// with one line.
#[test]
fn acls_are_created_listed_and_deleted() {
    let broker = real_broker!();
    let prefix = common::unique("cli-acl");
    let topic = format!("{prefix}-orders");
    let principal = format!("User:{}", common::unique("carol"));
    let created = run_ok(
        josefine(&broker).args([
            "acls",
            "create",
            "--topic",
            &prefix,
            "--prefixed",
            "--principal",
            &principal,
            "--operation",
            "read",
        ]),
        b"",
    );
    assert!(String::from_utf8_lossy(&created.stdout).starts_with("created Topic:"));
    let list = |args: &[&str]| {
        let out = run_ok(josefine(&broker).args(["acls", "list"]).args(args), b"");
        String::from_utf8(out.stdout).unwrap()
    };
    let applying = list(&["--topic", &topic]);
    assert!(
        applying.contains(&principal)
            && applying.contains("(prefix)")
            && applying.contains("Allow Read"),
        "{applying}"
    );
    assert_eq!(
        list(&["--topic", &topic, "--literal"]).trim(),
        "no ACLs match"
    );
    assert!(list(&["--principal", &principal]).contains(&prefix));

    let deleted = run_ok(
        josefine(&broker).args(["acls", "delete", "--principal", &principal]),
        b"",
    );
    let deleted = String::from_utf8(deleted.stdout).unwrap();
    assert_eq!(deleted.lines().count(), 1, "{deleted}");
    assert!(deleted.starts_with("deleted Topic:"), "{deleted}");
    assert_eq!(list(&["--principal", &principal]).trim(), "no ACLs match");

    let unnamed = run(
        josefine(&broker).args([
            "acls",
            "create",
            "--principal",
            &principal,
            "--operation",
            "read",
        ]),
        b"",
    );
    assert_one_clear_line(&unnamed, "name the resource");
    let bad_principal = run(
        josefine(&broker).args([
            "acls",
            "create",
            "--topic",
            "t",
            "--principal",
            "carol",
            "--operation",
            "read",
        ]),
        b"",
    );
    assert_one_clear_line(&bad_principal, "a principal is TYPE:NAME");
    let everything = run(josefine(&broker).args(["acls", "delete"]), b"");
    assert_one_clear_line(&everything, "or give --all");
}

/// `josefine ... | head -1`: the reader goes away; the CLI ends quietly (no panic),
/// and `broker-config` lists a broker's entries with their sources.
#[test]
fn a_closed_pipe_ends_quietly_and_broker_configs_are_listed() {
    let broker = real_broker!();
    let mut child = josefine(&broker)
        .args(["broker-config", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the CLI has connected, let alone printed.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");

    let overrides = run_ok(
        josefine(&broker).args(["broker-config", "1", "--overrides"]),
        b"",
    );
    let overrides = String::from_utf8(overrides.stdout).unwrap();
    assert!(
        overrides.lines().all(|l| !l.ends_with("(default)")),
        "{overrides}"
    );
    assert!(overrides.contains("broker.id=1"), "{overrides}");
}

/// `--metrics-addr`: a group consumer serves its metrics in Prometheus text format
/// while it runs; a scrape shows its fetched records, heartbeats and commits.
#[test]
fn a_consumer_serves_its_metrics_to_prometheus() {
    let broker = real_broker!();
    let topic = common::unique("cli-metrics");
    let group = common::unique("cli-metrics-group");
    create_topic(&broker, &topic, 2);
    run_ok(
        josefine(&broker).args(["produce", "--topic", &topic, "--count", "100"]),
        b"",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = josefine(&broker)
        .args(["--metrics-addr", &addr])
        .args([
            "consume",
            "--topic",
            &topic,
            "--group",
            &group,
            "--from-beginning",
        ])
        .args(["--format", "raw", "-X", "auto.commit.interval.ms=200"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scrape = || -> Option<String> {
        let mut stream = std::net::TcpStream::connect(&addr).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        std::io::Read::read_to_string(&mut stream, &mut body).ok()?;
        Some(body)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let fetched = |body: &str| -> u64 {
        body.lines()
            .filter(|l| l.starts_with("josefine_consumer_records{") && l.contains(&topic))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let body = loop {
        if let Some(body) = scrape() {
            if fetched(&body) == 100
                && body.lines().any(|l| {
                    l.starts_with("josefine_group_commits{")
                        && l.contains(&format!("group=\"{group}\""))
                        && l.contains("result=\"ok\"")
                        && !l.ends_with(" 0")
                })
            {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no complete scrape within 60 s: {:?}",
            scrape()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("josefine_group_heartbeats{"), "{body}");
    assert!(body.contains("josefine_request_latency_seconds"), "{body}");
    sigint(child.id());
    let status = child.wait().unwrap();
    assert!(status.success());
}

/// `produce --transactional-id`: one transaction per `--transaction-size` records;
/// bad input aborts the open transaction, so a read_committed reader sees the
/// committed transactions only (and the sentinel a later run commits right after).
#[test]
fn transactional_produce_commits_whole_transactions_and_aborts_on_bad_input() {
    let kafka = real_kafka!();
    let broker = kafka.plaintext;
    let topic = common::unique("cli-txn");
    create_topic(&broker, &topic, 1);
    let id = common::unique("cli-txn-id");
    let mut input = String::new();
    for i in 0..25 {
        input.push_str(&format!("{{\"value\": \"v{i}\"}}\n"));
    }
    input.push_str("not json\n");
    let failed = run(
        josefine(&broker).args([
            "produce",
            "--topic",
            &topic,
            "--json",
            "--transactional-id",
            &id,
            "--transaction-size",
            "10",
        ]),
        input.as_bytes(),
    );
    assert_one_clear_line(&failed, "input line 26");
    run_ok(
        josefine(&broker).args(["produce", "--topic", &topic, "--transactional-id", &id]),
        b"end\n",
    );
    let read = run_ok(
        josefine(&broker).args([
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--count",
            "21",
            "--format",
            "raw",
            "-X",
            "isolation.level=read_committed",
        ]),
        b"",
    );
    let mut expected: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    expected.push("end".into());
    assert_eq!(
        String::from_utf8(read.stdout)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        expected,
        "v20..v24 were in the aborted transaction"
    );
}
