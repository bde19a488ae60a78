//! Process attribution for the live daemon: which local process owns each connection's client
//! socket, and which owns the server's listening socket.
//!
//! - Clients: the kernel program (`redis-ebpf/src/sock_state.rs`) records the process that
//!   called `connect()` under the client's address and port; a connection seen from its SYN is
//!   matched only to an entry made after that SYN (an older one belongs to an earlier
//!   connection from the same port). Connections already open when the daemon started are found
//!   in /proc once, at start ([`procfs`]).
//! - Servers: the kernel program also records, on watched ports, the process that called
//!   `listen()` (by bound address and port, with a count of the sockets listening there across
//!   namespaces) and, per accepted connection, the server's end as its socket has it (after any
//!   DNAT). A connection the kernel saw accepted names its listener: the exact bound address, or
//!   a wildcard one, trusted only when one process owns it. Otherwise (a listener in several
//!   namespaces, a connection accepted before the start) /proc decides: the listening socket's
//!   owner, cached per server address and checked against the process's start time at most
//!   once a second (a restarted server is looked up again). Listeners that exist at start are
//!   entered into the kernel's map from /proc.
//! - Cgroup ids become paths by walking the cgroup v2 file system ([`cgroup`]), and paths
//!   become a container, pod or unit.
//!
//! Every lookup that fails is counted in `redis_observer_attribution_failures_total{side,
//! reason}`; nothing is guessed. All of this runs once per connection, never per packet.

pub mod cgroup;
pub mod procfs;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use prometheus::{IntCounterVec, Opts, Registry};
use redis_ebpf_common::{Accepted, ClientKey, ClientProc, FAMILY_V4, FAMILY_V6, ListenerProc};

use crate::{capture::Clock, conn::Process, pipeline::Attributor, pipeline::canonical};

/// The kernel's maps (see `redis-ebpf/src/sock_state.rs`).
pub struct KernelMaps {
    /// Established client sockets → the process that connected.
    pub clients: BpfHashMap<MapData, ClientKey, ClientProc>,
    /// Bound address and port → the process that listened there.
    pub listeners: BpfHashMap<MapData, ClientKey, ListenerProc>,
    /// Client end → the server's end of connections local servers accepted.
    pub accepted: BpfHashMap<MapData, ClientKey, Accepted>,
}

/// Why a lookup failed (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No process on this host was found for it (a remote peer, or a connection the kernel hook
    /// did not see: opened while the observer was not running, or aged out of its map).
    NotFound,
    /// Several processes match (listeners of different processes on the same address and
    /// port in different network namespaces, say).
    Ambiguous,
    /// Some process's sockets could not be read (/proc/PID/fd of another user, after the
    /// daemon dropped its capabilities).
    NoAccess,
    /// The process is known but its cgroup was not found (gone, or no cgroup v2 mounted).
    Cgroup,
}

impl Failure {
    pub const ALL: [Failure; 4] = [
        Failure::NotFound,
        Failure::Ambiguous,
        Failure::NoAccess,
        Failure::Cgroup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NotFound => "not_found",
            Failure::Ambiguous => "ambiguous",
            Failure::NoAccess => "no_access",
            Failure::Cgroup => "cgroup",
        }
    }
}

/// `redis_observer_attribution_failures_total{side, reason}` and
/// `redis_observer_attributions_total{side, source}`.
#[derive(Clone)]
pub struct AttributionMetrics {
    failures: IntCounterVec,
    found: IntCounterVec,
}

