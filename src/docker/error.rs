//! [`DockerError`]: what went wrong talking to Docker, classified for the caller's error policy,
//! and the classification of bollard's errors (and of the raw task reader's) into it.
//!
//! Every bollard error variant is matched by name, so a bollard upgrade that adds one fails to
//! compile here instead of landing in a catch-all.

use super::tasks::RawError;
use super::timeouts::CLIENT_TIMEOUT_SECS;

/// What went wrong talking to Docker, classified for the caller's error policy.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {endpoint}: {reason}. Is dockerd running, and is DockerURL (or DOCKER_HOST) right?"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error(
        "TLS connection to {endpoint} failed: {reason}. Check TLSCACert, TLSCert and TLSKey (PEM files readable by interlock)."
    )]
    Tls { endpoint: String, reason: String },
    #[error(
        "the engine at {endpoint} is not a swarm manager ({state}). Run interlock on a manager node (constraint node.role==manager), or run `docker swarm init` first."
    )]
    NotManager { endpoint: String, state: String },
    #[error("{operation}: not found")]
    NotFound { operation: String },
    #[error("{operation}: name already in use")]
    Conflict { operation: String },
    /// A container call (exec, signal) on a container that is not running (stopped, paused or
    /// restarting): a 409 whose message says so. That container will not start answering; a
    /// fresh list of the running ones is what helps.
    #[error("{operation}: the container is not running ({message})")]
    NotRunning { operation: String, message: String },
    #[error("{operation}: update out of sequence (the object changed since it was read)")]
    OutOfSequence { operation: String },
    /// The engine answered with an HTTP error status that none of the variants above names.
    #[error("{operation}: the engine answered {status}: {message}")]
    Rejected { operation: String, status: u16, message: String },
    /// The service's `Version.Index` is beyond the `i32` that bollard's update call takes, so
    /// the update cannot be sent at all.
    #[error(
        "{operation}: the service's version {version} is beyond the i32 that the update request can carry (bollard's UpdateServiceOptions.version); the update was not sent"
    )]
    VersionOverflow { operation: String, version: u64 },
    /// The engine answered, but not with the JSON the API describes (or the answer was cut short).
    #[error("{operation}: the engine's answer could not be read: {reason}")]
    Undecodable { operation: String, reason: String },
    /// The request could not be built (an invalid address, name or query): it was never sent.
    #[error("{operation}: the request could not be built: {reason}")]
    InvalidRequest { operation: String, reason: String },
    #[error("{operation}: no answer within {seconds} s")]
    Timeout { operation: String, seconds: u64 },
    /// The connection failed while the request or its answer was on the way.
    #[error("{operation}: {source}")]
    Transport {
        operation: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl DockerError {
    /// Worth retrying after a pause: the engine may answer differently next time.
    pub fn is_transient(&self) -> bool {
        match self {
            DockerError::Unreachable { .. }
            | DockerError::OutOfSequence { .. }
            | DockerError::Timeout { .. }
            | DockerError::Transport { .. }
            // An answer cut short reads the same way as a malformed one.
            | DockerError::Undecodable { .. } => true,
            DockerError::Rejected { status, .. } => *status >= 500,
            DockerError::Tls { .. }
            | DockerError::NotManager { .. }
            | DockerError::NotFound { .. }
            | DockerError::Conflict { .. }
            | DockerError::NotRunning { .. }
            | DockerError::VersionOverflow { .. }
            | DockerError::InvalidRequest { .. } => false,
        }
    }

    /// An HTTP error answer (`status`, the engine's `message`) to `operation`.
    pub(super) fn from_status(operation: &str, endpoint: &str, status: u16, message: String) -> Self {
        let operation = operation.to_owned();
        match status {
            404 => DockerError::NotFound { operation },
            // The engine's words for a container an exec or a kill cannot reach.
            409 if ["is not running", "is paused", "is restarting"].iter().any(|m| message.contains(m)) => {
                DockerError::NotRunning { operation, message }
            }
            409 => DockerError::Conflict { operation },
            // Swarm's optimistic-lock failure: its message identifies it, whatever the status.
            _ if message.contains("update out of sequence") => DockerError::OutOfSequence { operation },
            503 if message.contains("not a swarm manager") => {
                DockerError::NotManager { endpoint: endpoint.to_owned(), state: message }
            }
            _ => DockerError::Rejected { operation, status, message },
        }
    }

    /// A failed raw `GET` (see `tasks`).
    pub(super) fn from_raw(operation: &str, endpoint: &str, error: RawError) -> Self {
        match error {
            RawError::Connect(reason) => DockerError::Unreachable { endpoint: endpoint.to_owned(), reason },
            RawError::Status(status, message) => DockerError::from_status(operation, endpoint, status, message),
        }
    }

    /// What a bollard error means for `operation` against `endpoint`.
    pub(super) fn classify(operation: &str, endpoint: &str, error: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        let unreachable = |reason: String| DockerError::Unreachable { endpoint: endpoint.to_owned(), reason };
        let tls = |reason: String| DockerError::Tls { endpoint: endpoint.to_owned(), reason };
        let undecodable = |reason: String| DockerError::Undecodable { operation: operation.to_owned(), reason };
        let invalid = |reason: String| DockerError::InvalidRequest { operation: operation.to_owned(), reason };
        match error {
            // The engine answered with an error status.
            E::DockerResponseServerError { status_code, message } => {
                DockerError::from_status(operation, endpoint, status_code, message)
            }

            // No connection.
            E::IOError { err } => unreachable(err.to_string()),
            E::SocketNotFoundError(path) => unreachable(format!("no socket at {path}")),
            E::HyperLegacyError { err } if err.is_connect() => {
                let reason = std::error::Error::source(&err).map_or_else(|| err.to_string(), ToString::to_string);
                if reason.to_ascii_lowercase().contains("certificate") || reason.contains("tls") {
                    tls(reason)
                } else {
                    unreachable(reason)
                }
            }

            // The connection broke, or bollard's own header timeout fired, with the request or
            // its answer on the way.
            source @ (E::HyperLegacyError { .. } | E::HyperResponseError { .. }) => {
                DockerError::Transport { operation: operation.to_owned(), source }
            }
            E::RequestTimeoutError => {
                DockerError::Timeout { operation: operation.to_owned(), seconds: CLIENT_TIMEOUT_SECS }
            }

            // The client certificate, key or CA could not be loaded (at connect).
            E::CertPathError { path } | E::CertParseError { path } => {
                tls(format!("cannot read or parse {}", path.display()))
            }
            E::CertMultipleKeys { count, path } => tls(format!("{} holds {count} keys, expected one", path.display())),
            E::NoHomePathError => tls("no home directory to find the certificates in".to_owned()),
            e @ (E::NoNativeCertsError { .. } | E::LoadNativeCertsErrors { .. }) => tls(e.to_string()),

            // The answer was not what the API describes.
            E::JsonDataError { message, column, .. } => undecodable(format!("JSON at column {column}: {message}")),
            e @ (E::JsonSerdeError { .. }
            | E::StrParseError { .. }
            | E::Base64DecodeError { .. }
            | E::HttpHeaderNotFoundError(_)
            | E::HttpHeaderToStrError { .. }
            | E::APIVersionParseError {}) => undecodable(e.to_string()),

            // The request could not be built: never sent.
            e @ (E::HttpClientError { .. }
            | E::StrFmtError { .. }
            | E::URLEncodedError { .. }
            | E::URLParseError { .. }
            | E::InvalidURIError { .. }
            | E::InvalidURIPartsError { .. }
            | E::UnsupportedURISchemeError { .. }) => invalid(e.to_string()),

            // Only from calls interlock never makes (image pulls and builds, plugins, container
            // wait, buildkit sessions): kept as bollard reported them.
            source @ (E::DockerStreamError { .. }
            | E::DockerContainerWaitError { .. }
            | E::MissingSessionBuildkitError {}
            | E::MissingVersionBuildkitError {}) => DockerError::Transport { operation: operation.to_owned(), source },
        }
    }
}

#[cfg(test)]
mod tests {
    use bollard::errors::Error as E;

    use super::*;

    fn answered(status_code: u16, message: &str) -> DockerError {
        let error = E::DockerResponseServerError { status_code, message: message.to_owned() };
        DockerError::classify("update service web", "unix:///var/run/docker.sock", error)
    }

    #[test]
    fn status_404_is_not_found() {
        let e = answered(404, "service web not found");
        assert!(matches!(&e, DockerError::NotFound { operation } if operation == "update service web"), "{e:?}");
        assert!(!e.is_transient());
    }

    #[test]
    fn status_409_is_conflict() {
        let e = answered(409, "rpc error: code = AlreadyExists desc = config proxy-1 already exists");
        assert!(matches!(e, DockerError::Conflict { .. }), "{e:?}");
        assert!(!e.is_transient());
    }

    #[test]
    fn status_409_for_a_stopped_container_is_not_running() {
        for message in [
            "Container 3f2a is not running",
            "Container 3f2a is paused, unpause the container before exec",
            "Container 3f2a is restarting, wait until the container is running",
        ] {
            let e = answered(409, message);
            assert!(matches!(&e, DockerError::NotRunning { message: m, .. } if m == message), "{e:?}");
            assert!(!e.is_transient());
        }
    }

    #[test]
    fn update_out_of_sequence_is_recognised_by_its_message_at_any_status() {
        for status in [400, 500] {
            let e = answered(status, "rpc error: code = Unknown desc = update out of sequence");
            assert!(matches!(e, DockerError::OutOfSequence { .. }), "{status}: {e:?}");
            assert!(e.is_transient());
        }
    }

    #[test]
    fn status_503_not_a_swarm_manager_is_not_manager() {
        let message = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
        let e = answered(503, message);
        let DockerError::NotManager { endpoint, state } = &e else { panic!("{e:?}") };
        assert_eq!((endpoint.as_str(), state.as_str()), ("unix:///var/run/docker.sock", message));
        assert!(!e.is_transient());
    }

    #[test]
    fn other_503_is_a_transient_rejection() {
        let e = answered(503, "rpc error: code = Unavailable desc = raft: no elected cluster leader");
        assert!(matches!(e, DockerError::Rejected { status: 503, .. }), "{e:?}");
        assert!(e.is_transient());
    }

    #[test]
    fn status_500_is_a_transient_rejection() {
        let e = answered(500, "rpc error: code = Unknown desc = something broke");
        let DockerError::Rejected { status, message, .. } = &e else { panic!("{e:?}") };
        assert_eq!((*status, message.as_str()), (500, "rpc error: code = Unknown desc = something broke"));
        assert!(e.is_transient());
    }

    #[test]
    fn status_400_is_a_lasting_rejection() {
        let e = answered(400, "rpc error: code = InvalidArgument desc = port 80 is already in use");
        assert!(matches!(e, DockerError::Rejected { status: 400, .. }), "{e:?}");
        assert!(!e.is_transient());
    }

    #[test]
    fn connection_failures_are_unreachable_and_transient() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = DockerError::classify("list nodes", "tcp://10.0.0.1:2375", E::IOError { err: refused });
        assert!(matches!(&e, DockerError::Unreachable { endpoint, .. } if endpoint == "tcp://10.0.0.1:2375"));
        assert!(e.is_transient());
        let e = DockerError::classify("list nodes", "unix:///x.sock", E::SocketNotFoundError("/x.sock".into()));
        assert!(matches!(&e, DockerError::Unreachable { reason, .. } if reason == "no socket at /x.sock"));
    }

    #[test]
    fn bollard_timeout_is_a_transient_timeout() {
        let e = DockerError::classify("list nodes", "unix:///x.sock", E::RequestTimeoutError);
        assert!(matches!(e, DockerError::Timeout { seconds: CLIENT_TIMEOUT_SECS, .. }), "{e:?}");
        assert!(e.is_transient());
    }

    #[test]
    fn certificate_files_are_tls_errors() {
        let e = DockerError::classify("connect", "tcp://h:2376", E::CertPathError { path: "/certs/key.pem".into() });
        assert!(matches!(&e, DockerError::Tls { reason, .. } if reason.contains("/certs/key.pem")), "{e:?}");
        assert!(!e.is_transient());
    }

    #[test]
    fn a_malformed_answer_is_undecodable() {
        let json = serde_json::from_str::<u32>("{").unwrap_err();
        let e = DockerError::classify("list services", "unix:///x.sock", E::JsonSerdeError { err: json });
        assert!(matches!(e, DockerError::Undecodable { .. }), "{e:?}");
    }

    #[test]
    fn an_unbuildable_request_is_invalid_and_lasting() {
        let uri = "http://bad host/".parse::<hyper::Uri>().unwrap_err();
        let e = DockerError::classify("inspect service a b", "unix:///x.sock", E::InvalidURIError { err: uri });
        assert!(matches!(e, DockerError::InvalidRequest { .. }), "{e:?}");
        assert!(!e.is_transient());
    }

    #[test]
    fn raw_task_errors_are_classified_like_bollard_ones() {
        let e = DockerError::from_raw("list tasks", "unix:///x.sock", RawError::Connect("refused".into()));
        assert!(matches!(e, DockerError::Unreachable { .. }), "{e:?}");
        let not_manager = "This node is not a swarm manager.".to_owned();
        let e = DockerError::from_raw("list tasks", "unix:///x.sock", RawError::Status(503, not_manager));
        assert!(matches!(e, DockerError::NotManager { .. }), "{e:?}");
        let e = DockerError::from_raw("list tasks", "unix:///x.sock", RawError::Status(500, "oops".into()));
        assert!(matches!(e, DockerError::Rejected { status: 500, .. }), "{e:?}");
    }

    #[test]
    fn version_overflow_says_the_update_was_not_sent() {
        let e = DockerError::VersionOverflow { operation: "update service web".into(), version: 1 << 40 };
        assert!(e.to_string().contains("1099511627776") && e.to_string().contains("not sent"), "{e}");
        assert!(!e.is_transient());
    }
}
