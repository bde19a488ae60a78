//! Throughput of the RESP decoders on synthetic traffic, next to the `redis-protocol` crate's
//! decoders over the same bytes.
//!
//! Streams (built once, deterministic): a client → server stream of multibulk commands and the
//! server → client replies to it, in RESP2 and RESP3, generated until the longer one reaches
//! 64 MiB. Two mixes:
//! - `mixed`: mostly small GET/SET, some MGET/HGETALL/LRANGE/INCR/ZSCORE/EXPIRE/SCAN (nested);
//!   values of 16–512 B (90 %), 1–8 KiB (8 %), 16–100 KiB (2 %): by bytes, large values dominate;
//! - `small`: the same commands with 16–512 B values only: the per-frame cost dominates.
//!
//! Our decoders are fed the stream whole and in 1448-byte pieces (one TCP segment's payload);
//! `redis-protocol` decodes frame after frame from one buffer (its best case).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use redis_observer::resp::{Limits, ReplyDecoder, ReplyEvent, RequestDecoder, RequestEvent};

const TARGET: usize = 64 << 20;
const SEGMENT: usize = 1448;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi: u64) -> usize {
        (lo + self.below(hi - lo)) as usize
    }
}

struct Streams {
    req: Vec<u8>,
    rep2: Vec<u8>,
    rep3: Vec<u8>,
}

fn bulk(o: &mut Vec<u8>, b: &[u8]) {
    o.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
    o.extend_from_slice(b);
    o.extend_from_slice(b"\r\n");
}

fn command(o: &mut Vec<u8>, args: &[&[u8]]) {
    o.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        bulk(o, a);
    }
}

fn build(large: bool) -> Streams {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let pool: Vec<u8> = (0..128 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let value = |rng: &mut Rng| -> &[u8] {
        let r = rng.below(100);
        let n = if !large || r < 90 {
            rng.range(16, 512)
        } else if r < 98 {
            rng.range(1024, 8 * 1024)
        } else {
            rng.range(16 * 1024, 100 * 1024)
        };
        &pool[..n]
    };
    let (mut req, mut rep2, mut rep3) = (Vec::new(), Vec::new(), Vec::new());
    while req.len().max(rep2.len()) < TARGET {
        let key = format!("key:{:08}", rng.below(1_000_000));
        let key = key.as_bytes();
        match rng.below(100) {
            0..55 => {
                command(&mut req, &[b"GET", key]);
                if rng.below(10) == 0 {
                    rep2.extend_from_slice(b"$-1\r\n");
                    rep3.extend_from_slice(b"_\r\n");
                } else {
                    let v = value(&mut rng);
                    bulk(&mut rep2, v);
                    bulk(&mut rep3, v);
                }
            }
            55..80 => {
                let v = value(&mut rng);
                command(&mut req, &[b"SET", key, v]);
                rep2.extend_from_slice(b"+OK\r\n");
                rep3.extend_from_slice(b"+OK\r\n");
            }
            80..85 => {
                let keys: Vec<String> = (0..8).map(|i| format!("key:{i:08}")).collect();
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(|k| k.as_bytes()));
                command(&mut req, &args);
                for o in [&mut rep2, &mut rep3] {
                    o.extend_from_slice(b"*8\r\n");
                }
                for _ in 0..8 {
                    let v = &pool[..rng.range(16, 512)];
                    bulk(&mut rep2, v);
                    bulk(&mut rep3, v);
                }
            }
            85..90 => {
                command(&mut req, &[b"HGETALL", key]);
                let n = rng.range(5, 20);
                rep2.extend_from_slice(format!("*{}\r\n", 2 * n).as_bytes());
                rep3.extend_from_slice(format!("%{n}\r\n").as_bytes());
                for i in 0..n {
                    let f = format!("field{i}");
                    let v = &pool[..rng.range(4, 64)];
                    for o in [&mut rep2, &mut rep3] {
                        bulk(o, f.as_bytes());
                        bulk(o, v);
                    }
                }
            }
            90..94 => {
                command(&mut req, &[b"INCR", key]);
                let r = format!(":{}\r\n", rng.below(1 << 40));
                rep2.extend_from_slice(r.as_bytes());
                rep3.extend_from_slice(r.as_bytes());
            }
            94..97 => {
                command(&mut req, &[b"LRANGE", key, b"0", b"9"]);
                for o in [&mut rep2, &mut rep3] {
                    o.extend_from_slice(b"*10\r\n");
                }
                for _ in 0..10 {
                    let v = &pool[..rng.range(8, 128)];
                    bulk(&mut rep2, v);
                    bulk(&mut rep3, v);
                }
            }
            97..99 => {
                command(&mut req, &[b"ZSCORE", b"leaderboard", key]);
                bulk(&mut rep2, b"1234.5");
                rep3.extend_from_slice(b",1234.5\r\n");
            }
            _ if rng.below(2) == 0 => {
                command(&mut req, &[b"EXPIRE", key, b"3600"]);
                rep2.extend_from_slice(b":1\r\n");
                rep3.extend_from_slice(b"#t\r\n");
            }
            _ => {
                // A nested reply: cursor + keys.
                command(&mut req, &[b"SCAN", b"0", b"COUNT", b"10"]);
                for o in [&mut rep2, &mut rep3] {
                    o.extend_from_slice(b"*2\r\n$5\r\n17408\r\n*10\r\n");
                    for i in 0..10 {
                        bulk(o, format!("key:{i:08}").as_bytes());
                    }
                }
            }
        }
    }
    Streams { req, rep2, rep3 }
}

