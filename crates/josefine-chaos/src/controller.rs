//! The controller's processes and its loop: moto (S3), Tansu on `s3://` (so a kill -9
//! loses nothing), the producer and the members, each a child process; a tick every
//! 100 ms reaps exits, starts what is due back, reads the members' status files for
//! the settle watch and takes the committed offsets the poller read.
//!
//! In the exactly-once mode (`Settings::exactly_once`, Kafka only) the members write
//! to an output topic the controller creates too, and keep no status files: the
//! poller also asks the coordinator for the group (ConsumerGroupDescribe), and the
//! settle watch judges from that ([`crate::group_view`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use josefine::{Client, GroupDescription, NewTopic, TopicPartition};
use tokio::sync::mpsc;

use crate::check::End;
use crate::group_view::{client_id, CoordinatorView, GroupSnapshot};
use crate::logs::now_ms;
use crate::member::status_path;
use crate::process::{create_bucket, free_port, wait_for_port, Proc};
use crate::schedule::{Action, Event};
use crate::status::{settled, Status};
use crate::watch::{CommitWatch, SettleWatch};

const TICK: Duration = Duration::from_millis(100);
/// How long the group must stay settled to count as settled (see `SettleWatch`).
const SETTLE_STABLE: Duration = Duration::from_secs(2);
/// How long a member may take to leave after SIGTERM before it counts as stuck.
const LEAVE_GRACE: Duration = Duration::from_secs(20);

pub struct Settings {
    pub seed: u64,
    pub members: usize,
    pub partitions: i32,
    pub rate: u64,
    pub idempotence: bool,
    pub dir: PathBuf,
    /// Where the group runs: Tansu on S3 started here, or a Kafka started outside.
    pub broker: BrokerSetup,
    /// The members' `group.protocol`: "classic" or "consumer" (KIP-848).
    pub group_protocol: String,
    pub settle_timeout: Duration,
    pub session_timeout_ms: u64,
    /// Members process records in parallel (`ConsumerGroup::process`, key-ordered)
    /// with this many in flight; 0: one batch at a time per partition.
    pub parallel: usize,
    /// Members run `ConsumerGroup::transact` into an output topic (`eos_member`).
    pub exactly_once: bool,
}

/// Commit interval of the exactly-once members' transactions.
const EOS_COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// The producer's `linger.ms` in the exactly-once mode.
const EOS_PRODUCER_LINGER_MS: u64 = 10;

/// What the poller read from the coordinator.
enum Poll {
    Committed(BTreeMap<i32, i64>),
    /// Exactly-once mode: the group as ConsumerGroupDescribe reports it.
    Group(GroupDescription),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub member_kills: usize,
    pub member_restarts: usize,
    pub leaves: usize,
    pub joins: usize,
    pub broker_kills: usize,
    pub broker_restarts: usize,
    pub member_crashes: usize,
    pub producer_crashes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Leaving(Instant),
    Down,
}

struct Member {
    proc: Option<Proc>,
    incarnation: u32,
    state: State,
}

/// The broker under test.
#[derive(Debug, Clone)]
pub enum BrokerSetup {
    /// Tansu on `s3://` (moto), started, killed and restarted by the controller.
    Tansu { tansu: PathBuf, moto: PathBuf },
    /// A broker started outside (Apache Kafka 4.4, by scripts/chaos.sh --kafka); the
    /// plan has no broker kills for it.
    External { bootstrap: String },
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    StartMember(usize),
    StartBroker,
}

pub struct Chaos {
    pub s: Settings,
    t0: Instant,
    pub topic: String,
    pub group: String,
    /// Exactly-once mode: the topic the members write to.
    pub output: Option<String>,
    /// Exactly-once mode: the group as last described, and what is made of it.
    described: Option<GroupDescription>,
    view: CoordinatorView,
    /// moto and Tansu, when the controller runs them.
    moto: Option<Proc>,
    broker: Option<Proc>,
    broker_port: u16,
    pub bootstrap: String,
    /// The controller's own connection (topic, committed offsets, the audit).
    pub client: Client,
    broker_up: bool,
    producer: Proc,
    producer_incarnation: u32,
    members: Vec<Member>,
    /// How each member incarnation ended.
    pub ends: Vec<(usize, u32, End)>,
    pending: Vec<(Instant, Pending)>,
    pub counts: Counts,
    pub broker_kill_ms: Vec<u64>,
    pub settle: SettleWatch,
    pub commits: CommitWatch,
    commit_polls: mpsc::UnboundedReceiver<Poll>,
    poller: Option<tokio::task::JoinHandle<()>>,
    /// Things that went wrong outside the logs' checks.
    pub failures: Vec<String>,
    events: File,
}

