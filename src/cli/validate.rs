//! `interlock validate -c FILE`: checks a config without touching Docker; prints its summary and
//! exits 0, or prints every error and exits 1. Also the `[Plugins.Carbon]` check `run` makes.

use std::path::Path;
use std::process::ExitCode;

use interlock::carbon::CarbonError;
use interlock::core::plugins::PluginSettings;
use interlock::preflight;
use reconcilers::config::Config;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(loaded) = super::load(path)? else { return Ok(ExitCode::FAILURE) };
    if let Err(e) = check_plugin_settings(&loaded.config) {
        eprintln!("{}: error: {e}", path.display());
        return Ok(ExitCode::FAILURE);
    }
    print!("{}", preflight::config_summary(&path.display().to_string(), &loaded.config));
    print!("{}", plugins_summary(&loaded.config).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// What the core's parser cannot check in `[Plugins.Carbon]` (the image filter's regex syntax),
/// checked as the plug-in will; the error names the key.
pub fn check_plugin_settings(config: &Config) -> Result<(), String> {
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
