//! Link, IP and TCP headers of one captured packet, down to the TCP payload.
//!
//! Every read is bounds-checked (`get`), so any bytes are safe input. Lengths come from the IP
//! header: captured bytes beyond it (Ethernet padding) are dropped, bytes it declares but the
//! capture lacks (snaplen) become `missing`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use redis_ebpf_common::parse::{
    IPV6_FRAG_OFFSET_MORE, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, MIN_TCP_HEADER, VLAN_ETHERTYPES,
};

/// Link types this reader decodes (tcpdump's LINKTYPE_* numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// 0: BSD loopback, 4-byte address family in the capturing host's byte order.
    Null,
    /// 1: Ethernet, with 802.1Q / 802.1ad tags.
    Ethernet,
    /// 101: raw IP, version from the first nibble.
    Raw,
    /// 108: OpenBSD loopback, address family big-endian.
    Loop,
    /// 113: Linux cooked capture v1.
    LinuxSll,
    /// 228: raw IPv4.
    Ipv4,
    /// 229: raw IPv6.
    Ipv6,
    /// 276: Linux cooked capture v2.
    LinuxSll2,
}

impl Link {
    pub(crate) fn from_linktype(t: i32) -> Option<Link> {
        Some(match t {
            0 => Link::Null,
            1 => Link::Ethernet,
            101 => Link::Raw,
            108 => Link::Loop,
            113 => Link::LinuxSll,
            228 => Link::Ipv4,
            229 => Link::Ipv6,
            276 => Link::LinuxSll2,
            _ => return None,
        })
    }
}

/// A TCP segment found in a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tcp {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Captured payload, as a range of the packet bytes.
    pub payload: Range<usize>,
    /// Payload bytes the IP header declares but the capture lacks.
    pub missing: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Tcp(Tcp),
    /// IP but not TCP, or not IP at all.
    NotTcp,
    /// An IP fragment (not reassembled).
    Fragment,
    /// Headers cut short or inconsistent.
    Unparsable,
}

// What the parser accepts (VLAN tags, IPv6 extension headers, TCP data offset) is shared with
// the kernel program (`redis_ebpf_common::parse`): a packet captured live and the same packet
// read from a capture file are decoded alike.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;

pub(crate) fn decode(link: Link, p: &[u8]) -> Decoded {
    decode_opt(link, p).unwrap_or(Decoded::Unparsable)
}

/// `None` when a header is cut short.
fn decode_opt(link: Link, p: &[u8]) -> Option<Decoded> {
    match link {
        Link::Ethernet => ethertype(be16(p, 12)?, p, 14),
        Link::LinuxSll => ethertype(be16(p, 14)?, p, 16),
        Link::LinuxSll2 => ethertype(be16(p, 0)?, p, 20),
        Link::Null => {
            let b: [u8; 4] = p.get(..4)?.try_into().ok()?;
            // Host byte order of the capturing machine: whichever reading is a family we know.
            let le = u32::from_le_bytes(b);
            let af = if af_known(le) {
                le
            } else {
                u32::from_be_bytes(b)
            };
            by_family(af, p)
        }
        Link::Loop => by_family(be32(p, 0)?, p),
        Link::Raw => match p.first()? >> 4 {
            4 => ipv4(p, 0),
            6 => ipv6(p, 0),
            _ => Some(Decoded::Unparsable),
        },
        Link::Ipv4 => ipv4(p, 0),
        Link::Ipv6 => ipv6(p, 0),
    }
}

/// BSD address families: AF_INET, AF_INET6 as numbered by Linux, Net/OpenBSD, FreeBSD, macOS.
fn af_known(af: u32) -> bool {
    matches!(af, 2 | 10 | 24 | 28 | 30)
}

fn by_family(af: u32, p: &[u8]) -> Option<Decoded> {
    match af {
        2 => ipv4(p, 4),
        10 | 24 | 28 | 30 => ipv6(p, 4),
        _ => Some(Decoded::NotTcp),
    }
}

fn ethertype(mut et: u16, p: &[u8], mut off: usize) -> Option<Decoded> {
    for _ in 0..MAX_VLAN_TAGS {
        if !VLAN_ETHERTYPES.contains(&et) {
            break;
        }
        // Tag: 2 bytes TCI, then the inner ethertype.
        et = be16(p, off + 2)?;
        off += 4;
    }
    match et {
        ETH_IPV4 => ipv4(p, off),
        ETH_IPV6 => ipv6(p, off),
        _ => Some(Decoded::NotTcp),
    }
}