impl Chaos {
    /// Starts moto, Tansu on S3, the topic, the producer and the members, and waits
    /// for the group's first settle.
    pub async fn start(s: Settings) -> anyhow::Result<Self> {
        let t0 = Instant::now();
        let events = File::create(s.dir.join("events.log"))?;
        let (moto, broker, broker_port, bootstrap, started) = match &s.broker {
            BrokerSetup::Tansu { tansu, moto } => {
                let moto_port = free_port()?;
                let mut moto = Proc::new("moto", moto, &s.dir.join("moto.log"))
                    .arg("-H")
                    .arg("127.0.0.1")
                    .arg("-p")
                    .arg(moto_port.to_string());
                moto.start()?;
                wait_for_port(&mut moto, moto_port, Duration::from_secs(30)).await?;
                create_bucket(moto_port, "tansu")?;

                let broker_port = free_port()?;
                let listener = format!("tcp://127.0.0.1:{broker_port}");
                let endpoint = format!("http://127.0.0.1:{moto_port}");
                let mut broker = Proc::new("tansu", tansu, &s.dir.join("tansu.log"))
                    .arg("broker")
                    .arg("--listener-url")
                    .arg(&listener)
                    .arg("--advertised-listener-url")
                    .arg(&listener)
                    .arg("--storage-engine")
                    .arg("s3://tansu/")
                    .arg("--cluster-id")
                    .arg("chaos")
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env("AWS_ENDPOINT", &endpoint)
                    .env("AWS_ALLOW_HTTP", "true");
                broker.start()?;
                wait_for_port(&mut broker, broker_port, Duration::from_secs(30)).await?;
                let bootstrap = format!("127.0.0.1:{broker_port}");
                let started = format!("moto on {moto_port}, Tansu (s3://tansu/) on {bootstrap}");
                (Some(moto), Some(broker), broker_port, bootstrap, started)
            }
            BrokerSetup::External { bootstrap } => {
                let started = format!("the broker at {bootstrap} (started outside)");
                (None, None, 0, bootstrap.clone(), started)
            }
        };

        let topic = format!("chaos-{}", s.seed);
        let group = format!("chaos-group-{}", s.seed);
        let client = Client::builder()
            .bootstrap([bootstrap.as_str()])
            .connect()
            .await?;
        client
            .admin()
            .create_topic(NewTopic::new(&topic, s.partitions))
            .await
            .context("creating the topic")?;
        client
            .admin()
            .wait_for_topic(&topic, Duration::from_secs(30))
            .await?;
        let output = s.exactly_once.then(|| format!("{topic}-out"));
        if let Some(output) = &output {
            client
                .admin()
                .create_topic(NewTopic::new(output, s.partitions))
                .await
                .context("creating the output topic")?;
            client
                .admin()
                .wait_for_topic(output, Duration::from_secs(30))
                .await?;
        }

        let (tx, commit_polls) = mpsc::unbounded_channel();
        let poller = tokio::spawn(poll_commits(
            client.clone(),
            group.clone(),
            topic.clone(),
            s.partitions,
            s.exactly_once,
            tx,
        ));
        let producer = Proc::new("producer", self_exe()?, &s.dir.join("producer.out"));
        let members = (0..s.members)
            .map(|_| Member {
                proc: None,
                incarnation: 0,
                state: State::Down,
            })
            .collect();
        let mut chaos = Self {
            settle: SettleWatch::new(s.settle_timeout, SETTLE_STABLE),
            s,
            t0,
            topic,
            group,
            output,
            described: None,
            view: CoordinatorView::default(),
            moto,
            broker,
            broker_port,
            bootstrap,
            client,
            broker_up: true,
            producer,
            producer_incarnation: 0,
            members,
            ends: Vec::new(),
            pending: Vec::new(),
            counts: Counts::default(),
            broker_kill_ms: Vec::new(),
            commits: CommitWatch::default(),
            commit_polls,
            poller: Some(poller),
            failures: Vec::new(),
            events,
        };
        chaos.say(format!(
            "{started}, topic {} ({} partitions), group.protocol={}{}",
            chaos.topic,
            chaos.s.partitions,
            chaos.s.group_protocol,
            match (&chaos.output, chaos.s.parallel) {
                (Some(output), _) => format!(
                    ", exactly-once: ConsumerGroup::transact into {output}, transactions every {EOS_COMMIT_INTERVAL:?}"
                ),
                (None, 0) => String::new(),
                (None, n) => format!(", parallel key-ordered processing ({n} in flight)"),
            }
        ));
        chaos.start_producer()?;
        for id in 0..chaos.s.members {
            chaos.start_member(id)?;
        }
        chaos.settle.disturb("start", Instant::now(), 0);
        chaos.wait_settled("the first join").await?;
        // The first join is not a disturbance: its time is not among the settle times.
        let first = chaos
            .settle
            .times
            .pop()
            .map(|(_, took)| took)
            .unwrap_or_default();
        chaos.say(format!(
            "first join: {} members own the {} partitions after {:.1} s",
            chaos.s.members,
            chaos.s.partitions,
            first.as_secs_f64()
        ));
        Ok(chaos)
    }

