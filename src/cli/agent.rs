//! `interlock agent`: the statistics agent's process (one task per node, with the node's Docker
//! socket), sending its node's container and proxy statistics to Carbon
//! ([`interlock::agent`]). Connects to the node's own engine.

use std::process::ExitCode;

use interlock::docker::DockerClient;

pub fn run() -> anyhow::Result<ExitCode> {
    let settings = interlock::agent::AgentSettings::from_env()?;
    super::runtime()?.block_on(async {
        let shutdown = interlock::shutdown::termination()?;
        // The node's own engine: its socket is mounted into the agent's task.
        let docker = DockerClient::connect(None, &Default::default())?;
        interlock::agent::run(settings, docker, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
