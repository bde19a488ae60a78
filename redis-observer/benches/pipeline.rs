//! Full replay pipeline on one core: reassembly + decoding + pairing + metric updates (log off),
//! in commands per second, over a large synthetic capture of a realistic mix: 64 connections
//! doing small GET/SET one at a time, pipelines of 16, and some large values, each segment
//! seen twice (as on `lo` with both hooks) one time in eight.
//!
//! `cargo bench --bench pipeline` (or `cargo xtask bench`).

use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_ebpf_common::{TCP_ACK, TCP_PSH, TCP_SYN};
use redis_observer::{
    command_log::Outputs,
    metrics::Metrics,
    pipeline::{Pipeline, PipelineConfig},
    segment::Segment,
};

#[derive(Clone)]
struct Seg {
    ts: u64,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    data: Vec<u8>,
}

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        b.extend_from_slice(a);
        b.extend_from_slice(b"\r\n");
    }
    b
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut b = format!("${}\r\n", v.len()).into_bytes();
    b.extend_from_slice(v);
    b.extend_from_slice(b"\r\n");
    b
}

/// A deterministic xorshift, so every run benches the same capture.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn capture(total_commands: usize) -> (Vec<Seg>, usize) {
    let server: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let conns = 64usize;
    let mut segs = Vec::new();
    let mut seqs: Vec<(u32, u32)> = Vec::new();
    let mut ts = 1_700_000_000_000_000_000u64;
    for c in 0..conns {
        let client: SocketAddr = format!("127.0.0.1:{}", 40000 + c).parse().unwrap();
        let (cs, ss) = (rng.next() as u32, rng.next() as u32);
        segs.push(Seg {
            ts,
            src: client,
            dst: server,
            seq: cs,
            ack: 0,
            flags: TCP_SYN,
            data: vec![],
        });
        segs.push(Seg {
            ts,
            src: server,
            dst: client,
            seq: ss,
            ack: cs.wrapping_add(1),
            flags: TCP_SYN | TCP_ACK,
            data: vec![],
        });
        seqs.push((cs.wrapping_add(1), ss.wrapping_add(1)));
    }
    let small = vec![b'v'; 64];
    let mut n = 0;
    while n < total_commands {
        let c = (rng.next() % conns as u64) as usize;
        let client: SocketAddr = format!("127.0.0.1:{}", 40000 + c).parse().unwrap();
        let kind = rng.next() % 100;
        let key = format!("key:{}", rng.next() % 10_000);
        let (req, rep, k) = if kind < 60 {
            // One small command at a time.
            if rng.next().is_multiple_of(2) {
                (cmd(&[b"GET", key.as_bytes()]), bulk(&small), 1)
            } else {
                (
                    cmd(&[b"SET", key.as_bytes(), &small]),
                    b"+OK\r\n".to_vec(),
                    1,
                )
            }
        } else if kind < 98 {
            // A pipeline of 16.
            let (mut q, mut r) = (Vec::new(), Vec::new());
            for i in 0..16 {
                if i % 2 == 0 {
                    q.extend(cmd(&[b"INCR", key.as_bytes()]));
                    r.extend(format!(":{i}\r\n").as_bytes());
                } else {
                    q.extend(cmd(&[b"GET", key.as_bytes()]));
                    r.extend(bulk(&small));
                }
            }
            (q, r, 16)
        } else {
            // A large value.
            let big = vec![b'x'; 16 * 1024 + (rng.next() % (84 * 1024)) as usize];
            (cmd(&[b"SET", key.as_bytes(), &big]), b"+OK\r\n".to_vec(), 1)
        };
        n += k;
        ts += 10_000;
        for (from, to, bytes, which) in [(client, server, req, 0), (server, client, rep, 1)] {
            for chunk in bytes.chunks(65_483) {
                let (mine, theirs) = if which == 0 {
                    (seqs[c].0, seqs[c].1)
                } else {
                    (seqs[c].1, seqs[c].0)
                };
                let s = Seg {
                    ts,
                    src: from,
                    dst: to,
                    seq: mine,
                    ack: theirs,
                    flags: TCP_ACK | TCP_PSH,
                    data: chunk.to_vec(),
                };
                let next = mine.wrapping_add(chunk.len() as u32);
                if which == 0 {
                    seqs[c].0 = next;
                } else {
                    seqs[c].1 = next;
                }
                if rng.next().is_multiple_of(8) {
                    segs.push(s.clone());
                }
                segs.push(s);
            }
        }
    }
    (segs, n)
}

fn bench(c: &mut Criterion) {
    let (segs, commands) = capture(400_000);
    let bytes: usize = segs.iter().map(|s| s.data.len()).sum();
    eprintln!(
        "synthetic capture: {} segments, {} commands, {:.1} MiB",
        segs.len(),
        commands,
        bytes as f64 / 1048576.0
    );
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(commands as u64));
    g.sample_size(10);
    g.bench_function("replay_commands", |b| {
        b.iter(|| {
            let mut out = Outputs::new(Metrics::new(), None, None, false);
            let mut p = Pipeline::new(PipelineConfig::default());
            for s in &segs {
                let seg = Segment {
                    ts_ns: s.ts,
                    src: s.src,
                    dst: s.dst,
                    seq: s.seq,
                    flags: s.flags,
                    ack: s.ack,
                    data: &s.data,
                    missing: 0,
                };
                p.segment(&seg, &mut out);
            }
            p.finish(&mut out);
            out.metrics.encode_text().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
