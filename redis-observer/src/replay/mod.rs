//! Packet files: TCP segments out of pcap and pcapng captures.
//!
//! Reads with `pcap-parser` (streaming, constant memory), decodes the link types listed in
//! [`PacketReader`], IPv4 and IPv6, and hands out one [`Segment`] per TCP packet.

pub(crate) mod decode;
mod resync;
#[cfg(test)]
pub(crate) mod testutil;

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};

use crate::segment::Segment;
use decode::{Decoded, Link};
use resync::{Framing, Judge};

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the capture: {0}")]
    Io(#[from] io::Error),
    #[error("the capture file is empty")]
    Empty,
    #[error("not a pcap or pcapng file")]
    NotACapture,
    #[error("corrupt capture at byte {offset}: {detail}")]
    Corrupt { offset: u64, detail: String },
    #[error("capture block at byte {offset} is larger than {max} bytes")]
    BlockTooLarge { offset: u64, max: usize },
}

/// What a [`PacketReader`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Packet records read (all link types, all protocols).
    pub packets: u64,
    /// TCP segments handed out.
    pub tcp_segments: u64,
    /// Packets that are not TCP (other IP protocols, ARP, ...).
    pub non_tcp: u64,
    /// IP fragments, skipped (not reassembled).
    pub fragments: u64,
    /// TCP segments whose payload the capture cut short (snaplen), and the bytes it cut.
    pub truncated_packets: u64,
    pub truncated_bytes: u64,
    /// Packets whose headers are cut short or inconsistent, or that name an unknown interface.
    pub unparsable: u64,
    /// Packets on a link type this reader does not decode, and the last such type.
    pub unsupported_link: u64,
    pub last_unsupported_link_type: Option<i32>,
    /// The file ends in the middle of a record (a capture that was cut off).
    pub file_truncated: bool,
    /// Damaged records (a corrupt length, garbage between records): bytes skipped to reach the
    /// next plausible record, and in how many places.
    pub skipped_bytes: u64,
    pub resyncs: u64,
}

/// Initial read buffer; it doubles up to `MAX_BUFFER` for larger blocks.
const INITIAL_BUFFER: usize = 256 * 1024;
const MAX_BUFFER: usize = 16 << 20;
/// Interfaces remembered per pcapng section (each costs a few bytes; a hostile file could
/// declare millions).
const MAX_INTERFACES: usize = 4096;

/// Reads TCP segments from a pcap or pcapng stream.
///
/// Link types: Ethernet (1, with VLAN tags), BSD loopback (0) and OpenBSD loopback (108), raw
/// IP (101, 228, 229), Linux cooked v1 (113) and v2 (276). Timestamps become ns since the epoch
/// (pcap µs or ns; pcapng per-interface resolution and offset). Packets that are not TCP, IP
/// fragments, unparsable packets and unsupported link types are counted in [`ReplayStats`] and
/// skipped.
pub struct PacketReader<R: Read> {
    inner: Inner<R>,
    /// Size of the block last handed out, consumed on the next call (its bytes were borrowed).
    pending: usize,
    buffer: usize,
    links: Links,
    stats: ReplayStats,
    io_error: Arc<Mutex<Option<io::Error>>>,
    done: bool,
    /// How records are framed, to check each before the parser trusts its length.
    framing: Option<Framing>,
    /// A block was read (for legacy pcap: the file header, which is not a record).
    started: bool,
}

enum Inner<R: Read> {
    Legacy(LegacyPcapReader<Source<R>>),
    Ng(PcapNGReader<Source<R>>),
}

impl<R: Read> PacketReader<R> {
    /// Starts reading; fails if the input is not a pcap or pcapng file.
    pub fn new(mut reader: R) -> Result<Self, ReplayError> {
        let mut head = [0u8; 4];
        let got = read_full(&mut reader, &mut head)?;
        if got == 0 {
            return Err(ReplayError::Empty);
        }
        if got < head.len() {
            return Err(ReplayError::NotACapture);
        }
        let io_error = Arc::new(Mutex::new(None));
        let framing = Framing::from_magic(head);
        let src = Source {
            head,
            head_pos: 0,
            inner: reader,
            error: Arc::clone(&io_error),
        };
        // pcapng starts with a section header block, type 0x0a0d0d0a in either byte order.
        let inner = if head == [0x0a, 0x0d, 0x0d, 0x0a] {
            PcapNGReader::new(INITIAL_BUFFER, src).map(Inner::Ng)
        } else {
            LegacyPcapReader::new(INITIAL_BUFFER, src).map(Inner::Legacy)
        };
        let inner = inner.map_err(|e| match e {
            PcapError::ReadError => ReplayError::Io(take_io_error(&io_error)),
            _ => ReplayError::NotACapture,
        })?;
        Ok(PacketReader {
            inner,
            pending: 0,
            buffer: INITIAL_BUFFER,
            links: Links::default(),
            stats: ReplayStats::default(),
            io_error,
            done: false,
            framing,
            started: matches!(framing, Some(Framing::Ng { .. })),
        })
    }

