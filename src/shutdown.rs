//! How every long-running program of interlock is told to stop: [`termination`], a future that
//! completes on SIGTERM or SIGINT, which the binary's commands (`cli/`) hand to the core's loop,
//! the extension, the agent and `interlock start`'s plug-in host.

use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// The signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install signal handlers: {0}")]
pub struct SignalError(#[source] pub std::io::Error);

/// Installs the SIGTERM and SIGINT handlers now (so a signal during the first pass is not
/// lost: without a handler it would kill the process mid-write), and returns a future that
/// completes on the first of them.
pub fn termination() -> Result<impl std::future::Future<Output = ()>, SignalError> {
    let mut term = signal(SignalKind::terminate()).map_err(SignalError)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SignalError)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM"),
            _ = int.recv() => info!("SIGINT"),
        }
    })
}
