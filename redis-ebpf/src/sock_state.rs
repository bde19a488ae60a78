//! Process attribution: who opened each client connection.
//!
//! `connect()` moves a socket from CLOSE to SYN_SENT in the calling process, before the source
//! port is chosen: the caller (pid, thread name, cgroup) is remembered by socket address. When
//! the handshake completes (SYN_SENT to ESTABLISHED, usually in softirq, so `current` is
//! anyone), the record carries the whole 4-tuple: the entry moves to a map keyed by the
//! client's address and port, which is what the observer sees on the wire. Only stable
//! interfaces are used: the tracepoint's fields (their layout is checked by userspace against
//! the format file before attaching) and helpers, no kernel struct offsets.
//!
//! Both maps are LRU hashes: bounded, and an entry userspace never reads ages out.
//!
//! Servers: `listen()` moves a bound socket from CLOSE to LISTEN in the calling process. On
//! watched ports, the caller is recorded under the bound address and port, with a count of the
//! sockets listening there (several namespaces can each have a `0.0.0.0:6379`) and whether
//! different processes did: userspace trusts an entry only when one process owns it. The entry
//! goes when its last listener closes, so a restarted server is a new entry.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap},
    programs::TracePointContext,
};
use redis_ebpf_common::{
    Accepted, ClientKey, ClientProc, FAMILY_V4, FAMILY_V6, ListenerProc, SockStateArgs,
    sock_state::{
        AF_INET, AF_INET6, ARGS_OFFSET, IPPROTO_TCP, MAX_CLIENTS, MAX_CONNECTING, MAX_LISTENERS,
        TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT,
    },
};

use crate::PORTS;

/// Sockets between `connect()` and the end of their handshake, by socket address.
#[map]
static CONNECTING: LruHashMap<u64, ClientProc> = LruHashMap::with_max_entries(MAX_CONNECTING, 0);

/// Established client sockets by their local address and port.
#[map]
static CLIENTS: LruHashMap<ClientKey, ClientProc> = LruHashMap::with_max_entries(MAX_CLIENTS, 0);

/// Listening sockets on watched ports by bound address and port.
#[map]
static LISTENERS: HashMap<ClientKey, ListenerProc> = HashMap::with_max_entries(MAX_LISTENERS, 0);

/// Connections accepted on watched ports, by the client's end (as the server's socket sees it).
#[map]
static ACCEPTED: LruHashMap<ClientKey, Accepted> = LruHashMap::with_max_entries(MAX_CLIENTS, 0);

#[tracepoint]
pub fn redis_sock_state(ctx: TracePointContext) -> u32 {
    // Nothing here can affect the socket: errors only mean "not attributed".
    let _ = try_sock_state(&ctx);
    0
}

#[inline(always)]
fn try_sock_state(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: the tracepoint's record holds SockStateArgs at ARGS_OFFSET (checked by userspace
    // against the format file); bpf_probe_read_kernel fails cleanly otherwise.
    let a: SockStateArgs = unsafe { ctx.read_at(ARGS_OFFSET)? };
    if a.protocol != IPPROTO_TCP {
        return Ok(());
    }
    if a.oldstate == TCP_CLOSE && a.newstate == TCP_SYN_SENT {
        // In connect(): the caller is current.
        CONNECTING.insert(&a.skaddr, &current(), 0)?;
    } else if a.newstate == TCP_LISTEN && a.oldstate == TCP_CLOSE {
        // In listen(): the caller is current.
        if !PORTS.get(u32::from(a.sport)).is_some_and(|&v| v != 0) {
            return Ok(());
        }
        let Some(key) = client_key(&a) else {
            return Ok(());
        };
        let me = current();
        match LISTENERS.get_ptr_mut(&key) {
            // SAFETY: a pointer to a live map value of our own type. Two listen() calls on one
            // address and port at the same instant could race on the count: rare, and the
            // result errs towards "ambiguous" or a missing entry (then /proc decides).
            Some(v) => unsafe {
                (*v).count = (*v).count.saturating_add(1);
                if (*v).proc.tgid != me.tgid {
                    (*v).mixed = 1;
                }
            },
            None => {
                let v = ListenerProc {
                    proc: me,
                    count: 1,
                    mixed: 0,
                };
                LISTENERS.insert(&key, &v, 0)?;
            }
        }
    } else if a.oldstate == TCP_SYN_RECV && a.newstate == TCP_ESTABLISHED {
        // A server's side of a new connection (softirq): local end = the server's.
        if !PORTS.get(u32::from(a.sport)).is_some_and(|&v| v != 0) {
            return Ok(());
        }
        let (Some(server), Some(client)) = (client_key(&a), peer_key(&a)) else {
            return Ok(());
        };
        let v = Accepted {
            // SAFETY: no preconditions.
            established_ns: unsafe { bpf_ktime_get_ns() },
            server,
            _pad: 0,
        };
        ACCEPTED.insert(&client, &v, 0)?;
    } else if a.oldstate == TCP_LISTEN && a.newstate == TCP_CLOSE {
        let Some(key) = client_key(&a) else {
            return Ok(());
        };
        if let Some(v) = LISTENERS.get_ptr_mut(&key) {
            // SAFETY: as above.
            unsafe {
                if (*v).count <= 1 {
                    let _ = LISTENERS.remove(&key);
                } else {
                    (*v).count -= 1;
                }
            }
        }
    } else if a.oldstate == TCP_SYN_SENT {
        if a.newstate == TCP_ESTABLISHED {
            if let Some(p) = CONNECTING.get_ptr(&a.skaddr) {
                // SAFETY: a pointer to a live map value of our own type.
                let mut v = unsafe { *p };
                // SAFETY: no preconditions.
                v.established_ns = unsafe { bpf_ktime_get_ns() };
                if let Some(key) = client_key(&a) {
                    CLIENTS.insert(&key, &v, 0)?;
                }
            }
        }
        // Established, refused or timed out: the socket is no longer connecting.
        let _ = CONNECTING.remove(&a.skaddr);
    }
    Ok(())
}

/// The calling process.
#[inline(always)]
fn current() -> ClientProc {
    let pid_tgid = bpf_get_current_pid_tgid();
    ClientProc {
        established_ns: 0,
        // SAFETY: no preconditions; valid in tracepoint programs.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// The socket's remote end.
#[inline(always)]
fn peer_key(a: &SockStateArgs) -> Option<ClientKey> {
    key(a.family, &a.daddr, &a.daddr_v6, a.dport)
}

/// The socket's local end (the client's, or a listener's bound address); an IPv4-mapped address of an IPv6 socket is an IPv4 one, as on the
/// wire.
#[inline(always)]
fn client_key(a: &SockStateArgs) -> Option<ClientKey> {
    key(a.family, &a.saddr, &a.saddr_v6, a.sport)
}

#[inline(always)]
fn key(family: u16, v4: &[u8; 4], v6: &[u8; 16], port: u16) -> Option<ClientKey> {
    let mut k = ClientKey {
        port,
        ..ClientKey::default()
    };
    if family == AF_INET {
        k.family = FAMILY_V4;
        k.addr[..4].copy_from_slice(v4);
    } else if family == AF_INET6 {
        let mapped = v6[..10].iter().all(|&b| b == 0) && v6[10] == 0xff && v6[11] == 0xff;
        if mapped {
            k.family = FAMILY_V4;
            k.addr[..4].copy_from_slice(&v6[12..16]);
        } else {
            k.family = FAMILY_V6;
            k.addr = *v6;
        }
    } else {
        return None;
    }
    Some(k)
}
