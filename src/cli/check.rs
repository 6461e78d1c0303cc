//! `interlock check -c FILE`: connects to Docker and reports the engine, the swarm's nodes and
//! where each proxy can run; exits 1 when it finds a problem.

use std::path::Path;
use std::process::ExitCode;

use interlock::docker::DockerClient;
use interlock::preflight;
use interlock::swarm::Swarm;
use reconcilers::config::Config;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = super::load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    super::current_thread_runtime()?.block_on(async {
        let docker = DockerClient::connect(config.docker_url.as_ref(), &config.tls)?;
        let report = check(&docker, &config).await?;
        print!("{}", report.text);
        Ok(if report.problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    })
}

/// The engine (a manager's, or an error) and the swarm, checked against `config`.
async fn check<S: Swarm>(docker: &S, config: &Config) -> anyhow::Result<preflight::CheckReport> {
    let engine = docker.require_manager().await?;
    let observed = docker.observe().await?;
    Ok(preflight::check_report(&engine, &observed, config))
}
