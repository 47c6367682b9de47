//! Ctrl-C (SIGINT) and SIGTERM as one stream of "please stop" events, so long-running
//! commands can leave their group and flush before exiting.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

/// Starts listening; from now on these signals no longer kill the process.
pub fn signals() -> anyhow::Result<Signals> {
    Ok(Signals {
        interrupt: signal(SignalKind::interrupt())?,
        terminate: signal(SignalKind::terminate())?,
    })
}

impl Signals {
    /// The next signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupted (SIGINT)",
            _ = self.terminate.recv() => "terminated (SIGTERM)",
        }
    }
}