    /// The next TCP segment, `None` at the end of the capture. Its bytes borrow the reader's
    /// buffer until the next call.
    pub fn next_segment(&mut self) -> Result<Option<Segment<'_>>, ReplayError> {
        if self.pending > 0 {
            self.inner.consume(self.pending);
            self.pending = 0;
        }
        let (ts_ns, iface_id, tcp) = loop {
            if self.done {
                return Ok(None);
            }
            self.check_head()?;
            let step = match self.inner.next() {
                Ok((size, block)) => Step::Block(size, self.links.take(&block, &mut self.stats)),
                Err(e) => Step::Err(Fail::from(&e)),
            };
            match step {
                Step::Block(size, Some(found)) => {
                    self.pending = size;
                    self.started = true;
                    break found;
                }
                Step::Block(size, None) => {
                    self.inner.consume(size);
                    self.started = true;
                }
                Step::Err(Fail::Eof) => self.done = true,
                Step::Err(Fail::UnexpectedEof) => {
                    self.stats.file_truncated = true;
                    self.done = true;
                }
                Step::Err(Fail::Incomplete) => {
                    let before = self.inner.available();
                    self.refill()?;
                    // Nothing read but not at the end: no room left (the parser could not say how
                    // much it needs). At the end, the next parse reports the cut-off record.
                    if self.inner.available() == before && !self.inner.exhausted() {
                        self.grow()?;
                    }
                }
                Step::Err(Fail::TooSmall) => self.grow()?,
                Step::Err(Fail::Read) => {
                    self.done = true;
                    return Err(ReplayError::Io(take_io_error(&self.io_error)));
                }
                Step::Err(Fail::Corrupt(detail)) => {
                    self.done = true;
                    return Err(ReplayError::Corrupt {
                        offset: self.inner.consumed() as u64,
                        detail,
                    });
                }
            }
        };
        // Borrowing the block's bytes across the loop above is what the borrow checker cannot
        // express (a conditional return of a borrow inside a loop), so look at the block again:
        // it was not consumed, `next` parses the same bytes.
        let offset = self.inner.consumed() as u64;
        let data = match self.inner.next() {
            Ok((_, block)) => self.links.packet(&block).map(|(_, _, data, _)| data),
            Err(_) => None,
        };
        let data = data.and_then(|d| d.get(tcp.payload.clone()));
        let Some(data) = data else {
            // Cannot happen: the same bytes parsed the same way a moment ago.
            self.done = true;
            return Err(ReplayError::Corrupt {
                offset,
                detail: "block changed on a second read".into(),
            });
        };
        Ok(Some(Segment {
            ts_ns,
            src: tcp.src,
            dst: tcp.dst,
            seq: tcp.seq,
            ack: tcp.ack,
            flags: tcp.flags,
            data,
            missing: tcp.missing,
            capture: self.links.names.get(iface_id),
        }))
    }

    /// Calls `f` with every TCP segment until the end of the capture.
    pub fn for_each_segment(&mut self, mut f: impl FnMut(Segment<'_>)) -> Result<(), ReplayError> {
        while let Some(seg) = self.next_segment()? {
            f(seg);
        }
        Ok(())
    }

    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// Makes sure the record at the head of the buffer is plausible before the parser trusts its
    /// length; otherwise skips to the next plausible one (counted in the stats). A record cut off
    /// by the end of the file with nothing plausible after it is left to the parser, which
    /// reports a cut-off capture.
    fn check_head(&mut self) -> Result<(), ReplayError> {
        let Some(mut framing) = self.framing.filter(|_| self.started) else {
            return Ok(());
        };
        let step = framing.step();
        let mut skipped = 0u64;
        loop {
            let eof = self.inner.exhausted();
            let data = self.inner.data();
            let first = framing.judge(data, eof, skipped > 0);
            let (skip, verdict) = match first {
                Judge::Good | Judge::NeedMore => (0, first),
                Judge::Bad | Judge::Cut => {
                    // The next offset where a record plausibly starts (or more bytes are needed
                    // to tell); past the end, nothing was found.
                    let found = (step..data.len())
                        .step_by(step)
                        .map(|p| {
                            let rest = data.get(p..).unwrap_or_default();
                            (p, framing.judge(rest, eof, true))
                        })
                        .find(|(_, v)| matches!(v, Judge::Good | Judge::NeedMore));
                    match found {
                        Some(hit) => hit,
                        // A cut-off last record: the parser reports it.
                        None if first == Judge::Cut => (0, Judge::Good),
                        None => (data.len(), Judge::Good),
                    }
                }
            };
            if skip > 0 {
                self.inner.consume(skip);
                skipped += skip as u64;
            }
            if verdict != Judge::NeedMore {
                break;
            }
            let before = self.inner.available();
            self.refill()?;
            if self.inner.available() == before && !self.inner.exhausted() {
                self.grow()?;
            }
        }
        self.framing = Some(framing);
        if skipped > 0 {
            self.stats.skipped_bytes += skipped;
            self.stats.resyncs += 1;
        }
        Ok(())
    }

    fn refill(&mut self) -> Result<(), ReplayError> {
        if self.inner.refill().is_err() {
            self.done = true;
            return Err(ReplayError::Io(take_io_error(&self.io_error)));
        }
        Ok(())
    }

    fn grow(&mut self) -> Result<(), ReplayError> {
        if self.buffer >= MAX_BUFFER {
            self.done = true;
            return Err(ReplayError::BlockTooLarge {
                offset: self.inner.consumed() as u64,
                max: MAX_BUFFER,
            });
        }
        self.buffer = (self.buffer * 2).min(MAX_BUFFER);
        self.inner.grow(self.buffer);
        self.refill()
    }
}

