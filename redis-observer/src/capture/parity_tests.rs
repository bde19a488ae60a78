//! The kernel program and `replay` parse the same packets the same way.
//!
//! Hand-built Ethernet frames run through the real kernel object (the one the daemon embeds)
//! with `BPF_PROG_TEST_RUN`, once through the TC classifier and once through the socket filter,
//! and through replay's decoder. What the kernel wrote to the ring buffer (addresses, ports,
//! sequence and acknowledgement numbers, flags, payload) and its counters must equal what the
//! decoder extracts; the TC program must let every packet pass. The rule both follow is in
//! docs/packet-parsing.md.
//!
//! Needs root (CAP_BPF and CAP_NET_ADMIN) and attaches nothing: test runs touch no interface,
//! so other observers on the host neither disturb it nor see it. Without root it says so and
//! passes (the unit tests also run unprivileged); `cargo xtask test` runs as root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aya::{
    Ebpf, EbpfLoader, TestRun as _, TestRunOptions,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{SchedClassifier, SocketFilter},
};
use redis_ebpf_common::{
    Counters, FAMILY_V4, FAMILY_V6, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, counter,
    iface as iface_bits, names,
};

use super::{EBPF_OBJECT, parse_record, raise_memlock, ring::Ring};
use crate::replay::decode::{Decoded, Link, decode};
use crate::replay::testutil::{eth, ext, frag6, ipv4, ipv6, tcp};

const PORT: u16 = 6379;
const OTHER: u16 = 8080;
const C4: [u8; 4] = [10, 0, 0, 1];
const S4: [u8; 4] = [10, 0, 0, 2];
const C6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const S6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PSH_ACK: u8 = TCP_PSH | TCP_ACK;
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const RING_BYTES: u32 = 1 << 20;
/// `TC_ACT_UNSPEC` (-1) as the test run reports it.
const TC_ACT_UNSPEC: u32 = u32::MAX;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// A segment as either side reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

/// What one program did with one frame.
#[derive(Debug)]
struct KernelRun {
    ret: u32,
    events: Vec<Seen>,
    /// Counter deltas over the run.
    counters: Counters,
}

struct Kernel {
    ebpf: Ebpf,
    ring: Ring,
    counters: PerCpuArray<MapData, Counters>,
}

#[derive(Clone, Copy, Debug)]
enum Prog {
    Tc,
    Socket,
}

