//! Decoding ring-buffer records into [`Segment`]s, with checks: the kernel's bytes are data, not
//! trusted structure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use redis_ebpf_common::{
    EVENT_HEADER_LEN, EventHeader, FAMILY_V4, FAMILY_V6, KIND_SEGMENT, TCP_FIN, TCP_RST, TCP_SYN,
};

use crate::conn::IfaceNames;
use crate::segment::Segment;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("record of {0} bytes is shorter than an event header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("data length {data_len} exceeds the record ({avail} bytes after the header)")]
    DataLen { data_len: u32, avail: usize },
}

/// Reads the header of a ring-buffer record and the payload bytes it announces.
pub fn parse_record(rec: &[u8]) -> Result<(EventHeader, &[u8]), EventError> {
    let head = rec
        .get(..EVENT_HEADER_LEN)
        .ok_or(EventError::Short(rec.len()))?;
    // SAFETY: `head` is EVENT_HEADER_LEN bytes (the size of EventHeader, asserted in the common
    // crate); EventHeader is repr(C) plain integers and byte arrays, valid for any bit pattern;
    // read_unaligned copes with any alignment.
    let hdr: EventHeader = unsafe { std::ptr::read_unaligned(head.as_ptr().cast()) };
    if hdr.kind != KIND_SEGMENT {
        return Err(EventError::Kind(hdr.kind));
    }
    let avail = rec.len() - EVENT_HEADER_LEN;
    let data = rec
        .get(EVENT_HEADER_LEN..EVENT_HEADER_LEN + hdr.data_len as usize)
        .ok_or(EventError::DataLen {
            data_len: hdr.data_len,
            avail,
        })?;
    Ok((hdr, data))
}

