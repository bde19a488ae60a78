//! `redis-observer check`: one line per prerequisite of `run`, non-zero exit if any is missing.

use std::process::ExitCode;

use crate::{capture::Iface, cli::CheckArgs};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn kernel_version() -> Option<(u32, u32)> {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut ok = true;
    let mut line = |good: bool, what: &str, detail: String| {
        println!("{} {what}: {detail}", if good { "ok  " } else { "FAIL" });
        ok &= good;
    };
    match kernel_version() {
        Some((maj, min)) => {
            let good = (maj, min) >= (5, 8);
            line(
                good,
                "kernel",
                format!(
                    "{maj}.{min} (ring buffer needs >= 5.8; TCX links >= 6.6: {})",
                    if (maj, min) >= (6, 6) {
                        "yes"
                    } else {
                        "no, classic clsact + tc filter"
                    }
                ),
            );
        }
        None => line(
            false,
            "kernel",
            "cannot read /proc/sys/kernel/osrelease".into(),
        ),
    }
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    line(
        btf,
        "BTF",
        if btf {
            "/sys/kernel/btf/vmlinux present".into()
        } else {
            "/sys/kernel/btf/vmlinux missing".into()
        },
    );
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    let cap_ok = (has(CAP_BPF) || has(CAP_SYS_ADMIN))
        && has(CAP_NET_ADMIN)
        && (has(CAP_PERFMON) || has(CAP_SYS_ADMIN));
    line(
        cap_ok,
        "capabilities",
        format!(
            "CAP_BPF={} CAP_NET_ADMIN={} CAP_PERFMON={} CAP_SYS_ADMIN={}{}",
            has(CAP_BPF),
            has(CAP_NET_ADMIN),
            has(CAP_PERFMON),
            has(CAP_SYS_ADMIN),
            if cap_ok {
                ""
            } else {
                " (run as root, or grant CAP_BPF+CAP_NET_ADMIN+CAP_PERFMON)"
            }
        ),
    );
    for name in &args.ifaces {
        match Iface::lookup(name) {
            Ok(i) => line(
                true,
                &format!("interface {name}"),
                format!(
                    "index {}{}",
                    i.index,
                    if i.loopback {
                        ", loopback (ingress hook sees both directions)"
                    } else {
                        ""
                    }
                ),
            ),
            Err(e) => line(false, &format!("interface {name}"), format!("{e:#}")),
        }
    }
    let tcx = kernel_version().is_some_and(|v| v >= (6, 6));
    if !tcx {
        let clsact = std::path::Path::new("/sys/module/sch_ingress").exists()
            || std::fs::read_to_string("/proc/modules")
                .map(|m| m.contains("sch_ingress"))
                .unwrap_or(false);
        line(
            clsact,
            "clsact qdisc",
            if clsact {
                "sch_ingress available".into()
            } else {
                "sch_ingress not loaded (modprobe sch_ingress)".into()
            },
        );
    } else {
        line(true, "clsact qdisc", "not needed (TCX)".into());
    }
    if cap_ok {
        match crate::capture::probe_load() {
            Ok(()) => line(true, "eBPF program", "loads and passes the verifier".into()),
            Err(e) => line(false, "eBPF program", format!("{e:#}")),
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
