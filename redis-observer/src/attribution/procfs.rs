//! What /proc says about TCP sockets and their owners: one pass over every process finds the
//! sockets of the watched ports in every network namespace (one process per namespace is read),
//! the local addresses of each namespace, and which process holds each socket.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

/// A TCP socket from `/proc/<pid>/net/tcp{,6}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sock {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub listen: bool,
    pub inode: u64,
    /// Network namespace (inode of `/proc/<pid>/ns/net`).
    pub netns: u64,
}

/// Result of one pass.
#[derive(Debug, Default)]
pub struct Scan {
    pub socks: Vec<Sock>,
    /// Socket inode → the processes holding it (a forked child shares its parent's sockets).
    pub owners: HashMap<u64, Vec<u32>>,
    /// The observer's own network namespace.
    pub own_netns: u64,
    /// Local addresses of each namespace.
    pub local_addrs: HashMap<u64, Vec<IpAddr>>,
    /// Some process's descriptors could not be read (no permission).
    pub denied: bool,
}

/// Sockets whose local or remote port is one of `ports`, and their owners.
pub fn scan(ports: &[u16]) -> Scan {
    let mut s = Scan {
        own_netns: netns("self").unwrap_or(0),
        ..Scan::default()
    };
    let pids = pids();
    for &pid in &pids {
        let ns = match fs::read_link(format!("/proc/{pid}/ns/net")) {
            Ok(t) => t.to_str().and_then(parse_netns),
            Err(e) => {
                // Without privileges, other users' and privileged processes' namespaces are
                // closed to us: whatever they hold is unknown, not absent.
                s.denied |= e.kind() == ErrorKind::PermissionDenied;
                None
            }
        };
        let Some(ns) = ns else {
            continue;
        };
        if s.local_addrs.contains_key(&ns) {
            continue;
        }
        let dir = format!("/proc/{pid}/net");
        let mut addrs = Vec::new();
        local_v4(&format!("{dir}/fib_trie"), &mut addrs);
        local_v6(&format!("{dir}/if_inet6"), &mut addrs);
        s.local_addrs.insert(ns, addrs);
        for (file, v6) in [("tcp", false), ("tcp6", true)] {
            let Ok(text) = fs::read_to_string(format!("{dir}/{file}")) else {
                continue;
            };
            for line in text.lines().skip(1) {
                if let Some(mut sock) = parse_tcp_line(line, v6) {
                    if ports.contains(&sock.local.port())
                        || (!sock.listen && ports.contains(&sock.remote.port()))
                    {
                        sock.netns = ns;
                        s.socks.push(sock);
                    }
                }
            }
        }
    }
    let wanted: HashSet<u64> = s.socks.iter().map(|k| k.inode).collect();
    // (Listing every process's descriptors finds nothing more when no socket is wanted.)
    if wanted.is_empty() {
        return s;
    }
    for &pid in &pids {
        let fds = match fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(d) => d,
            Err(e) => {
                s.denied |= e.kind() == ErrorKind::PermissionDenied;
                continue;
            }
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(&target) else {
                continue;
            };
            if wanted.contains(&inode) {
                let v = s.owners.entry(inode).or_default();
                if !v.contains(&pid) {
                    v.push(pid);
                }
            }
        }
    }
    s
}

/// Numeric entries of /proc.
fn pids() -> Vec<u32> {
    let Ok(d) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Inode of a process's network namespace (`net:[4026531840]`).
pub fn netns(pid: &str) -> Option<u64> {
    let t = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    parse_netns(t.to_str()?)
}

fn parse_netns(t: &str) -> Option<u64> {
    t.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

fn socket_inode(target: &Path) -> Option<u64> {
    let t = target.to_str()?;
    t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// One line of /proc/net/tcp or tcp6: `sl local rem st … inode …`.
pub fn parse_tcp_line(line: &str, v6: bool) -> Option<Sock> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let local = hex_addr(cols.get(1)?, v6)?;
    let remote = hex_addr(cols.get(2)?, v6)?;
    let state = u8::from_str_radix(cols.get(3)?, 16).ok()?;
    let inode = cols.get(9)?.parse().ok()?;
    // 0A: LISTEN; 01: ESTABLISHED. Others (closing, TIME_WAIT) have no use here.
    if state != 0x0a && state != 0x01 {
        return None;
    }
    Some(Sock {
        local,
        remote,
        listen: state == 0x0a,
        inode,
        netns: 0,
    })
}

/// `0100007F:18EB`: the address as the kernel's native-endian words, the port in hex.
fn hex_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let ip = if v6 {
        if a.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for i in 0..4 {
            let w = u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16).ok()?;
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(b))
    } else {
        if a.len() != 8 {
            return None;
        }
        let w = u32::from_str_radix(a, 16).ok()?;
        IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))
    };
    Some(SocketAddr::new(ip, port))
}

/// IPv4 addresses marked `/32 host LOCAL` in a namespace's fib_trie.
fn local_v4(path: &str, out: &mut Vec<IpAddr>) {
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last {
                if !out.contains(&IpAddr::V4(a)) {
                    out.push(IpAddr::V4(a));
                }
            }
        }
    }
}

/// IPv6 addresses of a namespace (`if_inet6`: 32 hex digits in network order first).
fn local_v6(path: &str, out: &mut Vec<IpAddr>) {
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let Some(h) = line.split_whitespace().next() else {
            continue;
        };
        if h.len() != 32 {
            continue;
        }
        let Ok(v) = u128::from_str_radix(h, 16) else {
            continue;
        };
        out.push(IpAddr::V6(Ipv6Addr::from(v)));
    }
}

/// What /proc says about one process.
#[derive(Clone, Debug, Default)]
pub struct ProcInfo {
    pub comm: String,
    /// Its cgroup v2 path (`0::/…` in /proc/<pid>/cgroup).
    pub cgroup: Option<String>,
    /// Start time (clock ticks since boot): with the pid, names one process across pid reuse.
    pub start: u64,
}

pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let start = start_time(pid)?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim_end().to_string()))
        });
    Some(ProcInfo {
        comm: comm.trim_end_matches('\n').to_string(),
        cgroup,
        start,
    })
}

/// Field 22 of /proc/<pid>/stat (after the parenthesised comm, which may hold spaces).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_lines() {
        let l = "   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0";
        let s = parse_tcp_line(l, false).unwrap();
        assert_eq!(s.local, "127.0.0.1:6379".parse().unwrap());
        assert!(s.listen);
        assert_eq!(s.inode, 12345);
        let l6 = "   1: 00000000000000000000000001000000:18EB 0000000000000000FFFF00000100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 777 1";
        let s = parse_tcp_line(l6, true).unwrap();
        assert_eq!(s.local, "[::1]:6379".parse().unwrap());
        assert_eq!(s.remote, "[::ffff:127.0.0.1]:40000".parse().unwrap());
        assert!(!s.listen);
        // TIME_WAIT (06) is skipped.
        assert!(parse_tcp_line(&l.replace(" 0A ", " 06 "), false).is_none());
        assert!(parse_tcp_line("garbage", false).is_none());
    }

    #[test]
    fn this_process() {
        let me = std::process::id();
        let i = proc_info(me).unwrap();
        assert!(!i.comm.is_empty());
        assert!(i.start > 0);
        assert!(netns("self").is_some());
    }
}