impl AttributionMetrics {
    fn new() -> Self {
        let failures = IntCounterVec::new(
            Opts::new(
                "redis_observer_attribution_failures_total",
                "Connections whose local client or server process could not be named",
            ),
            &["side", "reason"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition"));
        let found = IntCounterVec::new(
            Opts::new(
                "redis_observer_attributions_total",
                "Connections whose local client or server process was named",
            ),
            &["side", "source"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric definition"));
        // Every series exists from the start (bounded: 2 × 4 and 2 × 2).
        for side in ["client", "server"] {
            for f in Failure::ALL {
                let _ = failures.with_label_values(&[side, f.as_str()]);
            }
            for src in ["kernel", "proc"] {
                let _ = found.with_label_values(&[side, src]);
            }
        }
        AttributionMetrics { failures, found }
    }

    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.found.clone()))
    }

    fn fail(&self, side: &str, f: Failure) {
        self.failures.with_label_values(&[side, f.as_str()]).inc();
    }

    fn found(&self, side: &str, source: &str) {
        self.found.with_label_values(&[side, source]).inc();
    }
}

/// A server's owner as last resolved.
struct ServerEntry {
    result: Result<(Arc<Process>, u64), Failure>,
    /// When it was resolved, or last found to be the same process.
    at: Instant,
}

/// `bpf_map_update_elem` flag: create only.
const BPF_NOEXIST: u64 = 1;

/// Server addresses cached at most (as many as the `server` label's cap, with room).
const MAX_SERVERS: usize = 256;
/// A failed server lookup is retried after this long.
const SERVER_RETRY: Duration = Duration::from_secs(5);
/// /proc is scanned again for servers at most this often.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// A known server process is checked (one small /proc read) at most this often, not on every
/// connection of a client that connects thousands of times a second.
const SERVER_RECHECK: Duration = Duration::from_secs(1);

/// Implements [`Attributor`] for the live daemon.
pub struct Resolver {
    kernel: Option<KernelMaps>,
    clock: Clock,
    ports: Vec<u16>,
    cgroups: cgroup::Cgroups,
    /// Client sockets open when the daemon started, by client address; removed once used.
    preexisting: HashMap<SocketAddr, Result<Arc<Process>, Failure>>,
    /// The latest /proc pass (listeners), and when it was made.
    scan: procfs::Scan,
    scanned_at: Instant,
    servers: HashMap<SocketAddr, ServerEntry>,
    metrics: AttributionMetrics,
}

impl Resolver {
    /// Reads /proc once for the connections and listeners that exist now. Call it after the
    /// kernel hook is attached (a connection opened in between is then in one or the other) and
    /// before privileges are dropped (other users' sockets are readable only until then).
    pub fn new(kernel: Option<KernelMaps>, clock: Clock, ports: &[u16]) -> Self {
        let scan = procfs::scan(ports);
        let mut r = Resolver {
            kernel,
            clock,
            ports: ports.to_vec(),
            cgroups: cgroup::Cgroups::new(),
            preexisting: HashMap::new(),
            scan,
            scanned_at: Instant::now(),
            servers: HashMap::new(),
            metrics: AttributionMetrics::new(),
        };
        r.preexisting = r.clients_in_scan();
        r.seed_listeners();
        // Resolve the servers present now while /proc is fully readable.
        let listeners: Vec<SocketAddr> = r
            .scan
            .socks
            .iter()
            .filter(|s| s.listen)
            .map(|s| canonical(s.local))
            .collect();
        for l in listeners {
            if !l.ip().is_unspecified() {
                let res = r.server_from_scan(l);
                r.servers.insert(
                    l,
                    ServerEntry {
                        result: res,
                        at: Instant::now(),
                    },
                );
            }
        }
        tracing::info!(
            preexisting_clients = r.preexisting.len(),
            kernel_hook = r.kernel.is_some(),
            "process attribution ready"
        );
        r
    }

