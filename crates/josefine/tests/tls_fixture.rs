//! The TLS test fixture (`common::tls`) checked on its own, without the client library:
//! `openssl s_client` must verify exactly the certificates it should, a Kafka request
//! sent through it must reach Tansu, and Metadata must advertise the TLS port. Then the
//! client's TLS tests can trust that a failure is theirs, not the fixture's.

#[allow(unused_macros, unused_imports)]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::tls::{self, TlsBroker, TlsVariant, OTHER_NAME, SERVER_NAME};
use josefine::protocol::frame::{decode_response, encode_request};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;

/// How long one `openssl s_client` run may take before it is killed and the test fails.
const S_CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Metadata v12 (flexible): the newest Tansu answers.
const METADATA_VERSION: i16 = 12;

macro_rules! tls_broker {
    ($variant:expr) => {
        match (tls::openssl(), TlsBroker::start($variant)) {
            (Some(openssl), Some(broker)) => (openssl, broker),
            _ => return,
        }
    };
}

#[test]
fn valid_certificate_verifies_and_kafka_answers_through_it() {
    let (openssl, broker) = tls_broker!(TlsVariant::Valid);

    let handshake = s_client(&openssl, &broker, broker.ca_pem_path(), SERVER_NAME, &[]);
    assert!(handshake.success, "verified handshake failed:\n{handshake}");
    assert!(
        handshake.output.contains("Verify return code: 0 (ok)"),
        "{handshake}"
    );

    let metadata = metadata_through_s_client(&openssl, &broker, &[]).expect("Metadata over TLS");
    let advertised: Vec<_> = metadata
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect();
    assert_eq!(
        advertised,
        [broker.bootstrap()],
        "Tansu must advertise the TLS port, or clients would leave TLS after bootstrap"
    );

    TcpStream::connect(broker.plaintext_addr()).expect("Tansu's plaintext port behind stunnel");
}

#[test]
fn certificate_from_another_ca_fails_verification() {
    let (openssl, broker) = tls_broker!(TlsVariant::Valid);
    let handshake = s_client(
        &openssl,
        &broker,
        broker.other_ca_pem_path(),
        SERVER_NAME,
        &[],
    );
    assert!(
        !handshake.success,
        "trusting only the other CA verified:\n{handshake}"
    );
    assert!(
        handshake
            .output
            .contains("unable to get local issuer certificate"),
        "{handshake}"
    );
}

#[test]
fn expired_certificate_fails_verification() {
    let (openssl, broker) = tls_broker!(TlsVariant::Expired);
    let handshake = s_client(&openssl, &broker, broker.ca_pem_path(), SERVER_NAME, &[]);
    assert!(
        !handshake.success,
        "an expired certificate verified:\n{handshake}"
    );
    assert!(
        handshake.output.contains("certificate has expired"),
        "{handshake}"
    );
}

#[test]
fn certificate_for_another_name_fails_hostname_verification() {
    let (openssl, broker) = tls_broker!(TlsVariant::WrongName);
    let handshake = s_client(&openssl, &broker, broker.ca_pem_path(), SERVER_NAME, &[]);
    assert!(
        !handshake.success,
        "a certificate for {OTHER_NAME} verified as localhost:\n{handshake}"
    );
    assert!(
        handshake.output.contains("hostname mismatch"),
        "{handshake}"
    );

    // The chain itself is good: only the name is wrong.
    let handshake = s_client(&openssl, &broker, broker.ca_pem_path(), OTHER_NAME, &[]);
    assert!(handshake.success, "{handshake}");
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let (openssl, broker) = tls_broker!(TlsVariant::MutualTls);
    let cert = broker.client_cert_path().to_str().unwrap();
    let key = broker.client_key_path().to_str().unwrap();

    let with_cert = ["-cert", cert, "-key", key];
    let handshake = s_client(
        &openssl,
        &broker,
        broker.ca_pem_path(),
        SERVER_NAME,
        &with_cert,
    );
    assert!(handshake.success, "mTLS handshake failed:\n{handshake}");
    let metadata =
        metadata_through_s_client(&openssl, &broker, &with_cert).expect("Metadata over mTLS");
    assert_eq!(metadata.brokers.len(), 1);

    // TLS 1.2: the server's refusal is part of the handshake.
    let handshake = s_client(
        &openssl,
        &broker,
        broker.ca_pem_path(),
        SERVER_NAME,
        &["-tls1_2"],
    );
    assert!(
        !handshake.success,
        "TLS 1.2 without a client certificate:\n{handshake}"
    );
    // TLS 1.3: the client finishes its handshake before the server checks, so the
    // refusal shows on the first read: no answer to a request.
    let refused = metadata_through_s_client(&openssl, &broker, &["-tls1_3"]);
    let refused = refused.expect_err("Metadata answered without a client certificate");
    assert!(refused.contains("certificate required"), "{refused}");
    wait_for_log(&broker, "peer did not return a certificate");
}

