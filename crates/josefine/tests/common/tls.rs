//! The TLS peer for the TLS tests: a dedicated Tansu behind Debian's stunnel, with
//! certificates made at test time.
//!
//! Tansu's own TLS does not work (`--cert` and `--key` cannot be given together and the
//! acceptor is never used; shared notes, tansu.md, "Security"), so stunnel terminates
//! TLS in front of it:
//!
//! ```text
//! client --TLS--> stunnel 127.0.0.1:T --plaintext--> Tansu 127.0.0.1:P
//! ```
//!
//! Tansu advertises `localhost:T` (`--advertised-listener-url`), so a client that
//! bootstraps at [`TlsBroker::bootstrap`] is sent back to the TLS port by Metadata and
//! never sees the plaintext port. Each [`TlsBroker`] has its own Tansu (memory storage),
//! its own stunnel, and a temp dir holding the PEM files, stunnel's config and both logs;
//! dropping it stops both processes (SIGTERM, then SIGKILL) and removes the dir.
//!
//! The binaries come from `JOSEFINE_TANSU` and `JOSEFINE_STUNNEL` (exported by
//! `scripts/test.sh`); without them a test is skipped, or fails under `CI` /
//! `JOSEFINE_REQUIRE_BROKER` (the same rule as [`super::broker`]).
//!
//! Quirk worth knowing when writing client tests: with TLS 1.3 a server that requires a
//! client certificate checks it *after* the client considers the handshake done, so a
//! client without a certificate connects "successfully" and sees the rejection (alert
//! 116, certificate_required) only on its first read. Assert on a request, not on the
//! connect, in a "no client certificate" test.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// Which certificate stunnel presents, and whether it demands one from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVariant {
    /// A certificate for `localhost` signed by the fixture's CA: the happy path. Also the
    /// one for "wrong CA" tests: trust [`TlsBroker::other_ca_pem_path`] instead.
    Valid,
    /// Signed by the CA, for `localhost`, but expired on 2021-01-01.
    Expired,
    /// Signed by the CA and valid, but for `not-localhost.example` only.
    WrongName,
    /// As [`TlsVariant::Valid`], and stunnel requires a client certificate that chains
    /// to the CA (mTLS): use [`TlsBroker::client_cert_path`] and
    /// [`TlsBroker::client_key_path`].
    MutualTls,
}

/// The host name in the server certificate of every variant but [`TlsVariant::WrongName`].
pub const SERVER_NAME: &str = "localhost";
/// The only name in the [`TlsVariant::WrongName`] certificate.
pub const OTHER_NAME: &str = "not-localhost.example";

/// How long Tansu and stunnel get to open their ports (Tansu takes ~30 ms when idle).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a process gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Free ports are picked by binding port 0 and closing it, so another process can take
/// one before Tansu or stunnel binds it; a failed start is retried on fresh ports.
const START_ATTEMPTS: usize = 3;

/// A Tansu broker reachable only over TLS, at `localhost:T`. See the module docs.
pub struct TlsBroker {
    // Fields drop in order: the processes first, then the temp dir holding the
    // certificates, stunnel's config and both logs.
    processes: Processes,
    pki: Pki,
}

/// What one start attempt launched.
struct Processes {
    // Drop order: stunnel first (no new TLS sessions reach a stopping Tansu), then Tansu.
    stunnel: Process,
    tansu: Process,
    tls_port: u16,
    plaintext_port: u16,
}