    /// Enters the listeners that exist now into the kernel's map (those it did not see
    /// start), so its counts cover every namespace. An entry the kernel already made wins.
    fn seed_listeners(&mut self) {
        let mut by_key: HashMap<ClientKey, (ListenerProc, Vec<u32>)> = HashMap::new();
        let socks: Vec<(SocketAddr, u64)> = self
            .scan
            .socks
            .iter()
            .filter(|s| s.listen)
            .map(|s| (canonical(s.local), s.inode))
            .collect();
        for (local, inode) in socks {
            let Ok((p, _)) = self.owner(inode) else {
                continue;
            };
            let e = by_key.entry(key_of(local)).or_insert_with(|| {
                let mut comm = [0u8; 16];
                let n = p.comm.len().min(15);
                comm[..n].copy_from_slice(&p.comm.as_bytes()[..n]);
                let proc = ClientProc {
                    tgid: p.pid,
                    tid: p.pid,
                    comm,
                    ..ClientProc::default()
                };
                (
                    ListenerProc {
                        proc,
                        ..ListenerProc::default()
                    },
                    Vec::new(),
                )
            });
            e.0.count += 1;
            if !e.1.contains(&p.pid) {
                e.1.push(p.pid);
            }
            e.0.mixed = u32::from(e.1.len() > 1);
        }
        let Some(k) = self.kernel.as_mut() else {
            return;
        };
        for (key, (v, _)) in by_key {
            // The kernel's own entry (a listener made after the hook was attached) is kept.
            let _ = k.listeners.insert(key, v, BPF_NOEXIST);
        }
    }

    /// The server's process as the kernel recorded it: through the connection's accepted
    /// socket, its listener. `None`: the kernel does not know (not accepted locally since the
    /// start, or no hook).
    fn kernel_server(
        &self,
        client: SocketAddr,
        syn_ts: Option<u64>,
    ) -> Option<Result<Arc<Process>, Failure>> {
        let k = self.kernel.as_ref()?;
        let acc = k.accepted.get(&key_of(client), 0).ok()?;
        if syn_ts.is_some_and(|syn| self.clock.to_epoch_ns(acc.established_ns) < syn) {
            return None;
        }
        let entry = |v: ListenerProc| {
            if v.mixed != 0 {
                Err(Failure::Ambiguous)
            } else {
                Ok(Arc::new(Process {
                    pid: v.proc.tgid,
                    comm: comm_str(&v.proc.comm).into(),
                    ..Process::default()
                }))
            }
        };
        if let Ok(v) = k.listeners.get(&acc.server, 0) {
            return Some(entry(v));
        }
        // A wildcard listener: IPv4 connections may reach `0.0.0.0` or a dual-stack `::`.
        let mut found: Option<ListenerProc> = None;
        let mut wild = vec![ClientKey {
            family: FAMILY_V6,
            port: acc.server.port,
            ..ClientKey::default()
        }];
        if acc.server.family == FAMILY_V4 {
            wild.push(ClientKey {
                family: FAMILY_V4,
                port: acc.server.port,
                ..ClientKey::default()
            });
        }
        for w in wild {
            if let Ok(v) = k.listeners.get(&w, 0) {
                if v.mixed != 0 || found.is_some_and(|f| f.proc.tgid != v.proc.tgid) {
                    return Some(Err(Failure::Ambiguous));
                }
                found = Some(v);
            }
        }
        found.map(entry)
    }

    /// A local socket accepted this connection (the kernel recorded it). Without the hook:
    /// assumed, so that /proc decides.
    fn accepted_here(&self, client: SocketAddr, syn_ts: Option<u64>) -> bool {
        let Some(k) = self.kernel.as_ref() else {
            return true;
        };
        k.accepted
            .get(&key_of(client), 0)
            .is_ok_and(|a| syn_ts.is_none_or(|syn| self.clock.to_epoch_ns(a.established_ns) >= syn))
    }

    pub fn metrics(&self) -> &AttributionMetrics {
        &self.metrics
    }

    /// Client sockets of the scan (established, remote port watched) by client address.
    fn clients_in_scan(&self) -> HashMap<SocketAddr, Result<Arc<Process>, Failure>> {
        let mut by_addr: HashMap<SocketAddr, Vec<&procfs::Sock>> = HashMap::new();
        for s in &self.scan.socks {
            if s.listen || !self.ports.contains(&s.remote.port()) {
                continue;
            }
            let local = canonical(s.local);
            // A loopback address names a socket of our own namespace only.
            if local.ip().is_loopback() && s.netns != self.scan.own_netns {
                continue;
            }
            by_addr.entry(local).or_default().push(s);
        }
        let mut out = HashMap::new();
        for (addr, socks) in by_addr {
            let res = match socks[..] {
                [s] => self.owner(s.inode).map(|(p, _)| p),
                _ => Err(Failure::Ambiguous),
            };
            out.insert(addr, res);
        }
        out
    }

