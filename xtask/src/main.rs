//! Project tasks cargo cannot do alone: toolchain and package setup, running the observer and
//! its demo, the full (root) test suite, benchmarks, regenerating the command table.

mod bench;
mod demo;
mod gen_commands;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (idempotent): Debian packages, rust-src, bpf-linker.
    Setup,
    /// Set up, build, and run `redis-observer run` with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start a throwaway redis-server with some traffic and show the command log and metrics.
    Demo,
    /// Set up, build, and run every test (unit, property, end-to-end as root).
    Test {
        /// Skip the slow end-to-end suites.
        #[arg(long)]
        quick: bool,
    },
    /// Regenerate redis-observer/data and the command table from a real redis-server.
    GenCommands,
    /// End-to-end overhead/completeness arms and the criterion benches; writes BENCHMARKS.md
    /// (root; needs the machine to itself).
    Bench {
        /// Rounds per arm (alternated).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Small runs, no criterion benches (a smoke test of the harness).
        #[arg(long)]
        quick: bool,
    },
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs a command, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let desc = format!("{cmd:?}");
    eprintln!("xtask: {desc}");
    let st = cmd.status().with_context(|| format!("starting {desc}"))?;
    if !st.success() {
        bail!("{desc} failed ({st})");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn build_release() -> anyhow::Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "redis-observer"]))?;
    Ok(root().join("target/release/redis-observer"))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::setup(),
        Task::Run { args } => {
            setup::setup()?;
            let bin = build_release()?;
            let mut args = args;
            if args.first().is_none_or(|a| a.starts_with('-')) {
                args.insert(0, "run".into());
            }
            run(Command::new(bin).args(&args))
        }
        Task::Demo => {
            setup::setup()?;
            let bin = build_release()?;
            demo::demo(&bin)
        }
        Task::Test { quick } => {
            setup::setup()?;
            test(quick)
        }
        Task::Bench { rounds, quick } => {
            setup::setup()?;
            let bin = build_release()?;
            bench::bench(&bin, rounds, quick)
        }
        Task::GenCommands => {
            setup::setup()?;
            gen_commands::run(0, &root().join("redis-observer"))
        }
    }
}

fn test(quick: bool) -> anyhow::Result<()> {
    // Unit, property and end-to-end tests (the latter need root, redis-server, and build the
    // release binary themselves through the tests crate's helpers).
    run(cargo().args(["build", "--release", "-p", "redis-observer"]))?;
    let mut c = cargo();
    c.args([
        "test",
        "--workspace",
        "--exclude",
        "redis-ebpf",
        "--release",
    ]);
    if quick {
        c.env("REDIS_OBSERVER_QUICK", "1");
    }
    run(&mut c)?;
    Ok(())
}
