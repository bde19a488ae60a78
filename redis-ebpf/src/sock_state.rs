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

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
    },
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use redis_ebpf_common::{
    ClientKey, ClientProc, FAMILY_V4, FAMILY_V6, SockStateArgs,
    sock_state::{
        AF_INET, AF_INET6, ARGS_OFFSET, IPPROTO_TCP, MAX_CLIENTS, MAX_CONNECTING, TCP_CLOSE,
        TCP_ESTABLISHED, TCP_SYN_SENT,
    },
};

/// Sockets between `connect()` and the end of their handshake, by socket address.
#[map]
static CONNECTING: LruHashMap<u64, ClientProc> = LruHashMap::with_max_entries(MAX_CONNECTING, 0);

/// Established client sockets by their local address and port.
#[map]
static CLIENTS: LruHashMap<ClientKey, ClientProc> = LruHashMap::with_max_entries(MAX_CLIENTS, 0);

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
        let pid_tgid = bpf_get_current_pid_tgid();
        let p = ClientProc {
            established_ns: 0,
            // SAFETY: no preconditions; valid in tracepoint programs.
            cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
        };
        CONNECTING.insert(&a.skaddr, &p, 0)?;
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

/// The client's (local) end; an IPv4-mapped address of an IPv6 socket is an IPv4 one, as on the
/// wire.
#[inline(always)]
fn client_key(a: &SockStateArgs) -> Option<ClientKey> {
    let mut k = ClientKey {
        port: a.sport,
        ..ClientKey::default()
    };
    if a.family == AF_INET {
        k.family = FAMILY_V4;
        k.addr[..4].copy_from_slice(&a.saddr);
    } else if a.family == AF_INET6 {
        let v6 = &a.saddr_v6;
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