    /// The process holding socket `inode` in the scan: of several (a forked child shares its
    /// parent's sockets), the one started first.
    fn owner(&self, inode: u64) -> Result<(Arc<Process>, u64), Failure> {
        let pids = self.scan.owners.get(&inode).map_or(&[][..], Vec::as_slice);
        let best = pids
            .iter()
            .filter_map(|&pid| procfs::proc_info(pid).map(|i| (pid, i)))
            .min_by_key(|(pid, i)| (i.start, *pid));
        let Some((pid, info)) = best else {
            return Err(if self.scan.denied {
                Failure::NoAccess
            } else {
                Failure::NotFound
            });
        };
        let parsed = info
            .cgroup
            .as_deref()
            .map(cgroup::parse)
            .unwrap_or_default();
        Ok((
            Arc::new(Process {
                pid,
                comm: info.comm.into(),
                cgroup: info.cgroup.map(Into::into),
                container: parsed.container.map(Into::into),
                pod: parsed.pod.map(Into::into),
            }),
            info.start,
        ))
    }

    /// The owner of the listener that accepts connections to `server`, from the latest scan.
    fn server_from_scan(&self, server: SocketAddr) -> Result<(Arc<Process>, u64), Failure> {
        let ip = server.ip();
        let mut found: Vec<u64> = Vec::new();
        for s in self.scan.socks.iter().filter(|s| s.listen) {
            let local = canonical(s.local);
            if local.port() != server.port() {
                continue;
            }
            let addr_ok = local.ip() == ip
                || (local.ip().is_unspecified() && (local.is_ipv6() || ip.is_ipv4()));
            if !addr_ok {
                continue;
            }
            // Which namespace holds the server's address: ours for loopback, else one that has
            // it as a local address.
            let ns_ok = if ip.is_loopback() {
                s.netns == self.scan.own_netns
            } else {
                self.scan
                    .local_addrs
                    .get(&s.netns)
                    .is_some_and(|a| a.contains(&ip))
            };
            if ns_ok && !found.contains(&s.inode) {
                found.push(s.inode);
            }
        }
        let mut owners: Vec<(Arc<Process>, u64)> = Vec::new();
        for inode in found {
            let o = self.owner(inode)?;
            if !owners.iter().any(|(p, _)| p.pid == o.0.pid) {
                owners.push(o);
            }
        }
        match owners.len() {
            0 => Err(if self.scan.denied {
                Failure::NoAccess
            } else {
                Failure::NotFound
            }),
            1 => Ok(owners.remove(0)),
            _ => Err(Failure::Ambiguous),
        }
    }

    fn server(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        syn_ts: Option<u64>,
    ) -> Result<(Arc<Process>, &'static str), Failure> {
        let client = canonical(client);
        let kernel = self.kernel_server(client, syn_ts);
        if let Some(Ok(p)) = kernel {
            return Ok((p, "kernel"));
        }
        // Seen from its SYN while the hook was attached, and no local socket accepted it: the
        // server is not on this host (/proc would only say so more slowly, or not at all
        // without privileges).
        if kernel.is_none() && syn_ts.is_some() && !self.accepted_here(client, syn_ts) {
            return Err(Failure::NotFound);
        }
        // /proc can tell namespaces apart where the kernel's map is ambiguous.
        match self.proc_server(canonical(server)) {
            Ok(p) => Ok((p, "proc")),
            Err(f) => Err(match kernel {
                Some(Err(k)) => k,
                _ => f,
            }),
        }
    }

