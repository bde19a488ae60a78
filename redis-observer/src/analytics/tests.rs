use std::net::SocketAddr;

use super::*;
use crate::conn::ConnMeta;
use crate::record::RecordArg;

fn meta(client: &str, server: &str) -> ConnMeta {
    ConnMeta::new(client.parse().unwrap(), server.parse().unwrap())
}

/// Feeds a command touching `keys` (each a separate arg in `buf`).
fn feed(a: &mut Analytics, conn: &ConnMeta, ts: u64, cmd: &str, keys: &[&str], lat: u64) {
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for k in keys {
        spans.push(RecordArg {
            start: buf.len() as u32,
            kept: k.len() as u32,
            len: k.len() as u64,
            redacted: false,
        });
        buf.extend_from_slice(k.as_bytes());
    }
    let rec = CommandRecord {
        ts_ns: ts,
        conn,
        command: commands::by_name(cmd.as_bytes()),
        name: cmd.as_bytes(),
        key: None,
        args: &[],
        keys: &spans,
        arg_buf: &buf,
        argc: keys.len() as u64,
        status: Status::Ok,
        reply: None,
        latency_ns: Some(lat),
        req_bytes: 30,
        resp_bytes: 10,
        in_transaction: false,
        blocking: false,
        protocol_error: None,
    };
    a.record(&rec);
}

fn q(server: Option<&str>, what: What, by: By, window: Window) -> Query {
    Query {
        server: server.map(|s| s.parse::<SocketAddr>().unwrap()),
        what,
        by,
        window,
        n: 10,
    }
}

const T0: u64 = 1_700_000_000_000_000_000;
const S: u64 = 1_000_000_000;

#[test]
fn keys_patterns_clients_commands_and_windows() {
    let mut a = Analytics::new(TopConfig::default());
    let c1 = meta("10.0.0.1:5000", "10.0.0.9:6379");
    let c2 = meta("10.0.0.2:5000", "10.0.0.9:6379");
    for i in 0..30 {
        feed(&mut a, &c1, T0 + i, "GET", &["user:1:name"], 1_000);
    }
    for i in 0..20 {
        feed(
            &mut a,
            &c2,
            T0 + i,
            "MGET",
            &["user:2:name", "user:3:name"],
            5_000,
        );
    }
    let ans = a.answer(&q(
        Some("10.0.0.9:6379"),
        What::Keys,
        By::Calls,
        Window::All,
    ));
    let top: Vec<(&str, u64, u64)> = ans
        .items
        .iter()
        .map(|i| (i.name.as_str(), i.calls, i.error))
        .collect();
    assert_eq!(
        top,
        [
            ("user:1:name", 30, 0),
            ("user:2:name", 20, 0),
            ("user:3:name", 20, 0)
        ]
    );
    let by_lat = a.answer(&q(None, What::Keys, By::Latency, Window::Last60s));
    assert_eq!(by_lat.items[0].latency_us, 100);
    let pats = a.answer(&q(None, What::Patterns, By::Calls, Window::All));
    assert_eq!(pats.items.len(), 1);
    assert_eq!(
        (pats.items[0].name.as_str(), pats.items[0].calls),
        ("user:{}:name", 70)
    );
    let clients = a.answer(&q(None, What::Clients, By::Calls, Window::All));
    assert_eq!(clients.items[0].name, "10.0.0.1:5000");
    assert_eq!(clients.items[0].calls, 30);
    let cmds = a.answer(&q(None, What::Commands, By::Calls, Window::All));
    let cmds: Vec<(&str, u64)> = cmds
        .items
        .iter()
        .map(|i| (i.name.as_str(), i.calls))
        .collect();
    assert_eq!(cmds, [("GET", 30), ("MGET", 20)]);

    // 70 s later: the last 60 s are empty, since-start still has everything.
    feed(&mut a, &c1, T0 + 70 * S, "GET", &["other"], 1);
    let recent = a.answer(&q(None, What::Keys, By::Calls, Window::Last60s));
    assert_eq!(recent.items.len(), 1);
    assert_eq!(recent.items[0].name, "other");
    let all = a.answer(&q(None, What::Keys, By::Calls, Window::All));
    assert_eq!(all.items.len(), 4);
    assert_eq!(all.items[0].calls, 30);
    // An unknown server: nothing.
    assert!(
        a.answer(&q(Some("1.2.3.4:1"), What::Keys, By::Calls, Window::All))
            .items
            .is_empty()
    );
}