impl Kernel {
    fn load() -> Kernel {
        raise_memlock();
        // The embedded object, or (while working on the kernel program, without relinking the
        // test) one built separately.
        let other = std::env::var_os("REDIS_OBSERVER_TEST_EBPF_OBJECT")
            .map(|p| std::fs::read(p).expect("reading REDIS_OBSERVER_TEST_EBPF_OBJECT"));
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::EVENTS, RING_BYTES)
            .load(other.as_deref().unwrap_or(EBPF_OBJECT))
            .expect("loading the eBPF object");
        {
            let mut ports: Array<_, u8> =
                Array::try_from(ebpf.map_mut(names::PORTS).expect("PORTS")).expect("PORTS");
            ports.set(u32::from(PORT), 1, 0).expect("PORTS");
            // Test runs happen on the netns's loopback (ifindex 1): configured as the daemon
            // configures loopback in socket mode.
            let mut ifaces: Array<_, u32> =
                Array::try_from(ebpf.map_mut(names::IFACES).expect("IFACES")).expect("IFACES");
            let v = 14 | iface_bits::SKIP_OUTGOING | iface_bits::CONFIGURED;
            ifaces.set(1, v, 0).expect("IFACES");
        }
        let tc: &mut SchedClassifier = ebpf
            .program_mut(names::PROG_TC)
            .expect("TC program")
            .try_into()
            .expect("TC program type");
        tc.load().expect("verifier accepts the TC program");
        let sf: &mut SocketFilter = ebpf
            .program_mut(names::PROG_SOCKET)
            .expect("socket filter")
            .try_into()
            .expect("socket filter type");
        sf.load().expect("verifier accepts the socket filter");
        let ring = match ebpf.take_map(names::EVENTS) {
            Some(Map::RingBuf(data)) => Ring::new(data, RING_BYTES as usize).expect("ring"),
            _ => panic!("no ring buffer"),
        };
        let counters =
            PerCpuArray::try_from(ebpf.take_map(names::COUNTERS).expect("COUNTERS")).expect("map");
        Kernel {
            ebpf,
            ring,
            counters,
        }
    }

    fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for c in self.counters.get(&0, 0).expect("counters").iter() {
            sum.add(c);
        }
        sum
    }

    fn run(&mut self, prog: Prog, frame: &[u8]) -> Result<KernelRun, String> {
        let before = self.counters();
        // A socket filter's test run starts at the network header (the kernel strips a 14-byte
        // link header as `eth_type_trans` does), while on a packet socket it sees the frame from
        // its link header. So the frame goes in behind a dummy link header, addressed to
        // loopback's all-zero MAC (PACKET_HOST), with an ethertype nobody parses: the program
        // then sees exactly `frame`, as on a packet socket. The TC run keeps the link header.
        let data: Vec<u8> = match prog {
            Prog::Tc => frame.to_vec(),
            Prog::Socket => {
                let mut d = vec![0u8; 12];
                d.extend_from_slice(&0x88b5u16.to_be_bytes());
                d.extend_from_slice(frame);
                d
            }
        };
        let opts = TestRunOptions {
            data_in: Some(&data),
            ..TestRunOptions::default()
        };
        let res = match prog {
            Prog::Tc => {
                let p: &SchedClassifier = self
                    .ebpf
                    .program(names::PROG_TC)
                    .expect("TC program")
                    .try_into()
                    .expect("type");
                p.test_run(opts)
            }
            Prog::Socket => {
                let p: &SocketFilter = self
                    .ebpf
                    .program(names::PROG_SOCKET)
                    .expect("socket filter")
                    .try_into()
                    .expect("type");
                p.test_run(opts)
            }
        }
        .map_err(|e| {
            let src = std::error::Error::source(&e).map(ToString::to_string);
            format!(
                "BPF_PROG_TEST_RUN of {prog:?} ({} bytes): {e}: {src:?}",
                data.len()
            )
        })?;
        let mut events = Vec::new();
        self.ring.drain(|rec| {
            let (h, data) = parse_record(rec).expect("a well-formed record");
            assert_eq!(h.offset, 0, "one chunk per frame here");
            assert_eq!(h.missing, 0, "nothing over the capture limit here");
            assert_eq!(h.payload_len, h.data_len, "whole payload in one chunk");
            assert_eq!(h.ifindex, 1, "test runs happen on loopback");
            let ip = |a: [u8; 16]| match h.family {
                FAMILY_V4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(a)),
                f => panic!("family {f}"),
            };
            events.push(Seen {
                src: SocketAddr::new(ip(h.saddr), h.sport),
                dst: SocketAddr::new(ip(h.daddr), h.dport),
                seq: h.seq,
                ack: h.ack,
                flags: h.tcp_flags,
                payload: data.to_vec(),
            });
        });
        let after = self.counters();
        let mut delta = Counters::default();
        for (d, (a, b)) in delta.0.iter_mut().zip(after.0.iter().zip(before.0.iter())) {
            *d = a - b;
        }
        Ok(KernelRun {
            ret: res.return_value,
            events,
            counters: delta,
        })
    }
}