/// Converts kernel monotonic time to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// CLOCK_REALTIME − CLOCK_MONOTONIC, in ns.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - mono,
        }
    }

    pub fn to_epoch_ns(self, ktime_ns: u64) -> u64 {
        u64::try_from(i128::from(ktime_ns) + self.offset_ns).unwrap_or(0)
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

fn addr(family: u8, raw: &[u8; 16], port: u16) -> Result<SocketAddr, EventError> {
    let ip = match family {
        FAMILY_V4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(*raw)),
        f => return Err(EventError::Family(f)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// The flags and sequence number of one chunk of a segment.
///
/// The kernel cuts a segment's payload into chunks (at most `MAX_CHUNK` bytes, one event each)
/// and copies the segment's TCP flags into every chunk. Flags that mark a position in the stream
/// belong to one chunk only: FIN and RST to the last (found by `offset + data_len + missing ==
/// payload_len`), SYN to the first. Without this, a FIN on a segment of more than 8 KiB (a
/// large write followed by close or shutdown, coalesced by TCP) closed the flow at its first
/// chunk: the rest of the payload was lost to the connection (a complete reply counted
/// `unanswered`) and the following chunks opened a phantom mid-stream flow that never closed
/// (`redis_connections_active` stuck above the real count until the idle timeout). A later chunk
/// of a SYN segment (TCP Fast Open) loses the SYN, and its bytes, which follow the SYN's own
/// sequence number, move up by one.
fn chunk_flags(hdr: &EventHeader) -> (u8, u32) {
    let mut flags = hdr.tcp_flags;
    let mut seq = hdr.seq;
    let end = u64::from(hdr.offset) + u64::from(hdr.data_len) + u64::from(hdr.missing);
    if end < u64::from(hdr.payload_len) {
        flags &= !(TCP_FIN | TCP_RST);
    }
    if hdr.offset > 0 && flags & TCP_SYN != 0 {
        flags &= !TCP_SYN;
        seq = seq.wrapping_add(1);
    }
    (flags, seq)
}

/// The segment an event describes; `ifaces` names the interface the kernel reports.
pub fn to_segment<'a>(
    hdr: &EventHeader,
    data: &'a [u8],
    clock: Clock,
    ifaces: &'a IfaceNames,
) -> Result<Segment<'a>, EventError> {
    let (flags, seq) = chunk_flags(hdr);
    Ok(Segment {
        ts_ns: clock.to_epoch_ns(hdr.ts_ns),
        src: addr(hdr.family, &hdr.saddr, hdr.sport)?,
        dst: addr(hdr.family, &hdr.daddr, hdr.dport)?,
        seq,
        flags,
        ack: hdr.ack,
        data,
        missing: hdr.missing,
        capture: ifaces.get(hdr.ifindex),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hdr: &EventHeader, data: &[u8]) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) POD struct without padding.
        let bytes: &[u8] = unsafe {
            std::slice::from_raw_parts((hdr as *const EventHeader).cast(), EVENT_HEADER_LEN)
        };
        let mut v = bytes.to_vec();
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_a_v4_segment() {
        let mut h = EventHeader {
            kind: KIND_SEGMENT,
            family: FAMILY_V4,
            sport: 50000,
            dport: 6379,
            seq: 7,
            data_len: 3,
            ..Default::default()
        };
        h.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        h.daddr[..4].copy_from_slice(&[127, 0, 0, 2]);
        let rec = record(&h, b"abcXX");
        let (hdr, data) = parse_record(&rec).unwrap();
        assert_eq!(data, b"abc");
        let mut names = IfaceNames::default();
        names.set(0, "lo");
        let seg = to_segment(&hdr, data, Clock { offset_ns: 5 }, &names).unwrap();
        assert_eq!(seg.capture.info().iface.as_deref(), Some("lo"));
        assert_eq!(seg.src.to_string(), "127.0.0.1:50000");
        assert_eq!(seg.dst.to_string(), "127.0.0.2:6379");
        assert_eq!(seg.seq, 7);
        assert_eq!(seg.ts_ns, 5);
    }

    /// A 20,000-byte segment with FIN cut into chunks of 8192, 8192 and 3616 bytes (the last
    /// 1000 not captured): only the last chunk carries the FIN.
    #[test]
    fn fin_and_rst_only_on_the_last_chunk() {
        let chunk = |offset: u32, data_len: u32, missing: u32, flags: u8| EventHeader {
            kind: KIND_SEGMENT,
            family: FAMILY_V4,
            seq: 100 + offset,
            payload_len: 20_000,
            offset,
            data_len,
            missing,
            tcp_flags: flags,
            ..Default::default()
        };
        let fin = TCP_FIN | 0x10;
        assert_eq!(chunk_flags(&chunk(0, 8192, 0, fin)), (0x10, 100));
        assert_eq!(chunk_flags(&chunk(8192, 8192, 0, fin)), (0x10, 8292));
        assert_eq!(chunk_flags(&chunk(16384, 2616, 1000, fin)), (fin, 16484));
        assert_eq!(
            chunk_flags(&chunk(0, 8192, 0, TCP_RST)),
            (0, 100),
            "RST on a later chunk"
        );
        // A segment in one chunk, and an empty one, keep their flags.
        let mut one = chunk(0, 20_000, 0, fin);
        one.data_len = 20_000;
        assert_eq!(chunk_flags(&one), (fin, 100));
        let empty = EventHeader {
            tcp_flags: fin,
            seq: 5,
            ..Default::default()
        };
        assert_eq!(chunk_flags(&empty), (fin, 5));
        // SYN with data: the SYN stays on the first chunk; later chunks move up one byte.
        assert_eq!(chunk_flags(&chunk(0, 8192, 0, TCP_SYN)), (TCP_SYN, 100));
        let mut syn_last = chunk(8192, 11_808, 0, TCP_SYN);
        syn_last.payload_len = 20_000;
        assert_eq!(chunk_flags(&syn_last), (0, 8293));
        let syn_first = EventHeader {
            tcp_flags: TCP_SYN,
            seq: 7,
            payload_len: 100,
            data_len: 100,
            ..Default::default()
        };
        assert_eq!(chunk_flags(&syn_first), (TCP_SYN, 7));
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(parse_record(&[0; 10]).unwrap_err(), EventError::Short(10));
        let h = EventHeader {
            kind: 99,
            ..Default::default()
        };
        assert_eq!(
            parse_record(&record(&h, b"")).unwrap_err(),
            EventError::Kind(99)
        );
        let h = EventHeader {
            kind: KIND_SEGMENT,
            data_len: 100,
            ..Default::default()
        };
        assert!(matches!(
            parse_record(&record(&h, b"x")),
            Err(EventError::DataLen { .. })
        ));
        let h = EventHeader {
            kind: KIND_SEGMENT,
            family: 9,
            ..Default::default()
        };
        let rec = record(&h, b"");
        let (hdr, data) = parse_record(&rec).unwrap();
        assert_eq!(
            to_segment(&hdr, data, Clock::now(), &IfaceNames::default()).unwrap_err(),
            EventError::Family(9)
        );
    }
}
