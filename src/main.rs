//! The `interlock` command line: `validate`, `check`, `plan`, `apply`, `run`, `status`,
//! `extension`, and Interlock 0.3's `[--swarm-url URL] --plugin NAME start` and `list-plugins`;
//! logging set-up (`--log-format text|json`, and 0.3's logrus lines for `start`); and the
//! composition root: the one place that builds the [`Context`] (Docker connection, proxy
//! checker, status, metrics, plug-ins) the loop and the reconciler share. anyhow lives here and
//! nowhere else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use interlock::core::context::{Context, Replica};
use interlock::core::plugins::carbon::CarbonError;
use interlock::core::plugins::{self, Dispatcher, PluginSettings};
use interlock::core::proxycheck::ProxyChecker;
use interlock::core::reconcile::Reconciler;
use interlock::docker::DockerClient;
use interlock::report;
use reconcilers::config::{self, Config, DockerUrl, ListenAddr, Loaded, TlsFiles};
use reconcilers::plan as planner;

#[derive(Parser)]
#[command(name = "interlock", version, about = "Layer-7 routing for Docker Swarm, configured by Interlock 2's TOML")]
struct Cli {
    /// Debug logging (Interlock's own flag).
    #[arg(short = 'D', long = "debug", global = true)]
    debug: bool,
    /// Log lines as text, or as one JSON object each (for log shippers). `start` always logs
    /// in Interlock 0.3's format.
    #[arg(long = "log-format", value_name = "FORMAT", value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    legacy: Legacy,
    #[command(flatten)]
    carina: Carina,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written (on standard error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// tracing's human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields, `target`.
    Json,
}

/// Interlock 0.3's options, given before `start` as in 0.3.
#[derive(Args, Default)]
#[command(next_help_heading = "Interlock 0.3 (before `start`)")]
struct Legacy {
    /// The Docker engine or Swarm manager (`tcp://HOST:PORT`, `unix:///PATH`); default
    /// DOCKER_HOST, then /var/run/docker.sock.
    #[arg(long = "swarm-url", value_name = "URL")]
    swarm_url: Option<String>,
    /// CA certificate of the engine's TLS (with --swarm-tls-cert and --swarm-tls-key).
    #[arg(long = "swarm-tls-ca-cert", value_name = "FILE")]
    tls_ca_cert: Option<String>,
    /// Client certificate for the engine's TLS.
    #[arg(long = "swarm-tls-cert", value_name = "FILE")]
    tls_cert: Option<String>,
    /// Client key for the engine's TLS.
    #[arg(long = "swarm-tls-key", value_name = "FILE")]
    tls_key: Option<String>,
    /// Accepted for 0.3's command lines; the engine's certificate is still verified.
    #[arg(long = "swarm-allow-insecure")]
    allow_insecure: bool,
    /// A plug-in to run (repeatable; see `list-plugins`).
    #[arg(short = 'p', long = "plugin", value_name = "NAME")]
    plugins: Vec<String>,
}

impl Legacy {
    /// The first 0.3 option given, to say it belongs to `start`.
    fn given(&self) -> Option<&'static str> {
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
struct Carina {
    #[arg(long, value_name = "NAME", hide = true, global = true)]
    username: Option<String>,
    #[arg(long = "api-key", value_name = "KEY", hide = true, global = true)]
    api_key: Option<String>,
    #[arg(long, value_name = "NAME", hide = true, global = true)]
    clustername: Option<String>,
}

impl Carina {
    fn given(&self) -> Option<&'static str> {
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
fn carina_gone(flag: &str) -> String {
    format!(
        "interlock: {flag} is a sign-in to Carina, which was shut down in 2017; connect to your Docker engine or Swarm manager instead: --swarm-url tcp://HOST:2376 with --swarm-tls-ca-cert/--swarm-tls-cert/--swarm-tls-key, or DOCKER_HOST, or the default /var/run/docker.sock"
    )
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

fn main() -> ExitCode {
    interlock::allocator::tune_allocator();
    let cli = Cli::parse();
    if let Some(flag) = cli.carina.given() {
        eprintln!("{}", carina_gone(flag));
        return ExitCode::from(2);
    }
    if let (Some(flag), false) = (cli.legacy.given(), matches!(cli.command, Command::Start)) {
        eprintln!(
            "interlock: {flag} is an option of `start` (Interlock 0.3's command line); the other commands read the TOML"
        );
        return ExitCode::from(2);
    }
    if matches!(cli.command, Command::Start) {
        init_logrus_logging(cli.debug);
    } else {
        init_logging(cli.debug, cli.log_format);
    }
    let result = match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Check { config } => check(&config),
        Command::Plan { config } => plan(&config),
        Command::Apply { config, timeout, writer } => apply(&config, Duration::from_secs(timeout), writer),
        Command::Run { config, writer } => run(&config, writer),
        Command::Health { url } => health(&url),
        Command::Status { url, config } => status(url, config.as_deref()),
        Command::Extension => extension(),
        Command::Agent => agent(),
        Command::Start => start(&cli.legacy),
        Command::ListPlugins => list_plugins(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("interlock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool, format: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `-D` is interlock's debug log, not the Docker client's dump of every response body
    // (megabytes per pass); `RUST_LOG` can still ask for that.
    let default = if debug { "info,interlock=debug,reconcilers=debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    log_subscriber(format, filter, std::io::stderr, ansi).init();
}

/// The subscriber of every command but `start`: `format`'s lines, filtered, to `writer`.
fn log_subscriber<W>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // Flat: the message and the event's fields at the top level, as shippers index them.
        LogFormat::Json => {
            Box::new(builder.json().flatten_event(true).with_current_span(false).with_span_list(false).finish())
        }
    }
}

/// `interlock start`'s logging: Interlock 0.3's (logrus's text format), see [`logrus`].
fn init_logrus_logging(debug: bool) {
    let default = if debug { "info,interlock=debug,reconcilers=debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).event_format(logrus::Logrus).init();
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
    if let Err(e) = check_plugin_settings(&loaded.config) {
        eprintln!("{}: error: {e}", path.display());
        return Ok(ExitCode::FAILURE);
    }
    print!("{}", report::config_summary(&path.display().to_string(), &loaded.config));
    print!("{}", plugins_summary(&loaded.config).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let docker = DockerClient::connect(config.docker_url.as_ref(), &config.tls)?;
        let engine = docker.require_manager().await?;
        let observed = docker.observe(&interlock::docker::managed_label()).await?;
        let report = report::check_report(&engine, &observed, &config);
        print!("{}", report.text);
        Ok(if report.problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// The composition root: connects to a manager and builds the shared context.
/// `writer`: write whatever else runs (`--writer`); else this process writes only as
/// `reconcilers::leader` decides.
async fn context(config: &Config, writer: bool) -> anyhow::Result<Context<DockerClient>> {
    let docker = DockerClient::connect(config.docker_url.as_ref(), &config.tls)?;
    let engine = docker.require_manager().await?;
    tracing::debug!(engine = %engine.version, api = %engine.api_version, "connected to a swarm manager");
    // Hitless extensions' tokens derive from a key only managers can read.
    let key = docker.manager_join_token().await?;
    // Running as a Swarm task, the hostname is the container's ID.
    let hostname = std::env::var("HOSTNAME").unwrap_or_default();
    let own = if hostname.is_empty() { None } else { docker.own_container(&hostname).await? };
    let mut ctx = Context::new(docker, ProxyChecker::discover());
    ctx.deliveries.set_key(key);
    ctx.deliveries.refuse_signed_before(interlock::core::status::unix_now());
    // Which replica this is: its own task (the stack sets INTERLOCK_TASK_ID from `{{.Task.ID}}`,
    // which works whichever manager's engine it talks to; else its container's label).
    let task = std::env::var("INTERLOCK_TASK_ID").ok().filter(|t| !t.is_empty() && !t.contains("{{"));
    let task = task.or_else(|| own.as_ref().and_then(|o| o.task.clone()));
    ctx.identity = match (writer, task) {
        (true, _) => Replica::Lone,
        (false, Some(task)) => Replica::Task(task),
        (false, None) => Replica::ByHand,
    };
    if let Some(own) = own {
        ctx.core_image = own.image;
        ctx.core_service = own.service;
    }
    if ctx.core_service.is_none() {
        ctx.core_service = std::env::var("INTERLOCK_SERVICE_NAME").ok().filter(|s| !s.is_empty() && !s.contains("{{"));
    }
    Ok(ctx)
}

fn plan(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    runtime()?.block_on(async {
        let reconciler = Reconciler::new(context(&loaded.config, false).await?, loaded.config);
        let (_, plan) = reconciler.plan().await?;
        print!("{}", planner::render(&plan));
        Ok(if plan.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
    })
}

fn apply(path: &Path, timeout: Duration, writer: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    runtime()?.block_on(async {
        let ctx = context(&config, writer).await?;
        if ctx.identity == Replica::ByHand {
            let observed = ctx.swarm.observe(&interlock::docker::managed_label()).await?;
            if let Some(core) = interlock::core::reconcile::core_service_running(&observed) {
                eprintln!(
                    "interlock: the core service {core} runs and writes; this apply would fight it. Change its config instead (see README, \"Deployment\"), or pass --writer to write anyway"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        let mut reconciler = Reconciler::new(ctx.clone(), config).as_replica(ctx.identity.clone());
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

/// What the core's parser cannot check in `[Plugins.Carbon]` (the image filter's regex syntax),
/// checked as the plug-in will; the error names the key.
fn check_plugin_settings(config: &Config) -> Result<(), String> {
    let Some(carbon) = PluginSettings::from_config(config).carbon else { return Ok(()) };
    match carbon.validate() {
        Ok(()) => Ok(()),
        Err(CarbonError::Filter { filter, reason }) => {
            Err(format!("Plugins.Carbon.ImageNameFilter: {filter:?} is not a regular expression: {reason}"))
        }
        Err(e) => Err(format!("Plugins.Carbon: {e}")),
    }
}

/// The `[Plugins]` line of `validate`'s summary.
fn plugins_summary(config: &Config) -> Option<String> {
    if config.plugins.enabled.is_empty() {
        return None;
    }
    let carbon = config.plugins.carbon.as_ref().filter(|_| config.plugins.enabled.iter().any(|n| n == "carbon"));
    let detail = carbon.map_or(String::new(), |c| {
        let filter = c.image_name_filter.as_deref().map_or(String::new(), |f| format!(", images matching {f:?}"));
        format!(" (carbon: {} prefix {} every {:?}{filter})", c.address, c.prefix, c.interval)
    });
    Some(format!("  plug-ins   {}{detail}\n", config.plugins.enabled.join(", ")))
}

/// `interlock health`: the stack's healthcheck (the image has no curl).
fn health(url: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match runtime.block_on(interlock::core::status::health(url)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("interlock: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run(path: &Path, writer: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    check_plugin_settings(&config).map_err(|e| anyhow::anyhow!("{}: error: {e}", path.display()))?;
    runtime()?.block_on(async {
        // Before anything else: a SIGTERM during the first pass must finish that pass, not kill it.
        let shutdown = interlock::core::controller::termination()?;
        let mut ctx = context(&config, writer).await?;
        if !config.plugins.enabled.is_empty() {
            let built = plugins::build(&config.plugins.enabled, &PluginSettings::from_config(&config))
                .with_context(|| format!("{}: [Plugins]", path.display()))?;
            ctx = ctx.with_plugins(Dispatcher::new(built));
        }
        interlock::core::controller::run(ctx, path.to_owned(), config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `interlock status`: fetches a running core's `/status` and prints it as a table.
fn status(url: Option<String>, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let url = match (url, config) {
        (Some(url), _) => url,
        (None, Some(path)) => {
            let Some(loaded) = load(path)? else { return Ok(ExitCode::FAILURE) };
            local_url(&loaded.config.listen_addr)
        }
        (None, None) => {
            let defaults = config::parse("(defaults)", "").map_err(|e| anyhow::anyhow!("{e}"))?;
            local_url(&defaults.config.listen_addr)
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime.block_on(interlock::core::status::fetch(&url))?;
    print!("{}", interlock::core::status::table(&status, interlock::core::status::unix_now()));
    Ok(ExitCode::SUCCESS)
}

/// Where a core listening on `addr` answers on this host: a wildcard or empty host is
/// loopback.
fn local_url(addr: &ListenAddr) -> String {
    let host = match addr.host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_owned(),
    };
    format!("http://{host}:{}", addr.port)
}

fn agent() -> anyhow::Result<ExitCode> {
    let settings = interlock::agent::AgentSettings::from_env()?;
    runtime()?.block_on(async {
        let shutdown = interlock::core::controller::termination()?;
        // The node's own engine: its socket is mounted into the agent's task.
        let docker = DockerClient::connect(None, &Default::default())?;
        interlock::agent::run(settings, docker, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn extension() -> anyhow::Result<ExitCode> {
    let settings = interlock::extension::Settings::from_env()?;
    runtime()?.block_on(async {
        let shutdown = interlock::core::controller::termination()?;
        // The node's own engine (its socket is mounted into a hitless extension's task), not the
        // config's DockerURL; a rolling extension has none and needs none.
        let docker = if settings.hitless { Some(DockerClient::connect(None, &Default::default())?) } else { None };
        interlock::extension::run(settings, docker, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `interlock start`: Interlock 0.3's plug-in host. Logs as 0.3 did (the seed's lines), dispatches
/// `interlock-start`, every event of the engine, `interlock-stop` at SIGTERM/SIGINT, and exits 0
/// once the plug-ins' queues are drained (at most 2 s).
fn start(legacy: &Legacy) -> anyhow::Result<ExitCode> {
    if legacy.plugins.is_empty() {
        anyhow::bail!("no plug-in given: `interlock --plugin NAME start` (see `interlock list-plugins`)");
    }
    for name in &legacy.plugins {
        if plugins::canonical_name(name).is_none() {
            anyhow::bail!("{}", plugins::PluginError::Unknown { name: name.clone(), known: plugins::known_names() });
        }
    }
    let url = legacy
        .swarm_url
        .as_deref()
        .map(DockerUrl::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--swarm-url {e}"))?;
    let tls =
        TlsFiles { ca_cert: legacy.tls_ca_cert.clone(), cert: legacy.tls_cert.clone(), key: legacy.tls_key.clone() };
    if !tls.is_empty() && (tls.ca_cert.is_none() || tls.cert.is_none() || tls.key.is_none()) {
        anyhow::bail!("--swarm-tls-ca-cert, --swarm-tls-cert and --swarm-tls-key must be given together");
    }
    // Interlock 0.3's variables configure carbon (`stats`), read only when it is asked for.
    let wants_carbon = legacy.plugins.iter().any(|n| plugins::canonical_name(n) == Some(plugins::carbon::NAME));
    let settings =
        PluginSettings { carbon: if wants_carbon { Some(plugins::carbon::CarbonSettings::from_env()?) } else { None } };
    tracing::info!(
        "interlock running version={} ({})",
        env!("CARGO_PKG_VERSION"),
        option_env!("INTERLOCK_GIT_COMMIT").unwrap_or("rust")
    );
    if matches!(url, Some(DockerUrl::Unix(_))) && !tls.is_empty() {
        tracing::warn!("the --swarm-tls-* files are ignored for a unix:// --swarm-url");
    }
    if legacy.allow_insecure {
        tracing::warn!(
            "--swarm-allow-insecure: the engine's certificate is still verified; interlock never skips verification"
        );
    }
    runtime()?.block_on(async {
        let shutdown = interlock::core::controller::termination()?;
        let docker = DockerClient::connect(url.as_ref(), &tls)?;
        let engine = docker.engine().await?;
        tracing::debug!(endpoint = %docker.endpoint(), engine = %engine.version, "connected");
        let built = plugins::build(&legacy.plugins, &settings)?;
        for plugin in &built {
            tracing::info!("loading plugin name={} version={}", plugin.name(), plugin.version());
        }
        if let Some(carbon) = &settings.carbon {
            ensure_stats_agent(&docker, carbon).await;
        }
        let dispatcher = Dispatcher::new(built);
        let stats = plugins::host(&dispatcher, || docker.all_events(), shutdown).await;
        for (name, s) in stats {
            if s.dropped + s.skipped + s.panicked > 0 {
                tracing::warn!(
                    "plugin {name}: {} event(s) handled, {} dropped, {} skipped after retries, {} panicked",
                    s.handled,
                    s.dropped,
                    s.skipped,
                    s.panicked
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `interlock list-plugins`: one line per plug-in: name, version, what it does, other names.
/// Interlock 0.3's `stats` sent what one engine saw; statistics from every node need the agent
/// on every node: `start` writes the statistics agent service (and the operator network) as `run`
/// would, and nothing else. Without a manager, or without an image to run it from, it says so.
async fn ensure_stats_agent(docker: &DockerClient, carbon: &plugins::carbon::CarbonSettings) {
    let hostname = std::env::var("HOSTNAME").unwrap_or_default();
    let core_image = match docker.container_image(&hostname).await {
        Ok(image) => image,
        Err(e) => {
            tracing::warn!("statistics from this engine only: {e}");
            return;
        }
    };
    let Some(core_image) = core_image else {
        tracing::warn!(
            "statistics from this engine only: run interlock in a container (a Swarm service) so that it can start its agent on every node"
        );
        return;
    };
    let Ok(loaded) = config::parse("interlock start", "") else { return };
    let mut config = loaded.config;
    config.plugins = reconcilers::config::Plugins {
        enabled: vec!["carbon".to_owned()],
        carbon: Some(reconcilers::config::CarbonConfig {
            address: carbon.address.clone(),
            prefix: carbon.prefix.clone(),
            image_name_filter: carbon.image_name_filter.clone(),
            interval: carbon.interval,
        }),
    };
    let mut ctx = Context::new(docker.clone(), ProxyChecker::unchecked());
    ctx.core_image = Some(core_image);
    match interlock::core::reconcile::ensure_agent(&ctx, &config).await {
        Ok(writes) => tracing::info!(writes, "statistics agent on every node"),
        Err(e) => tracing::warn!("statistics from this engine only: {e}"),
    }
}

fn list_plugins() -> anyhow::Result<ExitCode> {
    for p in plugins::list() {
        let aliases = if p.aliases.is_empty() { String::new() } else { format!(" (also: {})", p.aliases.join(", ")) };
        println!("{:<8} {:<5} {}{aliases}", p.name, p.version, p.description);
    }
    Ok(ExitCode::SUCCESS)
}

/// Interlock 0.3's log format, logrus's text formatter without a terminal, for `interlock start`:
///
/// ```text
/// time="2015-10-19T01:22:59Z" level=info msg="loading plugin name=example version=0.1"
/// ```
///
/// `time` in UTC to the second (0.3 ran in a container, whose zone is UTC), `level` in logrus's
/// words (`warning`, not `warn`), the message as `msg`, then any other fields, sorted; a value is
/// quoted, Go-style, unless it is a plain word.
mod logrus {
    use std::fmt::{self, Write as _};
    use std::time::{SystemTime, UNIX_EPOCH};

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    /// See the module documentation.
    pub struct Logrus;

    impl<S, N> FormatEvent<S, N> for Logrus
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            writeln!(writer, "{}", line(now, *event.metadata().level(), &fields.message, fields.rest))
        }
    }

    #[derive(Default)]
    struct Fields {
        message: String,
        rest: Vec<(String, String)>,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.record(field, value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.record(field, format!("{value:?}"));
        }
    }

    impl Fields {
        fn record(&mut self, field: &Field, value: String) {
            if field.name() == "message" {
                self.message = value;
            } else {
                self.rest.push((field.name().to_owned(), value));
            }
        }
    }

    /// One log line, without its newline.
    pub fn line(unix_seconds: u64, level: Level, message: &str, mut fields: Vec<(String, String)>) -> String {
        let level = match level {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let mut out = format!("time=\"{}\" level={level} msg={}", timestamp(unix_seconds), value(message));
        fields.sort();
        for (key, v) in fields {
            let _ = write!(out, " {key}={}", value(&v));
        }
        out
    }

    /// RFC 3339 in UTC, to the second: `2015-10-19T01:22:59Z`.
    pub fn timestamp(unix_seconds: u64) -> String {
        let days = (unix_seconds / 86_400) as i64;
        let secs = unix_seconds % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
    }

    /// A value as logrus writes it: bare when it is a plain word, else quoted as Go's `%q`.
    fn value(text: &str) -> String {
        let plain = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/' | '@' | '^' | '+'));
        if plain {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + 2);
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lines_have_the_seeds_form() {
            // The seed's first line, 2015-10-19T01:22:59Z.
            assert_eq!(
                line(1_445_217_779, Level::INFO, "interlock running version=0.3.2 (2df2d23)", vec![]),
                "time=\"2015-10-19T01:22:59Z\" level=info msg=\"interlock running version=0.3.2 (2df2d23)\""
            );
            assert_eq!(
                line(1_445_217_779, Level::WARN, "stopping", vec![("plugin".into(), "carbon x".into())]),
                "time=\"2015-10-19T01:22:59Z\" level=warning msg=stopping plugin=\"carbon x\""
            );
            assert_eq!(
                line(0, Level::ERROR, "a \"b\"\n", vec![]),
                "time=\"1970-01-01T00:00:00Z\" level=error msg=\"a \\\"b\\\"\\n\""
            );
        }

        #[test]
        fn timestamps_are_utc_calendar_dates() {
            assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
            assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
            assert_eq!(timestamp(1_709_251_199), "2024-02-29T23:59:59Z");
            assert_eq!(timestamp(4_102_444_800), "2100-01-01T00:00:00Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A log writer into memory.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_are_one_flat_object_per_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = log_subscriber(LogFormat::Json, "info".into(), move || writer.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(extension = "us-east", "quarantined: bad: \"port\"\nsecond line");
            tracing::debug!("filtered out");
            tracing::info!(writes = 3, "pass wrote");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["message"], "quarantined: bad: \"port\"\nsecond line");
        assert_eq!(lines[0]["extension"], "us-east");
        assert!(lines[0]["timestamp"].as_str().is_some_and(|t| t.contains('T')), "{text}");
        assert_eq!(lines[1]["writes"], 3);
    }

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

    #[test]
    fn status_reaches_the_listen_addr_on_this_host() {
        let addr = |host: &str, port| ListenAddr { host: host.into(), port };
        assert_eq!(local_url(&addr("", 8080)), "http://127.0.0.1:8080");
        assert_eq!(local_url(&addr("0.0.0.0", 9000)), "http://127.0.0.1:9000");
        assert_eq!(local_url(&addr("::", 8080)), "http://[::1]:8080");
        assert_eq!(local_url(&addr("fd00::2", 8080)), "http://[fd00::2]:8080");
        assert_eq!(local_url(&addr("10.0.0.5", 8080)), "http://10.0.0.5:8080");
        let defaults = config::parse("(defaults)", "").unwrap().config;
        assert_eq!(local_url(&defaults.listen_addr), "http://127.0.0.1:8080");
    }
}
