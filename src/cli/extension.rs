//! `interlock extension`: the extension service's process ([`interlock::extension`]). With
//! `HitlessServiceUpdate` it connects to its node's own engine (its socket mounted into the
//! task) to keep the proxy tasks there on the core's config; otherwise it needs no engine.

use std::process::ExitCode;

use interlock::docker::DockerClient;

pub fn run() -> anyhow::Result<ExitCode> {
    let settings = interlock::extension::Settings::from_env()?;
    super::runtime()?.block_on(async {
        let shutdown = interlock::shutdown::termination()?;
        // The node's own engine (its socket is mounted into a hitless extension's task), not the
        // config's DockerURL; a rolling extension has none and needs none.
        let docker = if settings.hitless { Some(DockerClient::connect(None, &Default::default())?) } else { None };
        interlock::extension::run(settings, docker, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
