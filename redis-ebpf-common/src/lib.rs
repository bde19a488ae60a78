//! Records shared by the kernel program and userspace.
//!
//! Everything here is `#[repr(C)]`, `Copy`, and made of integers and byte arrays only, so the
//! bytes the kernel writes are valid whatever they contain. Kind numbers are explicit and never
//! reused.
#![no_std]

use core::mem::size_of;

/// Event kind: a chunk of a TCP segment's payload (or a payload-less SYN/FIN/RST segment).
pub const KIND_SEGMENT: u8 = 1;

/// Data capacities of the event size classes. A segment's payload is cut into chunks of at most
/// the largest class; each chunk goes into the smallest class that holds it.
pub const CLASS_SIZES: [usize; 4] = [128, 512, 2048, 8192];
/// The largest class, and so the largest chunk.
pub const MAX_CHUNK: usize = CLASS_SIZES[CLASS_SIZES.len() - 1];
/// Most chunks one segment is cut into; with `MAX_CHUNK` this caps `--capture-bytes`.
pub const MAX_CHUNKS: usize = 16;
/// Upper bound for `--capture-bytes` (128 KiB, above a 64 KiB GSO super-packet on `lo`).
pub const MAX_CAPTURE_BYTES: u32 = (MAX_CHUNK * MAX_CHUNKS) as u32;

