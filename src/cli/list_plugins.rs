//! `interlock list-plugins` (Interlock 0.3): the plug-ins `--plugin` accepts.

use std::process::ExitCode;

use interlock::core::plugins;

/// One line per plug-in: name, version, what it does, other names.
pub fn run() -> anyhow::Result<ExitCode> {
    for p in plugins::list() {
        let aliases = if p.aliases.is_empty() { String::new() } else { format!(" (also: {})", p.aliases.join(", ")) };
        println!("{:<8} {:<5} {}{aliases}", p.name, p.version, p.description);
    }
    Ok(ExitCode::SUCCESS)
}