impl TlsBroker {
    /// Starts Tansu and stunnel for `variant` and waits until the TLS port accepts.
    ///
    /// `None` when `JOSEFINE_TANSU` or `JOSEFINE_STUNNEL` is not set and no broker is
    /// required (the test should return); panics when one is required, or when the
    /// processes cannot be started. Blocks the calling thread for the start (tens of
    /// milliseconds), which is fine in a `#[tokio::test]` too.
    pub fn start(variant: TlsVariant) -> Option<TlsBroker> {
        let (tansu, stunnel) = binaries()?;
        let pki = Pki::generate(variant);
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match launch(&tansu, &stunnel, &pki, variant) {
                Ok(processes) => return Some(TlsBroker { processes, pki }),
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "could not start the TLS broker ({variant:?}) in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// `localhost:T`, the TLS port; the address Tansu advertises in Metadata. stunnel
    /// listens on 127.0.0.1 only: where `localhost` also resolves to `::1`, a client must
    /// go on to the next address (tokio's `TcpStream::connect` does).
    pub fn bootstrap(&self) -> String {
        format!("{SERVER_NAME}:{}", self.processes.tls_port)
    }

    /// The TLS port T (stunnel, on 127.0.0.1).
    pub fn tls_port(&self) -> u16 {
        self.processes.tls_port
    }

    /// `127.0.0.1:P`, Tansu's own plaintext listener behind stunnel. Clients cannot use
    /// it as a bootstrap (Metadata sends them to the TLS port); it is here so a test can
    /// tell "stunnel refused" from "Tansu is down".
    pub fn plaintext_addr(&self) -> String {
        format!("127.0.0.1:{}", self.processes.plaintext_port)
    }

    /// The CA that signed every server certificate and the client certificate.
    pub fn ca_pem_path(&self) -> &Path {
        &self.pki.ca
    }

    /// A second, unrelated CA: trusting only it must fail verification ("wrong CA").
    pub fn other_ca_pem_path(&self) -> &Path {
        &self.pki.other_ca
    }

    /// A client certificate (CN `josefine-test-client`) signed by the CA, for mTLS.
    pub fn client_cert_path(&self) -> &Path {
        &self.pki.client_cert
    }

    /// The client certificate's private key (PKCS#8 PEM, ECDSA P-256).
    pub fn client_key_path(&self) -> &Path {
        &self.pki.client_key
    }

    /// The server certificate stunnel presents (for tests that pin or inspect it).
    pub fn server_cert_path(&self) -> &Path {
        &self.pki.server_cert
    }

    /// stunnel's log so far: which handshakes it accepted or refused, and why.
    pub fn stunnel_log(&self) -> String {
        self.processes.stunnel.log()
    }

    /// Tansu's log so far.
    pub fn tansu_log(&self) -> String {
        self.processes.tansu.log()
    }
}

/// Tansu on a free port P, then stunnel on a free port T in front of it.
fn launch(
    tansu_bin: &Path,
    stunnel_bin: &Path,
    pki: &Pki,
    variant: TlsVariant,
) -> Result<Processes, String> {
    let plaintext_port = free_port();
    let tls_port = loop {
        let port = free_port();
        if port != plaintext_port {
            break port;
        }
    };
    let dir = pki.dir.path();

    let tansu_log = dir.join(format!("tansu-{plaintext_port}.log"));
    let mut tansu = Process::spawn(
        "tansu",
        Command::new(tansu_bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{plaintext_port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{SERVER_NAME}:{tls_port}"))
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .arg("--cluster-id")
            .arg("josefine-tls"),
        tansu_log,
    )?;
    tansu.wait_for_port(plaintext_port)?;

    let config = dir.join(format!("stunnel-{tls_port}.conf"));
    fs::write(
        &config,
        stunnel_config(pki, variant, tls_port, plaintext_port),
    )
    .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let mut stunnel = Process::spawn(
        "stunnel",
        Command::new(stunnel_bin).arg(&config),
        dir.join(format!("stunnel-{tls_port}.log")),
    )?;
    stunnel.wait_for_port(tls_port)?;

    Ok(Processes {
        stunnel,
        tansu,
        tls_port,
        plaintext_port,
    })
}

/// The stunnel service: TLS on 127.0.0.1:`tls_port`, plaintext to Tansu. In the
/// foreground (so the fixture owns the pid and stunnel logs to the file on its stderr),
/// no syslog and no pid file.
fn stunnel_config(pki: &Pki, variant: TlsVariant, tls_port: u16, plaintext_port: u16) -> String {
    let mut config = format!(
        "; written by the josefine TLS test fixture ({variant:?})\n\
         foreground = yes\n\
         syslog = no\n\
         pid =\n\
         debug = info\n\
         \n\
         [kafka]\n\
         accept = 127.0.0.1:{tls_port}\n\
         connect = 127.0.0.1:{plaintext_port}\n\
         cert = {}\n\
         key = {}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
    );
    if variant == TlsVariant::MutualTls {
        // verifyChain checks the client's chain against CAfile; requireCert makes a
        // missing client certificate a handshake failure instead of an anonymous peer.
        config.push_str(&format!(
            "CAfile = {}\nverifyChain = yes\nrequireCert = yes\n",
            pki.ca.display()
        ));
    }
    config
}

/// `JOSEFINE_TANSU` and `JOSEFINE_STUNNEL`, under the skip-or-fail rule.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    match (var("JOSEFINE_TANSU"), var("JOSEFINE_STUNNEL")) {
        (Some(tansu), Some(stunnel)) => Some((tansu.into(), stunnel.into())),
        _ => {
            assert!(
                !super::required(),
                "JOSEFINE_TANSU or JOSEFINE_STUNNEL is not set but the TLS broker is \
                 required: run scripts/test.sh"
            );
            eprintln!(
                "skipped: JOSEFINE_TANSU or JOSEFINE_STUNNEL is not set (run scripts/test.sh)"
            );
            None
        }
    }
}

/// The `openssl` command line tool, for tests that check the fixture without the
/// client library (`openssl s_client`); under the same skip-or-fail rule.
/// `scripts/test.sh` installs it with stunnel.
pub fn openssl() -> Option<PathBuf> {
    let found = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some("openssl".into());
    }
    assert!(
        !super::required(),
        "openssl is not on PATH but the TLS tests are required: run scripts/test.sh"
    );
    eprintln!("skipped: openssl is not on PATH (run scripts/test.sh)");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// The PEM files of one fixture, in a temp dir removed on drop.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    /// A CA, the server certificate of `variant` signed by it, a client certificate
    /// signed by it, and an unrelated second CA. ECDSA P-256 keys throughout (rcgen's
    /// default: small, fast to make, accepted by every broker and by stunnel).
    fn generate(variant: TlsVariant) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("josefine-tls-")
            .tempdir()
            .expect("create the TLS fixture's temp dir");
        let path = |name: &str| dir.path().join(name);
        // Keys are 0600: stunnel warns about private keys others can read.
        let write = |name: &str, pem: String| {
            use std::os::unix::fs::OpenOptionsExt;
            let p = path(name);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if name.ends_with(".key") { 0o600 } else { 0o644 })
                .open(&p)
                .and_then(|mut f| std::io::Write::write_all(&mut f, pem.as_bytes()))
                .unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
            p
        };

