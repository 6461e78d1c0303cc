//! The `interlock` command line: `validate`, `check`, `plan`, `apply`, `run`, `extension`; and
//! the composition root: the one place that builds the [`Context`] (Docker connection, proxy
//! checker, status) the loop and the reconciler share. anyhow lives here and nowhere else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use interlock::context::Context;
use interlock::docker::DockerClient;
use interlock::proxycheck::ProxyChecker;
use interlock::reconcile::Reconciler;
use interlock::report;
use reconcilers::config::{self, Config, Loaded};
use reconcilers::plan as planner;

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
    },
    /// Run the reconcile loop until SIGTERM or SIGINT (Interlock's `interlock -D run -c FILE`).
    Run {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// The extension service's process. With HitlessServiceUpdate (one per node, with the
    /// node's Docker socket) it writes the core's configs into the proxy tasks on its node and
    /// reloads them; otherwise it says where its core is and waits.
    Extension,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.debug);
    let result = match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Check { config } => check(&config),
        Command::Plan { config } => plan(&config),
        Command::Apply { config, timeout } => apply(&config, Duration::from_secs(timeout)),
        Command::Run { config } => run(&config),
        Command::Extension => extension(),
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
    // `-D` is interlock's debug log, not the Docker client's dump of every response body
    // (megabytes per pass); `RUST_LOG` can still ask for that.
    let default = if debug { "info,interlock=debug,reconcilers=debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
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
        let observed = docker.observe(&interlock::reconcile::managed_label()).await?;
        let report = report::check_report(&engine, &observed, &config);
        print!("{}", report.text);
        Ok(if report.problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// The composition root: connects to a manager and builds the shared context.
async fn context(config: &Config) -> anyhow::Result<Context<DockerClient>> {
    let docker = DockerClient::connect(config.docker_url.as_ref(), &config.tls)?;
    let engine = docker.require_manager().await?;
    tracing::debug!(engine = %engine.version, api = %engine.api_version, "connected to a swarm manager");
    // Hitless extensions' tokens derive from a key only managers can read.
    let key = docker.manager_join_token().await?;
    let ctx = Context::new(docker, ProxyChecker::discover());
    ctx.deliveries.set_key(key);
    Ok(ctx)
}

fn plan(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    runtime()?.block_on(async {
        let reconciler = Reconciler::new(context(&loaded.config).await?, loaded.config);
        let (_, plan) = reconciler.plan().await?;
        print!("{}", planner::render(&plan));
        Ok(if plan.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
    })
}

fn apply(path: &Path, timeout: Duration) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    runtime()?.block_on(async {
        let mut reconciler = Reconciler::new(context(&config).await?, config);
        let deadline = Instant::now() + timeout;
        // A pass may enable the next (the operator network before the extensions), so pass
        // until one plans nothing.
        let mut writes = 0;
        for _ in 0..5 {
            let report = reconciler.pass().await?;
            // `apply` waits for every cluster's writes; `run` does not.
            let settled = reconciler.settle().await;
            writes += report.writes + settled.writes;
            let failures: Vec<_> = report.failures.iter().chain(&settled.failures).collect();
            for (extension, failure) in &failures {
                eprintln!("extension {extension}: {failure}");
            }
            if !failures.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            if report.plan.is_empty() {
                break;
            }
            print!("{}", planner::render(&report.plan));
        }
        // Wait until every owned service runs its spec; old configs are collected on the way.
        loop {
            let report = reconciler.pass().await?;
            writes += report.writes + reconciler.settle().await.writes;
            // A pass that planned nothing wrote nothing: what it read is still the truth.
            let unsettled = &report.unsettled;
            if unsettled.is_empty() && report.plan.is_empty() {
                let held: Vec<String> = report
                    .plan
                    .clusters
                    .iter()
                    .flat_map(|(name, c)| c.conflicts.iter().map(move |why| format!("extension {name}: {why}")))
                    .collect();
                println!("converged: {writes} write(s)");
                for line in &held {
                    eprintln!("{line}");
                }
                return Ok(if held.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            if Instant::now() >= deadline {
                eprintln!("not converged after {} s:", timeout.as_secs());
                for line in unsettled {
                    eprintln!("  {line}");
                }
                return Ok(ExitCode::FAILURE);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    runtime()?.block_on(async {
        // Before anything else: a SIGTERM during the first pass must finish that pass, not kill it.
        let shutdown = interlock::controller::termination()?;
        let ctx = context(&config).await?;
        interlock::controller::run(ctx, path.to_owned(), config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn extension() -> anyhow::Result<ExitCode> {
    let settings = interlock::extension::Settings::from_env()?;
    runtime()?.block_on(async {
        let shutdown = interlock::controller::termination()?;
        // The node's own engine (its socket is mounted into a hitless extension's task), not the
        // config's DockerURL; a rolling extension has none and needs none.
        let docker = if settings.hitless { Some(DockerClient::connect(None, &Default::default())?) } else { None };
        interlock::extension::run(settings, docker, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
