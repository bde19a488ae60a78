use std::process::ExitCode;

use clap::Parser as _;
use redis_observer::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // One clear line, as the contract asks; clap's first line says what was wrong.
            let msg = e.to_string();
            let line = msg.lines().next().unwrap_or("bad arguments");
            eprintln!("redis-observer: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    redis_observer::logging::init();
    let result = match cli.command {
        Command::Run(args) => redis_observer::cmd::run::run(args),
        Command::Replay(args) => redis_observer::cmd::replay::run(args),
        Command::Tail(args) => redis_observer::cmd::tail::run(args),
        Command::Check(args) => return redis_observer::cmd::check::run(&args),
        Command::Top(args) => redis_observer::cmd::top::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-observer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