#[test]
fn memory_is_bounded_whatever_the_keys() {
    let cfg = TopConfig::default();
    let bound = Analytics::max_bytes(&cfg);
    // About 6.8 MiB a server with the defaults.
    assert!(bound / cfg.max_servers < 10 << 20, "{bound}");
    let mut a = Analytics::new(cfg.clone());
    let c = meta("10.0.0.1:5000", "10.0.0.9:6379");
    for i in 0..200_000u64 {
        let k = format!("k:{i}");
        feed(&mut a, &c, T0 + i * 100_000, "GET", &[&k], 10);
    }
    let s = &a.servers[0];
    for t in s.buckets.iter().chain([&s.all]) {
        assert!(t.keys.len() <= cfg.keys);
        assert!(t.patterns.len() <= cfg.patterns);
        assert!(t.big.entries().len() <= cfg.bigkeys);
    }
}

#[test]
fn names_are_escaped_like_the_log() {
    let n = Name::new(b"a\nb\xff\x01", 5);
    assert_eq!(display(&n), "a\\nb\\xff\\x01");
    let n = Name::new(b"abc", 10);
    assert_eq!(display(&n), "abc…(+7 bytes)");
}

#[test]
fn servers_are_capped() {
    let cfg = TopConfig {
        max_servers: 2,
        ..TopConfig::default()
    };
    let mut a = Analytics::new(cfg);
    for p in 0..5 {
        let c = meta("10.0.0.1:5000", &format!("10.0.0.9:{}", 6379 + p));
        feed(&mut a, &c, T0, "GET", &["k"], 1);
    }
    assert_eq!(a.servers().len(), 2);
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time (not wall time: the build machines are shared) per command of
/// `Analytics::record`, one key per command, Zipf-like over 10,000 keys, 64 clients. Run with
/// `cargo test --release -p redis-observer --lib analytics::tests::cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn cost_per_command() {
    let conns: Vec<ConnMeta> = (0..64)
        .map(|i| meta(&format!("127.0.0.1:{}", 40000 + i), "127.0.0.1:6379"))
        .collect();
    let mut x = 0x1234_5678_9abc_def1u64;
    let n = 1_000_000usize;
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x % 1_000_000) as f64 / 1e6;
            let id = (10_000f64.powf(u * u) as u64).min(9_999);
            match id % 3 {
                0 => format!("user:{id}:profile"),
                1 => format!("order:{id}"),
                _ => format!("session:{:016x}", id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            }
            .into_bytes()
        })
        .collect();
    let get = commands::by_name(b"GET");
    let run = |a: Option<&mut Analytics>| {
        let mut sink = 0u64;
        // The session has just copied the key into its arena: both arms copy it to a local
        // buffer first, so the cost of fetching a million scattered keys from memory is not
        // charged to the analytics.
        let mut buf = [0u8; 64];
        let t0 = thread_cpu_ns();
        let mut a = a;
        for (i, k) in keys.iter().enumerate() {
            let n = k.len().min(64);
            buf[..n].copy_from_slice(&k[..n]);
            let kb = std::hint::black_box(&buf[..n]);
            let span = [RecordArg {
                start: 0,
                kept: n as u32,
                len: k.len() as u64,
                redacted: false,
            }];
            let rec = CommandRecord {
                ts_ns: T0 + i as u64 * 1_000,
                conn: &conns[i % 64],
                command: get,
                name: b"GET",
                key: Some(kb),
                args: &span,
                keys: &span,
                arg_buf: kb,
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
            match a.as_deref_mut() {
                Some(a) => a.record(&rec),
                None => sink = sink.wrapping_add(std::hint::black_box(&rec).argc),
            }
        }
        std::hint::black_box(sink);
        thread_cpu_ns() - t0
    };
    let mut best = u64::MAX;
    let mut base = u64::MAX;
    for _ in 0..3 {
        base = base.min(run(None));
        let mut a = Analytics::new(TopConfig::default());
        best = best.min(run(Some(&mut a)));
    }
    let distinct: std::collections::HashSet<&Vec<u8>> = keys.iter().collect();
    eprintln!(
        "analytics: tables of one server at most {} bytes",
        Analytics::max_bytes(&TopConfig {
            max_servers: 1,
            ..TopConfig::default()
        })
    );
    eprintln!(
        "analytics: {:.1} ns/command CPU ({} distinct keys; loop alone {:.1} ns)",
        (best - base) as f64 / n as f64,
        distinct.len(),
        base as f64 / n as f64
    );
}

#[test]
fn the_budget_sets_how_many_servers_are_analysed() {
    let one = Analytics::reserve_bytes(&TopConfig {
        max_servers: 1,
        ..TopConfig::default()
    }) as u64;
    assert_eq!(TopConfig::default().within(0).max_servers, 1);
    assert_eq!(TopConfig::default().within(one).max_servers, 1);
    assert_eq!(TopConfig::default().within(u64::MAX).max_servers, 8);
    // The default --memory-limit (192 MiB) gives the analytics a sixth.
    let cfg = TopConfig::default().within(32 << 20);
    assert_eq!(cfg.max_servers, 4);
    assert!(Analytics::reserve_bytes(&cfg) as u64 <= 32 << 20);
}
