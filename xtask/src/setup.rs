//! `cargo xtask setup`: installs, idempotently, what a fresh machine lacks. Every step checks
//! first and does nothing when the thing is already there.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::run;

/// Debian packages the daemon and the tests use.
const APT_PACKAGES: &[&str] = &[
    "redis-server", // the real server the tests and the demo observe
    "redis-tools",  // redis-cli, redis-benchmark
    "iproute2",     // ip netns / veth / tc for the namespace tests
    "tcpdump",      // recording golden captures
    "bpftool",      // per-program run time (bpf stats) in benchmarks
    "prometheus",   // a real Prometheus scraping the daemon in the tests
    "tmux",         // `tail` tested in a real terminal
    "procps",       // ps, pkill
];

/// Python packages (PyPI) the tests use, importable name → pip name.
const PIP_PACKAGES: &[(&str, &str)] = &[("redis", "redis==5.0.8")];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn setup() -> anyhow::Result<()> {
    apt()?;
    pip()?;
    crate::servers::install()?;
    rust_src()?;
    bpf_linker()?;
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask setup: installing Debian packages {missing:?}");
    let sudo = !is_root();
    let apt = |args: &[&str]| {
        let mut c = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-qq"]))?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    run(&mut apt(&args))?;
    // Debian starts redis-server and prometheus as services where it can; the tests start their
    // own on free ports, so the packaged ones are left alone.
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn pip() -> anyhow::Result<()> {
    for (module, spec) in PIP_PACKAGES {
        let have = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !have {
            run(Command::new("python3").args(["-m", "pip", "install", "--quiet", spec]))?;
        }
    }
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup (is rustup installed?)")?;
    if !out.status.success() {
        // No nightly yet: install it (the BPF target is tier 3 and needs -Z build-std).
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !String::from_utf8_lossy(&out.stdout).contains("rust-src") {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// bpf-linker from crates.io, linked against nightly's own LLVM (docs/toolchain.md): no LLVM
/// package of the right version exists here.
fn bpf_linker() -> anyhow::Result<()> {
    let have = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    let sysroot = capture(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let llvm_major = capture(Command::new("rustc").args(["+nightly", "-vV"]))?
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next().map(str::to_owned))
        .context("nightly's LLVM version")?;
    let lib = std::path::Path::new(&sysroot).join("lib");
    let so = std::fs::read_dir(&lib)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .context("CARGO_HOME/HOME")?;
    let prefix = std::path::Path::new(&home).join("bpf-llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&so, &link).context("linking nightly's libLLVM")?;
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--no-default-features",
        ])
        .args(["--features", &format!("llvm-{llvm_major}")])
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
        ))?;
    Ok(())
}

fn capture(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
