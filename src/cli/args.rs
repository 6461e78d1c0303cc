//! The command line's shape: [`Cli`] (the global flags, Interlock 0.3's options before `start`,
//! Carina's refused sign-in) and [`Command`], one variant per command, as clap parses them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "interlock", version, about = "Layer-7 routing for Docker Swarm, configured by Interlock 2's TOML")]
pub struct Cli {
    /// Debug logging (Interlock's own flag).
    #[arg(short = 'D', long = "debug", global = true)]
    pub debug: bool,
    /// Log lines as text, or as one JSON object each (for log shippers). `start` always logs
    /// in Interlock 0.3's format.
    #[arg(long = "log-format", value_name = "FORMAT", value_enum, global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub legacy: Legacy,
    #[command(flatten)]
    pub carina: Carina,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (on standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// tracing's human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields, `target`.
    Json,
}

/// Interlock 0.3's options, given before `start` as in 0.3.
#[derive(Args, Default)]
#[command(next_help_heading = "Interlock 0.3 (before `start`)")]
pub struct Legacy {
    /// The Docker engine or Swarm manager (`tcp://HOST:PORT`, `unix:///PATH`); default
    /// DOCKER_HOST, then /var/run/docker.sock.
    #[arg(long = "swarm-url", value_name = "URL")]
    pub swarm_url: Option<String>,
    /// CA certificate of the engine's TLS (with --swarm-tls-cert and --swarm-tls-key).
    #[arg(long = "swarm-tls-ca-cert", value_name = "FILE")]
    pub tls_ca_cert: Option<String>,
    /// Client certificate for the engine's TLS.
    #[arg(long = "swarm-tls-cert", value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// Client key for the engine's TLS.
    #[arg(long = "swarm-tls-key", value_name = "FILE")]
    pub tls_key: Option<String>,
    /// Accepted for 0.3's command lines; the engine's certificate is still verified.
    #[arg(long = "swarm-allow-insecure")]
    pub allow_insecure: bool,
    /// A plug-in to run (repeatable; see `list-plugins`).
    #[arg(short = 'p', long = "plugin", value_name = "NAME")]
    pub plugins: Vec<String>,
}

impl Legacy {
    /// The first 0.3 option given, to say it belongs to `start`.
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.swarm_url.is_some(), "--swarm-url"),
            (self.tls_ca_cert.is_some(), "--swarm-tls-ca-cert"),
            (self.tls_cert.is_some(), "--swarm-tls-cert"),
            (self.tls_key.is_some(), "--swarm-tls-key"),
            (self.allow_insecure, "--swarm-allow-insecure"),
            (!self.plugins.is_empty(), "--plugin"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// The sign-in of Carina's fork of Interlock 0.3 (the seed's command line): accepted only to
/// say that Carina is gone.
#[derive(Args, Default)]
pub struct Carina {
    #[arg(long, value_name = "NAME", hide = true, global = true)]
    pub username: Option<String>,
    #[arg(long = "api-key", value_name = "KEY", hide = true, global = true)]
    pub api_key: Option<String>,
    #[arg(long, value_name = "NAME", hide = true, global = true)]
    pub clustername: Option<String>,
}

impl Carina {
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.username.is_some(), "--username"),
            (self.api_key.is_some(), "--api-key"),
            (self.clustername.is_some(), "--clustername"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// The one line `--username`, `--api-key` and `--clustername` get.
pub fn carina_gone(flag: &str) -> String {
    format!(
        "interlock: {flag} is a sign-in to Carina, which was shut down in 2017; connect to your Docker engine or Swarm manager instead: --swarm-url tcp://HOST:2376 with --swarm-tls-ca-cert/--swarm-tls-cert/--swarm-tls-key, or DOCKER_HOST, or the default /var/run/docker.sock"
    )
}

#[derive(Subcommand)]
pub enum Command {
    /// Check a config file: exit 0 and print a summary, or print every error and exit 1.
    Validate {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Connect to Docker and report the engine, the swarm's nodes and where each proxy can run.
    Check {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Print what a pass would write, per service cluster, with the proxy config diff.
    /// Exit 0 when nothing would change, 2 when something would, 1 on error.
    Plan {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Write what the plan says, wait until the written services run their new spec, and exit.
    Apply {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// How long to wait for services to settle.
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
        /// Write even while a core service runs (which would then undo what differs).
        #[arg(long)]
        writer: bool,
    },
    /// Run the reconcile loop until SIGTERM or SIGINT (Interlock's `interlock -D run -c FILE`).
    Run {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// Run by hand: write even while a core service runs (by default it then stands by).
        #[arg(long)]
        writer: bool,
    },
    /// Exit 0 when a running core's /health answers 200 (the stack's healthcheck), else 1.
    Health {
        /// The core's address (default http://127.0.0.1:8080).
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Print a running core's /status as a table: per extension its quarantined services, held
    /// writes and failures; with hitless updates the config served and each proxy task's.
    Status {
        /// The core's address (default http://127.0.0.1:PORT, PORT from the config's
        /// ListenAddr, else 8080).
        #[arg(long, value_name = "URL", conflicts_with = "config")]
        url: Option<String>,
        /// Read ListenAddr from this config file.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The extension service's process. With HitlessServiceUpdate (one per node, with the
    /// node's Docker socket) it writes the core's configs into the proxy tasks on its node and
    /// reloads them; otherwise it says where its core is and waits.
    Extension,
    /// The statistics agent (one task per node, with the node's Docker socket): sends its
    /// node's container and proxy statistics to Carbon. The core creates its service when the
    /// `carbon` plug-in is enabled.
    Agent,
    /// Interlock 0.3: dispatch every Docker event to the --plugin plug-ins (`interlock
    /// [--swarm-url URL] -p example start`) until SIGTERM or SIGINT. Logs in 0.3's format.
    Start,
    /// Interlock 0.3: the plug-ins --plugin accepts.
    ListPlugins,
}

impl Cli {
    /// The line to print (and exit 2) for flags that do not belong here: Carina's sign-in, or
    /// an Interlock 0.3 option without `start`.
    pub fn refusal(&self) -> Option<String> {
        if let Some(flag) = self.carina.given() {
            return Some(carina_gone(flag));
        }
        match (self.legacy.given(), matches!(self.command, Command::Start)) {
            (Some(flag), false) => Some(format!(
                "interlock: {flag} is an option of `start` (Interlock 0.3's command line); the other commands read the TOML"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_is_a_global_flag_and_text_by_default() {
        let cli = Cli::try_parse_from(["interlock", "run", "-c", "x.toml", "--log-format", "json"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["interlock", "-D", "run", "-c", "x.toml"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Text);
        assert!(Cli::try_parse_from(["interlock", "--log-format", "xml", "run", "-c", "x.toml"]).is_err());
        let cli = Cli::try_parse_from(["interlock", "status", "--url", "http://10.0.0.2:9090"]).unwrap();
        assert!(matches!(cli.command, Command::Status { url: Some(_), config: None }));
        assert!(Cli::try_parse_from(["interlock", "status", "--url", "http://h:1", "-c", "x.toml"]).is_err());
    }
}