        let ca = certificate_authority("josefine test CA");
        let other_ca = certificate_authority("josefine unrelated CA");

        let (name, not_after) = match variant {
            TlsVariant::Valid | TlsVariant::MutualTls => (SERVER_NAME, date_time_ymd(2100, 1, 1)),
            TlsVariant::Expired => (SERVER_NAME, date_time_ymd(2021, 1, 1)),
            TlsVariant::WrongName => (OTHER_NAME, date_time_ymd(2100, 1, 1)),
        };
        let mut server = CertificateParams::new(vec![name.to_string()]).expect("a valid DNS name");
        server.distinguished_name.remove(DnType::CommonName);
        server.distinguished_name.push(DnType::CommonName, name);
        server.not_before = date_time_ymd(2020, 1, 1);
        server.not_after = not_after;
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().expect("generate a P-256 key");
        let server_cert = server
            .signed_by(&server_key, &ca)
            .expect("sign the server certificate");

        let mut client = CertificateParams::new(Vec::<String>::new()).expect("no names");
        client.distinguished_name.remove(DnType::CommonName);
        client
            .distinguished_name
            .push(DnType::CommonName, "josefine-test-client");
        client.not_before = date_time_ymd(2020, 1, 1);
        client.not_after = date_time_ymd(2100, 1, 1);
        client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("generate a P-256 key");
        let client_cert = client
            .signed_by(&client_key, &ca)
            .expect("sign the client certificate");

        Pki {
            ca: write("ca.pem", ca.pem()),
            other_ca: write("other-ca.pem", other_ca.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            dir,
        }
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate().expect("generate a P-256 key");
    CertifiedIssuer::self_signed(params, key).expect("self-sign the CA")
}

/// A child process with its output in a log file, stopped on drop.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Result<Process, String> {
        let out = fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", command.get_program()))?;
        Ok(Process { name, child, log })
    }

    /// Polls until `port` on 127.0.0.1 accepts a TCP connection; fails with the log if
    /// the process exits or the port stays closed.
    fn wait_for_port(&mut self, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited at start ({status}); its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not open port {port} within {START_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("({}: {e})", self.log.display()))
    }
}

impl Drop for Process {
    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`]; always reaped.
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet, so it cannot
        // have been recycled for another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("{} (pid {pid}) ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