    pub fn elapsed(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn say(&mut self, text: String) {
        let line = format!("[{:7.1} s] {text}", self.t0.elapsed().as_secs_f64());
        eprintln!("{line}");
        let _ = writeln!(self.events, "{line}");
    }

    fn start_producer(&mut self) -> anyhow::Result<()> {
        let log = self
            .s
            .dir
            .join(format!("producer-{}.log", self.producer_incarnation));
        // Each incarnation numbers its records in a range of its own.
        let first_seq = u64::from(self.producer_incarnation) * 1_000_000_000;
        let mut args = vec![
            "producer".into(),
            "--bootstrap".into(),
            self.bootstrap.clone(),
            "--topic".into(),
            self.topic.clone(),
            "--partitions".into(),
            self.s.partitions.to_string(),
            "--rate".into(),
            self.s.rate.to_string(),
            "--log".into(),
            log.display().to_string(),
            "--first-seq".into(),
            first_seq.to_string(),
        ];
        if !self.s.idempotence {
            args.push("--no-idempotence".into());
        }
        if self.s.exactly_once {
            // Records arrive all the time rather than in a burst a second, so a
            // member killed at any moment leaves a transaction with outputs and
            // offsets open (the producer's default linger suits Tansu, not this).
            args.extend(["--linger-ms".into(), EOS_PRODUCER_LINGER_MS.to_string()]);
        }
        self.producer.set_args(os_args(&args));
        self.producer.start()
    }

    fn start_member(&mut self, id: usize) -> anyhow::Result<()> {
        let member = &mut self.members[id];
        if member.proc.is_some() {
            member.incarnation += 1;
        }
        let incarnation = member.incarnation;
        let out = self.s.dir.join(format!("member-{id}-{incarnation}.out"));
        let mut proc = Proc::new(format!("member {id}"), self_exe()?, &out);
        let mut args = vec![
            "member".into(),
            "--bootstrap".into(),
            self.bootstrap.clone(),
            "--group".into(),
            self.group.clone(),
            "--topic".into(),
            self.topic.clone(),
            "--dir".into(),
            self.s.dir.display().to_string(),
            "--id".into(),
            id.to_string(),
            "--incarnation".into(),
            incarnation.to_string(),
            "--session-timeout-ms".into(),
            self.s.session_timeout_ms.to_string(),
            "--group-protocol".into(),
            self.s.group_protocol.clone(),
        ];
        match &self.output {
            Some(output) => args.extend([
                "--exactly-once".into(),
                "--output-topic".into(),
                output.clone(),
                "--commit-interval-ms".into(),
                EOS_COMMIT_INTERVAL.as_millis().to_string(),
            ]),
            None => args.extend(["--parallel".into(), self.s.parallel.to_string()]),
        }
        proc.set_args(os_args(&args));
        proc.start()?;
        member.proc = Some(proc);
        member.state = State::Running;
        Ok(())
    }

    /// Members that should be in the group now: (id, incarnation).
    fn expected(&self) -> Vec<(usize, u32)> {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.state == State::Running)
            .map(|(id, m)| (id, m.incarnation))
            .collect()
    }