    fn proc_server(&mut self, server: SocketAddr) -> Result<Arc<Process>, Failure> {
        if let Some(e) = self.servers.get_mut(&server) {
            match &e.result {
                Ok((p, _)) if e.at.elapsed() < SERVER_RECHECK => return Ok(p.clone()),
                // Still the same process (a pid reused by another process starts later).
                Ok((p, start)) if procfs::start_time(p.pid) == Some(*start) => {
                    e.at = Instant::now();
                    return Ok(p.clone());
                }
                Err(f) if e.at.elapsed() < SERVER_RETRY => return Err(*f),
                _ => {}
            }
        }
        if self.scanned_at.elapsed() >= RESCAN_EVERY {
            self.scan = procfs::scan(&self.ports);
            self.scanned_at = Instant::now();
        }
        let result = self.server_from_scan(server);
        if self.servers.len() >= MAX_SERVERS {
            self.servers.clear();
        }
        let out = result.as_ref().map(|(p, _)| p.clone()).map_err(|f| *f);
        self.servers.insert(
            server,
            ServerEntry {
                result,
                at: Instant::now(),
            },
        );
        out
    }

    fn client(
        &mut self,
        client: SocketAddr,
        syn_ts: Option<u64>,
    ) -> Result<(Arc<Process>, &'static str), Failure> {
        let client = canonical(client);
        if let Some(p) = self.kernel_client(client, syn_ts) {
            let mut proc = Process {
                pid: p.tgid,
                comm: comm_str(&p.comm).into(),
                ..Process::default()
            };
            match self.cgroups.path(p.cgroup_id) {
                Some(path) => {
                    let parsed = cgroup::parse(&path);
                    proc.cgroup = Some(Box::from(&*path));
                    proc.container = parsed.container.map(Into::into);
                    proc.pod = parsed.pod.map(Into::into);
                }
                None => self.metrics.fail("client", Failure::Cgroup),
            }
            return Ok((Arc::new(proc), "kernel"));
        }
        // Only a connection picked up mid-stream can be one that was open before the start.
        if syn_ts.is_none() {
            if let Some(r) = self.preexisting.remove(&client) {
                return r.map(|p| (p, "proc"));
            }
        }
        Err(Failure::NotFound)
    }

    fn kernel_client(&self, client: SocketAddr, syn_ts: Option<u64>) -> Option<ClientProc> {
        let p = self.kernel.as_ref()?.clients.get(&key_of(client), 0).ok()?;
        // An entry from before this connection's SYN is an earlier connection's.
        if syn_ts.is_some_and(|syn| self.clock.to_epoch_ns(p.established_ns) < syn) {
            return None;
        }
        Some(p)
    }
}

/// The kernel maps' key for an address (IPv4-mapped IPv6 already made IPv4 by the caller).
fn key_of(a: SocketAddr) -> ClientKey {
    let mut key = ClientKey {
        port: a.port(),
        ..ClientKey::default()
    };
    match a.ip() {
        IpAddr::V4(ip) => {
            key.family = FAMILY_V4;
            key.addr[..4].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            key.family = FAMILY_V6;
            key.addr = ip.octets();
        }
    }
    key
}

/// A kernel `comm` (NUL-padded) as text.
fn comm_str(c: &[u8; 16]) -> String {
    let n = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..n]).into_owned()
}

impl Attributor for Resolver {
    fn attribute(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        syn_ts: Option<u64>,
    ) -> (Option<Arc<Process>>, Option<Arc<Process>>) {
        let c = match self.client(client, syn_ts) {
            Ok((p, source)) => {
                self.metrics.found("client", source);
                Some(p)
            }
            Err(f) => {
                self.metrics.fail("client", f);
                None
            }
        };
        let s = match self.server(client, server, syn_ts) {
            Ok((p, source)) => {
                self.metrics.found("server", source);
                Some(p)
            }
            Err(f) => {
                self.metrics.fail("server", f);
                None
            }
        };
        (c, s)
    }
}