impl<R: Read> std::fmt::Debug for PacketReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketReader")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Reads every TCP segment of a capture into `f`; returns what was seen.
pub fn for_each_segment<R: Read>(
    reader: R,
    f: impl FnMut(Segment<'_>),
) -> Result<ReplayStats, ReplayError> {
    let mut r = PacketReader::new(reader)?;
    r.for_each_segment(f)?;
    Ok(r.stats)
}

enum Step {
    Block(usize, Option<(u64, u32, decode::Tcp)>),
    Err(Fail),
}

/// A `PcapError`, without its borrow of the buffer.
enum Fail {
    Eof,
    UnexpectedEof,
    Incomplete,
    TooSmall,
    Read,
    Corrupt(String),
}

impl From<&PcapError<&[u8]>> for Fail {
    fn from(e: &PcapError<&[u8]>) -> Self {
        match e {
            PcapError::Eof => Fail::Eof,
            PcapError::UnexpectedEof => Fail::UnexpectedEof,
            PcapError::Incomplete(_) => Fail::Incomplete,
            PcapError::BufferTooSmall => Fail::TooSmall,
            PcapError::ReadError => Fail::Read,
            PcapError::HeaderNotRecognized => Fail::Corrupt("unknown header".into()),
            PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                Fail::Corrupt(format!("bad block ({kind:?})"))
            }
        }
    }
}

impl<R: Read> Inner<R> {
    fn next(&mut self) -> Result<(usize, PcapBlockOwned<'_>), PcapError<&[u8]>> {
        match self {
            Inner::Legacy(r) => r.next(),
            Inner::Ng(r) => r.next(),
        }
    }
    fn consume(&mut self, n: usize) {
        match self {
            Inner::Legacy(r) => r.consume(n),
            Inner::Ng(r) => r.consume(n),
        }
    }
    fn refill(&mut self) -> Result<(), ()> {
        match self {
            Inner::Legacy(r) => r.refill().map_err(|_| ()),
            Inner::Ng(r) => r.refill().map_err(|_| ()),
        }
    }
    fn grow(&mut self, size: usize) {
        match self {
            Inner::Legacy(r) => r.grow(size),
            Inner::Ng(r) => r.grow(size),
        };
    }
    fn consumed(&self) -> usize {
        match self {
            Inner::Legacy(r) => r.consumed(),
            Inner::Ng(r) => r.consumed(),
        }
    }
    fn exhausted(&self) -> bool {
        match self {
            Inner::Legacy(r) => r.reader_exhausted(),
            Inner::Ng(r) => r.reader_exhausted(),
        }
    }
    fn available(&self) -> usize {
        self.data().len()
    }
    fn data(&self) -> &[u8] {
        match self {
            Inner::Legacy(r) => r.data(),
            Inner::Ng(r) => r.data(),
        }
    }
}

/// Link type and clock of the packets: the pcap header's, or each pcapng interface's.
#[derive(Default)]
struct Links {
    legacy: Iface,
    /// Interfaces of the current pcapng section, by id.
    ifaces: Vec<Iface>,
    /// Every interface described so far, numbered across sections (what `Segment::capture`
    /// carries), with its `if_name`.
    names: crate::conn::IfaceNames,
    described: u32,
    /// Time of the last packet (simple packet blocks carry none).
    last_ts: u64,
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: i32,
    /// Timestamp units per second.
    units: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    offset_s: i64,
    snaplen: u32,
    /// Number across sections (0 for a legacy pcap's single, unnamed interface).
    id: u32,
}

impl Default for Iface {
    fn default() -> Self {
        Iface {
            linktype: 1,
            units: 1_000_000,
            offset_s: 0,
            snaplen: 0,
            id: 0,
        }
    }
}

impl Links {
    /// Notes header blocks; for a packet block, counts it and decodes it.
    fn take(
        &mut self,
        block: &PcapBlockOwned<'_>,
        stats: &mut ReplayStats,
    ) -> Option<(u64, u32, decode::Tcp)> {
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                self.legacy = Iface {
                    linktype: h.network.0,
                    units: if h.is_nanosecond_precision() {
                        1_000_000_000
                    } else {
                        1_000_000
                    },
                    offset_s: 0,
                    snaplen: h.snaplen,
                    id: 0,
                };
                return None;
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                // Interface ids are per section.
                self.ifaces.clear();
                return None;
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                if self.ifaces.len() < MAX_INTERFACES {
                    // Ids start at 1: 0 is the unnamed interface of a legacy pcap.
                    self.described = self.described.saturating_add(1);
                    let id = self.described;
                    let name = idb
                        .options
                        .iter()
                        .find(|o| o.code == pcap_parser::pcapng::OptionCode::IfName)
                        .and_then(|o| o.as_bytes().ok())
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .map(|n| n.trim_end_matches('\0'))
                        .filter(|n| !n.is_empty() && n.len() <= 64);
                    if let Some(name) = name {
                        self.names.set(id, name);
                    }
                    self.ifaces.push(Iface {
                        linktype: idb.linktype.0,
                        units: ts_units(idb.if_tsresol),
                        offset_s: idb.if_tsoffset,
                        snaplen: idb.snaplen,
                        id,
                    });
                }
                return None;
            }
            _ => {}
        }
        let is_packet = matches!(
            block,
            PcapBlockOwned::Legacy(_)
                | PcapBlockOwned::NG(Block::EnhancedPacket(_) | Block::SimplePacket(_))
        );
        if !is_packet {
            return None;
        }
        stats.packets += 1;
        let Some((linktype, ts, data, iface)) = self.packet(block) else {
            // A packet on an interface never described.
            stats.unparsable += 1;
            return None;
        };
        self.last_ts = ts;
        let Some(link) = Link::from_linktype(linktype) else {
            stats.unsupported_link += 1;
            stats.last_unsupported_link_type = Some(linktype);
            return None;
        };
        match decode::decode(link, data) {
            Decoded::Tcp(tcp) => {
                stats.tcp_segments += 1;
                if tcp.missing > 0 {
                    stats.truncated_packets += 1;
                    stats.truncated_bytes += u64::from(tcp.missing);
                }
                Some((ts, iface, tcp))
            }
            Decoded::NotTcp => {
                stats.non_tcp += 1;
                None
            }
            Decoded::Fragment => {
                stats.fragments += 1;
                None
            }
            Decoded::Unparsable => {
                stats.unparsable += 1;
                None
            }
        }
    }

    /// A packet block's link type, time (ns since the epoch) and captured bytes.
    /// Also the interface's number across sections (0 for a legacy pcap).
    fn packet<'a>(&self, block: &PcapBlockOwned<'a>) -> Option<(i32, u64, &'a [u8], u32)> {
        match block {
            PcapBlockOwned::Legacy(b) => {
                let ts = ts_ns(
                    u128::from(b.ts_sec),
                    u128::from(b.ts_usec),
                    self.legacy.units,
                    0,
                );
                Some((self.legacy.linktype, ts, b.data, 0))
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let iface = self.ifaces.get(usize::try_from(epb.if_id).ok()?)?;
                let units = (u128::from(epb.ts_high) << 32) | u128::from(epb.ts_low);
                let ts = ts_ns(0, units, iface.units, iface.offset_s);
                // `data` is padded to 4 bytes; the packet is its first `caplen`.
                let len = usize::try_from(epb.caplen).unwrap_or(usize::MAX);
                Some((
                    iface.linktype,
                    ts,
                    epb.data.get(..len.min(epb.data.len()))?,
                    iface.id,
                ))
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                // Interface 0; the block holds min(original length, snaplen) bytes plus padding.
                let iface = self.ifaces.first()?;
                let mut len = usize::try_from(spb.origlen).unwrap_or(usize::MAX);
                if iface.snaplen != 0 {
                    len = len.min(usize::try_from(iface.snaplen).unwrap_or(usize::MAX));
                }
                Some((
                    iface.linktype,
                    self.last_ts,
                    spb.data.get(..len.min(spb.data.len()))?,
                    iface.id,
                ))
            }
            _ => None,
        }
    }
}

