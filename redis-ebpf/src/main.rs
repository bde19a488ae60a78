//! Kernel side of redis-observer: copies the TCP payload of segments on the watched Redis ports
//! into a ring buffer, with kernel timestamps and sequence numbers, and counts every byte it
//! could not copy.
//!
//! Two entry points share one capture routine: a TC classifier (`redis_tc`) and a socket filter
//! for AF_PACKET sockets (`redis_sock`). Both fail open: whatever happens here, the host's packet
//! passes unchanged (the socket filter only decides what its own tap socket receives, and it
//! receives nothing).
//!
//! A third program, on the tracepoint `sock:inet_sock_set_state` (`sock_state`), records which
//! process opened each client connection.
#![no_std]
#![no_main]

mod sock_state;

use aya_ebpf::{
    bindings::{
        __sk_buff, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC,
    },
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::{classifier, map, socket_filter},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{SkBuffContext, TcContext},
};
use aya_log_ebpf::warn;
use network_types::eth::EthHdr;
use redis_ebpf_common::{
    CLASS_SIZES, Counters, Event, EventHeader, FAMILY_V4, FAMILY_V6, KIND_SEGMENT, MAX_CHUNK,
    MAX_CHUNKS, TCP_FIN, TCP_RST, TCP_SYN, counter, iface, parse, setting,
};

/// Payload chunks and payload-less SYN/FIN/RST segments. Userspace may resize it at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Indexed by port (host byte order): non-zero when watched. An array, not a hash: the verifier
/// inlines array lookups into a bounds check and a load, and this runs for every packet.
#[map]
pub(crate) static PORTS: Array<u8> = Array::with_max_entries(65536, 0);

/// Indexed by ifindex: bit 9 = configured, bits 0..8 = link-layer header length, bit 8 = skip
/// packets the host sends (socket mode on loopback, where each packet is seen twice).
/// Unconfigured or beyond the array: Ethernet.
#[map]
static IFACES: Array<u32> = Array::with_max_entries(iface::MAX_IFINDEX, 0);

/// One entry per CPU: every counter of `redis_ebpf_common::counter`, looked up once per packet.
#[map]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// Settings userspace may change while attached (`redis_ebpf_common::setting`).
#[map]
static SETTINGS: Array<u32> = Array::with_max_entries(setting::COUNT, 0);

/// Payload bytes copied per segment at most; the rest is reported as missing. Set at load time.
#[unsafe(no_mangle)]
static CAPTURE_BYTES: u32 = 65536;

/// Past this many unread bytes in the ring, a submit wakes the reader; below it, none does (the
/// reader also drains on a short timer). Set at load time.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const PACKET_OUTGOING: u32 = 4;

/// Why a packet was not captured; only `Unparsed` is counted (it was on a watched port, or
/// might have been).
enum Skip {
    NotOurs,
    Unparsed,
}

#[classifier]
pub fn redis_tc(ctx: TcContext) -> i32 {
    // SAFETY: the context pointer is the program's own __sk_buff, valid for the whole run.
    // Headers are read straight from the packet when they are in its linear part (they nearly
    // always are): no helper call per header.
    let rd = Direct {
        skb: ctx.skb.skb,
        data: ctx.data(),
        end: ctx.data_end(),
    };
    if let Err(Skip::Unparsed) = unsafe { capture(ctx.skb.skb, &rd) } {
        unparsed(&ctx, ctx.skb.skb);
    }
    // Fail open: TC_ACT_UNSPEC is TCX_NEXT, "run the next program, then the normal path".
    // Anything else ends a TCX chain: TC_ACT_PIPE (3) would silently skip every program attached
    // after us (another observer, a CNI's policy program). With classic cls_bpf direct-action it
    // likewise means "continue with the next filter".
    TC_ACT_UNSPEC
}

