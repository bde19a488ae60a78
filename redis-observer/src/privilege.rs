//! Dropping capabilities once the capture is attached.
//!
//! Loading and attaching need CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or CAP_SYS_ADMIN). Once
//! attached, the daemon only reads the mmapped ring buffer, looks up its own maps through fds it
//! already holds (no capability needed since Linux 6.5 moved the unprivileged-BPF check to map
//! and program creation), serves HTTP on an already-bound socket, writes its log, and at exit
//! closes its link and socket fds (which detaches them). So it drops every capability, from the
//! effective, permitted, inheritable and bounding sets, and sets no_new_privs, except
//! CAP_NET_ADMIN when it added a clsact qdisc (kernels before TCX) that it must remove at exit.

use anyhow::bail;

pub const CAP_NET_ADMIN: u32 = 12;
const CAP_LAST: u32 = 63;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn get() -> anyhow::Result<[CapData; 2]> {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and two data structs, as the ABI requires.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) };
    if r != 0 {
        bail!("capget: {}", std::io::Error::last_os_error());
    }
    Ok(d)
}

/// Capabilities currently effective, as numbers.
pub fn effective() -> anyhow::Result<Vec<u32>> {
    let d = get()?;
    Ok((0..=CAP_LAST)
        .filter(|&c| d[(c / 32) as usize].effective & (1 << (c % 32)) != 0)
        .collect())
}

/// Keeps only `keep` (effective and permitted); empties the inheritable and bounding sets of
/// everything else and sets no_new_privs. Returns the capabilities that remain.
pub fn drop_all_but(keep: &[u32]) -> anyhow::Result<Vec<u32>> {
    for c in 0..=CAP_LAST {
        if !keep.contains(&c) {
            // EINVAL past the kernel's last capability: nothing to drop there.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
        }
    }
    let mut d = [CapData::default(); 2];
    for &c in keep {
        let bit = 1u32 << (c % 32);
        d[(c / 32) as usize].effective |= bit;
        d[(c / 32) as usize].permitted |= bit;
    }
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset with a v3 header and two data structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) };
    if r != 0 {
        bail!("capset: {}", std::io::Error::last_os_error());
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    effective()
}

pub fn name(cap: u32) -> String {
    match cap {
        12 => "CAP_NET_ADMIN".into(),
        21 => "CAP_SYS_ADMIN".into(),
        38 => "CAP_PERFMON".into(),
        39 => "CAP_BPF".into(),
        c => format!("cap{c}"),
    }
}