/// One hand-built frame.
struct Case {
    name: String,
    frame: Vec<u8>,
    /// The frame's TCP ports are readable and neither is watched: a malformed header there is
    /// not counted as unparsed by the kernel (it is not ours), while the decoder, which does
    /// not filter ports, still calls it unparsable.
    unwatched: bool,
    /// What the decoder must say (a check on the table itself).
    want: Want,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Captured: an event (payload, or SYN/FIN/RST) on a watched port.
    Event,
    /// A TCP segment on a watched port without payload or SYN/FIN/RST: counted, no event.
    Silent,
    /// Not captured, not counted: not TCP, or TCP on other ports.
    Ignored,
    /// Not captured, counted as unparsed (fragments, cut or inconsistent headers).
    Unparsed,
}

fn seg(sport: u16, dport: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut t = tcp(sport, dport, 0xfffff000, flags, options, payload);
    // A non-zero acknowledgement number, so both sides must read it from the right place.
    t[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    t
}

fn v4(l4: &[u8]) -> Vec<u8> {
    ipv4(C4, S4, 6, &[], l4)
}

fn v6(l4: &[u8]) -> Vec<u8> {
    ipv6(C6, S6, 6, l4)
}

/// IPv6 with the extension headers `chain` (types) before `l4` (protocol `last`).
fn v6_chain(chain: &[u8], last: u8, l4: &[u8]) -> Vec<u8> {
    let mut rest = Vec::new();
    for (i, &t) in chain.iter().enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(last);
        rest.extend(ext_of(t, next));
    }
    rest.extend_from_slice(l4);
    ipv6(C6, S6, chain.first().copied().unwrap_or(last), &rest)
}

/// One extension header of type `t` pointing at `next`.
fn ext_of(t: u8, next: u8) -> Vec<u8> {
    match t {
        // Hop-by-hop and destination options 8 bytes, routing 24 (a longer one).
        0 | 60 => ext(next, 0),
        43 => ext(next, 2),
        // Authentication header: 12 bytes (length field 1: (1 + 2) * 4).
        51 => {
            let mut v = vec![next, 1];
            v.resize(12, 0);
            v
        }
        // An atomic fragment.
        44 => frag6(next, 0, false),
        _ => panic!("no extension header {t}"),
    }
}

