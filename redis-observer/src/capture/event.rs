//! Decoding ring-buffer records into [`Segment`]s, with checks: the kernel's bytes are data, not
//! trusted structure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use redis_ebpf_common::{EVENT_HEADER_LEN, EventHeader, FAMILY_V4, FAMILY_V6, KIND_SEGMENT};

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

/// The segment an event describes.
pub fn to_segment<'a>(
    hdr: &EventHeader,
    data: &'a [u8],
    clock: Clock,
) -> Result<Segment<'a>, EventError> {
    Ok(Segment {
        ts_ns: clock.to_epoch_ns(hdr.ts_ns),
        src: addr(hdr.family, &hdr.saddr, hdr.sport)?,
        dst: addr(hdr.family, &hdr.daddr, hdr.dport)?,
        seq: hdr.seq,
        flags: hdr.tcp_flags,
        data,
        missing: hdr.missing,
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
        let seg = to_segment(&hdr, data, Clock { offset_ns: 5 }).unwrap();
        assert_eq!(seg.src.to_string(), "127.0.0.1:50000");
        assert_eq!(seg.dst.to_string(), "127.0.0.2:6379");
        assert_eq!(seg.seq, 7);
        assert_eq!(seg.ts_ns, 5);
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
            to_segment(&hdr, data, Clock::now()).unwrap_err(),
            EventError::Family(9)
        );
    }
}