/// TCP flag bits as they appear in the header's flags byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// Address families in [`EventHeader::family`].
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Header of every ring-buffer event; `data_len` bytes of payload follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_ns()` when the program saw the segment.
    pub ts_ns: u64,
    /// Source and destination address; IPv4 in the first 4 bytes, the rest zero.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// TCP sequence number of this chunk's first byte (segment sequence + `offset`).
    pub seq: u32,
    /// The segment's whole TCP payload length.
    pub payload_len: u32,
    /// Offset of this chunk within the segment's payload.
    pub offset: u32,
    /// Bytes of payload in this event.
    pub data_len: u32,
    /// Payload bytes after this chunk that were not captured (over `--capture-bytes`); set on the
    /// segment's last event only.
    pub missing: u32,
    /// Interface the segment was seen on.
    pub ifindex: u32,
    pub sport: u16,
    pub dport: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// TCP flags byte (FIN, SYN, RST, PSH, ACK, ...).
    pub tcp_flags: u8,
    /// [`KIND_SEGMENT`].
    pub kind: u8,
    /// Index into [`CLASS_SIZES`].
    pub class: u8,
    /// TCP acknowledgement number.
    pub ack: u32,
    pub _pad: u32,
}

pub const EVENT_HEADER_LEN: usize = 80;
const _: () = assert!(size_of::<EventHeader>() == EVENT_HEADER_LEN);

/// A ring-buffer event of one size class.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event<const N: usize> {
    pub header: EventHeader,
    pub data: [u8; N],
}

/// Names of the maps, programs and load-time globals in the kernel object: the kernel program
/// defines them under these names and userspace looks them up by them.
pub mod names {
    /// Ring buffer of [`Event`](super::Event)s.
    pub const EVENTS: &str = "EVENTS";
    /// Array indexed by port: non-zero when watched.
    pub const PORTS: &str = "PORTS";
    /// Array indexed by ifindex: [`iface`](super::iface) bits.
    pub const IFACES: &str = "IFACES";
    /// Per-CPU array with one [`Counters`](super::Counters) entry.
    pub const COUNTERS: &str = "COUNTERS";
    /// Array of runtime [`setting`](super::setting)s.
    pub const SETTINGS: &str = "SETTINGS";
    /// The TC classifier.
    pub const PROG_TC: &str = "redis_tc";
    /// The socket filter.
    pub const PROG_SOCKET: &str = "redis_sock";
    /// Global: payload bytes copied per segment at most (u32).
    pub const CAPTURE_BYTES: &str = "CAPTURE_BYTES";
    /// Global: unread ring bytes past which a submit wakes the reader (u64).
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// The tracepoint program on `sock:inet_sock_set_state` (process attribution).
    pub const PROG_SOCK_STATE: &str = "redis_sock_state";
    /// LRU hash: socket address (`skaddr`) → [`ClientProc`](super::ClientProc) between
    /// `connect()` and the handshake's end.
    pub const CONNECTING: &str = "CONNECTING";
    /// LRU hash: [`ClientKey`](super::ClientKey) → [`ClientProc`](super::ClientProc) of
    /// established client sockets.
    pub const CLIENTS: &str = "CLIENTS";
    /// Hash: [`ClientKey`](super::ClientKey) (the bound address and port) →
    /// [`ListenerProc`](super::ListenerProc) of listening sockets on watched ports.
    pub const LISTENERS: &str = "LISTENERS";
    /// LRU hash: [`ClientKey`](super::ClientKey) of the client → [`Accepted`](super::Accepted):
    /// connections a local server accepted on a watched port.
    pub const ACCEPTED: &str = "ACCEPTED";
}

/// The tracepoint `sock:inet_sock_set_state` and the layout of its record, as
/// `/sys/kernel/tracing/events/sock/inet_sock_set_state/format` gives it (stable since Linux
/// 4.16; `protocol` since 4.19). Userspace checks the format file against these offsets before
/// attaching.
pub mod sock_state {
    pub const CATEGORY: &str = "sock";
    pub const NAME: &str = "inet_sock_set_state";
    /// `(field name, offset, size)` of every field the program reads.
    pub const FIELDS: [(&str, usize, usize); 11] = [
        ("skaddr", 8, 8),
        ("oldstate", 16, 4),
        ("newstate", 20, 4),
        ("sport", 24, 2),
        ("dport", 26, 2),
        ("family", 28, 2),
        ("protocol", 30, 2),
        ("saddr", 32, 4),
        ("daddr", 36, 4),
        ("saddr_v6", 40, 16),
        ("daddr_v6", 56, 16),
    ];
    /// Where the fields start in the record, and their total length.
    pub const ARGS_OFFSET: usize = 8;
    pub const ARGS_LEN: usize = 64;
    /// TCP states (`include/net/tcp_states.h`).
    pub const TCP_ESTABLISHED: i32 = 1;
    pub const TCP_SYN_SENT: i32 = 2;
    pub const TCP_SYN_RECV: i32 = 3;
    pub const TCP_CLOSE: i32 = 7;
    pub const TCP_LISTEN: i32 = 10;
    pub const AF_INET: u16 = 2;
    pub const AF_INET6: u16 = 10;
    pub const IPPROTO_TCP: u16 = 6;
    /// Entries of the maps: connects in progress, and established clients.
    pub const MAX_CONNECTING: u32 = 16384;
    pub const MAX_CLIENTS: u32 = 65536;
    /// Listening addresses on watched ports (a plain hash: an entry is never evicted, so a
    /// count is never lost; when full, a new listener is not recorded and userspace falls back
    /// to /proc).
    pub const MAX_LISTENERS: u32 = 16384;
}

/// The fields of `sock:inet_sock_set_state` the program reads, from
/// [`sock_state::ARGS_OFFSET`]. Ports are in host byte order (the tracepoint converts them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockStateArgs {
    pub skaddr: u64,
    pub oldstate: i32,
    pub newstate: i32,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub saddr_v6: [u8; 16],
    pub daddr_v6: [u8; 16],
}

const _: () = assert!(size_of::<SockStateArgs>() == sock_state::ARGS_LEN);

/// A client socket's local end: [`FAMILY_V4`] (address in the first 4 bytes, also for IPv4
/// addresses of IPv6 sockets) or [`FAMILY_V6`]. Only the client's side: DNAT rewrites the
/// destination, and a client in another network namespace has the address the observer sees.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

const _: () = assert!(size_of::<ClientKey>() == 20);

/// The process that called `connect()`, recorded in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientProc {
    /// `bpf_ktime_get_ns()` when the handshake completed on the client's side (0 while
    /// connecting): an entry older than a connection's SYN belongs to an earlier connection
    /// that had the same address and port.
    pub established_ns: u64,
    /// Cgroup v2 id of the caller (`bpf_get_current_cgroup_id`: the inode number of its cgroup
    /// directory).
    pub cgroup_id: u64,
    /// Process id (thread group id) in the initial PID namespace.
    pub tgid: u32,
    /// The calling thread's id.
    pub tid: u32,
    /// The calling thread's command name, NUL-padded.
    pub comm: [u8; 16],
}

const _: () = assert!(size_of::<ClientProc>() == 40);

/// The listening sockets bound to one address and port, across every network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerProc {
    /// The process that called `listen()` first (`established_ns` unused).
    pub proc: ClientProc,
    /// Listening sockets with this address and port (in several namespaces, or SO_REUSEPORT).
    pub count: u32,
    /// Non-zero once processes with different pids listened on it: the owner is ambiguous.
    pub mixed: u32,
}

const _: () = assert!(size_of::<ListenerProc>() == 48);

/// A connection a local server accepted: the server's end as its socket has it (after any DNAT),
/// which names the listener that took it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// `bpf_ktime_get_ns()` when the server's side became ESTABLISHED.
    pub established_ns: u64,
    pub server: ClientKey,
    pub _pad: u32,
}

const _: () = assert!(size_of::<Accepted>() == 32);

/// Entries of the `IFACES` array, indexed by ifindex. An interface that is not configured (or
/// whose ifindex is past [`iface::MAX_IFINDEX`]) is taken as Ethernet.
pub mod iface {
    /// Size of the array.
    pub const MAX_IFINDEX: u32 = 4096;
    /// Bits 0..8: the link-layer header length.
    pub const L2_LEN_MASK: u32 = 0xff;
    /// Skip packets the host sends (socket mode on loopback sees each packet twice).
    pub const SKIP_OUTGOING: u32 = 1 << 8;
    /// The entry was set by userspace.
    pub const CONFIGURED: u32 = 1 << 9;
}

/// What the header parsers accept, the same in the kernel program and in `replay`: a packet one
/// of them captures, the other captures too, with the same addresses, ports and payload.
pub mod parse {
    /// Ethertypes of in-band VLAN tags (802.1Q, 802.1ad, the old QinQ 0x9100), skipped in any
    /// order.
    pub const VLAN_ETHERTYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];
    /// VLAN tags skipped at most (QinQ is two); a frame with more is not IP to either parser.
    pub const MAX_VLAN_TAGS: usize = 2;
    /// IPv6 extension headers (hop-by-hop, routing, destination options, authentication, and an
    /// atomic fragment header) skipped at most before the TCP header; past it, unparsed.
    pub const MAX_IPV6_EXT_HEADERS: usize = 4;
    /// Those extension headers' next-header numbers: hop-by-hop, routing, fragment, destination
    /// options, authentication. Past the limit one of these still makes the packet unparsed;
    /// any other protocol there is simply not TCP.
    pub const IPV6_EXT_HEADERS: [u8; 5] = [0, 43, 44, 60, 51];
    /// A TCP data offset below this is malformed (unparsed).
    pub const MIN_TCP_HEADER: u32 = 20;
    /// An IPv6 fragment header's offset and M flag (bits of its second 16-bit word): zero in an
    /// atomic fragment, which holds a whole packet.
    pub const IPV6_FRAG_OFFSET_MORE: u16 = 0xfff9;
}

/// Indexes of the per-CPU counters array (`COUNTERS`).
pub mod counter {
    /// Packets the program ran on.
    pub const PACKETS: u32 = 0;
    /// TCP segments on a watched port (including payload-less SYN/FIN/RST).
    pub const SEGMENTS: u32 = 1;
    /// Payload bytes copied into the ring buffer.
    pub const BYTES_CAPTURED: u32 = 2;
    /// Payload bytes over the capture limit, reported as `missing` and not copied.
    pub const BYTES_NOT_CAPTURED: u32 = 3;
    /// Events that could not be reserved in the ring buffer (ring full).
    pub const EVENTS_LOST: u32 = 4;
    /// Payload bytes of those events.
    pub const BYTES_LOST: u32 = 5;
    /// Packets that could not be parsed and may have been on a watched port: IP fragments,
    /// IPv6 extension chains too long, IP or TCP headers cut short or inconsistent (an IP
    /// length that ends inside the headers, a TCP data offset below 20). A malformed packet
    /// whose TCP ports were read and are not watched is not counted.
    pub const UNPARSED: u32 = 6;
    /// `bpf_skb_load_bytes` failures (payload bytes not copied, reported as lost).
    pub const LOAD_FAILED: u32 = 7;
    /// Forced ring-buffer wakeups (fill past the threshold).
    pub const WAKEUPS: u32 = 8;
    pub const COUNT: u32 = 9;
}

/// The kernel's counters: one per-CPU entry of the `COUNTERS` map, indexed by [`counter`]; in
/// userspace, the same type holds the sum over CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; counter::COUNT as usize]);

impl Counters {
    /// The counter at `index` (a [`counter`] constant); 0 for an index out of range.
    #[inline(always)]
    #[must_use]
    pub fn get(&self, index: u32) -> u64 {
        match self.0.get(index as usize) {
            Some(v) => *v,
            None => 0,
        }
    }

    /// Adds another CPU's values.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
}

/// Indexes of the runtime settings array (`SETTINGS`), changed by userspace while attached.
pub mod setting {
    /// Non-zero: emit aya-log diagnostics for rare events.
    pub const DEBUG: u32 = 0;
    pub const COUNT: u32 = 4;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C), Copy, integers and byte arrays only: every bit pattern is valid.
    unsafe impl aya::Pod for super::EventHeader {}
    // SAFETY: repr(C) around an array of u64: every bit pattern is valid.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: repr(C), integers and byte arrays, no padding (size asserted): any bits are valid.
    unsafe impl aya::Pod for super::ClientKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ClientProc {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ListenerProc {}
    // SAFETY: as above (explicit padding field).
    unsafe impl aya::Pod for super::Accepted {}
}
