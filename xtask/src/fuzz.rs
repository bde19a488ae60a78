//! `cargo xtask fuzz`: runs every cargo-fuzz target in `fuzz/` for a fixed time.
//!
//! Installs cargo-fuzz if it is missing (idempotent), builds all targets once, then runs them one
//! after the other (they share the machine). Each run reads the checked-in seeds in
//! `fuzz/corpus/<target>` and writes what it discovers to a scratch corpus under
//! `fuzz/target/ci-corpus/<target>` (kept between runs up to a size, never committed), so the seed
//! directories stay exactly what `fuzz/make_seeds.sh` wrote. A crash, a failed invariant, an
//! input slower than the timeout or over the memory limit fails the target; the input libFuzzer
//! saved under `fuzz/artifacts/<target>/` is printed. Reproduce with
//! `cd fuzz && cargo +nightly fuzz run -s none -a <target> <file>`, minimise with
//! `cargo +nightly fuzz tmin -s none -a <target> <file>`, and turn it into a unit test of the
//! module at fault.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Every target in `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 7] = [
    "resp_request",
    "resp_reply",
    "inline",
    "reassembly",
    "session",
    "pipeline",
    "redaction",
];

/// Shared flags of `cargo fuzz build` and `run`: debug assertions on (integer overflow is a
/// finding), no sanitizer (the fuzzed code is safe Rust; ASan would halve the executions).
const FUZZ_FLAGS: [&str; 4] = ["--sanitizer", "none", "--debug-assertions", "--release"];

/// A scratch corpus grows with every run; past this size it starts afresh (the seeds remain), so
/// loading it does not eat a short run's time or the disk.
const SCRATCH_MAX_BYTES: u64 = 64 << 20;

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("fuzz"))
        .unwrap_or_else(|| PathBuf::from("fuzz"))
}

/// `cargo +nightly …` in `fuzz/`, through rustup's proxy (not `$CARGO`, which is the toolchain
/// xtask itself runs under).
fn nightly_cargo(dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly").current_dir(dir);
    // What the outer `cargo run` exported must not steer the fuzz build.
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "CARGO_TARGET_DIR", "RUSTFLAGS"] {
        c.env_remove(var);
    }
    c
}

fn status(cmd: &mut Command) -> anyhow::Result<bool> {
    let desc = format!("{cmd:?}");
    eprintln!("xtask: {desc}");
    Ok(cmd
        .status()
        .with_context(|| format!("starting {desc}"))?
        .success())
}

/// Installs cargo-fuzz unless `cargo fuzz --version` already works.
fn ensure_cargo_fuzz(dir: &Path) -> anyhow::Result<()> {
    let present = nightly_cargo(dir)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    if !status(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))? {
        bail!("cargo install cargo-fuzz failed");
    }
    Ok(())
}

fn artifacts(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// Builds every fuzz target and runs each for `seconds`; fails if any finds something.
pub fn run(seconds: u64) -> anyhow::Result<()> {
    let (_, failed) = run_all(seconds)?;
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (inputs under {})",
            failed.join(", "),
            fuzz_dir().join("artifacts").display()
        );
    }
    Ok(())
}

/// Runs every target for `seconds`; returns how many ran and which failed. Errors only when the
/// targets cannot be built or run at all.
pub fn run_all(seconds: u64) -> anyhow::Result<(usize, Vec<&'static str>)> {
    let dir = fuzz_dir();
    if !dir.join("Cargo.toml").is_file() {
        bail!("no fuzz project at {}", dir.display());
    }
    ensure_cargo_fuzz(&dir)?;
    if !status(nightly_cargo(&dir).args(["fuzz", "build"]).args(FUZZ_FLAGS))? {
        bail!("building the fuzz targets failed");
    }
    let mut failed = Vec::new();
    for t in TARGETS {
        let seeds = dir.join("corpus").join(t);
        let scratch = dir.join("target").join("ci-corpus").join(t);
        fs::create_dir_all(&seeds).with_context(|| format!("creating {}", seeds.display()))?;
        if dir_bytes(&scratch) > SCRATCH_MAX_BYTES {
            fs::remove_dir_all(&scratch)
                .with_context(|| format!("clearing {}", scratch.display()))?;
        }
        fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let art_dir = dir.join("artifacts").join(t);
        let before = artifacts(&art_dir);
        let mut cmd = nightly_cargo(&dir);
        cmd.args(["fuzz", "run"]).args(FUZZ_FLAGS).arg(t);
        if seconds == 0 {
            // Regression: every checked-in seed once, nothing new explored.
            cmd.arg(&seeds).arg("--").arg("-runs=0");
        } else {
            // libFuzzer adds new inputs to the first directory only.
            cmd.arg(&scratch)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={seconds}"));
        }
        let ok = status(cmd.args(["-rss_limit_mb=2048", "-timeout=30", "-print_final_stats=1"]))?;
        if ok {
            if seconds == 0 {
                eprintln!("xtask: fuzz target {t}: every seed passes");
            } else {
                eprintln!("xtask: fuzz target {t}: no findings in {seconds} s");
            }
            continue;
        }
        let new: Vec<PathBuf> = artifacts(&art_dir).difference(&before).cloned().collect();
        if new.is_empty() {
            eprintln!("xtask: fuzz target {t} FAILED (no input saved; see its output above)");
        }
        for p in &new {
            eprintln!("xtask: fuzz target {t} FAILED on {}", p.display());
        }
        failed.push(t);
    }
    Ok((TARGETS.len(), failed))
}
