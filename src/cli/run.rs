//! `interlock run -c FILE [--writer]`: the reconcile loop (Interlock's `interlock -D run -c
//! FILE`), with the `[Plugins]` the config enables, until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use interlock::core::plugins::{self, Dispatcher, PluginSettings};

pub fn run(path: &Path, writer: bool) -> anyhow::Result<ExitCode> {
    let Some(loaded) = super::load(path)? else { return Ok(ExitCode::FAILURE) };
    let config = loaded.config;
    super::validate::check_plugin_settings(&config).map_err(|e| anyhow::anyhow!("{}: error: {e}", path.display()))?;
    super::runtime()?.block_on(async {
        // Before anything else: a SIGTERM during the first pass must finish that pass, not kill it.
        let shutdown = interlock::shutdown::termination()?;
        let mut ctx = super::context::context(&config, writer).await?;
        if !config.plugins.enabled.is_empty() {
            let built = plugins::build(&config.plugins.enabled, &PluginSettings::from_config(&config))
                .with_context(|| format!("{}: [Plugins]", path.display()))?;
            ctx = ctx.with_plugins(Dispatcher::new(built));
        }
        interlock::core::controller::run(ctx, path.to_owned(), config, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