    fn group_state(&mut self, since_ms: u64) -> Result<(), String> {
        if !self.broker_up {
            return Err("the broker is down".into());
        }
        let expected = self.expected();
        if self.output.is_some() {
            let expected: Vec<String> = expected
                .iter()
                .map(|&(id, incarnation)| client_id(id, incarnation))
                .collect();
            let Some(group) = &self.described else {
                return Err("the coordinator has not described the group yet".into());
            };
            // With a disturbance open, the current owners must have committed since
            // they got their partitions: their transactions work.
            return self.view.settled(
                &expected,
                &GroupSnapshot::from(group),
                &self.commits.last,
                &self.topic,
                self.s.partitions,
                since_ms > 0,
            );
        }
        let mut statuses = std::collections::HashMap::new();
        for &(id, _) in &expected {
            match Status::read(&status_path(&self.s.dir, id)) {
                Ok(Some(status)) => {
                    statuses.insert(id, status);
                }
                Ok(None) => {}
                Err(err) => return Err(format!("member {id}'s status: {err}")),
            }
        }
        settled(&expected, &statuses, self.s.partitions, since_ms)
    }

    /// One round of the loop: reap, start what is due, watch; then sleep a tick.
    pub async fn tick(&mut self) -> anyhow::Result<()> {
        self.reap().await?;
        self.start_due().await?;
        while let Ok(poll) = self.commit_polls.try_recv() {
            match poll {
                Poll::Committed(committed) => {
                    let at = format!("{:.1} s", self.t0.elapsed().as_secs_f64());
                    self.commits.observe(&committed, &at);
                }
                Poll::Group(group) => self.described = Some(group),
            }
        }
        let state = self.group_state(self.settle.since_ms());
        let was_open = self.settle.disturbance().map(String::from);
        if let Some(took) = self.settle.observe(state, Instant::now(), now_ms()) {
            let what = was_open.unwrap_or_default();
            self.say(format!(
                "settled in {:.1} s after {what}",
                took.as_secs_f64()
            ));
        }
        tokio::time::sleep(TICK).await;
        Ok(())
    }

    /// Notices processes that ended: a running member or the producer exiting is a
    /// crash (it is started again), a leaving member's exit completes its leave.
    async fn reap(&mut self) -> anyhow::Result<()> {
        for id in 0..self.members.len() {
            let m = &mut self.members[id];
            let Some(proc) = m.proc.as_mut() else {
                continue;
            };
            match m.state {
                State::Running => {
                    if let Some(status) = proc.exited() {
                        let incarnation = m.incarnation;
                        m.state = State::Down;
                        self.ends.push((id, incarnation, End::Crashed));
                        self.counts.member_crashes += 1;
                        self.failures.push(format!(
                            "member {id} incarnation {incarnation} exited by itself ({status})"
                        ));
                        self.say(format!(
                            "member {id} exited by itself ({status}); starting it again"
                        ));
                        self.start_member(id)?;
                        self.settle.disturb(
                            format!("crash of member {id}"),
                            Instant::now(),
                            now_ms(),
                        );
                    }
                }
                State::Leaving(since) => {
                    let incarnation = m.incarnation;
                    if let Some(status) = proc.exited() {
                        m.state = State::Down;
                        let end = if status.success() {
                            End::Left
                        } else {
                            End::Crashed
                        };
                        self.ends.push((id, incarnation, end));
                        if !status.success() {
                            self.counts.member_crashes += 1;
                            self.failures
                                .push(format!("member {id} failed while leaving ({status})"));
                        }
                    } else if since.elapsed() > LEAVE_GRACE {
                        proc.kill9().await;
                        m.state = State::Down;
                        self.ends.push((id, incarnation, End::Crashed));
                        self.counts.member_crashes += 1;
                        self.failures.push(format!(
                            "member {id} incarnation {incarnation} did not leave within {LEAVE_GRACE:?} of SIGTERM"
                        ));
                    }
                }
                State::Down => {}
            }
        }
        if let Some(status) = self.producer.exited() {
            self.counts.producer_crashes += 1;
            self.failures
                .push(format!("the producer exited by itself ({status})"));
            self.producer_incarnation += 1;
            self.say(format!(
                "the producer exited ({status}); starting incarnation {}",
                self.producer_incarnation
            ));
            self.start_producer()?;
        }
        if self.broker_up {
            if let Some(status) = self.broker.as_mut().and_then(Proc::exited) {
                bail!("Tansu exited by itself ({status}); see tansu.log");
            }
        }
        if let Some(status) = self.moto.as_mut().and_then(Proc::exited) {
            bail!("moto exited by itself ({status}); see moto.log");
        }
        Ok(())
    }

