//! The `interlock` command line: `validate` and `check` (more subcommands come with the loop).
//! anyhow lives here and nowhere else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use interlock::docker::DockerClient;
use interlock::report;
use reconcilers::config::{self, Loaded};

#[derive(Parser)]
#[command(name = "interlock", version, about = "Layer-7 routing for Docker Swarm, configured by Interlock 2's TOML")]
struct Cli {
    /// Debug logging (Interlock's own flag).
    #[arg(short = 'D', long = "debug", global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.debug);
    let result = match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Check { config } => check(&config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("interlock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Reads and validates the config, printing warnings; `Ok(None)` when it has errors (printed).
fn load(path: &Path) -> anyhow::Result<Option<Loaded>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match config::parse(&path.display().to_string(), &text) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{warning}");
            }
            Ok(Some(loaded))
        }
        Err(e) => {
            for diagnostic in &e.diagnostics {
                eprintln!("{diagnostic}");
            }
            let errors = e.errors().count();
            eprintln!("{}: {errors} error(s); nothing was changed", path.display());
            Ok(None)
        }
    }
}

fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    print!("{}", report::config_summary(&path.display().to_string(), &loaded.config));
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let docker = DockerClient::connect(config.docker_url.as_ref(), &config.tls)?;
        let engine = docker.require_manager().await?;
        let nodes = docker.list_nodes().await?;
        let report = report::check_report(&engine, &nodes, &config);
        print!("{}", report.text);
        Ok(if report.problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}