#[socket_filter]
pub fn redis_sock(ctx: SkBuffContext) -> i64 {
    // SAFETY: as above. Socket filters may not read packet memory directly.
    let rd = Helper(ctx.skb.skb);
    if let Err(Skip::Unparsed) = unsafe { capture(ctx.skb.skb, &rd) } {
        unparsed(&ctx, ctx.skb.skb);
    }
    // The tap socket receives nothing: everything it needs went through the ring buffer.
    0
}

/// A packet that may have been on a watched port but could not be parsed: counted, and
/// described in the daemon's log when its `--debug` switch is on (never per packet otherwise).
#[inline(never)]
fn unparsed<C: aya_ebpf::EbpfContext>(ctx: &C, skb: *mut __sk_buff) {
    count(counters(), counter::UNPARSED, 1);
    if SETTINGS.get(setting::DEBUG).copied().unwrap_or(0) != 0 {
        // SAFETY: reading fields of the program's own context.
        let (ifindex, len) = unsafe { ((*skb).ifindex, (*skb).len) };
        warn!(
            ctx,
            "unparsed packet (IP fragment or long IPv6 header chain) on ifindex {}, {} bytes",
            ifindex,
            len
        );
    }
}

/// This CPU's counters.
#[inline(always)]
fn counters() -> *mut Counters {
    COUNTERS.get_ptr_mut(0).unwrap_or(core::ptr::null_mut())
}

#[inline(always)]
fn count(c: *mut Counters, index: u32, n: u64) {
    if c.is_null() {
        return;
    }
    // SAFETY: this CPU's per-CPU entry; the program is not re-entered on one CPU meanwhile.
    if let Some(slot) = unsafe { (*c).0.get_mut(index as usize) } {
        *slot += n;
    }
}

#[inline(always)]
fn read_global<T: Copy>(g: &T) -> T {
    // SAFETY: a reference to a static; volatile so the loader's value is not constant-folded.
    unsafe { core::ptr::read_volatile(g) }
}

/// Loads `N` bytes at `off` into a stack array.
#[inline(always)]
unsafe fn load<const N: usize>(skb: *mut __sk_buff, off: u32) -> Option<[u8; N]> {
    // Not zeroed first: the helper writes all N bytes (or zeroes them on failure), and a zeroed
    // array is a memset call whose byte loop the verifier walks again at every header read, on
    // every path (with the stricter header checks the TC program went past the verifier's
    // limit of 1M instructions).
    let mut buf = core::mem::MaybeUninit::<[u8; N]>::uninit();
    // SAFETY: the destination is a stack array of exactly N bytes.
    let ret = unsafe { bpf_skb_load_bytes(skb.cast(), off, buf.as_mut_ptr().cast(), N as u32) };
    // SAFETY: the helper succeeded, so it wrote all N bytes.
    (ret == 0).then(|| unsafe { buf.assume_init() })
}

/// Reads header bytes of the packet.
trait Headers {
    /// `N` bytes at packet offset `off`, or `None` past the packet's end.
    fn get<const N: usize>(&self, off: u32) -> Option<[u8; N]>;
}

/// Through `bpf_skb_load_bytes` (socket filters).
struct Helper(*mut __sk_buff);

impl Headers for Helper {
    #[inline(always)]
    fn get<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        // SAFETY: the skb is the program's context.
        unsafe { load::<N>(self.0, off) }
    }
}

/// Direct packet access (TC), falling back to the helper for bytes beyond the linear part.
struct Direct {
    skb: *mut __sk_buff,
    data: usize,
    end: usize,
}

impl Headers for Direct {
    #[inline(always)]
    fn get<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        // Header offsets are small; the mask lets the verifier bound the pointer arithmetic.
        let p = self.data + (off & 0x3ff) as usize;
        // (One byte is read through the helper: LLVM turns `p + 1 > end` into `p >= end`, which
        // the verifier does not take as a bounds check. Only IP-only links read one byte.)
        if N < 2 || off > 0x3ff || p + N > self.end {
            // SAFETY: as for `Helper`.
            return unsafe { load::<N>(self.skb, off) };
        }
        // SAFETY: [p, p + N) lies within the packet's linear data, checked just above.
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }
}