    async fn start_due(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            let (at, what) = self.pending[i];
            let ready = at <= now
                && match what {
                    // A member comes back only once its previous process is gone.
                    Pending::StartMember(id) => self.members[id].state == State::Down,
                    Pending::StartBroker => true,
                };
            if !ready {
                i += 1;
                continue;
            }
            self.pending.remove(i);
            match what {
                Pending::StartMember(id) => {
                    let was_kill = matches!(
                        self.ends.iter().rev().find(|e| e.0 == id),
                        Some((_, _, End::Killed))
                    );
                    self.start_member(id)?;
                    if was_kill {
                        self.counts.member_restarts += 1;
                    } else {
                        self.counts.joins += 1;
                    }
                    let inc = self.members[id].incarnation;
                    self.say(format!("start member {id} (incarnation {inc})"));
                    self.settle
                        .disturb(format!("start of member {id}"), Instant::now(), now_ms());
                }
                Pending::StartBroker => {
                    let started = Instant::now();
                    let broker = self
                        .broker
                        .as_mut()
                        .expect("only a broker run here is killed");
                    broker.start()?;
                    wait_for_port(broker, self.broker_port, Duration::from_secs(60)).await?;
                    self.broker_up = true;
                    self.counts.broker_restarts += 1;
                    self.say(format!(
                        "Tansu is back on {} (listening after {:.2} s)",
                        self.bootstrap,
                        started.elapsed().as_secs_f64()
                    ));
                    self.settle
                        .disturb("broker restart", Instant::now(), now_ms());
                }
            }
        }
        Ok(())
    }

    /// Fires one planned event.
    pub async fn fire(&mut self, event: &Event) -> anyhow::Result<()> {
        let back = Instant::now() + Duration::from_millis(event.back_after_ms);
        let back_s = event.back_after_ms as f64 / 1000.0;
        match event.action {
            Action::KillMember | Action::LeaveMember => {
                let running: Vec<usize> = self.expected().iter().map(|&(id, _)| id).collect();
                if running.len() < 2 {
                    self.say("event skipped: fewer than two members run".into());
                    return Ok(());
                }
                let id = running[(event.target % running.len() as u64) as usize];
                let m = &mut self.members[id];
                let incarnation = m.incarnation;
                let proc = m.proc.as_mut().expect("a running member has a process");
                if event.action == Action::KillMember {
                    proc.kill9().await;
                    m.state = State::Down;
                    self.ends.push((id, incarnation, End::Killed));
                    self.counts.member_kills += 1;
                    self.say(format!(
                        "kill -9 member {id} (incarnation {incarnation}); back in {back_s:.1} s"
                    ));
                } else {
                    proc.sigterm();
                    m.state = State::Leaving(Instant::now());
                    self.counts.leaves += 1;
                    self.say(format!("SIGTERM member {id} (incarnation {incarnation}): it leaves; rejoins in {back_s:.1} s"));
                }
                self.pending.push((back, Pending::StartMember(id)));
                self.settle.disturb(
                    format!("{:?} of member {id}", event.action),
                    Instant::now(),
                    now_ms(),
                );
            }
            Action::KillBroker => {
                let Some(broker) = self.broker.as_mut() else {
                    self.say("event skipped: the broker was started outside".into());
                    return Ok(());
                };
                if !self.broker_up {
                    self.say("event skipped: the broker is already down".into());
                    return Ok(());
                }
                broker.kill9().await;
                self.broker_up = false;
                self.broker_kill_ms.push(now_ms());
                self.counts.broker_kills += 1;
                self.say(format!("kill -9 the broker; back in {back_s:.1} s"));
                self.pending.push((back, Pending::StartBroker));
                self.settle.disturb("broker kill", Instant::now(), now_ms());
            }
        }
        Ok(())
    }

    /// Ticks until nothing is due back and no member is still leaving.
    pub async fn quiesce(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty()
            || self
                .members
                .iter()
                .any(|m| matches!(m.state, State::Leaving(_)))
        {
            self.tick().await?;
        }
        Ok(())
    }

    /// Ticks until the group settles; `Err` after the settle timeout.
    pub async fn wait_settled(&mut self, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.s.settle_timeout;
        while !self.settle.is_settled() {
            if Instant::now() > deadline {
                bail!(
                    "{what}: the group did not settle within {:?} ({})",
                    self.s.settle_timeout,
                    self.settle.waiting_for().unwrap_or_default()
                );
            }
            self.tick().await?;
        }
        Ok(())
    }

    /// Stops the producer (SIGTERM: it waits for what is in flight).
    pub async fn stop_producer(&mut self) {
        match self.producer.stop(Duration::from_secs(150)).await {
            Some(status) if status.success() => {}
            other => self
                .failures
                .push(format!("the producer did not stop cleanly ({other:?})")),
        }
    }

    /// Ticks until every partition's committed offset reaches `ends`.
    pub async fn drain(
        &mut self,
        ends: &BTreeMap<i32, i64>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let behind: Vec<String> = ends
                .iter()
                .filter(|(p, &end)| self.commits.last.get(p).copied().unwrap_or(0) < end)
                .map(|(p, end)| {
                    format!(
                        "{p}: {} of {end}",
                        self.commits.last.get(p).copied().unwrap_or(0)
                    )
                })
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.failures.push(format!(
                    "the group did not commit up to the end within {timeout:?}: {behind:?}"
                ));
                return Ok(());
            }
            self.tick().await?;
        }
    }

    /// Whether every partition has an owner now (no commit needed: nothing is left
    /// to commit at the end).
    pub fn owners_now(&mut self) -> Result<(), String> {
        self.group_state(0)
    }

    /// SIGTERMs every running member at once and waits for each to leave.
    pub async fn stop_members(&mut self) {
        for m in &self.members {
            if m.state == State::Running {
                if let Some(proc) = &m.proc {
                    proc.sigterm();
                }
            }
        }
        for id in 0..self.members.len() {
            let m = &mut self.members[id];
            if m.state != State::Running {
                continue;
            }
            let incarnation = m.incarnation;
            let proc = m.proc.as_mut().expect("a running member has a process");
            let end = match proc.wait_exit(LEAVE_GRACE).await {
                Some(status) if status.success() => End::Stopped,
                other => {
                    self.failures
                        .push(format!("member {id} did not stop cleanly ({other:?})"));
                    End::Crashed
                }
            };
            m.state = State::Down;
            self.ends.push((id, incarnation, end));
        }
    }

    /// Stops the poller, the broker and moto (SIGTERM, then SIGKILL).
    pub async fn stop_services(&mut self) {
        if let Some(poller) = self.poller.take() {
            poller.abort();
        }
        self.producer.stop(Duration::from_secs(5)).await;
        for m in &mut self.members {
            if let Some(proc) = m.proc.as_mut() {
                proc.kill9().await;
            }
        }
        if let Some(broker) = self.broker.as_mut() {
            broker.stop(Duration::from_secs(5)).await;
        }
        if let Some(moto) = self.moto.as_mut() {
            moto.stop(Duration::from_secs(5)).await;
        }
    }

    pub fn member_logs(&self) -> Vec<(usize, u32, End, PathBuf)> {
        self.ends
            .iter()
            .map(|&(id, inc, end)| (id, inc, end, crate::member::log_path(&self.s.dir, id, inc)))
            .collect()
    }

    pub fn producer_logs(&self) -> Vec<PathBuf> {
        (0..=self.producer_incarnation)
            .map(|i| self.s.dir.join(format!("producer-{i}.log")))
            .collect()
    }
}

/// Reads the group's committed offsets every 300 ms on a connection of its own (the
/// client reconnects by itself after a broker restart), and with `describe` the
/// group's members first (a new assignment is then compared with commits read after
/// it); failed reads are skipped.
async fn poll_commits(
    client: Client,
    group: String,
    topic: String,
    partitions: i32,
    describe: bool,
    tx: mpsc::UnboundedSender<Poll>,
) {
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic.as_str(), p))
        .collect();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if describe {
            let read = tokio::time::timeout(
                Duration::from_secs(2),
                client.admin().describe_group(&group),
            )
            .await;
            if let Ok(Ok(described)) = read {
                if tx.send(Poll::Group(described)).is_err() {
                    return;
                }
            }
        }
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            client.admin().committed_offsets(&group, &tps),
        )
        .await;
        if let Ok(Ok(committed)) = read {
            let committed = committed
                .into_iter()
                .map(|(tp, o)| (tp.partition, o))
                .collect();
            if tx.send(Poll::Committed(committed)).is_err() {
                return;
            }
        }
    }
}

fn self_exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding our own executable")
}

fn os_args(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}