fn cases() -> Vec<Case> {
    let mut cs = Vec::new();
    let mut add = |name: &str, frame: Vec<u8>, want: Want| {
        cs.push(Case {
            name: name.to_string(),
            frame,
            unwatched: false,
            want,
        });
    };
    let req = seg(40000, PORT, PSH_ACK, &[], PING);
    let reply = seg(PORT, 40000, PSH_ACK, &[], b"+PONG\r\n");

    // Plain IPv4 and IPv6, both directions.
    add("v4 request", eth(ETH_P_IP, &[], &v4(&req)), Want::Event);
    add("v4 reply", eth(ETH_P_IP, &[], &v4(&reply)), Want::Event);
    add("v6 request", eth(ETH_P_IPV6, &[], &v6(&req)), Want::Event);
    add("v6 reply", eth(ETH_P_IPV6, &[], &v6(&reply)), Want::Event);

    // VLAN tags: one and two of each TPID; three are not followed.
    for a in TPIDS {
        add(
            &format!("v4 one tag {a:#x}"),
            eth(ETH_P_IP, &[a], &v4(&req)),
            Want::Event,
        );
        add(
            &format!("v6 one tag {a:#x}"),
            eth(ETH_P_IPV6, &[a], &v6(&req)),
            Want::Event,
        );
        for b in TPIDS {
            add(
                &format!("v4 two tags {a:#x} {b:#x}"),
                eth(ETH_P_IP, &[a, b], &v4(&req)),
                Want::Event,
            );
            add(
                &format!("v6 two tags {a:#x} {b:#x}"),
                eth(ETH_P_IPV6, &[a, b], &v6(&reply)),
                Want::Event,
            );
        }
        add(
            &format!("v4 three tags {a:#x}"),
            eth(ETH_P_IP, &[a, 0x8100, 0x88a8], &v4(&req)),
            Want::Ignored,
        );
        add(
            &format!("v6 three tags {a:#x}"),
            eth(ETH_P_IPV6, &[0x8100, a, 0x9100], &v6(&req)),
            Want::Ignored,
        );
    }
    // A tag cut short.
    add(
        "vlan tag cut",
        {
            let mut f = eth(ETH_P_IP, &[0x8100], &[]);
            f.truncate(16);
            f
        },
        Want::Unparsed,
    );

    // IPv6 extension headers: up to four are followed, an atomic fragment is a whole packet.
    let chains: &[(&str, &[u8], Want)] = &[
        ("hop-by-hop", &[0], Want::Event),
        ("routing", &[43], Want::Event),
        ("dest-opts", &[60], Want::Event),
        ("auth", &[51], Want::Event),
        ("atomic fragment", &[44], Want::Event),
        ("hbh routing", &[0, 43], Want::Event),
        ("hbh routing dest", &[0, 43, 60], Want::Event),
        ("hbh dest atomic-frag", &[0, 60, 44], Want::Event),
        (
            "hbh routing atomic-frag dest",
            &[0, 43, 44, 60],
            Want::Event,
        ),
        ("hbh routing auth dest", &[0, 43, 51, 60], Want::Event),
        ("five headers", &[0, 43, 44, 51, 60], Want::Unparsed),
        ("five dest-opts", &[60, 60, 60, 60, 60], Want::Unparsed),
    ];
    for &(name, chain, want) in chains {
        add(
            &format!("v6 ext {name}"),
            eth(ETH_P_IPV6, &[], &v6_chain(chain, 6, &req)),
            want,
        );
        add(
            &format!("v6 ext {name}, tagged"),
            eth(ETH_P_IPV6, &[0x8100], &v6_chain(chain, 6, &reply)),
            want,
        );
    }
    // Four extension headers, then not TCP: not ours (not "unparsed").
    add(
        "v6 four ext then udp",
        eth(ETH_P_IPV6, &[], &v6_chain(&[0, 43, 44, 60], 17, &[0u8; 16])),
        Want::Ignored,
    );
    add(
        "v6 ext then icmpv6",
        eth(ETH_P_IPV6, &[], &v6_chain(&[0], 58, &[0u8; 8])),
        Want::Ignored,
    );
    add(
        "v6 no next header",
        eth(ETH_P_IPV6, &[], &v6_chain(&[60], 59, &[])),
        Want::Ignored,
    );
    // Real fragments: first (more fragments), later (offset), after other headers.
    for (name, offset, more) in [("first", 0, true), ("later", 100, false), ("last", 8, true)] {
        let mut rest = frag6(6, offset, more);
        rest.extend_from_slice(&req);
        add(
            &format!("v6 fragment {name}"),
            eth(ETH_P_IPV6, &[], &ipv6(C6, S6, 44, &rest)),
            Want::Unparsed,
        );
    }
    {
        let mut rest = ext(44, 0);
        rest.extend(frag6(6, 0, true));
        rest.extend_from_slice(&req);
        add(
            "v6 hbh then fragment",
            eth(ETH_P_IPV6, &[], &ipv6(C6, S6, 0, &rest)),
            Want::Unparsed,
        );
    }
    // An extension header cut short, and one longer than the payload length says.
    {
        let mut f = eth(ETH_P_IPV6, &[], &v6_chain(&[0, 43], 6, &req));
        f.truncate(14 + 40 + 8 + 1);
        add("v6 ext header cut", f, Want::Unparsed);
        let mut ip = v6_chain(&[43], 6, &req);
        ip[4..6].copy_from_slice(&16u16.to_be_bytes()); // payload length: inside the header
        add(
            "v6 ext past payload length",
            eth(ETH_P_IPV6, &[], &ip),
            Want::Unparsed,
        );
    }

    // TCP data offset: 5, 6, 15; below 5 malformed; beyond the segment malformed.
    add(
        "doff 6",
        eth(
            ETH_P_IP,
            &[],
            &v4(&seg(40000, PORT, PSH_ACK, &[1, 1, 1, 0], PING)),
        ),
        Want::Event,
    );
    add(
        "doff 15",
        eth(
            ETH_P_IP,
            &[],
            &v4(&seg(40000, PORT, PSH_ACK, &[1; 40], PING)),
        ),
        Want::Event,
    );
    add(
        "doff 15 v6",
        eth(
            ETH_P_IPV6,
            &[],
            &v6(&seg(PORT, 40000, PSH_ACK, &[1; 40], PING)),
        ),
        Want::Event,
    );
    for d in [0u8, 1, 4] {
        let mut t = req.clone();
        t[12] = d << 4;
        add(
            &format!("doff {d}"),
            eth(ETH_P_IP, &[], &v4(&t)),
            Want::Unparsed,
        );
        add(
            &format!("doff {d} v6"),
            eth(ETH_P_IPV6, &[], &v6(&t)),
            Want::Unparsed,
        );
    }
    {
        // Data offset 15 (60 bytes) in a 34-byte segment.
        let mut t = req.clone();
        t[12] = 15 << 4;
        add(
            "doff past segment",
            eth(ETH_P_IP, &[], &v4(&t)),
            Want::Unparsed,
        );
        add(
            "doff past segment v6",
            eth(ETH_P_IPV6, &[], &v6(&t)),
            Want::Unparsed,
        );
        let mut t = seg(40000, PORT, TCP_FIN | TCP_ACK, &[], b"");
        t[12] = 6 << 4;
        add(
            "doff past empty FIN",
            eth(ETH_P_IP, &[], &v4(&t)),
            Want::Unparsed,
        );
    }

    // IPv4 header variants.
    add(
        "v4 options",
        eth(
            ETH_P_IP,
            &[],
            &ipv4(C4, S4, 6, &[1, 1, 1, 0, 7, 7, 4, 0], &req),
        ),
        Want::Event,
    );
    add(
        "v4 options max",
        eth(ETH_P_IP, &[], &ipv4(C4, S4, 6, &[1; 40], &reply)),
        Want::Event,
    );
    for ihl in [0u8, 4] {
        let mut ip = v4(&req);
        ip[0] = 0x40 | ihl;
        add(
            &format!("v4 ihl {ihl}"),
            eth(ETH_P_IP, &[], &ip),
            Want::Unparsed,
        );
    }
    {
        let mut ip = v4(&req);
        ip[0] = 0x65;
        add(
            "v4 ethertype, version 6",
            eth(ETH_P_IP, &[], &ip),
            Want::Unparsed,
        );
        let mut ip = v6(&req);
        ip[0] = 0x45;
        add(
            "v6 ethertype, version 4",
            eth(ETH_P_IPV6, &[], &ip),
            Want::Unparsed,
        );
    }
    for (name, frag) in [
        ("more fragments", 0x2000u16),
        ("offset", 0x0010),
        ("df+mf", 0x6000),
    ] {
        let mut ip = v4(&req);
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        add(
            &format!("v4 fragment {name}"),
            eth(ETH_P_IP, &[], &ip),
            Want::Unparsed,
        );
        // Fragments are counted whatever their port (a later one has no TCP header to tell).
        let mut ip = v4(&seg(40000, OTHER, PSH_ACK, &[], PING));
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        add(
            &format!("v4 fragment {name}, other port"),
            eth(ETH_P_IP, &[], &ip),
            Want::Unparsed,
        );
    }
    {
        // A total length shorter than the headers: inconsistent, even with a FIN.
        let t = seg(40000, PORT, TCP_FIN | TCP_ACK, &[], b"");
        let mut ip = v4(&t);
        ip[2..4].copy_from_slice(&30u16.to_be_bytes());
        add(
            "v4 total inside tcp header",
            eth(ETH_P_IP, &[], &ip),
            Want::Unparsed,
        );
        let mut ip = v4(&t);
        ip[2..4].copy_from_slice(&12u16.to_be_bytes());
        add(
            "v4 total inside ip header",
            eth(ETH_P_IP, &[], &ip),
            Want::Unparsed,
        );
        let mut ip = v6(&t);
        ip[4..6].copy_from_slice(&10u16.to_be_bytes());
        add(
            "v6 payload length inside tcp header",
            eth(ETH_P_IPV6, &[], &ip),
            Want::Unparsed,
        );
        // Total length 0 (a TSO/BIG TCP super-packet): the frame is all there is.
        let mut ip = v4(&req);
        ip[2..4].copy_from_slice(&0u16.to_be_bytes());
        add("v4 total length 0", eth(ETH_P_IP, &[], &ip), Want::Event);
        let mut ip = v6(&req);
        ip[4..6].copy_from_slice(&0u16.to_be_bytes());
        add(
            "v6 payload length 0",
            eth(ETH_P_IPV6, &[], &ip),
            Want::Event,
        );
        // Ethernet padding after a short segment is not payload.
        let mut f = eth(
            ETH_P_IP,
            &[],
            &v4(&seg(40000, PORT, TCP_FIN | TCP_ACK, &[], b"")),
        );
        f.resize(60, 0xee);
        add("v4 padded FIN", f, Want::Event);
        let mut f = eth(
            ETH_P_IP,
            &[],
            &v4(&seg(40000, PORT, PSH_ACK, &[], b"+\r\n")),
        );
        f.resize(60, 0xee);
        add("v4 padded payload", f, Want::Event);
    }

    // Headers cut short (the frame ends inside them).
    let full4 = eth(ETH_P_IP, &[], &v4(&req));
    let full6 = eth(ETH_P_IPV6, &[], &v6(&req));
    let tagged4 = eth(ETH_P_IP, &[0x8100], &v4(&req));
    let tagged6 = eth(ETH_P_IPV6, &[0x88a8], &v6(&req));
    for cut in [14, 15, 24, 33] {
        add(
            &format!("v4 cut at {cut}"),
            full4[..cut].to_vec(),
            Want::Unparsed,
        );
        add(
            &format!("v4 tagged, cut at {cut}"),
            tagged4[..cut + 4].to_vec(),
            Want::Unparsed,
        );
    }
    for cut in [14, 20, 53] {
        add(
            &format!("v6 cut at {cut}"),
            full6[..cut].to_vec(),
            Want::Unparsed,
        );
        add(
            &format!("v6 tagged, cut at {cut}"),
            tagged6[..cut + 4].to_vec(),
            Want::Unparsed,
        );
    }
    for tcp_bytes in [1, 4, 13, 14, 19] {
        add(
            &format!("v4 tcp header cut at {tcp_bytes}"),
            full4[..14 + 20 + tcp_bytes].to_vec(),
            Want::Unparsed,
        );
        add(
            &format!("v6 tcp header cut at {tcp_bytes}"),
            full6[..14 + 40 + tcp_bytes].to_vec(),
            Want::Unparsed,
        );
    }

    // Not TCP.
    add(
        "v4 udp to the port",
        eth(
            ETH_P_IP,
            &[],
            &ipv4(C4, S4, 17, &[], &seg(40000, PORT, 0, &[], PING)),
        ),
        Want::Ignored,
    );
    add(
        "v4 icmp",
        eth(
            ETH_P_IP,
            &[],
            &ipv4(C4, S4, 1, &[], &[8, 0, 0, 0, 0, 1, 0, 1]),
        ),
        Want::Ignored,
    );
    add(
        "v4 udp with ihl 4",
        {
            let mut ip = ipv4(C4, S4, 17, &[], &[0u8; 16]);
            ip[0] = 0x44;
            eth(ETH_P_IP, &[], &ip)
        },
        Want::Ignored,
    );
    add(
        "v6 udp",
        eth(
            ETH_P_IPV6,
            &[],
            &ipv6(C6, S6, 17, &seg(40000, PORT, 0, &[], PING)),
        ),
        Want::Ignored,
    );
    add("arp", eth(0x0806, &[], &[0u8; 28]), Want::Ignored);
    add(
        "arp tagged",
        eth(0x0806, &[0x8100], &[0u8; 28]),
        Want::Ignored,
    );
    add(
        "802.3 length field",
        eth(0x0040, &[], &[0u8; 64]),
        Want::Ignored,
    );

    // Other ports.
    let other = seg(40000, OTHER, PSH_ACK, &[], PING);
    add(
        "v4 other port",
        eth(ETH_P_IP, &[], &v4(&other)),
        Want::Ignored,
    );
    add(
        "v6 other port",
        eth(ETH_P_IPV6, &[], &v6(&other)),
        Want::Ignored,
    );
    add(
        "v4 other port tagged",
        eth(ETH_P_IP, &[0x88a8, 0x8100], &v4(&other)),
        Want::Ignored,
    );
    add(
        "v4 other port SYN",
        eth(ETH_P_IP, &[], &v4(&seg(40000, OTHER, TCP_SYN, &[], b""))),
        Want::Ignored,
    );
    add(
        "v4 port 6379 as neither",
        eth(ETH_P_IP, &[], &v4(&seg(6380, 6378, PSH_ACK, &[], PING))),
        Want::Ignored,
    );

    // Payload empty and not.
    for (name, flags, want) in [
        ("ack", TCP_ACK, Want::Silent),
        ("syn", TCP_SYN, Want::Event),
        ("syn-ack", TCP_SYN | TCP_ACK, Want::Event),
        ("fin", TCP_FIN | TCP_ACK, Want::Event),
        ("rst", TCP_RST, Want::Event),
        ("psh no data", PSH_ACK, Want::Silent),
    ] {
        add(
            &format!("v4 empty {name}"),
            eth(ETH_P_IP, &[], &v4(&seg(40000, PORT, flags, &[], b""))),
            want,
        );
        add(
            &format!("v6 empty {name}"),
            eth(ETH_P_IPV6, &[], &v6(&seg(PORT, 40000, flags, &[], b""))),
            want,
        );
    }
    add(
        "v4 FIN with data",
        eth(
            ETH_P_IP,
            &[],
            &v4(&seg(40000, PORT, PSH_ACK | TCP_FIN, &[], PING)),
        ),
        Want::Event,
    );
    // Payload sizes across the event size classes (128, 512, 2048, 8192 bytes).
    for n in [1usize, 128, 129, 512, 513, 2048, 2049, 3000] {
        let p: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        add(
            &format!("v4 payload {n}"),
            eth(ETH_P_IP, &[], &v4(&seg(40000, PORT, PSH_ACK, &[], &p))),
            Want::Event,
        );
        add(
            &format!("v6 payload {n}"),
            eth(
                ETH_P_IPV6,
                &[0x8100],
                &v6_chain(&[0], 6, &seg(PORT, 40000, PSH_ACK, &[], &p)),
            ),
            Want::Event,
        );
    }

    // Malformed TCP on ports that are readable and not watched: not ours.
    for d in [0u8, 4] {
        let mut t = other.clone();
        t[12] = d << 4;
        cs.push(Case {
            name: format!("doff {d} on other port"),
            frame: eth(ETH_P_IP, &[], &v4(&t)),
            unwatched: true,
            want: Want::Unparsed,
        });
    }
    cs
}

