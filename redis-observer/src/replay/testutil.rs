//! Builders for test captures: packet headers, pcap and pcapng files.

/// A TCP header (with `options`, a multiple of 4 bytes) and payload.
pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let doff = (20 + options.len()) / 4;
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes()); // ack
    v.push((doff as u8) << 4);
    v.push(flags);
    v.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
    v.extend_from_slice(options);
    v.extend_from_slice(payload);
    v
}

/// An IPv4 header (with `options`, a multiple of 4 bytes) around `l4`.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, options: &[u8], l4: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = (20 + options.len()) / 4;
    let total = (ihl * 4 + l4.len()) as u16;
    let mut v = vec![0x40 | ihl as u8, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]); // id, DF, ttl, proto, csum
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(options);
    v.extend_from_slice(l4);
    v
}

/// An IPv6 header; `rest` is extension headers then the upper layer, `next` the first type.
pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0x60, 0, 0, 0];
    v.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    v.push(next);
    v.push(64);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(rest);
    v
}

/// An IPv6 options-style extension header (hop-by-hop, routing, destination) of `units` * 8
/// + 8 bytes.
pub fn ext(next: u8, units: u8) -> Vec<u8> {
    let mut v = vec![next, units];
    v.resize(8 * (usize::from(units) + 1), 0);
    v
}

/// An IPv6 fragment header.
pub fn frag6(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
    let fo = (offset_units << 3) | u16::from(more);
    let mut v = vec![next, 0];
    v.extend_from_slice(&fo.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1]);
    v
}

pub fn eth(ethertype: u16, vlans: &[u16], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    for &tpid in vlans {
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&0x0064u16.to_be_bytes()); // VLAN 100
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn sll(proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    v.extend_from_slice(&proto.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn sll2(proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = proto.to_be_bytes().to_vec();
    v.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    v.extend_from_slice(payload);
    v
}

pub fn null_le(af: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = af.to_le_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

pub fn null_be(af: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = af.to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// A packet record: captured bytes, original length, time.
#[derive(Clone, Debug)]
pub struct Pkt {
    pub ts_ns: u64,
    pub data: Vec<u8>,
    pub orig_len: u32,
}

impl Pkt {
    pub fn new(ts_ns: u64, data: Vec<u8>) -> Self {
        let orig_len = data.len() as u32;
        Pkt {
            ts_ns,
            data,
            orig_len,
        }
    }

    /// Keeps the first `snaplen` bytes, as a capture with that snaplen would.
    pub fn snap(mut self, snaplen: usize) -> Self {
        self.data.truncate(snaplen);
        self
    }
}

fn u16b(v: u16, be: bool) -> [u8; 2] {
    if be { v.to_be_bytes() } else { v.to_le_bytes() }
}

fn u32b(v: u32, be: bool) -> [u8; 4] {
    if be { v.to_be_bytes() } else { v.to_le_bytes() }
}

/// A pcap file (µs or ns timestamps, either byte order).
pub fn pcap(linktype: u32, nanos: bool, be: bool, pkts: &[Pkt]) -> Vec<u8> {
    let magic = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut v = Vec::new();
    v.extend_from_slice(&u32b(magic, be));
    v.extend_from_slice(&u16b(2, be));
    v.extend_from_slice(&u16b(4, be));
    v.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    v.extend_from_slice(&u32b(262_144, be));
    v.extend_from_slice(&u32b(linktype, be));
    let div = if nanos { 1 } else { 1000 };
    for p in pkts {
        v.extend_from_slice(&u32b((p.ts_ns / 1_000_000_000) as u32, be));
        v.extend_from_slice(&u32b((p.ts_ns % 1_000_000_000 / div) as u32, be));
        v.extend_from_slice(&u32b(p.data.len() as u32, be));
        v.extend_from_slice(&u32b(p.orig_len, be));
        v.extend_from_slice(&p.data);
    }
    v
}

/// A pcapng writer.
pub struct Ng {
    pub be: bool,
    pub out: Vec<u8>,
}

impl Ng {
    /// Starts a file with a section header.
    pub fn new(be: bool) -> Self {
        let mut ng = Ng {
            be,
            out: Vec::new(),
        };
        ng.shb();
        ng
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (12 + body.len()) as u32;
        let be = self.be;
        self.out.extend_from_slice(&u32b(kind, be));
        self.out.extend_from_slice(&u32b(len, be));
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&u32b(len, be));
    }

    /// A new section (interface ids start again).
    pub fn shb(&mut self) {
        let be = self.be;
        let mut b = u32b(0x1a2b_3c4d, be).to_vec();
        b.extend_from_slice(&u16b(1, be));
        b.extend_from_slice(&u16b(0, be));
        b.extend_from_slice(&[0xff; 8]); // section length unknown
        self.block(0x0a0d_0d0a, &b);
    }

    pub fn idb(&mut self, linktype: u16, snaplen: u32, tsresol: Option<u8>, tsoffset: Option<i64>) {
        let be = self.be;
        let mut b = u16b(linktype, be).to_vec();
        b.extend_from_slice(&u16b(0, be));
        b.extend_from_slice(&u32b(snaplen, be));
        if let Some(r) = tsresol {
            b.extend_from_slice(&u16b(9, be));
            b.extend_from_slice(&u16b(1, be));
            b.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(o) = tsoffset {
            b.extend_from_slice(&u16b(14, be));
            b.extend_from_slice(&u16b(8, be));
            // pcap-parser reads if_tsoffset little-endian whatever the section's byte order.
            b.extend_from_slice(&o.to_le_bytes());
        }
        if tsresol.is_some() || tsoffset.is_some() {
            b.extend_from_slice(&[0; 4]); // opt_endofopt
        }
        self.block(1, &b);
    }

    /// An enhanced packet block; `ts` in the interface's units.
    pub fn epb(&mut self, if_id: u32, ts: u64, data: &[u8], orig_len: u32) {
        let be = self.be;
        let mut b = u32b(if_id, be).to_vec();
        b.extend_from_slice(&u32b((ts >> 32) as u32, be));
        b.extend_from_slice(&u32b(ts as u32, be));
        b.extend_from_slice(&u32b(data.len() as u32, be));
        b.extend_from_slice(&u32b(orig_len, be));
        b.extend_from_slice(data);
        self.block(6, &b);
    }

    pub fn spb(&mut self, data: &[u8], orig_len: u32) {
        let mut b = u32b(orig_len, self.be).to_vec();
        b.extend_from_slice(data);
        self.block(3, &b);
    }

    /// A block of a type the reader does not use (its body: an empty record list).
    pub fn other(&mut self, kind: u32) {
        self.block(kind, &[0, 0, 0, 0]);
    }
}