fn ipv4(p: &[u8], off: usize) -> Option<Decoded> {
    // The checks in the kernel program's order (docs/packet-parsing.md): the fixed header, the
    // version, the protocol, fragments, then the header length.
    let fixed = p.get(off..off + 20)?;
    let b0 = *fixed.first()?;
    if b0 >> 4 != 4 {
        return Some(Decoded::Unparsable);
    }
    if *fixed.get(9)? != PROTO_TCP {
        return Some(Decoded::NotTcp);
    }
    // More-fragments flag or a fragment offset (DF, 0x4000, is fine).
    if be16(fixed, 6)? & 0x3fff != 0 {
        return Some(Decoded::Fragment);
    }
    let ihl = usize::from(b0 & 0x0f) * 4;
    if ihl < 20 {
        return Some(Decoded::Unparsable);
    }
    let hdr = p.get(off..off + ihl)?;
    let total = usize::from(be16(hdr, 2)?);
    let src: [u8; 4] = hdr.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = hdr.get(16..20)?.try_into().ok()?;
    // Total length 0: a TSO super-packet captured on the sender; the capture is all there is.
    let l4_len = if total == 0 {
        None
    } else if total < ihl {
        return Some(Decoded::Unparsable);
    } else {
        Some(total - ihl)
    };
    tcp(
        p,
        off + ihl,
        l4_len,
        IpAddr::V4(Ipv4Addr::from(src)),
        IpAddr::V4(Ipv4Addr::from(dst)),
    )
}

fn ipv6(p: &[u8], off: usize) -> Option<Decoded> {
    let hdr = p.get(off..off + 40)?;
    if hdr.first()? >> 4 != 6 {
        return Some(Decoded::Unparsable);
    }
    let payload_len = usize::from(be16(hdr, 4)?);
    let mut next = *hdr.get(6)?;
    let src: [u8; 16] = hdr.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = hdr.get(24..40)?.try_into().ok()?;
    // Payload length 0: jumbogram or TSO; the capture is all there is.
    let mut left = (payload_len != 0).then_some(payload_len);
    let mut pos = off + 40;
    // The extension headers, then the TCP header's turn.
    for _ in 0..=MAX_IPV6_EXT_HEADERS {
        let len = match next {
            PROTO_TCP => {
                return tcp(
                    p,
                    pos,
                    left,
                    IpAddr::V6(Ipv6Addr::from(src)),
                    IpAddr::V6(Ipv6Addr::from(dst)),
                );
            }
            // Hop-by-hop, routing, destination options: length in 8-byte units, minus one.
            0 | 43 | 60 => (usize::from(*p.get(pos + 1)?) + 1) * 8,
            // Authentication header: in 4-byte units, minus two.
            51 => (usize::from(*p.get(pos + 1)?) + 2) * 4,
            44 => {
                // Offset 0 and no more fragments: an atomic fragment, i.e. a whole packet.
                if be16(p, pos + 2)? & IPV6_FRAG_OFFSET_MORE != 0 {
                    return Some(Decoded::Fragment);
                }
                8
            }
            _ => return Some(Decoded::NotTcp),
        };
        next = *p.get(pos)?;
        pos += len;
        if let Some(l) = left.as_mut() {
            let Some(rest) = l.checked_sub(len) else {
                return Some(Decoded::Unparsable);
            };
            *l = rest;
        }
    }
    Some(Decoded::Unparsable)
}

/// The TCP header at `off`; `l4_len` is the segment length the IP header declares (`None`:
/// whatever was captured).
fn tcp(p: &[u8], off: usize, l4_len: Option<usize>, src: IpAddr, dst: IpAddr) -> Option<Decoded> {
    // The whole fixed header, as the kernel reads it (a capture cut inside it is unparsable;
    // cut inside the options, the payload is missing).
    let hdr = p.get(off..off + MIN_TCP_HEADER as usize)?;
    let sport = be16(hdr, 0)?;
    let dport = be16(hdr, 2)?;
    let seq = be32(hdr, 4)?;
    let ack = be32(hdr, 8)?;
    let doff = usize::from(*hdr.get(12)? >> 4) * 4;
    let flags = *hdr.get(13)?;
    let captured = p.len().saturating_sub(off);
    let l4_len = l4_len.unwrap_or(captured);
    if doff < MIN_TCP_HEADER as usize || l4_len < doff {
        return Some(Decoded::Unparsable);
    }
    let payload_len = l4_len - doff;
    let start = (off + doff).min(p.len());
    let have = payload_len.min(p.len() - start);
    Some(Decoded::Tcp(Tcp {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        seq,
        ack,
        flags,
        payload: start..start + have,
        // At most 65535 (IP lengths are 16-bit).
        missing: u32::try_from(payload_len - have).unwrap_or(u32::MAX),
    }))
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(at..at + 2)?.try_into().ok()?))
}

fn be32(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}
