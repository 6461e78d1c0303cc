//! The `interlock` binary: parse the command line, set up logging, run the command, exit with its
//! code. The commands, one file each, the flags and the logging set-up are in `cli/`; anyhow
//! lives in the binary and nowhere else.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;
use cli::args::{Cli, Command};

fn main() -> ExitCode {
    interlock::allocator::tune_allocator();
    let cli = Cli::parse();
    if let Some(refusal) = cli.refusal() {
        eprintln!("{refusal}");
        return ExitCode::from(2);
    }
    if matches!(cli.command, Command::Start) {
        cli::logging::init_logrus(cli.debug);
    } else {
        cli::logging::init(cli.debug, cli.log_format);
    }
    let result = match cli.command {
        Command::Validate { config } => cli::validate::run(&config),
        Command::Check { config } => cli::check::run(&config),
        Command::Plan { config } => cli::plan::run(&config),
        Command::Apply { config, timeout, writer } => {
            cli::apply::run(&config, std::time::Duration::from_secs(timeout), writer)
        }
        Command::Run { config, writer } => cli::run::run(&config, writer),
        Command::Health { url } => cli::health::run(&url),
        Command::Status { url, config } => cli::status::run(url, config.as_deref()),
        Command::Extension => cli::extension::run(),
        Command::Agent => cli::agent::run(),
        Command::Start => cli::start::run(&cli.legacy),
        Command::ListPlugins => cli::list_plugins::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("interlock: {e:#}");
            ExitCode::FAILURE
        }
    }
}
