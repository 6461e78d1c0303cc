//! How long the adapter waits for the engine: bollard's own backstop, and the bounds it puts
//! on each call (bollard's timeout covers only a response's headers).

use std::time::Duration;

/// bollard's backstop timeout (seconds) for a response's headers.
pub(super) const CLIENT_TIMEOUT_SECS: u64 = 60;
/// Our bound on one short request (list, inspect, create, update, delete).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Our bound on a whole `DockerClient::exec`: create, start, the command's run, exit code.
pub(super) const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