/// The kernel refuses (EINVAL) to test-run a TC program on a frame whose IP header does not fit
/// after the Ethernet header its ethertype names; such frames still go through the socket
/// filter (same parser), and tagged copies of them (which the kernel does not check) through
/// TC.
fn tc_refuses(frame: &[u8]) -> bool {
    match frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) {
        Some(ETH_P_IP) => frame.len() < 14 + 20,
        Some(ETH_P_IPV6) => frame.len() < 14 + 40,
        _ => false,
    }
}

/// What the decoder says the kernel must do with `frame`.
fn expected(frame: &[u8]) -> Result<(Want, Option<Seen>), String> {
    Ok(match decode(Link::Ethernet, frame) {
        Decoded::Tcp(t) => {
            if t.missing != 0 {
                // Only a frame shorter than its IP length has bytes missing (docs/packet-parsing.md).
                return Err(format!("the decoder reports {} bytes missing", t.missing));
            }
            if t.src.port() != PORT && t.dst.port() != PORT {
                return Ok((Want::Ignored, None));
            }
            let payload = frame[t.payload].to_vec();
            if payload.is_empty() && t.flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0 {
                return Ok((Want::Silent, None));
            }
            let seen = Seen {
                src: t.src,
                dst: t.dst,
                seq: t.seq,
                ack: t.ack,
                flags: t.flags,
                payload,
            };
            (Want::Event, Some(seen))
        }
        Decoded::NotTcp => (Want::Ignored, None),
        Decoded::Fragment | Decoded::Unparsable => (Want::Unparsed, None),
    })
}

