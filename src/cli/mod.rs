//! The `interlock` command line, one file per command; `main.rs` parses, sets up logging and
//! dispatches here. These are modules of the binary: anyhow is used here and nowhere in the
//! library.
//!
//! # Files
//! - `args.rs`: the flags and commands, as clap parses them, and the flags refused.
//! - `logging.rs`: log set-up: text or JSON lines, and Interlock 0.3's logrus lines for `start`.
//! - `context.rs`: the composition root of `plan`, `apply` and `run`: the Docker connection and
//!   the shared [`Context`](interlock::core::context::Context) built once.
//! - `validate.rs`, `check.rs`, `plan.rs`, `apply.rs`, `run.rs`, `health.rs`, `status.rs`,
//!   `extension.rs`, `agent.rs`: `interlock validate`, `check`, ... one each.
//! - `start.rs`, `list_plugins.rs`: Interlock 0.3's `start` (the plug-in host) and
//!   `list-plugins`.
//!
//! Here, in `mod.rs`: reading a config file ([`load`]) and the runtime the commands run on.

pub mod agent;
pub mod apply;
pub mod args;
pub mod check;
pub mod context;
pub mod extension;
pub mod health;
pub mod list_plugins;
pub mod logging;
pub mod plan;
pub mod run;
pub mod start;
pub mod status;
pub mod validate;

use std::path::Path;

use anyhow::Context as _;
use reconcilers::config::{self, Loaded};

/// Reads and validates the config, printing warnings; `Ok(None)` when it has errors (printed).
pub fn load(path: &Path) -> anyhow::Result<Option<Loaded>> {
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

/// The runtime of the long-running commands (and `plan`, `apply`): two worker threads.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// The runtime of a one-shot command (`check`, `health`, `status`): this thread only.
pub fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