#[test]
fn drop_stops_both_processes_and_removes_the_files() {
    let (_openssl, broker) = tls_broker!(TlsVariant::Valid);
    let tls = broker.bootstrap();
    let plaintext = broker.plaintext_addr();
    let ca = broker.ca_pem_path().to_owned();
    drop(broker);
    assert!(
        TcpStream::connect(&tls).is_err(),
        "stunnel still listens on {tls}"
    );
    assert!(
        TcpStream::connect(&plaintext).is_err(),
        "Tansu still listens on {plaintext}"
    );
    assert!(!ca.exists(), "{} outlived the fixture", ca.display());
}

/// One `openssl s_client` run: its exit status and everything it printed.
struct Handshake {
    success: bool,
    output: String,
}

impl std::fmt::Display for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s_client success={}:\n{}", self.success, self.output)
    }
}

/// A handshake that verifies the chain against `ca` and the name against `name`
/// (`-verify_return_error` makes a verification failure fail the handshake), then
/// closes at once (stdin is empty).
fn s_client(
    openssl: &Path,
    broker: &TlsBroker,
    ca: &Path,
    name: &str,
    extra: &[&str],
) -> Handshake {
    let mut child = Command::new(openssl)
        .args([
            "s_client",
            "-connect",
            &broker.bootstrap(),
            "-servername",
            SERVER_NAME,
        ])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_hostname", name, "-verify_return_error"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl s_client");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + S_CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for s_client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("openssl s_client hung for {S_CLIENT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Handshake {
        success: status.success(),
        output: stdout.join().unwrap() + &stderr.join().unwrap(),
    }
}

/// Sends Metadata through `openssl s_client -quiet` (stdout carries only the bytes from
/// the server) with the fixture's CA and `extra` options, and decodes the answer. The
/// framing is josefine's, the TLS is OpenSSL's. `Err` with s_client's stderr when no
/// whole response arrives.
fn metadata_through_s_client(
    openssl: &Path,
    broker: &TlsBroker,
    extra: &[&str],
) -> Result<MetadataResponse, String> {
    let mut child = Command::new(openssl)
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &broker.bootstrap(),
            "-servername",
            SERVER_NAME,
        ])
        .arg("-CAfile")
        .arg(broker.ca_pem_path())
        .args(["-verify_hostname", SERVER_NAME, "-verify_return_error"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl s_client");
    let stderr = drain(child.stderr.take().unwrap());

    let mut request = BytesMut::new();
    let client_id = StrBytes::from_static_str("josefine-tls-fixture");
    encode_request(
        &mut request,
        &MetadataRequest::default(),
        METADATA_VERSION,
        7,
        Some(&client_id),
    )
    .expect("encode Metadata");
    // Stdin stays open: s_client -quiet ignores EOF on it, and closing it early is not
    // what a Kafka client does.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&request).expect("write to s_client");
    stdin.flush().expect("flush to s_client");

    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let frame = (|| {
            let mut len = [0u8; 4];
            stdout.read_exact(&mut len)?;
            let mut frame = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
            stdout.read_exact(&mut frame)?;
            std::io::Result::Ok(frame)
        })();
        let _ = tx.send(frame);
    });
    let frame = rx.recv_timeout(S_CLIENT_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    let stderr = stderr.join().unwrap();
    match frame {
        Ok(Ok(frame)) => decode_response::<MetadataRequest>(Bytes::from(frame), METADATA_VERSION)
            .map_err(|e| format!("bad Metadata response: {e}")),
        Ok(Err(e)) => Err(format!("no response ({e}); s_client said:\n{stderr}")),
        Err(_) => Err(format!(
            "no response within {S_CLIENT_TIMEOUT:?}; s_client said:\n{stderr}"
        )),
    }
}

/// Reads a pipe to the end on its own thread, so a chatty child never blocks on it.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// stunnel logs a refused handshake just after sending the alert, so the line may land
/// a moment after the client saw the refusal.
fn wait_for_log(broker: &TlsBroker, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !broker.stunnel_log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "stunnel never logged {needle:?}; its log:\n{}",
            broker.stunnel_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