#[inline(always)]
fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

#[inline(always)]
fn is_vlan(ethertype: u16) -> bool {
    let t = parse::VLAN_ETHERTYPES;
    ethertype == t[0] || ethertype == t[1] || ethertype == t[2]
}

/// IPv6 extension headers the parser follows (`parse::IPV6_EXT_HEADERS`).
#[inline(always)]
fn is_ipv6_ext(next: u8) -> bool {
    let t = parse::IPV6_EXT_HEADERS;
    next == t[0] || next == t[1] || next == t[2] || next == t[3] || next == t[4]
}

#[inline(always)]
fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

#[inline(always)]
unsafe fn capture(skb: *mut __sk_buff, rd: &impl Headers) -> Result<(), Skip> {
    let cnt = counters();
    count(cnt, counter::PACKETS, 1);
    // SAFETY: skb is the program's context.
    let (ifindex, pkt_type, skb_len) = unsafe { ((*skb).ifindex, (*skb).pkt_type, (*skb).len) };
    let ifcfg = match IFACES.get(ifindex).copied() {
        Some(v) if v & iface::CONFIGURED != 0 => v,
        _ => EthHdr::LEN as u32,
    };
    if ifcfg & iface::SKIP_OUTGOING != 0 && pkt_type == PACKET_OUTGOING {
        return Err(Skip::NotOurs);
    }
    let mut l3 = ifcfg & iface::L2_LEN_MASK;
    let mut proto;
    if l3 >= EthHdr::LEN as u32 {
        let eth = rd.get::<2>(l3 - 2).ok_or(Skip::NotOurs)?;
        proto = be16(&eth, 0);
        // In-band VLAN tags (accelerated tags are not in the packet data), as `replay` skips
        // them: `parse::MAX_VLAN_TAGS` of any `parse::VLAN_ETHERTYPES`.
        let mut tags = 0;
        while tags < parse::MAX_VLAN_TAGS && is_vlan(proto) {
            let t = rd.get::<2>(l3 + 2).ok_or(Skip::Unparsed)?;
            proto = be16(&t, 0);
            l3 += 4;
            tags += 1;
        }
    } else {
        // No link-layer header: the IP version nibble tells.
        let v = rd.get::<1>(l3).ok_or(Skip::NotOurs)?;
        proto = if v[0] >> 4 == 6 { ETH_P_IPV6 } else { ETH_P_IP };
    }

    let mut hdr = EventHeader {
        kind: KIND_SEGMENT,
        ifindex,
        ..EventHeader::default()
    };
    let l4: u32;
    let l4_end: u32; // end of the IP payload
    if proto == ETH_P_IP {
        // Headers cut short or inconsistent are `Unparsed` (counted: they may have been on a
        // watched port), in the order `replay` checks them (docs/packet-parsing.md).
        let ip = rd.get::<20>(l3).ok_or(Skip::Unparsed)?;
        if ip[0] >> 4 != 4 {
            return Err(Skip::Unparsed);
        }
        if ip[9] != IPPROTO_TCP {
            return Err(Skip::NotOurs);
        }
        let ihl = u32::from(ip[0] & 0x0f) * 4;
        // Non-first fragments carry no TCP header; first fragments are rare for TCP (PMTU).
        if be16(&ip, 6) & 0x3fff != 0 {
            return Err(Skip::Unparsed);
        }
        if ihl < 20 {
            return Err(Skip::Unparsed);
        }
        let tot = u32::from(be16(&ip, 2));
        hdr.family = FAMILY_V4;
        hdr.saddr[..4].copy_from_slice(&ip[12..16]);
        hdr.daddr[..4].copy_from_slice(&ip[16..20]);
        l4 = l3 + ihl;
        // tot_len is 0 on BIG TCP super-packets: then the skb's end is the IP payload's end.
        l4_end = if tot == 0 { skb_len } else { l3 + tot };
    } else if proto == ETH_P_IPV6 {
        let ip = rd.get::<40>(l3).ok_or(Skip::Unparsed)?;
        if ip[0] >> 4 != 6 {
            return Err(Skip::Unparsed);
        }
        hdr.family = FAMILY_V6;
        hdr.saddr.copy_from_slice(&ip[8..24]);
        hdr.daddr.copy_from_slice(&ip[24..40]);
        let plen = u32::from(be16(&ip, 4));
        let mut next = ip[6];
        let mut off = l3 + 40;
        // Walk a bounded chain of extension headers.
        let mut i = 0;
        while i < parse::MAX_IPV6_EXT_HEADERS && next != IPPROTO_TCP {
            match next {
                0 | 43 | 60 => {
                    let e = rd.get::<2>(off).ok_or(Skip::Unparsed)?;
                    next = e[0];
                    off += (u32::from(e[1]) + 1) * 8;
                }
                51 => {
                    let e = rd.get::<2>(off).ok_or(Skip::Unparsed)?;
                    next = e[0];
                    off += (u32::from(e[1]) + 2) * 4;
                }
                // A fragment header: an atomic fragment (offset 0, no more fragments) holds a
                // whole packet; a real fragment is not a TCP segment we can read.
                44 => {
                    let e = rd.get::<4>(off).ok_or(Skip::Unparsed)?;
                    if be16(&e, 2) & parse::IPV6_FRAG_OFFSET_MORE != 0 {
                        return Err(Skip::Unparsed);
                    }
                    next = e[0];
                    off += 8;
                }
                _ => return Err(Skip::NotOurs),
            }
            i += 1;
        }
        if next != IPPROTO_TCP {
            // Past the chain's limit: another extension header may still lead to TCP, anything
            // else is another protocol.
            return Err(if is_ipv6_ext(next) {
                Skip::Unparsed
            } else {
                Skip::NotOurs
            });
        }
        l4 = off;
        l4_end = if plen == 0 { skb_len } else { l3 + 40 + plen };
    } else {
        return Err(Skip::NotOurs);
    }

    let tcp = rd.get::<20>(l4).ok_or(Skip::Unparsed)?;
    hdr.sport = be16(&tcp, 0);
    hdr.dport = be16(&tcp, 2);
    let watched = |port: u16| PORTS.get(u32::from(port)).is_some_and(|&v| v != 0);
    let ours = watched(hdr.sport) || watched(hdr.dport);
    if !ours {
        return Err(Skip::NotOurs);
    }
    hdr.seq = be32(&tcp, 4);
    hdr.ack = be32(&tcp, 8);
    hdr.tcp_flags = tcp[13];
    let doff = u32::from(tcp[12] >> 4) * 4;
    if doff < parse::MIN_TCP_HEADER {
        return Err(Skip::Unparsed);
    }
    let payload = l4 + doff;
    // Ethernet padding may follow the IP payload; a truncated skb may end before it.
    let end = if l4_end < skb_len { l4_end } else { skb_len };
    let payload_len = end.saturating_sub(payload);
    hdr.payload_len = payload_len;

    if payload_len == 0 {
        // The IP length ends inside the TCP header (or the IP options, or the IPv6 extension
        // headers): inconsistent. Checked here, on the path without payload, and not before the
        // copy loop: a branch there multiplies the states the verifier walks through the loop
        // past its limit.
        if payload > end {
            return Err(Skip::Unparsed);
        }
        count(cnt, counter::SEGMENTS, 1);
        if hdr.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
            // SAFETY: bpf_ktime_get_ns has no preconditions.
            hdr.ts_ns = unsafe { bpf_ktime_get_ns() };
            emit_empty(cnt, &hdr);
        }
        return Ok(());
    }
    count(cnt, counter::SEGMENTS, 1);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    hdr.ts_ns = unsafe { bpf_ktime_get_ns() };

    let limit = read_global(&CAPTURE_BYTES);
    let cap = if payload_len < limit {
        payload_len
    } else {
        limit
    };
    let not_captured = payload_len - cap;
    if not_captured > 0 {
        count(cnt, counter::BYTES_NOT_CAPTURED, u64::from(not_captured));
    }
    let seq0 = hdr.seq;
    let mut i = 0u32;
    while i < MAX_CHUNKS as u32 {
        let off = i * MAX_CHUNK as u32;
        if off >= cap {
            break;
        }
        let n = cap - off;
        let last = n <= MAX_CHUNK as u32;
        let n = if last { n } else { MAX_CHUNK as u32 };
        hdr.offset = off;
        hdr.seq = seq0.wrapping_add(off);
        hdr.missing = if last { not_captured } else { 0 };
        let at = payload + off;
        let sent = if n <= CLASS_SIZES[0] as u32 {
            emit::<{ CLASS_SIZES[0] }>(cnt, skb, &hdr, 0, at, n)
        } else if n <= CLASS_SIZES[1] as u32 {
            emit::<{ CLASS_SIZES[1] }>(cnt, skb, &hdr, 1, at, n)
        } else if n <= CLASS_SIZES[2] as u32 {
            emit::<{ CLASS_SIZES[2] }>(cnt, skb, &hdr, 2, at, n)
        } else {
            emit::<{ CLASS_SIZES[3] }>(cnt, skb, &hdr, 3, at, n)
        };
        if !sent && last && hdr.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            // The chunk that carries the FIN (or RST) did not fit in the ring: send its header
            // alone, its bytes as missing, so the connection is still seen to end (else it
            // stays open, half-closed, until the idle timeout) and the stream keeps its
            // positions. A header is small enough to fit where the chunk did not.
            let mut h = hdr;
            h.data_len = 0;
            h.missing = not_captured.saturating_add(n);
            emit_empty(cnt, &h);
        }
        i += 1;
    }
    Ok(())
}