fn ours_request(data: &[u8], piece: usize) -> u64 {
    let mut d = RequestDecoder::new(Limits::default());
    let mut n = 0u64;
    for (i, p) in data.chunks(piece).enumerate() {
        d.feed(i as u64, p, &mut |e| {
            n += match e {
                RequestEvent::Command(_) => 1,
                _ => 1 << 32,
            };
        });
    }
    n
}

fn ours_reply(data: &[u8], piece: usize) -> u64 {
    let mut d = ReplyDecoder::new(Limits::default());
    let mut n = 0u64;
    for (i, p) in data.chunks(piece).enumerate() {
        d.feed(i as u64, p, &mut |e| {
            n += match e {
                ReplyEvent::Reply(_) => 1,
                ReplyEvent::Desync(_) => 1 << 32,
            };
        });
    }
    n
}

fn theirs_resp2(buf: &Bytes) -> u64 {
    let (mut off, mut n) = (0, 0u64);
    while off < buf.len() {
        match redis_protocol::resp2::decode::decode_bytes(&buf.slice(off..)) {
            Ok(Some((f, used))) => {
                black_box(f);
                off += used;
                n += 1;
            }
            _ => break,
        }
    }
    n
}

fn theirs_resp2_owned(buf: &[u8]) -> u64 {
    let (mut off, mut n) = (0, 0u64);
    while off < buf.len() {
        match redis_protocol::resp2::decode::decode(&buf[off..]) {
            Ok(Some((f, used))) => {
                black_box(f);
                off += used;
                n += 1;
            }
            _ => break,
        }
    }
    n
}

fn theirs_resp3(buf: &Bytes) -> u64 {
    let (mut off, mut n) = (0, 0u64);
    while off < buf.len() {
        match redis_protocol::resp3::decode::complete::decode_bytes(&buf.slice(off..)) {
            Ok(Some((f, used))) => {
                black_box(f);
                off += used;
                n += 1;
            }
            _ => break,
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    for (mix, large) in [("mixed", true), ("small", false)] {
        let s = build(large);
        let (req, rep2, rep3) = (Bytes::from(s.req), Bytes::from(s.rep2), Bytes::from(s.rep3));
        // Both sides must see the same frames (and we no desync) or the numbers mean nothing.
        let frames = theirs_resp2(&req);
        assert_eq!(ours_request(&req, SEGMENT), frames);
        assert_eq!(ours_reply(&rep2, SEGMENT), frames);
        assert_eq!(theirs_resp2(&rep2), frames);
        assert_eq!(ours_reply(&rep3, SEGMENT), frames);
        assert_eq!(theirs_resp3(&rep3), frames);
        eprintln!(
            "{mix}: {frames} commands; request {} MiB, reply RESP2 {} MiB, RESP3 {} MiB",
            req.len() >> 20,
            rep2.len() >> 20,
            rep3.len() >> 20
        );
        for (dir, data) in [
            ("request", &req),
            ("reply_resp2", &rep2),
            ("reply_resp3", &rep3),
        ] {
            let mut g = c.benchmark_group(format!("{mix}/{dir}"));
            g.throughput(Throughput::Bytes(data.len() as u64));
            g.sample_size(10);
            // Iterations are long (a whole stream): equal-sized samples keep the run short.
            g.sampling_mode(SamplingMode::Flat);
            g.warm_up_time(Duration::from_secs(1));
            g.measurement_time(Duration::from_secs(5));
            if dir == "request" {
                g.bench_function("ours_whole", |b| b.iter(|| ours_request(data, usize::MAX)));
                g.bench_function("ours_1448", |b| b.iter(|| ours_request(data, SEGMENT)));
            } else {
                g.bench_function("ours_whole", |b| b.iter(|| ours_reply(data, usize::MAX)));
                g.bench_function("ours_1448", |b| b.iter(|| ours_reply(data, SEGMENT)));
            }
            if dir == "reply_resp3" {
                g.bench_function("redis_protocol_resp3_decode_bytes", |b| {
                    b.iter(|| theirs_resp3(data))
                });
            } else {
                g.bench_function("redis_protocol_resp2_decode_bytes", |b| {
                    b.iter(|| theirs_resp2(data))
                });
                g.bench_function("redis_protocol_resp2_decode", |b| {
                    b.iter(|| theirs_resp2_owned(data))
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