#[test]
fn kernel_programs_and_replay_decoder_agree() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: BPF_PROG_TEST_RUN needs root; `cargo xtask test` runs this as root");
        return;
    }
    let mut k = Kernel::load();
    let cases = cases();
    let mut failures = Vec::new();
    let mut events = 0;
    let mut tc_refused = 0;
    for case in &cases {
        let (want, seen) = match expected(&case.frame) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        if want != case.want {
            failures.push(format!(
                "{}: the decoder says {want:?}, the table {:?}",
                case.name, case.want
            ));
            continue;
        }
        let counted = want == Want::Unparsed && !case.unwatched;
        let segment = matches!(want, Want::Event | Want::Silent);
        let bytes = seen.as_ref().map_or(0, |s| s.payload.len() as u64);
        for prog in [Prog::Tc, Prog::Socket] {
            let r = match k.run(prog, &case.frame) {
                Ok(r) => r,
                Err(_) if matches!(prog, Prog::Tc) && tc_refuses(&case.frame) => {
                    tc_refused += 1;
                    continue;
                }
                Err(e) => {
                    failures.push(format!("{}: {e}", case.name));
                    continue;
                }
            };
            let mut bad = Vec::new();
            let want_ret = match prog {
                Prog::Tc => TC_ACT_UNSPEC,
                Prog::Socket => 0,
            };
            if r.ret != want_ret {
                bad.push(format!("returned {:#x}, not {want_ret:#x}", r.ret));
            }
            let want_events: Vec<Seen> = seen.iter().cloned().collect();
            if r.events != want_events {
                bad.push(format!(
                    "emitted {:?}, the decoder extracts {:?}",
                    r.events, want_events
                ));
            }
            let c = &r.counters;
            let checks = [
                ("packets", counter::PACKETS, 1),
                ("segments", counter::SEGMENTS, u64::from(segment)),
                ("bytes captured", counter::BYTES_CAPTURED, bytes),
                ("unparsed", counter::UNPARSED, u64::from(counted)),
                ("events lost", counter::EVENTS_LOST, 0),
                ("load failed", counter::LOAD_FAILED, 0),
                ("not captured", counter::BYTES_NOT_CAPTURED, 0),
            ];
            for (what, i, v) in checks {
                if c.get(i) != v {
                    bad.push(format!("counter {what} {} (want {v})", c.get(i)));
                }
            }
            if !bad.is_empty() {
                failures.push(format!("{} [{prog:?}]: {}", case.name, bad.join("; ")));
            }
            events += r.events.len();
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The table exercises every outcome.
    assert!(events > 100, "only {events} events");
    eprintln!(
        "{} frames agree ({events} events; {tc_refused} frames the kernel would not test-run \
         through TC)",
        cases.len()
    );
}
