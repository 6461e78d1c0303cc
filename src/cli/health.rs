//! `interlock health [--url URL]`: the stack's healthcheck (the image has no curl): exit 0 when
//! a running core's `/health` answers 200, else 1.

use std::process::ExitCode;

/// `interlock health`: the stack's healthcheck (the image has no curl).
pub fn run(url: &str) -> anyhow::Result<ExitCode> {
    let runtime = super::current_thread_runtime()?;
    match runtime.block_on(interlock::core::status::health(url)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("interlock: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