/// Submit flags: no wakeup unless the ring is filling up.
#[inline(always)]
fn submit_flags(cnt: *mut Counters) -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > read_global(&WAKEUP_BYTES) {
        count(cnt, counter::WAKEUPS, 1);
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn emit_empty(cnt: *mut Counters, hdr: &EventHeader) {
    match EVENTS.reserve::<EventHeader>(0) {
        Some(mut e) => {
            e.write(*hdr);
            e.submit(submit_flags(cnt));
        }
        None => count(cnt, counter::EVENTS_LOST, 1),
    }
}

/// One chunk of `n` (1..=N) payload bytes at packet offset `at`; false if it was lost.
#[inline(always)]
fn emit<const N: usize>(
    cnt: *mut Counters,
    skb: *mut __sk_buff,
    hdr: &EventHeader,
    class: u8,
    at: u32,
    n: u32,
) -> bool {
    let Some(mut e) = EVENTS.reserve::<Event<N>>(0) else {
        count(cnt, counter::EVENTS_LOST, 1);
        count(cnt, counter::BYTES_LOST, u64::from(n));
        return false;
    };
    let ev = e.as_mut_ptr();
    // A length the verifier can prove is in 1..=N (N is a power of two). The volatile read keeps
    // LLVM from folding the mask away (it knows n <= N; the verifier does not).
    // SAFETY: reading a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    let len = ((n.wrapping_sub(1)) & (N as u32 - 1)) + 1;
    // SAFETY: `ev` points at a reserved, exclusively owned Event<N>; `len <= N`.
    let ret = unsafe {
        (*ev).header = *hdr;
        (*ev).header.class = class;
        (*ev).header.data_len = len;
        bpf_skb_load_bytes(skb.cast(), at, (*ev).data.as_mut_ptr().cast(), len)
    };
    if ret != 0 {
        count(cnt, counter::LOAD_FAILED, 1);
        count(cnt, counter::BYTES_LOST, u64::from(n));
        e.discard(0);
        return false;
    }
    count(cnt, counter::BYTES_CAPTURED, u64::from(len));
    e.submit(submit_flags(cnt));
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
