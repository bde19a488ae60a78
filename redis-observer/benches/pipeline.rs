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
    analytics::{self, TopConfig},
    command_log::{CommandLog, Format, Renderer, Target},
    metrics::Metrics,
    outputs::{LogSink, Outputs, TopSink},
    pipeline::{Pipeline, PipelineConfig},
    record::Sink as _,
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

/// What `redis-benchmark -c 50 -P 16 -t set,get,incr,lpush,hset` sends (its default 3-byte
/// values and `__rand_int__` keys): each connection writes 16 commands of one test per packet and
/// gets their 16 replies in one packet, the tests running one after another.
fn redis_benchmark_p16(total_commands: usize) -> (Vec<Seg>, usize) {
    let server: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let conns = 50u16;
    let tests: [(&[&[u8]], &[u8]); 5] = [
        (&[b"SET", b"key:__rand_int__", b"xxx"], b"+OK\r\n"),
        (&[b"GET", b"key:__rand_int__"], b"$3\r\nxxx\r\n"),
        (&[b"INCR", b"counter:__rand_int__"], b":123456\r\n"),
        (&[b"LPUSH", b"mylist", b"xxx"], b":654321\r\n"),
        (
            &[b"HSET", b"myhash", b"element:__rand_int__", b"xxx"],
            b":0\r\n",
        ),
    ];
    let mut segs = Vec::new();
    let mut seqs = vec![(1000u32, 5000u32); conns as usize];
    let mut ts = 1_700_000_000_000_000_000u64;
    let per_test = total_commands / tests.len();
    let mut n = 0;
    for (args, reply) in tests {
        let (q, r) = (cmd(args).repeat(16), reply.repeat(16));
        let mut sent = 0;
        while sent < per_test {
            for c in 0..conns {
                let client: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 40000 + c));
                let (cs, ss) = &mut seqs[c as usize];
                ts += 800;
                segs.push(Seg {
                    ts,
                    src: client,
                    dst: server,
                    seq: *cs,
                    ack: *ss,
                    flags: TCP_ACK | TCP_PSH,
                    data: q.clone(),
                });
                *cs = cs.wrapping_add(q.len() as u32);
                segs.push(Seg {
                    ts: ts + 400,
                    src: server,
                    dst: client,
                    seq: *ss,
                    ack: *cs,
                    flags: TCP_ACK | TCP_PSH,
                    data: r.clone(),
                });
                *ss = ss.wrapping_add(r.len() as u32);
                sent += 16;
                n += 16;
            }
        }
    }
    (segs, n)
}

/// Runs the whole pipeline over `segs`, with a JSON log to /dev/null when `log` is set.
fn replay(segs: &[Seg], log: bool) -> usize {
    replay_with(segs, log.then_some(Format::Json), false)
}

/// [`replay`], with a log in `log`'s format, and the hot-key analytics too when `top` is set
/// (records then carry keys).
fn replay_with(segs: &[Seg], log: Option<Format>, top: bool) -> usize {
    let metrics = Metrics::new();
    let log = log.map(|format| {
        let target = Target::open("/dev/null", 0, 0).expect("/dev/null opens");
        CommandLog::direct(target, Renderer::new(format), metrics.log_counters())
    });
    let mut out = Outputs::new(metrics);
    if let Some(log) = log {
        out = out.with(Box::new(LogSink::new(log, None, false)));
    }
    let mut cfg = PipelineConfig::default();
    if top {
        out = out.with(Box::new(TopSink::new(TopConfig::default())));
        analytics::with_keys(&mut cfg);
    }
    let mut p = Pipeline::new(cfg);
    for s in segs {
        let seg = Segment {
            ts_ns: s.ts,
            src: s.src,
            dst: s.dst,
            seq: s.seq,
            flags: s.flags,
            ack: s.ack,
            data: &s.data,
            missing: 0,
            capture: redis_observer::conn::Capture::unknown(),
        };
        p.segment(&seg, &mut out);
    }
    p.finish(&mut out);
    out.flush();
    let n = out.metrics.encode_text().len();
    let _ = out.finish();
    n
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
    g.bench_function("replay_commands", |b| b.iter(|| replay(&segs, false)));
    // The same with the hot-key analytics: the difference per element is their cost per
    // command (keys carried by records, sketches, patterns, big keys, clients, commands).
    g.bench_function("replay_commands_top", |b| {
        b.iter(|| replay_with(&segs, None, true))
    });
    g.finish();

    let (segs, commands) = redis_benchmark_p16(400_000);
    let mut g = c.benchmark_group("redis_benchmark_p16");
    g.throughput(Throughput::Elements(commands as u64));
    g.sample_size(10);
    g.bench_function("metrics", |b| b.iter(|| replay(&segs, false)));
    g.bench_function("metrics_and_json_log", |b| b.iter(|| replay(&segs, true)));
    // `--log-format text`: the difference from the JSON arm is the text layout's cost per line.
    g.bench_function("metrics_and_text_log", |b| {
        b.iter(|| replay_with(&segs, Some(Format::Text), false))
    });
    g.finish();
}

/// The analytics alone, per command: records as the session hands them over (one key each,
/// Zipf-like over 10,000 keys of a few patterns, 64 clients, one server).
fn analytics_record(c: &mut Criterion) {
    use redis_observer::{
        analytics::Analytics,
        commands,
        conn::ConnMeta,
        record::{CommandRecord, RecordArg, Status},
    };
    let server: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let conns: Vec<ConnMeta> = (0..64)
        .map(|i| ConnMeta::new(SocketAddr::from(([127, 0, 0, 1], 40000 + i)), server))
        .collect();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let n = 100_000;
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
    for _ in 0..n {
        // Roughly Zipf: a power of a uniform draw favours small ids.
        let u = (rng.next() % 1_000_000) as f64 / 1e6;
        let id = (10_000f64.powf(u * u) as u64).min(9_999);
        let k = match id % 3 {
            0 => format!("user:{id}:profile"),
            1 => format!("order:{id}"),
            _ => format!("session:{:016x}", id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        };
        keys.push(k.into_bytes());
    }
    let get = commands::by_name(b"GET");
    let mut g = c.benchmark_group("analytics");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    g.bench_function("record_one_key", |b| {
        b.iter(|| {
            let mut a = Analytics::new(TopConfig::default());
            for (i, k) in keys.iter().enumerate() {
                let span = [RecordArg {
                    start: 0,
                    kept: k.len() as u32,
                    len: k.len() as u64,
                    redacted: false,
                }];
                let rec = CommandRecord {
                    ts_ns: 1_700_000_000_000_000_000 + i as u64 * 1_000,
                    conn: &conns[i % 64],
                    command: get,
                    name: b"GET",
                    key: Some(k),
                    args: &span,
                    keys: &span,
                    arg_buf: k,
                    argc: 1,
                    status: Status::Ok,
                    reply: None,
                    latency_ns: Some(20_000),
                    req_bytes: 30,
                    resp_bytes: 70,
                    in_transaction: false,
                    blocking: false,
                    protocol_error: None,
                };
                a.record(&rec);
            }
            a.servers().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, analytics_record);
criterion_main!(benches);