/// Timestamp units per second for a pcapng `if_tsresol` (10^-n s, or 2^-n s if the top bit is
/// set); an unusable value means the default, microseconds. (pcap-parser's own helper rejects
/// every power-of-two resolution.)
fn ts_units(tsresol: u8) -> u64 {
    let n = u32::from(tsresol & 0x7f);
    let units = if tsresol & 0x80 != 0 {
        1u64.checked_shl(n).filter(|_| n < 64)
    } else {
        10u64.checked_pow(n)
    };
    units.unwrap_or(1_000_000)
}

/// `secs` seconds plus `frac` units (of `units` per second) plus `offset_s`, in ns since the
/// epoch, saturating: a corrupt timestamp must not panic.
fn ts_ns(secs: u128, frac: u128, units: u64, offset_s: i64) -> u64 {
    const NS: u128 = 1_000_000_000;
    let units = u128::from(units.max(1));
    let ns = secs
        .saturating_mul(NS)
        .saturating_add(frac / units * NS)
        .saturating_add(frac % units * NS / units);
    let offset = i128::from(offset_s) * 1_000_000_000;
    let ns = i128::try_from(ns)
        .unwrap_or(i128::MAX)
        .saturating_add(offset);
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

/// The input, with the magic bytes already read put back in front. Fills each read as far as
/// the input allows (the parser reads once per refill and needs whole headers), and keeps the
/// `io::Error` the parser would reduce to `ReadError`.
struct Source<R> {
    head: [u8; 4],
    head_pos: usize,
    inner: R,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let head = self.head.get(self.head_pos..).unwrap_or_default();
        let n = head.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), head.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.head_pos += n;
        let rest = buf.get_mut(n..).unwrap_or_default();
        match read_full(&mut self.inner, rest) {
            Ok(m) => Ok(n + m),
            Err(e) => {
                let kind = e.kind();
                if let Ok(mut slot) = self.error.lock() {
                    *slot = Some(e);
                }
                Err(kind.into())
            }
        }
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|b| !b.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn take_io_error(slot: &Mutex<Option<io::Error>>) -> io::Error {
    slot.lock()
        .ok()
        .and_then(|mut s| s.take())
        .unwrap_or_else(|| io::Error::other("read failed"))
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;
    use std::io::Cursor;
    use std::net::SocketAddr;

    const C4: [u8; 4] = [10, 0, 0, 1];
    const S4: [u8; 4] = [10, 0, 0, 2];
    const C6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const S6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const PSH_ACK: u8 = 0x18;
    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

    /// An owned copy of a segment.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Seg {
        ts_ns: u64,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        flags: u8,
        data: Vec<u8>,
        missing: u32,
    }

    fn read_all(file: Vec<u8>) -> (Vec<Seg>, ReplayStats) {
        let mut segs = Vec::new();
        let stats = for_each_segment(Cursor::new(file), |s| {
            segs.push(Seg {
                ts_ns: s.ts_ns,
                src: s.src,
                dst: s.dst,
                seq: s.seq,
                flags: s.flags,
                data: s.data.to_vec(),
                missing: s.missing,
            })
        })
        .expect("readable capture");
        (segs, stats)
    }

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        ipv4(
            C4,
            S4,
            6,
            &[],
            &tcp(40000, 6379, 1000, PSH_ACK, &[], payload),
        )
    }

    fn tcp_v6(payload: &[u8]) -> Vec<u8> {
        ipv6(C6, S6, 6, &tcp(40000, 6379, 1000, PSH_ACK, &[], payload))
    }

    fn want(v6: bool, ts_ns: u64, data: &[u8], missing: u32) -> Seg {
        let (src, dst) = if v6 {
            ("[2001:db8::1]:40000", "[2001:db8::2]:6379")
        } else {
            ("10.0.0.1:40000", "10.0.0.2:6379")
        };
        Seg {
            ts_ns,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq: 1000,
            flags: PSH_ACK,
            data: data.to_vec(),
            missing,
        }
    }

    type Wrap = fn(bool, &[u8]) -> Vec<u8>;

    fn w_eth(v6: bool, ip: &[u8]) -> Vec<u8> {
        eth(if v6 { 0x86dd } else { 0x0800 }, &[], ip)
    }
    fn w_vlan(v6: bool, ip: &[u8]) -> Vec<u8> {
        eth(if v6 { 0x86dd } else { 0x0800 }, &[0x8100], ip)
    }
    fn w_qinq(v6: bool, ip: &[u8]) -> Vec<u8> {
        eth(if v6 { 0x86dd } else { 0x0800 }, &[0x88a8, 0x8100], ip)
    }
    fn w_null(v6: bool, ip: &[u8]) -> Vec<u8> {
        null_le(if v6 { 30 } else { 2 }, ip)
    }
    fn w_null_be(v6: bool, ip: &[u8]) -> Vec<u8> {
        null_be(if v6 { 24 } else { 2 }, ip)
    }
    fn w_loop(v6: bool, ip: &[u8]) -> Vec<u8> {
        null_be(if v6 { 28 } else { 2 }, ip)
    }
    fn w_raw(_: bool, ip: &[u8]) -> Vec<u8> {
        ip.to_vec()
    }
    fn w_sll(v6: bool, ip: &[u8]) -> Vec<u8> {
        sll(if v6 { 0x86dd } else { 0x0800 }, ip)
    }
    fn w_sll_vlan(v6: bool, ip: &[u8]) -> Vec<u8> {
        let mut inner = vec![0, 100];
        inner.extend_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        inner.extend_from_slice(ip);
        sll(0x8100, &inner)
    }
    fn w_sll2(v6: bool, ip: &[u8]) -> Vec<u8> {
        sll2(if v6 { 0x86dd } else { 0x0800 }, ip)
    }

    #[rstest]
    fn every_link_type_and_ip_version(
        #[values(
            (1, w_eth as Wrap),
            (1, w_vlan as Wrap),
            (1, w_qinq as Wrap),
            (0, w_null as Wrap),
            (0, w_null_be as Wrap),
            (108, w_loop as Wrap),
            (101, w_raw as Wrap),
            (113, w_sll as Wrap),
            (113, w_sll_vlan as Wrap),
            (276, w_sll2 as Wrap)
        )]
        link: (u32, Wrap),
        #[values(false, true)] v6: bool,
        #[values(false, true)] ng: bool,
    ) {
        let (linktype, wrap) = link;
        let ip = if v6 { tcp_v6(PING) } else { tcp_v4(PING) };
        let frame = wrap(v6, &ip);
        let ts = 1_700_000_000_123_456_000;
        let file = if ng {
            let mut w = Ng::new(false);
            w.idb(linktype as u16, 0, None, None);
            w.epb(0, ts / 1000, &frame, frame.len() as u32);
            w.out
        } else {
            pcap(linktype, false, false, &[Pkt::new(ts, frame)])
        };
        let (segs, stats) = read_all(file);
        assert_eq!(segs, vec![want(v6, ts, PING, 0)]);
        assert_eq!(stats.packets, 1);
        assert_eq!(stats.tcp_segments, 1);
    }

    #[rstest]
    #[case::v4(228, false)]
    #[case::v6(229, true)]
    fn raw_ipv4_ipv6_link_types(#[case] linktype: u32, #[case] v6: bool) {
        let ip = if v6 { tcp_v6(PING) } else { tcp_v4(PING) };
        let (segs, _) = read_all(pcap(linktype, true, false, &[Pkt::new(5, ip)]));
        assert_eq!(segs, vec![want(v6, 5, PING, 0)]);
    }

    #[test]
    fn ip_and_tcp_options_are_skipped() {
        let nop_mss = [
            1, 1, 1, 0, 2, 4, 5, 0xb4, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2,
        ];
        let ip_opts = [1, 1, 1, 0]; // NOPs, end
        let l4 = tcp(40000, 6379, 1000, PSH_ACK, &nop_mss, PING);
        let frame = eth(0x0800, &[], &ipv4(C4, S4, 6, &ip_opts, &l4));
        let (segs, _) = read_all(pcap(1, false, false, &[Pkt::new(0, frame)]));
        assert_eq!(segs, vec![want(false, 0, PING, 0)]);
    }

    #[test]
    fn ipv6_extension_headers_are_followed() {
        // As many as the kernel program follows (`parse::MAX_IPV6_EXT_HEADERS`, 4).
        let mut rest = ext(43, 0); // hop-by-hop -> routing
        rest.extend(ext(51, 1)); // routing -> AH
        rest.extend_from_slice(&[6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]); // AH (12 bytes) -> TCP
        rest.extend(frag6(6, 0, false)); // an atomic fragment is a whole packet
        let mut rest2 = rest.clone();
        // Patch AH's next header to the fragment header.
        let ah = rest2.len() - 8 - 12;
        rest2[ah] = 44;
        let mut five = rest2.clone();
        rest2.extend(tcp(40000, 6379, 1000, PSH_ACK, &[], PING));
        let frame = eth(0x86dd, &[], &ipv6(C6, S6, 0, &rest2));
        let (segs, stats) = read_all(pcap(1, false, false, &[Pkt::new(0, frame)]));
        assert_eq!(segs, vec![want(true, 0, PING, 0)], "{stats:?}");
        // One more (destination options after the fragment header): past the limit, unparsed,
        // as in the kernel.
        let f = five.len() - 8;
        five[f] = 60;
        five.extend(ext(6, 0));
        five.extend(tcp(40000, 6379, 1000, PSH_ACK, &[], PING));
        let frame = eth(0x86dd, &[], &ipv6(C6, S6, 0, &five));
        let (segs, stats) = read_all(pcap(1, false, false, &[Pkt::new(0, frame)]));
        assert!(segs.is_empty(), "{segs:?}");
        assert_eq!(stats.unparsable, 1, "{stats:?}");
    }

    #[test]
    fn fragments_are_skipped_and_counted() {
        let l4 = tcp(40000, 6379, 1000, PSH_ACK, &[], PING);
        let mut more = ipv4(C4, S4, 6, &[], &l4);
        more[6] = 0x20; // MF
        let mut later = ipv4(C4, S4, 6, &[], &l4);
        later[7] = 0x10; // offset 16 * 8
        let mut v6 = frag6(6, 0, true);
        v6.extend_from_slice(&l4);
        let mut v6_later = frag6(6, 100, false);
        v6_later.extend_from_slice(&l4);
        let pkts = [
            Pkt::new(0, eth(0x0800, &[], &more)),
            Pkt::new(0, eth(0x0800, &[], &later)),
            Pkt::new(0, eth(0x86dd, &[], &ipv6(C6, S6, 44, &v6))),
            Pkt::new(0, eth(0x86dd, &[], &ipv6(C6, S6, 44, &v6_later))),
        ];
        let (segs, stats) = read_all(pcap(1, false, false, &pkts));
        assert!(segs.is_empty());
        assert_eq!(stats.fragments, 4);
        assert_eq!(stats.packets, 4);
    }

    #[rstest]
    #[case::in_payload_v4(false, 20)]
    #[case::in_payload_v6(true, 20)]
    #[case::at_payload_start(false, 0)]
    fn snaplen_truncation_becomes_missing(#[case] v6: bool, #[case] keep: usize) {
        let payload = vec![b'x'; 1000];
        let ip = if v6 {
            tcp_v6(&payload)
        } else {
            tcp_v4(&payload)
        };
        let ip_hdr = if v6 { 40 } else { 20 };
        let frame = w_eth(v6, &ip);
        let snap = 14 + ip_hdr + 20 + keep;
        let (segs, stats) = read_all(pcap(1, false, false, &[Pkt::new(0, frame).snap(snap)]));
        assert_eq!(
            segs,
            vec![want(v6, 0, &payload[..keep], (1000 - keep) as u32)]
        );
        assert_eq!(stats.truncated_packets, 1);
        assert_eq!(stats.truncated_bytes, (1000 - keep) as u64);
    }

    #[test]
    fn truncation_inside_tcp_options_misses_whole_payload() {
        let opts = [1u8; 12];
        let l4 = tcp(40000, 6379, 1000, PSH_ACK, &opts, PING);
        let frame = eth(0x0800, &[], &ipv4(C4, S4, 6, &[], &l4));
        let (segs, _) = read_all(pcap(
            1,
            false,
            false,
            &[Pkt::new(0, frame).snap(14 + 20 + 24)],
        ));
        assert_eq!(segs, vec![want(false, 0, b"", PING.len() as u32)]);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut frame = eth(0x0800, &[], &tcp_v4(b""));
        frame.resize(60, 0xee);
        let (segs, stats) = read_all(pcap(1, false, false, &[Pkt::new(0, frame)]));
        assert_eq!(segs, vec![want(false, 0, b"", 0)]);
        assert_eq!(stats.truncated_packets, 0);
    }

    #[test]
    fn tso_zero_total_length_uses_captured_bytes() {
        let mut ip = tcp_v4(PING);
        ip[2] = 0;
        ip[3] = 0;
        let (segs, _) = read_all(pcap(101, false, false, &[Pkt::new(0, ip)]));
        assert_eq!(segs, vec![want(false, 0, PING, 0)]);
    }

    #[test]
    fn non_tcp_unparsable_and_unsupported_are_counted() {
        let udp = eth(0x0800, &[], &ipv4(C4, S4, 17, &[], &[0; 8]));
        let arp = eth(0x0806, &[], &[0; 28]);
        let icmp6 = eth(0x86dd, &[], &ipv6(C6, S6, 58, &[0; 8]));
        let short = vec![1, 2, 3];
        let mut bad_ihl = tcp_v4(PING);
        bad_ihl[0] = 0x44;
        let bad_doff = ipv4(C4, S4, 6, &[], &{
            let mut t = tcp(1, 2, 3, 0, &[], b"");
            t[12] = 0x30;
            t
        });
        let (segs, stats) = read_all(pcap(
            1,
            false,
            false,
            &[
                Pkt::new(0, udp),
                Pkt::new(0, arp),
                Pkt::new(0, icmp6),
                Pkt::new(0, short),
                Pkt::new(0, eth(0x0800, &[], &bad_ihl)),
                Pkt::new(0, eth(0x0800, &[], &bad_doff)),
            ],
        ));
        assert!(segs.is_empty());
        assert_eq!(stats.non_tcp, 3);
        assert_eq!(stats.unparsable, 3);
        let (segs, stats) = read_all(pcap(105, false, false, &[Pkt::new(0, tcp_v4(PING))]));
        assert!(segs.is_empty());
        assert_eq!(stats.unsupported_link, 1);
        assert_eq!(stats.last_unsupported_link_type, Some(105));
    }

    #[rstest]
    #[case::micro(false, 1_700_000_000_123_456_000)]
    #[case::nano(true, 1_700_000_000_123_456_789)]
    fn pcap_timestamps(#[case] nanos: bool, #[case] ts: u64) {
        for be in [false, true] {
            let (segs, _) = read_all(pcap(101, nanos, be, &[Pkt::new(ts, tcp_v4(PING))]));
            assert_eq!(segs[0].ts_ns, ts, "big-endian {be}");
        }
    }

    #[rstest]
    #[case::default_micro(None, None, 1_700_000_000_123_456, 1_700_000_000_123_456_000)]
    #[case::nano(Some(9), None, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789)]
    #[case::milli(Some(3), None, 1_700_000_000_123, 1_700_000_000_123_000_000)]
    #[case::binary(Some(0x80 | 10), None, 1024 * 5 + 512, 5_500_000_000)]
    #[case::offset(Some(9), Some(100), 7, 100_000_000_007)]
    #[case::negative_offset(Some(0), Some(-100), 7, 0)]
    #[case::huge(Some(0), None, u64::MAX, u64::MAX)]
    fn pcapng_timestamps(
        #[case] res: Option<u8>,
        #[case] off: Option<i64>,
        #[case] units: u64,
        #[case] ns: u64,
    ) {
        for be in [false, true] {
            let mut w = Ng::new(be);
            w.idb(101, 0, res, off);
            let ip = tcp_v4(PING);
            w.epb(0, units, &ip, ip.len() as u32);
            let (segs, _) = read_all(w.out);
            assert_eq!(segs[0].ts_ns, ns, "big-endian {be}");
        }
    }

    #[test]
    fn pcapng_interfaces_sections_and_other_blocks() {
        let mut w = Ng::new(false);
        w.idb(1, 0, None, None);
        w.idb(113, 0, Some(9), None);
        w.other(4); // name resolution
        w.other(0x0bad_cafe); // unknown
        let v4 = tcp_v4(PING);
        w.epb(1, 10, &sll(0x0800, &v4), 0);
        w.epb(0, 20, &eth(0x0800, &[], &v4), 0);
        w.epb(2, 30, &v4, 0); // no interface 2
        // A new section forgets the interfaces.
        w.shb();
        w.epb(1, 40, &v4, 0);
        w.idb(101, 0, Some(9), None);
        w.epb(0, 50, &v4, 0);
        w.spb(&v4, v4.len() as u32);
        let (segs, stats) = read_all(w.out);
        let ts: Vec<u64> = segs.iter().map(|s| s.ts_ns).collect();
        // The simple packet block has no time: the previous packet's.
        assert_eq!(ts, vec![10, 20_000, 50, 50]);
        assert!(segs.iter().all(|s| s.data == PING));
        assert_eq!(stats.packets, 6);
        assert_eq!(stats.unparsable, 2);
    }

    #[test]
    fn pcapng_simple_packet_respects_snaplen() {
        let payload = vec![b'y'; 100];
        let ip = tcp_v4(&payload);
        let mut w = Ng::new(false);
        w.idb(101, 50, None, None);
        // 50 bytes captured of a 140-byte packet; 2 bytes of block padding follow.
        w.spb(&ip[..50], ip.len() as u32);
        let (segs, _) = read_all(w.out);
        assert_eq!(segs, vec![want(false, 0, &payload[..10], 90)]);
    }

    #[test]
    fn big_endian_pcapng() {
        let mut w = Ng::new(true);
        w.idb(1, 0, Some(9), None);
        let frame = eth(0x86dd, &[0x8100], &tcp_v6(PING));
        w.epb(0, 42, &frame, frame.len() as u32);
        let (segs, _) = read_all(w.out);
        assert_eq!(segs, vec![want(true, 42, PING, 0)]);
    }

    #[test]
    fn blocks_larger_than_the_buffer() {
        // A 300 KB "packet" (a TSO super-packet on lo with a large snaplen).
        let payload: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut ip = tcp_v4(&payload);
        ip[2] = 0;
        ip[3] = 0;
        let small = tcp_v4(PING);
        let (segs, _) = read_all(pcap(
            101,
            false,
            false,
            &[
                Pkt::new(0, small.clone()),
                Pkt::new(1000, ip),
                Pkt::new(2000, small),
            ],
        ));
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[1].data, payload);
        assert_eq!(segs[2].data, PING);
    }

    #[test]
    fn many_packets_stream_through_a_small_reader() {
        /// Returns at most 7 bytes per read, sometimes `Interrupted`.
        struct Slow(Cursor<Vec<u8>>, u32);
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 += 1;
                if self.1.is_multiple_of(5) {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let n = buf.len().min(7);
                self.0.read(&mut buf[..n])
            }
        }
        let pkts: Vec<Pkt> = (0..5000u64)
            .map(|i| Pkt::new(i * 1000, tcp_v4(PING)))
            .collect();
        let mut r =
            PacketReader::new(Slow(Cursor::new(pcap(101, false, false, &pkts)), 0)).unwrap();
        let mut n = 0u64;
        while let Some(seg) = r.next_segment().unwrap() {
            assert_eq!(seg.ts_ns, n * 1000);
            assert_eq!(seg.data, PING);
            n += 1;
        }
        assert_eq!(n, 5000);
        assert!(r.next_segment().unwrap().is_none());
        assert_eq!(r.stats().packets, 5000);
    }

    #[test]
    fn cut_off_file_ends_cleanly() {
        let mut file = pcap(
            101,
            false,
            false,
            &[Pkt::new(0, tcp_v4(PING)), Pkt::new(1, tcp_v4(PING))],
        );
        file.truncate(file.len() - 5);
        let (segs, stats) = read_all(file);
        assert_eq!(segs.len(), 1);
        assert!(stats.file_truncated);
        let mut w = Ng::new(false);
        w.idb(101, 0, None, None);
        w.epb(0, 0, &tcp_v4(PING), 0);
        w.out.truncate(w.out.len() - 3);
        let (segs, stats) = read_all(w.out);
        assert!(segs.is_empty());
        assert!(stats.file_truncated);
    }

    #[test]
    fn not_a_capture() {
        assert!(matches!(
            PacketReader::new(Cursor::new(vec![])),
            Err(ReplayError::Empty)
        ));
        assert!(matches!(
            PacketReader::new(Cursor::new(vec![1, 2])),
            Err(ReplayError::NotACapture)
        ));
        assert!(matches!(
            PacketReader::new(Cursor::new(
                b"GET / HTTP/1.1\r\n\r\nmore text here".to_vec()
            )),
            Err(ReplayError::NotACapture)
        ));
        // A pcapng magic with a broken section header.
        assert!(matches!(
            PacketReader::new(Cursor::new(vec![
                0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 1, 2, 3, 4
            ])),
            Err(ReplayError::NotACapture)
        ));
    }

    #[test]
    fn io_errors_are_reported() {
        struct Failing(Cursor<Vec<u8>>);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        let file = pcap(101, false, false, &[Pkt::new(0, tcp_v4(PING))]);
        let err = for_each_segment(Failing(Cursor::new(file)), |_| {}).unwrap_err();
        assert!(matches!(err, ReplayError::Io(_)), "{err}");
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    #[test]
    fn corrupt_block_is_skipped_and_counted() {
        let mut w = Ng::new(false);
        w.idb(101, 0, None, None);
        let start = w.out.len();
        w.epb(0, 0, &tcp_v4(PING), 0);
        let n = w.out.len();
        // Trailing block length disagrees with the leading one.
        w.out[n - 1] ^= 0x40;
        w.epb(0, 0, &tcp_v4(PING), 0);
        let (segs, stats) = read_all(w.out);
        assert_eq!(segs.len(), 1);
        assert_eq!(stats.resyncs, 1);
        assert_eq!(stats.skipped_bytes, (n - start) as u64);
    }

    #[test]
    fn corrupt_record_length_resynchronises() {
        for ng in [false, true] {
            let t0 = 1_700_000_000_000_000_000;
            let pkts: Vec<Pkt> = (0..6)
                .map(|i| Pkt::new(t0 + i * 1000, tcp_v4(PING)))
                .collect();
            // Where each record starts.
            let mut at = Vec::new();
            let file = if ng {
                let mut w = Ng::new(false);
                w.idb(101, 0, None, None);
                for p in &pkts {
                    at.push(w.out.len());
                    w.epb(0, p.ts_ns, &p.data, p.data.len() as u32);
                }
                at.push(w.out.len());
                w.out
            } else {
                let f = pcap(101, false, false, &pkts);
                let rec = 16 + pkts[0].data.len();
                at.extend((0..=6).map(|i| 24 + i * rec));
                f
            };
            assert_eq!(read_all(file.clone()).0.len(), 6);
            // Corrupt the length field of the third record.
            let mut bad = file.clone();
            let len_field = at[2] + if ng { 4 } else { 8 };
            bad[len_field..len_field + 4].copy_from_slice(&0x0012_3456u32.to_le_bytes());
            let (segs, stats) = read_all(bad);
            assert_eq!(segs.len(), 5, "ng={ng}");
            assert_eq!(stats.resyncs, 1, "ng={ng}");
            assert_eq!(stats.skipped_bytes, (at[3] - at[2]) as u64, "ng={ng}");
            assert!(!stats.file_truncated, "ng={ng}");
        }
    }

    fn any_linktype() -> impl Strategy<Value = u32> {
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(101),
            Just(108),
            Just(113),
            Just(228),
            Just(229),
            Just(276)
        ]
    }

    proptest! {
        /// Any packet bytes on any link type: no panic, and every packet accounted for once.
        #[test]
        fn arbitrary_packets_never_panic(
            linktype in any_linktype(),
            pkts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..20),
        ) {
            let recs: Vec<Pkt> = pkts.into_iter().map(|p| Pkt::new(0, p)).collect();
            let (segs, s) = read_all(pcap(linktype, false, false, &recs));
            prop_assert_eq!(s.packets, recs.len() as u64);
            prop_assert_eq!(s.tcp_segments, segs.len() as u64);
            prop_assert_eq!(
                s.tcp_segments + s.non_tcp + s.fragments + s.unparsable + s.unsupported_link,
                s.packets
            );
        }

        /// Mutated headers of real packets: no panic, captured bytes never past the IP length.
        #[test]
        fn mutated_packets_never_panic(
            v6 in any::<bool>(),
            flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..6),
            snap in 0usize..120,
        ) {
            let mut frame = w_eth(v6, &if v6 { tcp_v6(PING) } else { tcp_v4(PING) });
            for (at, b) in flips {
                if let Some(x) = frame.get_mut(at) {
                    *x = b;
                }
            }
            let (segs, _) = read_all(pcap(1, false, false, &[Pkt::new(0, frame).snap(snap)]));
            for s in segs {
                prop_assert!(s.data.len() + s.missing as usize <= 65535);
            }
        }

        /// Any bytes after a valid header: an error or a clean end, never a panic.
        #[test]
        fn arbitrary_files_never_panic(ng in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut file = if ng {
                let mut w = Ng::new(false);
                w.idb(1, 0, None, None);
                w.out
            } else {
                pcap(1, false, false, &[])
            };
            file.extend_from_slice(&tail);
            let _ = for_each_segment(Cursor::new(file), |_| {});
        }
    }
}
